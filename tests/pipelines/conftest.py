"""The pipeline tests' pipeline and images, on the tiny checkpoints of tests/conftest.py (detector_dir, vqa_dir,
matching_dir)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES

IMAGES = sorted((FIXTURES / "images").glob("*.jpg"))


@pytest.fixture(scope="session")
def vqa(vqa_dir, detector_dir):
    from pipelines import pipeline

    return pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cpu")


@pytest.fixture(scope="session")
def images() -> list[Path]:
    return IMAGES
