"""MorphologyPrompter: text prompts for tiles that come without captions.

Each tile is embedded by a frozen image encoder (EfficientNet-Lite0 by default, no download) and,
optionally, measured with interpretable morphometrics (H&E stain intensities; nuclear density, size
and eccentricity when masks exist). k-means groups the tiles; every group gets a description read off
its centroid (``synthaug.prompts.describe``), and a tile's prompt is
``"<label> tissue, morphology group <g>: <description>"`` -- label plus group, as in the PCam study
that motivated this (label-only prompts vs label + k-means group prompts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances_argmin, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from synthaug._validation import check_choice, check_int, check_rgb_image, default_device
from synthaug.prompts.describe import describe_centroid
from synthaug.prompts.morphometrics import MASK_FEATURES, STAIN_FEATURES, mask_features, stain_features

DEFAULT_EXTRACTOR = "efficientnet-lite0"
CONFIG_NAME = "prompter_config.json"
WEIGHTS_NAME = "prompter.safetensors"
_SELECTIONS = ("silhouette", "bic")


@dataclass(frozen=True)
class PromptAssignment:
    """The morphology group of one tile and the prompt built from it.

    Attributes:
        group: group index, ``0`` = the group with most tiles in the fit.
        prompt: ``"<label> tissue, morphology group <g>: <description>"``.
        description: the group's description alone.
    """

    group: int
    prompt: str
    description: str = ""

    @property
    def meta(self) -> dict[str, str]:
        """The group as ``Sample.meta`` entries: ``synthaug.model.metadata_to_text`` writes the
        ``"morphology group"`` key into the MSDM text prompt, beside the sample's ``label``."""
        return {"morphology group": f"{self.group}: {self.description}"}


