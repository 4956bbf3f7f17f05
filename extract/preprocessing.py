"""Resize and normalize one decoded image exactly as detectron2 feeds its Faster R-CNN at test time.

``preprocess`` = ``output_size`` (ResizeShortestEdge) -> resize (Pillow's bilinear filter on the
uint8 image) -> ``normalize`` (RGB -> BGR, minus the BGR pixel mean, divided by the std); see
docs/spec/frcnn.md section 2. There is no batching or padding here: the detector runs every image at
its own size, so padding never leaks into features.

Two resizes, one result. ``resize_exact`` calls Pillow on the CPU, which is what detectron2 does.
``resize_fast`` re-implements Pillow's arithmetic for 8-bit images with integer torch ops so that it
runs wherever the tensor lives (a GPU): the same filter taps computed in float64, weights rounded to
22-bit fixed point, ``(sum + 2**21) >> 22`` clamped to 0..255 after each of the two separable
passes, and the pass order of the installed Pillow (Pillow 13 runs the vertical pass first when the
height shrinks by more than twice what the width shrinks; earlier versions always ran the horizontal
pass first). It gives Pillow's pixels bit for bit, not an approximation (checked on real and random
images in tests/extract/test_preprocess.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import PIL
import torch
from PIL import Image

# detectron2 / Caffe MODEL.PIXEL_MEAN and PIXEL_STD of the VG Faster R-CNN, in BGR order.
PIXEL_MEAN_BGR = (102.9801, 115.9465, 122.7717)
PIXEL_STD_BGR = (1.0, 1.0, 1.0)

# Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the pixel - 2 for overshoot.
_PRECISION_BITS = 22
# Pillow 13 chose the order of the two resize passes by how much each axis shrinks; before, the
# horizontal pass always came first. resize_fast follows the Pillow it runs next to.
PILLOW_VERTICAL_FIRST_RULE = int(PIL.__version__.split(".")[0]) >= 13


def output_size(height: int, width: int, min_size: int = 600, max_size: int = 1000) -> tuple[int, int]:
    """(new_height, new_width) of detectron2's ResizeShortestEdge.get_output_shape.

    The short side becomes ``min_size`` and the long one follows the aspect ratio; if the long side
    then exceeds ``max_size`` both are shrunk so that it equals ``max_size``. Python float math,
    each side rounded with ``int(x + 0.5)`` (not ``round``, which rounds halves to even).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if min_size < 1 or max_size < 1:
        raise ValueError(f"min_size and max_size must be positive, got {min_size} and {max_size}")
    scale = min_size * 1.0 / min(height, width)
    if height < width:
        new_height, new_width = min_size * 1.0, scale * width
    else:
        new_height, new_width = scale * height, min_size * 1.0
    if max(new_height, new_width) > max_size:
        shrink = max_size * 1.0 / max(new_height, new_width)
        new_height = new_height * shrink
        new_width = new_width * shrink
    resized = (int(new_height + 0.5), int(new_width + 0.5))
    if resized[0] < 1 or resized[1] < 1:
        raise ValueError(
            f"a {height}x{width} image is too elongated: resizing it to short side {min_size}, long "
            f"side at most {max_size} gives {resized[0]}x{resized[1]} pixels"
        )
    return resized


