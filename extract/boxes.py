"""Pure functions on (x1, y1, x2, y2) boxes, the one home of box arithmetic for every stage: decoding
regression deltas, clipping, the non-empty test, Caffe's +1 IoU, moving between original and
network-input pixels, roi_pool rows, and LXMERT's normalized boxes. Nothing here knows a model.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Largest log-scale a box may grow by in one decoding step (detectron2's _DEFAULT_SCALE_CLAMP).
SCALE_CLAMP = math.log(1000.0 / 16)


def decode_boxes(
    deltas: torch.Tensor,
    boxes: torch.Tensor,
    weights: tuple[float, float, float, float],
    scale_clamp: float = SCALE_CLAMP,
) -> torch.Tensor:
    """Apply (dx, dy, dw, dh) deltas to (x1, y1, x2, y2) boxes, in float32.

    deltas: (N, 4 * k) (k boxes per row, e.g. one per class); boxes: (N, 4). Returns (N, 4 * k).
    Widths are x2 - x1 (no +1); dw and dh are divided by their weights and clamped at `scale_clamp`.
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights

    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=scale_clamp)

    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]

    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Clamp (..., 4) boxes to x in [0, width], y in [0, height]."""
    height, width = image_hw
    x1 = boxes[..., 0].clamp(min=0, max=width)
    y1 = boxes[..., 1].clamp(min=0, max=height)
    x2 = boxes[..., 2].clamp(min=0, max=width)
    y2 = boxes[..., 3].clamp(min=0, max=height)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: torch.Tensor, min_size: float = 0.0) -> torch.Tensor:
    """(N,) bool: width and height both > min_size."""
    return ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)


def legacy_iou(boxes: torch.Tensor) -> torch.Tensor:
    """(R, 4) -> (R, R) IoU with Caffe's pixel convention: width = x2 - x1 + 1, overlap + 1, in float64."""
    x1, y1, x2, y2 = boxes.to(torch.float64).unbind(dim=1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    w = (torch.minimum(x2[:, None], x2[None, :]) - torch.maximum(x1[:, None], x1[None, :]) + 1).clamp(min=0)
    h = (torch.minimum(y2[:, None], y2[None, :]) - torch.maximum(y1[:, None], y1[None, :]) + 1).clamp(min=0)
    inter = w * h
    return inter / (areas[:, None] + areas[None, :] - inter)


def boxes_to_original(
    boxes: torch.Tensor, resized_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """(N, 4) network-input boxes -> original pixels: x * W / W', y * H / H', clipped to [0, W] x [0, H]."""
    (height, width), (resized_h, resized_w) = original_size, resized_size
    boxes = boxes.clone()
    boxes[:, 0::2] *= width / resized_w
    boxes[:, 1::2] *= height / resized_h
    return clip_boxes(boxes, original_size)


def boxes_to_resized(
    boxes: torch.Tensor, original_size: tuple[int, int], resized_size: tuple[int, int]
) -> torch.Tensor:
    """(N, 4) original-pixel boxes -> network-input pixels (x * W' / W, y * H' / H), not clipped."""
    (height, width), (resized_h, resized_w) = original_size, resized_size
    boxes = boxes.to(torch.float32).clone()
    boxes[:, 0::2] *= resized_w / width
    boxes[:, 1::2] *= resized_h / height
    return boxes


def boxes_to_rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (R_i, 4) boxes -> (sum R_i, 5) rows (image index, x1, y1, x2, y2) for roi_pool."""
    flat = torch.cat(boxes, dim=0)
    sizes = torch.tensor([len(b) for b in boxes], device=flat.device)
    image_index = torch.repeat_interleave(torch.arange(len(boxes), dtype=flat.dtype, device=flat.device), sizes)
    return torch.cat([image_index[:, None], flat], dim=1)


def normalize_boxes(boxes: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray | torch.Tensor:
    """(K, 4) x1 y1 x2 y2 pixels -> (K, 4) fractions of the width and height, as LXMERT's loaders make them
    (its `visual_pos`): a new float32 array for a numpy array, a new tensor of the same dtype for a tensor."""
    normalized = boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes, dtype=np.float32)
    normalized[:, 0::2] /= width
    normalized[:, 1::2] /= height
    return normalized
