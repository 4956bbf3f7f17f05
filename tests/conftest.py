"""Fixtures shared by the extract and pipelines tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import FIXTURES


@pytest.fixture(scope="session")
def detector_dir(tmp_path_factory) -> Path:
    """The tiny detectron2 VG detector saved in our format, in a cheaper setting that keeps the job and
    pipeline tests fast: short side 300, long side at most 500, 100 RPN proposals (256-d features)."""
    from extract.checkpoints import read_checkpoint, save_pretrained

    checkpoint = read_checkpoint(FIXTURES / "detectron2-vg-tiny")
    config, state_dict = checkpoint.config, checkpoint.state_dict
    config = dataclasses.replace(config, min_size_test=300, max_size_test=500, rpn_post_nms_topk_test=100)
    folder = tmp_path_factory.mktemp("detector")
    save_pretrained(config, state_dict, folder)
    return folder
