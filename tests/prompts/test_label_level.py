"""Label-level data (image + class, no masks) with image-derived prompts, end to end."""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.prompts import MorphologyPrompter


@pytest.mark.realdata
def test_pcam_prompts_carry_label_and_stain_words(pcam_root):
    from synthaug.data import open_dataset

    samples = open_dataset(pcam_root, reader="pcam").load("valid")
    picked = samples[:10] + samples[-10:]  # the CSV lists each class in a block
    labels = [s.meta["label"] for s in picked]
    assert set(labels) == {"normal", "tumour"}
    prompter = MorphologyPrompter(k=3, n_init=2)
    assignments = prompter.fit_transform([s.image for s in picked], labels=labels)
    assert prompter.feature_names_ == ["haematoxylin_mean", "haematoxylin_std", "eosin_mean", "eosin_std"]
    for assignment, label in zip(assignments, labels):
        assert assignment.prompt.startswith(f"{label} tissue, morphology group {assignment.group}: ")
    assert sum(prompter.group_sizes_) == 20
    assert {sum(counts) for counts in prompter.group_label_counts_.values()} == {10}


@pytest.mark.slow
def test_msdm_trains_and_samples_with_text_only(tmp_path, toy_tiles, encoder):
    from synthaug.data import Sample
    from synthaug.model import TrainConfig, train_msdm
    from synthaug.sampling.pipeline import load_pipeline

    images, _, kinds = toy_tiles
    images, kinds = images[:3] + images[-3:], kinds[:3] + kinds[-3:]
    assignments = MorphologyPrompter(k=2, extractor=encoder, n_init=1).fit_transform(images, labels=kinds)
    empty = np.zeros(images[0].shape[:2], np.int32)
    samples = [
        Sample(
            image=im, inst=empty, types=empty.astype(np.uint8), meta={"label": kind, **a.meta}, name=str(i)
        )
        for i, (im, kind, a) in enumerate(zip(images, kinds, assignments))
    ]
    config = TrainConfig(
        output_dir=tmp_path / "run",
        resolution=32,
        batch_size=3,
        steps=2,
        model_size="tiny",
        checkpoint_every=0,
        sample_every=0,
        num_grid_samples=1,
        grid_inference_steps=1,
        text_max_length=48,
    )
    run = train_msdm(config, samples)
    pipe = load_pipeline(run)
    # the text cache learnt one prompt per (label, group) pair in training
    assert set(pipe.text_cache.strings) >= {
        f"label: {s.meta['label']}. morphology group: {s.meta['morphology group']}." for s in samples
    }
    out = pipe(
        [empty, empty],
        meta=[samples[0].meta, samples[-1].meta],
        guidance={"mask": 0.0},
        num_inference_steps=2,
    )
    assert out.images.shape == (2, 32, 32, 3) and out.images.dtype == np.uint8