def resize_exact(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow ``Image.resize((w, h), BILINEAR)`` of a (H, W, 3) or (H, W) uint8 array; detectron2's call.

    Channels are filtered independently, so channel order does not matter. Returns a new
    C-contiguous uint8 array of shape (h, w, 3) or (h, w).
    """
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"resize_exact expects an (H, W, 3) or (H, W) uint8 array, got {image.shape} {image.dtype}")
    height, width = size
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)


def resize_fast(
    image: torch.Tensor, size: tuple[int, int], *, vertical_first_rule: bool = PILLOW_VERTICAL_FIRST_RULE
) -> torch.Tensor:
    """Pillow's antialiased bilinear resize of a uint8 (3, H, W) or (N, 3, H, W) tensor, on its device.

    Bit-identical to ``resize_exact`` (see the module docstring): every pass rounds half up from
    Pillow's 22-bit fixed-point sums and clamps to 0..255. Returns uint8 (..., h, w).
    vertical_first_rule: order the passes as Pillow 13 does (default: as the installed Pillow does).
    """
    if image.dtype != torch.uint8 or image.ndim < 2:
        raise ValueError(
            f"resize_fast expects a uint8 (3, H, W) or (N, 3, H, W) tensor, got {tuple(image.shape)} {image.dtype}"
        )
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {height}x{width}")
    in_height, in_width = image.shape[-2:]
    levels = image.to(torch.int32)
    # Pillow 13 resamples the vertical axis first when the height loses more than twice as many
    # pixels as the width; otherwise (and always before 13) horizontal first. The order changes the
    # rounding in between.
    vertical_first = vertical_first_rule and in_height - height > 0 and in_height - height > 2 * (in_width - width)
    passes = [(height, -2), (width, -1)] if vertical_first else [(width, -1), (height, -2)]
    for out_size, dim in passes:
        if levels.shape[dim] != out_size:
            levels = _resample_axis(levels, out_size, dim)
    return levels.to(torch.uint8)


def _resample_axis(levels: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    tap_index, tap_weight = _bilinear_taps(levels.shape[dim], out_size)
    tap_index = torch.from_numpy(tap_index).to(levels.device)
    tap_weight = torch.from_numpy(tap_weight).to(levels.device)
    weight_shape = (out_size, 1) if dim == -2 else (out_size,)
    out_shape = list(levels.shape)
    out_shape[dim] = out_size
    sums = torch.full(out_shape, 1 << (_PRECISION_BITS - 1), dtype=torch.int32, device=levels.device)
    for tap in range(tap_index.shape[1]):
        # At most 255 * 2**22 plus the rounding term: fits int32, like Pillow's accumulator.
        sums += levels.index_select(dim, tap_index[:, tap]) * tap_weight[:, tap].view(weight_shape)
    return (sums >> _PRECISION_BITS).clamp_(0, 255)


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input index and 22-bit fixed-point weight of each tap of each output pixel, (out_size, taps) each.

    Pillow's triangle filter, widened by the downscale factor (that is the antialiasing), computed
    in float64 in Pillow's order of operations so that the rounded weights are the same integers.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 1.0 * filter_scale
    taps = math.ceil(support) * 2 + 1
    inverse_filter_scale = 1.0 / filter_scale
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # C's (int) truncates
    count = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - first
    weights = np.zeros((out_size, taps))
    total = np.zeros(out_size)
    for tap in range(taps):  # summed tap by tap, as Pillow does, so the float rounding matches
        distance = np.abs(((first + tap) - centers + 0.5) * inverse_filter_scale)
        weight = np.where((distance < 1.0) & (tap < count), 1.0 - distance, 0.0)
        weights[:, tap] = weight
        total = total + weight
    weights = weights / np.where(total == 0.0, 1.0, total)[:, None]
    fixed_point = (0.5 + weights * (1 << _PRECISION_BITS)).astype(np.int32)
    index = np.minimum(first[:, None] + np.arange(taps), in_size - 1)  # unused taps weigh 0
    return index, fixed_point


def normalize(
    image_rgb: torch.Tensor,
    pixel_mean: Sequence[float] = PIXEL_MEAN_BGR,
    pixel_std: Sequence[float] = PIXEL_STD_BGR,
) -> torch.Tensor:
    """RGB (..., 3, H, W) uint8 or float pixels -> float32 BGR ``(x - mean) / std``, same shape.

    ``pixel_mean`` and ``pixel_std`` are in BGR order, as in detectron2 configs. The arithmetic is
    detectron2's (float32 subtract, then divide), so the result is bit-identical to its model input.
    """
    if image_rgb.ndim < 3 or image_rgb.shape[-3] != 3:
        raise ValueError(f"normalize expects RGB pixels shaped (..., 3, H, W), got {tuple(image_rgb.shape)}")
    if len(pixel_mean) != 3 or len(pixel_std) != 3:
        raise ValueError(f"pixel_mean and pixel_std need 3 values (B, G, R), got {pixel_mean} and {pixel_std}")
    if any(value == 0 for value in pixel_std):
        raise ValueError(f"pixel_std must not contain 0, got {pixel_std}")
    pixels_bgr = image_rgb.to(torch.float32).flip(-3)
    mean = torch.tensor(pixel_mean, dtype=torch.float32, device=image_rgb.device).view(3, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32, device=image_rgb.device).view(3, 1, 1)
    return (pixels_bgr - mean) / std


@dataclass(frozen=True)
class PreprocessedImage:
    """One image ready for the backbone, with the sizes needed to map boxes back."""

    tensor: torch.Tensor  # (3, H', W') float32, normalized, BGR
    original_size: tuple[int, int]  # (H, W) of the decoded image
    resized_size: tuple[int, int]  # (H', W') of the network input

    @property
    def scale_xy(self) -> tuple[float, float]:
        """(W' / W, H' / H): multiply original-image x, y by these to get network-input x, y.

        Separate factors per axis: rounding makes them differ (spec section 5, detector_postprocess).
        """
        (height, width), (new_height, new_width) = self.original_size, self.resized_size
        return new_width / width, new_height / height


def preprocess(
    image_rgb: np.ndarray,
    *,
    min_size: int = 600,
    max_size: int = 1000,
    pixel_mean: Sequence[float] = PIXEL_MEAN_BGR,
    pixel_std: Sequence[float] = PIXEL_STD_BGR,
    resize: Literal["exact", "fast"] = "exact",
    device: torch.device | str | None = None,
) -> PreprocessedImage:
    """Resize and normalize an (H, W, 3) uint8 RGB array (``load_image``'s output) for the detector.

    ``resize="exact"`` resizes with Pillow on the CPU and then moves the uint8 pixels to ``device``;
    ``resize="fast"`` moves the uint8 pixels first and resizes on ``device`` with ``resize_fast``.
    Both give the same pixels. ``device=None`` means the CPU.
    """
    if resize not in ("exact", "fast"):
        raise ValueError(
            f"resize must be 'exact' (Pillow on the CPU) or 'fast' (the same filter on the device), got {resize!r}"
        )
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"preprocess expects an (H, W, 3) uint8 RGB array, got {image_rgb.shape} {image_rgb.dtype}; "
            f"extract.images.load_image converts any image input to one"
        )
    device = torch.device("cpu") if device is None else torch.device(device)
    height, width = image_rgb.shape[:2]
    resized_size = output_size(height, width, min_size, max_size)
    if resize == "exact":
        resized = torch.from_numpy(resize_exact(image_rgb, resized_size)).permute(2, 0, 1).to(device)
    else:
        pixels = torch.from_numpy(np.require(image_rgb, requirements=["C", "W"])).permute(2, 0, 1)
        resized = resize_fast(pixels.to(device), resized_size)
    tensor = normalize(resized, pixel_mean, pixel_std).contiguous()
    return PreprocessedImage(tensor=tensor, original_size=(height, width), resized_size=resized_size)
