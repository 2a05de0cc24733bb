"""Copy a ``synthaug train`` run into the package as a shipped model (fp16 safetensors, <= 20 MB).

    python benchmarks/ship_model.py --run runs/consep --name consep \\
        --trained-on "CoNSeP train split (432 patches of 256 px)"

Writes ``synthaug/assets/models/NAME/`` with ``model/`` (weights cast to fp16: half the bytes, and
the pipeline loads them back as fp32), ``scheduler/``, ``text_cache/``, ``prompter/`` (when the run
has one) and ``training_summary.json``. The model card (``MODEL_CARD.md``) is written by hand beside
them, from this run's summary and ``fidelity.py --model NAME``. An existing folder is kept unless
``--replace`` is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 20 * 1024 * 1024
WEIGHTS = "diffusion_pytorch_model.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the training run folder")
    parser.add_argument("--name", required=True, help="shipped name (synthaug.model.loading.PRETRAINED)")
    parser.add_argument("--trained-on", required=True, help="one line naming the training data")
    parser.add_argument("--replace", action="store_true", help="replace an existing shipped folder")
    args = parser.parse_args(argv)

    dest = REPO / "synthaug" / "assets" / "models" / args.name
    if dest.exists() and not args.replace:
        sys.exit(f"{dest} exists; pass --replace to overwrite the shipped model.")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "model").mkdir(parents=True)
    config = json.loads((args.run / "model" / "config.json").read_text())
    config.pop("_name_or_path", None)  # a warm-started run records where it loaded from: a local path
    (staging / "model" / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = load_file(args.run / "model" / WEIGHTS)
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(half, staging / "model" / WEIGHTS, metadata={"format": "pt"})
    for folder in ("scheduler", "text_cache", "prompter"):
        if (args.run / folder).is_dir():
            shutil.copytree(args.run / folder, staging / folder)
    summary_path = args.run / "training_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["trained_on"] = args.trained_on
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    card = dest / "MODEL_CARD.md"
    if card.is_file():
        shutil.copy2(card, staging / "MODEL_CARD.md")
    size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    if size > LIMIT_BYTES:
        shutil.rmtree(staging)
        sys.exit(f"the shipped folder would be {size / 2**20:.1f} MB, above the 20 MB limit.")
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    print(f"shipped {args.run} as {dest} ({size / 2**20:.1f} MB, {len(half)} tensors in fp16)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
