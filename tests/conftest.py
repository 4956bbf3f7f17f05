"""Fixtures shared by the extract, pipelines and service tests: the tiny checkpoints, loaded through the real
loading path. The tiny detectron2 VG detector converted to our format, in a cheaper setting (its region
features are 256-d), and tiny LXMERTs with random weights saved by save_pretrained, reading those 256-d
features.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import ANSWERS, FIXTURES, PIPELINE_LXMERT, perturb


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


@pytest.fixture(scope="session")
def vqa_dir(tmp_path_factory) -> Path:
    """A tiny LxmertForQuestionAnswering with the answers ANSWERS."""
    from lxmert import LxmertConfig, LxmertForQuestionAnswering

    config = LxmertConfig(**PIPELINE_LXMERT, id2label=dict(enumerate(ANSWERS)))
    folder = tmp_path_factory.mktemp("vqa")
    perturb(LxmertForQuestionAnswering(config), seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def matching_dir(tmp_path_factory) -> Path:
    """A tiny LxmertForPreTraining (its matching head)."""
    from lxmert import LxmertConfig, LxmertForPreTraining

    folder = tmp_path_factory.mktemp("pretraining")
    perturb(LxmertForPreTraining(LxmertConfig(**PIPELINE_LXMERT)), seed=1).save_pretrained(folder)
    return folder