class MorphologyPrompter:
    """Derive morphology groups and prompts from images with k-means on frozen-encoder features.

    Args:
        k: number of groups, or ``None`` to choose it from ``k_range`` by ``selection``.
        k_range: inclusive ``(low, high)`` range of ``k`` tried when ``k`` is ``None``.
        selection: ``"silhouette"`` (highest sklearn ``silhouette_score`` of the k-means groups) or
            ``"bic"`` (lowest ``GaussianMixture.bic``, diagonal covariances).
        extractor: the frozen image encoder: a module mapping ``(B, 3, H, W)`` float in [0, 1] to
            ``(B, D)``, or a name for ``synthaug.metrics.features.load_feature_extractor``;
            ``None`` = the offline ImageNet EfficientNet-Lite0.
        morphometrics: also cluster on (and describe with) the interpretable features of
            ``synthaug.prompts.morphometrics``. Without them the groups come from the embedding
            alone and their descriptions say so.
        n_components: PCA components kept of the standardised embedding (capped by the number of
            tiles); ``None`` keeps the standardised embedding as it is.
        n_init: k-means restarts.
        batch_size: tiles per encoder forward pass.
        device: where the encoder runs; ``None`` = CUDA when available, else CPU.
        seed: ``random_state`` of PCA, k-means and the Gaussian mixture: same seed, same groups.

    Example:
        >>> prompter = MorphologyPrompter(k=8).fit(images, masks, labels)  # doctest: +SKIP
        >>> prompter.transform(images[:1], masks[:1], labels[:1])[0].prompt  # doctest: +SKIP
        'tumour tissue, morphology group 3: dense large nuclei, dark haematoxylin'
    """

    def __init__(
        self,
        k: int | None = None,
        *,
        k_range: tuple[int, int] = (2, 40),
        selection: str = "silhouette",
        extractor: torch.nn.Module | str | None = None,
        morphometrics: bool = True,
        n_components: int | None = 32,
        n_init: int = 10,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        if k is not None:
            check_int(k, "k", minimum=2, hint="k-means needs at least two groups")
        if not (isinstance(k_range, (tuple, list)) and len(k_range) == 2):
            raise TypeError(f"`k_range` must be a (low, high) pair of ints, got {k_range!r}.")
        low = check_int(k_range[0], "k_range[0]", minimum=2, hint="k-means needs at least two groups")
        high = check_int(k_range[1], "k_range[1]", minimum=low, hint="`k_range` is (low, high), low <= high")
        check_choice(selection, "selection", _SELECTIONS)
        if n_components is not None:
            check_int(n_components, "n_components", minimum=1, hint="or None to skip PCA")
        if not (extractor is None or isinstance(extractor, (str, torch.nn.Module))):
            raise TypeError(
                "`extractor` must be a torch.nn.Module, a feature-extractor name or None, "
                f"got {type(extractor).__name__}."
            )
        self.k = k
        self.k_range = (low, high)
        self.selection = selection
        self.extractor = extractor
        self.morphometrics = bool(morphometrics)
        self.n_components = n_components
        self.n_init = check_int(n_init, "n_init", minimum=1)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.device = default_device(device)
        self.seed = int(seed)
        self._state: dict[str, np.ndarray] | None = None
        self._extractor_module: torch.nn.Module | None = None

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None = None,
        labels: Sequence[str] | None = None,
    ) -> MorphologyPrompter:
        """Embed and measure the tiles, choose ``k`` if needed, and fit k-means.

        Args:
            images: ``(H, W, 3)`` RGB tiles, uint8 or float in [0, 1] (a batch needs one size).
            masks: optional ``(H, W)`` instance masks, one per image, for the nuclear features.
            labels: optional class label per image (e.g. ``"tumour"``); only counted per group
                (``group_label_counts_``), the groups are shared by all labels.

        Returns:
            ``self``, with ``k_``, ``scores_`` (k -> selection score, empty when ``k`` was given),
            ``feature_names_``, ``descriptions_``, ``group_sizes_`` and ``group_label_counts_``.

        Raises:
            ValueError: on mismatched lengths or too few tiles for ``k`` / ``k_range``.
            TypeError: on images or masks of the wrong kind.
        """
        self._fit(*_check_inputs(images, masks, labels))
        return self

    def _fit(
        self, images: list[np.ndarray], masks: list[np.ndarray] | None, labels: list[str] | None
    ) -> np.ndarray:
        """Fit on checked inputs; returns the tiles' group indices."""
        candidates = self._candidate_ks(len(images))
        self._state = None  # a refit starts from scratch (and may use another extractor)
        embeddings = self._embed(images)
        measured = self._measure(images, masks)
        self.feature_names_ = list(self._feature_names(masks is not None))

        embed_scaler = StandardScaler().fit(embeddings)
        z_embed = embed_scaler.transform(embeddings)
        pca = None
        if self.n_components is not None:
            n_components = min(self.n_components, *z_embed.shape)
            pca = PCA(n_components=n_components, random_state=self.seed).fit(z_embed)
            z_embed = pca.transform(z_embed)
        # Equal say for the two blocks: without this, hundreds of embedding dimensions would drown a
        # handful of morphometric ones in the Euclidean distance k-means uses.
        total_var = float(z_embed.var(axis=0).sum())
        n_interp = measured.shape[1]
        embed_weight = np.sqrt(n_interp / total_var) if n_interp and total_var > 0 else 1.0
        interp_scaler = StandardScaler().fit(measured) if n_interp else None  # NaN-aware fit

        self._state = {
            "embed_mean": embed_scaler.mean_,
            "embed_scale": embed_scaler.scale_,
            "pca_mean": pca.mean_ if pca is not None else np.zeros(0),
            "pca_components": pca.components_ if pca is not None else np.zeros((0, 0)),
            "embed_weight": np.array([embed_weight]),
            "interp_mean": interp_scaler.mean_ if interp_scaler is not None else np.zeros(0),
            "interp_scale": interp_scaler.scale_ if interp_scaler is not None else np.zeros(0),
        }
        points = self._project(embeddings, measured)

        self.scores_ = {} if self.k is not None else self._score_ks(points, candidates)
        if self.k is not None:
            self.k_ = self.k
        else:
            best = max if self.selection == "silhouette" else min
            self.k_ = best(self.scores_, key=self.scores_.get)
        kmeans = self._kmeans(self.k_).fit(points)
        # Number groups by size (group 0 = most tiles) so that reports read in a stable, useful order.
        order = np.argsort(-np.bincount(kmeans.labels_, minlength=self.k_), kind="stable")
        self._state["centers"] = kmeans.cluster_centers_[order]
        groups = self._predict(points)
        self._finish_fit(groups, labels)
        return groups

    def _candidate_ks(self, n: int) -> list[int]:
        if self.k is not None:
            if n < self.k:
                raise ValueError(
                    f"Too few samples for k={self.k}: got {n} images, k-means needs at least k. "
                    "Pass more images or a smaller `k`."
                )
            return [self.k]
        low, high = self.k_range
        # silhouette_score is defined for 2 <= k <= n - 1
        high = min(high, n - 1)
        if high < low:
            raise ValueError(
                f"Too few samples to choose k from k_range={self.k_range}: got {n} images, need at least "
                f"{low + 1}. Pass more images, lower `k_range` or set `k`."
            )
        return list(range(low, high + 1))

    def _kmeans(self, k: int) -> KMeans:
        return KMeans(n_clusters=k, n_init=self.n_init, random_state=self.seed)

    def _score_ks(self, points: np.ndarray, candidates: list[int]) -> dict[int, float]:
        scores = {}
        for k in tqdm(candidates, desc=f"choosing k ({self.selection})", leave=False):
            if self.selection == "silhouette":
                assigned = self._kmeans(k).fit_predict(points)
                # duplicate tiles can leave fewer distinct groups than k; silhouette is then undefined
                scores[k] = (
                    float(silhouette_score(points, assigned, random_state=self.seed))
                    if len(np.unique(assigned)) > 1
                    else -1.0
                )
            else:
                mixture = GaussianMixture(k, covariance_type="diag", random_state=self.seed).fit(points)
                scores[k] = float(mixture.bic(points))
        return scores

    def _finish_fit(self, groups: np.ndarray, labels: list[str] | None) -> None:
        n_interp = len(self.feature_names_)
        centers = self._state["centers"]
        # The centroid's interpretable coordinates are unweighted z-scores (the last block of the
        # k-means space), i.e. the members' mean z-score per feature: exactly what describe reads.
        self.centroid_z_ = centers[:, centers.shape[1] - n_interp :] if n_interp else centers[:, :0]
        self.descriptions_ = [describe_centroid(z, self.feature_names_) for z in self.centroid_z_]
        self.group_sizes_ = np.bincount(groups, minlength=self.k_).tolist()
        self.group_label_counts_: dict[str, list[int]] = {}
        for label in sorted(set(labels or [])):
            hits = groups[np.array([lab == label for lab in labels])]
            self.group_label_counts_[label] = np.bincount(hits, minlength=self.k_).tolist()

    # ------------------------------------------------------------------ inference
    def transform(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[PromptAssignment]:
        """Assign each tile to its nearest group centroid and build its prompt.

        Args:
            images: ``(H, W, 3)`` RGB tiles, uint8 or float in [0, 1].
            masks: instance masks, required when the prompter was fitted with masks.
            labels: optional class label per tile, the prompt's first word(s).

        Returns:
            one :class:`PromptAssignment` per tile, in order.

        Raises:
            RuntimeError: before :meth:`fit` / :meth:`load`.
            ValueError: on mismatched lengths, or masks missing when the fit used them.
        """
        self._check_fitted()
        images, masks, labels = _check_inputs(images, masks, labels)
        fitted_with_masks = any(name in MASK_FEATURES for name in self.feature_names_)
        if fitted_with_masks and masks is None:
            raise ValueError(
                "`masks` is required: this prompter was fitted with nuclear features measured from masks."
            )
        if not fitted_with_masks:
            masks = None  # measured features must match the fitted ones
        groups = self._predict(self._project(self._embed(images), self._measure(images, masks)))
        return self._assign(groups, labels)

    def fit_transform(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[PromptAssignment]:
        """:meth:`fit`, then the prompts of the same tiles (embedded once); arguments as :meth:`fit`."""
        images, masks, labels = _check_inputs(images, masks, labels)
        return self._assign(self._fit(images, masks, labels), labels)

    def _assign(self, groups: np.ndarray, labels: list[str] | None) -> list[PromptAssignment]:
        labels = labels or [None] * len(groups)
        return [
            PromptAssignment(int(g), self.prompt_for(int(g), lab), self.descriptions_[g])
            for g, lab in zip(groups, labels)
        ]

    def prompt_for(self, group: int, label: str | None = None) -> str:
        """The prompt of one group: ``"<label> tissue, morphology group <g>: <description>"``.

        Raises:
            ValueError: if ``group`` is not in ``0 .. k_ - 1``.
        """
        self._check_fitted()
        if not (isinstance(group, (int, np.integer)) and 0 <= group < self.k_):
            raise ValueError(f"`group` must be an int in [0, {self.k_ - 1}], got {group!r}.")
        subject = f"{label} tissue" if label else "tissue"
        return f"{subject}, morphology group {int(group)}: {self.descriptions_[group]}"

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``prompter_config.json`` and ``prompter.safetensors`` (no pickle) into ``directory``.

        A custom extractor module is not saved: it is recorded by name and must be passed to
        :meth:`load` again.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "k": self.k,
            "k_range": list(self.k_range),
            "selection": self.selection,
            "extractor": self.extractor if isinstance(self.extractor, str) else None,
            "extractor_name": self.extractor_name_,
            "morphometrics": self.morphometrics,
            "n_components": self.n_components,
            "n_init": self.n_init,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "k_": self.k_,
            "scores_": {str(k): v for k, v in self.scores_.items()},
            "feature_names_": self.feature_names_,
            "descriptions_": self.descriptions_,
            "group_sizes_": self.group_sizes_,
            "group_label_counts_": self.group_label_counts_,
        }
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        save_file({k: np.ascontiguousarray(v) for k, v in self._state.items()}, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        extractor: torch.nn.Module | str | None = None,
        device: str | torch.device | None = None,
    ) -> MorphologyPrompter:
        """Load a prompter written by :meth:`save`; its prompts are identical to the saved one's.

        Args:
            directory: the folder passed to :meth:`save`.
            extractor: the encoder, needed when the prompter was fitted with a custom module.
            device: as in the constructor.

        Raises:
            FileNotFoundError: if the files are missing.
            ValueError: if a custom extractor was used and none is passed.
        """
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"`directory` {directory} has no {path.name}; write it with `save`.")
        config = json.loads(config_path.read_text())
        if extractor is None:
            extractor = config["extractor"]
            if extractor is None and config["extractor_name"] != DEFAULT_EXTRACTOR:
                raise ValueError(
                    f"This prompter was fitted with the custom extractor {config['extractor_name']!r}; "
                    "pass the same module as `extractor=`."
                )
        prompter = cls(
            config["k"],
            k_range=tuple(config["k_range"]),
            selection=config["selection"],
            extractor=extractor,
            morphometrics=config["morphometrics"],
            n_components=config["n_components"],
            n_init=config["n_init"],
            batch_size=config["batch_size"],
            device=device,
            seed=config["seed"],
        )
        prompter._state = load_file(str(weights_path))
        prompter.extractor_name_ = config["extractor_name"]
        prompter.k_ = config["k_"]
        prompter.scores_ = {int(k): v for k, v in config["scores_"].items()}
        prompter.feature_names_ = config["feature_names_"]
        prompter.group_sizes_ = config["group_sizes_"]
        prompter.group_label_counts_ = config["group_label_counts_"]
        centers, n_interp = prompter._state["centers"], len(prompter.feature_names_)
        prompter.centroid_z_ = centers[:, centers.shape[1] - n_interp :] if n_interp else centers[:, :0]
        prompter.descriptions_ = config["descriptions_"]
        return prompter

    # ------------------------------------------------------------------ features
    def _feature_names(self, with_masks: bool) -> tuple[str, ...]:
        if not self.morphometrics:
            return ()
        return STAIN_FEATURES + (MASK_FEATURES if with_masks else ())

    def _measure(self, images: list[np.ndarray], masks: list[np.ndarray] | None) -> np.ndarray:
        names = self._feature_names(masks is not None)
        if not names:
            return np.zeros((len(images), 0))
        rows = []
        for i, image in enumerate(tqdm(images, desc="morphometrics", leave=False)):
            row = stain_features(image)
            if masks is not None:
                row = np.concatenate([row, mask_features(masks[i])])
            rows.append(row)
        return np.stack(rows)

    def _resolve_extractor(self) -> torch.nn.Module:
        # `self.extractor` stays what the user passed (a name is what `save` records); the module
        # loaded from a name is cached beside it.
        if isinstance(self.extractor, torch.nn.Module):
            module = self.extractor
            self.extractor_name_ = getattr(module, "display_name", type(module).__name__)
        else:
            if self._extractor_module is None:
                from synthaug.metrics.features import load_feature_extractor

                self._extractor_module = load_feature_extractor(self.extractor or DEFAULT_EXTRACTOR)
            module = self._extractor_module
            self.extractor_name_ = self.extractor or DEFAULT_EXTRACTOR
        return module.to(self.device).eval()

    @torch.no_grad()
    def _embed(self, images: list[np.ndarray]) -> np.ndarray:
        extractor = self._resolve_extractor()
        chunks = []
        starts = range(0, len(images), self.batch_size)
        for start in tqdm(starts, desc=f"embedding ({self.extractor_name_})", leave=False):
            batch = images[start : start + self.batch_size]
            # tiles of different sizes cannot share a tensor; run each same-size run separately
            for _, run in groupby(batch, key=lambda image: image.shape):
                pixels = torch.from_numpy(np.stack(list(run))).permute(0, 3, 1, 2).to(self.device)
                chunks.append(extractor(pixels).float().cpu().numpy().astype(np.float64))
        embeddings = np.concatenate(chunks)
        expected = self._state["embed_mean"].size if self._state is not None else None
        if expected is not None and embeddings.shape[1] != expected:
            raise ValueError(
                f"`extractor` {self.extractor_name_!r} gives {embeddings.shape[1]} features but the prompter "
                f"was fitted on {expected}; use the extractor it was fitted with."
            )
        return embeddings

    def _project(self, embeddings: np.ndarray, measured: np.ndarray) -> np.ndarray:
        # One code path for fitted and loaded prompters: the fitted sklearn transforms are kept as
        # their arrays (so they persist without pickle) and applied here.
        s = self._state
        z = (embeddings - s["embed_mean"]) / s["embed_scale"]
        if s["pca_components"].size:
            z = (z - s["pca_mean"]) @ s["pca_components"].T
        blocks = [z * s["embed_weight"][0]]
        if measured.shape[1]:
            # NaN (e.g. nuclear size of a tile without nuclei) -> 0 = the population mean
            blocks.append(np.nan_to_num((measured - s["interp_mean"]) / s["interp_scale"], nan=0.0))
        return np.concatenate(blocks, axis=1)

    def _predict(self, points: np.ndarray) -> np.ndarray:
        return pairwise_distances_argmin(points, self._state["centers"])

    def _check_fitted(self) -> None:
        if self._state is None or "centers" not in self._state:
            raise RuntimeError("This MorphologyPrompter is not fitted yet; call `fit` or `load` first.")




def _check_inputs(images, masks, labels):
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, Sequence) or isinstance(images, (str, bytes)) or not len(images):
        raise TypeError("`images` must be a non-empty sequence of (H, W, 3) RGB arrays.")
    images = [check_rgb_image(image, f"images[{i}]") for i, image in enumerate(images)]
    for argument, values in (("masks", masks), ("labels", labels)):
        if values is not None and len(values) != len(images):
            raise ValueError(
                f"`{argument}` has {len(values)} entries but `images` has {len(images)}; pass one per image."
            )
    if masks is not None:
        for i, (image, mask) in enumerate(zip(images, masks)):
            if getattr(mask, "shape", None) != image.shape[:2]:
                raise ValueError(
                    f"`masks[{i}]` has shape {getattr(mask, 'shape', None)} but `images[{i}]` is "
                    f"{image.shape[:2]}; each mask must match its image's height and width."
                )
        masks = list(masks)
    if labels is not None:
        labels = [str(label) for label in labels]
    return images, masks, labels
