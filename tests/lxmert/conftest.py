"""Shared pieces of the LXMERT tests: a tiny config, reference models with non-trivial weights, inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import TINY_LXMERT, perturb


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
    return SimpleNamespace(TINY=dict(TINY_LXMERT), perturb=perturb, make_inputs=make_inputs)
