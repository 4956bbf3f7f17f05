"""Shared fixtures of the extract tests: the tiny detectron2 VG model, its reference outputs, the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import IMAGES, TINY_DETECTOR, TINY_IMAGES


@pytest.fixture(scope="session")
def tiny_detector():
    from extract.checkpoints import load_detector

    return load_detector(TINY_DETECTOR / "model_final.pkl", config=TINY_DETECTOR / "config.yaml")


@pytest.fixture(scope="session")
def tiny_inputs():
    """Preprocessed fixture images, as detectron2 was fed (Pillow decode, exact Pillow resize)."""
    from extract.images import load_image
    from extract.preprocessing import preprocess

    return [preprocess(load_image(IMAGES / f"{name}.jpg"), resize="exact") for name in TINY_IMAGES]


@pytest.fixture(scope="session")
def tiny_references():
    return [dict(np.load(TINY_DETECTOR / f"{name}.npz")) for name in TINY_IMAGES]


@pytest.fixture(scope="session")
def tiny_predictions(tiny_detector, tiny_inputs):
    """Per-proposal outputs of each image, run one by one."""
    with torch.inference_mode():
        return tiny_detector(tiny_inputs, group_same_size=False)


@pytest.fixture(scope="session")
def real_images() -> list[Path]:
    """All eight real images: four network-input sizes (600 x 800 for five of them, 943 x 600, 600 x 901,
    600 x 626)."""
    return sorted(IMAGES.glob("*.jpg"))


@pytest.fixture(scope="session")
def tiny_extractor(tiny_detector):
    from extract.extractor import RegionFeatureExtractor

    return RegionFeatureExtractor(tiny_detector)


@pytest.fixture(scope="session")
def real_image_regions(tiny_extractor, real_images):
    """The default extraction (caffe rule, 36 boxes) of all real images in one call: a mixed-size batch."""
    return tiny_extractor(real_images)
