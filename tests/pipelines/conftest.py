"""Checkpoints the pipeline tests load through the real loading path: a tiny LXMERT with random
weights saved by save_pretrained, and (tests/conftest.py: detector_dir) the tiny detectron2 VG detector
converted to our format, in a cheaper setting; its region features are 256-d, so the tiny LXMERT reads
256-d features.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES, TINY_LXMERT, perturb

IMAGES = sorted((FIXTURES / "images").glob("*.jpg"))
ANSWERS = ["yes", "no", "2", "red", "dog", "table", "left"]
# The tiny LXMERT of the model tests, reading the 256-d features of the cheaper tiny detector.
PIPELINE_LXMERT = dict(TINY_LXMERT, vocab_size=30522, visual_feat_dim=256, num_qa_labels=len(ANSWERS))


@pytest.fixture(scope="session")
def vqa_dir(tmp_path_factory) -> Path:
    from lxmert import LxmertConfig, LxmertForQuestionAnswering

    config = LxmertConfig(**PIPELINE_LXMERT, id2label=dict(enumerate(ANSWERS)))
    folder = tmp_path_factory.mktemp("vqa")
    perturb(LxmertForQuestionAnswering(config), seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def matching_dir(tmp_path_factory) -> Path:
    from lxmert import LxmertConfig, LxmertForPreTraining

    folder = tmp_path_factory.mktemp("pretraining")
    perturb(LxmertForPreTraining(LxmertConfig(**PIPELINE_LXMERT)), seed=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def vqa(vqa_dir, detector_dir):
    from pipelines import pipeline

    return pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cpu")


@pytest.fixture(scope="session")
def images() -> list[Path]:
    return IMAGES
