"""Shared pieces of the LXMERT tests: a tiny config, reference models with non-trivial weights, inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

# Small enough for fast tests, with every dimension different so that a swapped axis cannot pass.
TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    l_layers=2,
    x_layers=2,
    r_layers=1,
    visual_feat_dim=24,
    num_qa_labels=7,
    num_object_labels=11,
    num_attr_labels=5,
)


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter a random value of a sensible scale, in place.

    The default initialization sets biases to 0 and LayerNorm to (1, 0): a model that dropped or swapped
    those would still match. Here nothing is left at its default. Dense weights keep the activations'
    scale (std 1/sqrt(fan_in)), embeddings std 1/sqrt(hidden), so logits land in the range of trained
    models (a few units) and
    float32 rounding stays comparable to theirs.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name or name.endswith("logit_fc.2.weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.dim() == 1:
                p.copy_(0.1 * noise)
            elif "embeddings" in name:
                p.copy_(noise / math.sqrt(p.shape[1]))
            else:
                p.copy_(noise / math.sqrt(p.shape[1]))
    return model


def make_inputs(
    vocab_size: int,
    feat_dim: int,
    *,
    batch: int = 3,
    length: int = 7,
    boxes: int = 5,
    text_padding: bool = True,
    box_padding: bool = True,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Token ids, masks (padding in the later rows when asked) and normalized boxes."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    token_type_ids = torch.zeros(batch, length, dtype=torch.long)
    token_type_ids[:, length // 2 :] = 1
    visual_attention_mask = torch.ones(batch, boxes)
    if text_padding:
        for row in range(1, batch):
            attention_mask[row, length - 2 * row :] = 0
            input_ids[row, length - 2 * row :] = 0
    if box_padding:
        for row in range(1, batch):
            visual_attention_mask[row, boxes - row :] = 0
    corners = torch.rand(batch, boxes, 2, generator=generator) * 0.5
    sizes = 0.1 + 0.4 * torch.rand(batch, boxes, 2, generator=generator)
    visual_pos = torch.cat([corners, (corners + sizes).clamp(max=1.0)], dim=-1)  # x1, y1, x2, y2
    inputs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        visual_feats=torch.randn(batch, boxes, feat_dim, generator=generator),
        visual_pos=visual_pos,
    )
    if box_padding:
        inputs["visual_attention_mask"] = visual_attention_mask
    return inputs


@pytest.fixture
def tools() -> SimpleNamespace:
    return SimpleNamespace(TINY=dict(TINY), perturb=perturb, make_inputs=make_inputs)
