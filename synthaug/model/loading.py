"""Load a trained MSDM and refuse one whose condition channels are not what the caller builds."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from synthaug.conditions import ConditionChannels
from synthaug.model.msdm import MSDM, migrate_config

# Sub-folders of a training run (``train_msdm``'s output_dir).
MODEL_SUBFOLDER = "model"
SCHEDULER_SUBFOLDER = "scheduler"
TEXT_CACHE_SUBFOLDER = "text_cache"
PROMPTER_SUBFOLDER = "prompter"
SUMMARY_FILE = "training_summary.json"

# Models shipped inside the package (fp16 safetensors + model card), loadable by name.
PRETRAINED = ("consep",)


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model's folder for a name in ``PRETRAINED``, else ``name_or_path`` as a path.

    An existing folder always wins over a shipped name, so a user's ``./consep`` run is not shadowed.
    """
    path = Path(name_or_path)
    if path.exists() or str(name_or_path) not in PRETRAINED:
        return path
    return Path(str(resources.files("synthaug") / "assets" / "models" / str(name_or_path)))


def _model_dir(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    if (path / MODEL_SUBFOLDER / "config.json").is_file():
        return path / MODEL_SUBFOLDER
    raise FileNotFoundError(
        f"no MSDM found at {str(path)!r}: expected config.json there or in {MODEL_SUBFOLDER}/ "
        f"(a folder written by MSDM.save_pretrained or train_msdm), or a shipped model name {PRETRAINED}."
    )


def load_msdm(path: str | Path, expected_channels: ConditionChannels | None = None, **kwargs) -> MSDM:
    """Load an MSDM from a ``save_pretrained`` folder or a ``train_msdm`` output folder.

    Args:
        path: the model folder, a training run folder holding ``model/``, or the name of a
            shipped model (``"consep"``, see ``PRETRAINED``).
        expected_channels: the ``ConditionChannels`` the caller will build conditions with; the
            checkpoint is refused if it was trained on another one.
        kwargs: passed to ``MSDM.from_pretrained`` (``torch_dtype``, ...).

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: if no model is found at ``path``.
        TypeError: if ``expected_channels`` is not a ``ConditionChannels``.
        ValueError: if the checkpoint's channels differ from ``expected_channels``.
    """
    model_dir = _model_dir(resolve_model_path(path))
    if expected_channels is not None:
        if not isinstance(expected_channels, ConditionChannels):
            raise TypeError(
                f"`expected_channels` must be a ConditionChannels, got {type(expected_channels).__name__}."
            )
        # Check the config before reading any weights: a mismatch should fail fast and clearly.
        config = migrate_config(json.loads((model_dir / "config.json").read_text()))
        saved = ConditionChannels.from_dict(config["condition_channels"])
        if saved != expected_channels:
            raise ValueError(
                f"the checkpoint at {str(model_dir)!r} was trained with condition channels {saved.to_dict()} "
                f"(channels {list(saved.names)}) but the expected channels are {expected_channels.to_dict()} "
                f"(channels {list(expected_channels.names)}). Build conditions with the checkpoint's "
                "(`load_msdm(path).condition_channels`) or train a model for yours."
            )
    return MSDM.from_pretrained(model_dir, **kwargs).eval()
