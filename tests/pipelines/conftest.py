"""Checkpoints the pipeline tests load through the real loading path: a tiny LXMERT with random
weights saved by save_pretrained, and (tests/conftest.py: detector_dir) the tiny detectron2 VG detector
converted to our format, in a cheaper setting; its region features are 256-d, so the tiny LXMERT reads
256-d features.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted((FIXTURES / "images").glob("*.jpg"))
ANSWERS = ["yes", "no", "2", "red", "dog", "table", "left"]
TINY_LXMERT = dict(
    vocab_size=30522,  # the bundled tokenizer's ids
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    l_layers=2,
    x_layers=2,
    r_layers=1,
    visual_feat_dim=256,
    num_qa_labels=len(ANSWERS),
    num_object_labels=11,
    num_attr_labels=5,
)


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights of a realistic spread (biases and LayerNorms off their defaults) so answers differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("weight") and ("LayerNorm" in name or "layer_norm" in name or "logit_fc.2" in name):
                p.copy_(1 + 0.1 * noise)
            elif p.dim() == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / math.sqrt(p.shape[1]))
    return model


@pytest.fixture(scope="session")
def vqa_dir(tmp_path_factory) -> Path:
    from lxmert import LxmertConfig, LxmertForQuestionAnswering

    config = LxmertConfig(**TINY_LXMERT, id2label=dict(enumerate(ANSWERS)))
    folder = tmp_path_factory.mktemp("vqa")
    randomize(LxmertForQuestionAnswering(config), seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def matching_dir(tmp_path_factory) -> Path:
    from lxmert import LxmertConfig, LxmertForPreTraining

    folder = tmp_path_factory.mktemp("pretraining")
    randomize(LxmertForPreTraining(LxmertConfig(**TINY_LXMERT)), seed=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def vqa(vqa_dir, detector_dir):
    from pipelines import pipeline

    return pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cpu")


@pytest.fixture(scope="session")
def images() -> list[Path]:
    return IMAGES
