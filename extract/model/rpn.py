"""Region proposal network: anchors, the RPN head, box decoding and per-image proposal selection.

Everything follows detectron2's test-time RPN (DefaultAnchorGenerator, StandardRPNHead,
Box2BoxTransform, find_top_rpn_proposals) operation for operation, in float32, so that proposals
match it to the last bit where the convolutions do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from ..boxes import clip_boxes, decode_boxes, nonempty
from .config import FEATURE_STRIDE, DetectorConfig


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """(len(sizes) * len(aspect_ratios), 4) anchors centred on 0, size-major then ratio-minor.

    Each has area size**2 and height / width = ratio; computed in float64, stored in float32.
    """
    anchors = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(
    cell: torch.Tensor, feature_hw: tuple[int, int], stride: int = FEATURE_STRIDE, offset: float = 0.0
) -> torch.Tensor:
    """(H * W * A, 4) anchors of a feature map: row-major locations, then the A cell anchors.

    Anchor index = (y * W + x) * A + a; location (y, x) is shifted by (offset + x, offset + y) * stride.
    """
    height, width = feature_hw
    device = cell.device
    shifts_x = torch.arange(offset * stride, width * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(offset * stride, height * stride, step=stride, dtype=torch.float32, device=device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)


def select_proposals(
    boxes: torch.Tensor,
    logits: torch.Tensor,
    image_hw: tuple[int, int],
    *,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_thresh: float,
    min_size: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's proposals from its decoded anchor boxes (M, 4) and objectness logits (M,).

    Keep the `pre_nms_topk` best logits, drop non-finite boxes, clip to the image, drop boxes not
    larger than `min_size`, NMS (torchvision: suppress IoU > nms_thresh), keep `post_nms_topk`.
    Returns boxes (P, 4) in the image's coordinates and their logits (P,), by descending logit.
    """
    num = min(pre_nms_topk, logits.numel())
    logits, index = logits[None].topk(num, dim=1)  # (1, M) as in detectron2: same kernel, same ties
    logits, boxes = logits[0], boxes[index[0]]

    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(logits)
    if not valid.all():
        boxes, logits = boxes[valid], logits[valid]
    boxes = clip_boxes(boxes, image_hw)
    keep = nonempty(boxes, min_size)
    if not keep.all():
        boxes, logits = boxes[keep], logits[keep]

    # One "level": batched_nms picks the same kernel and tie order as detectron2's call does.
    keep = batched_nms(boxes, logits, torch.zeros_like(logits, dtype=torch.int64), nms_thresh)
    keep = keep[:post_nms_topk]
    return boxes[keep], logits[keep]


class RPNHead(nn.Module):
    """conv 3x3 + ReLU, then per anchor an objectness logit and 4 box deltas (all convs with bias)."""

    def __init__(self, in_channels: int, hidden_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden_channels, kernel_size=3, stride=1, padding=1)
        self.objectness_logits = nn.Conv2d(hidden_channels, num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(hidden_channels, num_anchors * 4, kernel_size=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> logits (N, H * W * A), deltas (N, H * W * A, 4), in anchor order."""
        # The 3x3 conv may run in a lower precision (VGDetector.set_compute_dtype); the 1x1 heads
        # that produce the logits and deltas ranked and decoded below run in their own (float32).
        t = F.relu(self.conv(features)).to(self.objectness_logits.weight.dtype)
        logits = self.objectness_logits(t)  # (N, A, H, W)
        deltas = self.anchor_deltas(t)  # (N, A * 4, H, W)
        n, _, h, w = deltas.shape
        logits = logits.permute(0, 2, 3, 1).flatten(1)
        deltas = deltas.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).flatten(1, -2)
        return logits, deltas


class RPN(nn.Module):
    """Proposals for each image of a batch of res4 features (every image of the batch the same size)."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.config = config
        self.rpn_head = RPNHead(config.res4_channels, config.rpn_channels, config.num_cell_anchors)
        self.register_buffer(
            "cell_anchors", cell_anchors(config.anchor_sizes, config.anchor_aspect_ratios), persistent=False
        )

    def forward(
        self, features: torch.Tensor, image_sizes: list[tuple[int, int]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """features (N, C, H, W); image_sizes: each image's (h, w) in the network input (the clip box).

        Returns per image (proposal_boxes (P, 4) in input pixels, objectness_logits (P,)).
        """
        cfg = self.config
        logits, deltas = self.rpn_head(features)
        anchors = grid_anchors(self.cell_anchors, tuple(features.shape[-2:]), FEATURE_STRIDE, cfg.anchor_offset)
        results = []
        for i, image_hw in enumerate(image_sizes):
            # Decode every anchor, then take the top-k (as detectron2 does; decoding is elementwise).
            boxes = decode_boxes(deltas[i], anchors, cfg.rpn_bbox_reg_weights)
            results.append(
                select_proposals(
                    boxes,
                    logits[i],
                    image_hw,
                    pre_nms_topk=cfg.rpn_pre_nms_topk_test,
                    post_nms_topk=cfg.rpn_post_nms_topk_test,
                    nms_thresh=cfg.rpn_nms_thresh,
                    min_size=cfg.rpn_min_size,
                )
            )
        return results
