"""The settings vocabulary every stage of extract shares, defined once: the default detector, the
selection rules, the resize modes, the dtype names, and the parsers of box counts. Plain Python (no torch),
so the command line builds its `--help` and `choices` from it without loading the network libraries.
"""

from __future__ import annotations

import argparse
import numbers
import re
from collections.abc import Callable
from typing import Any

# The released VG detector (transformers port checkpoint) on the Hugging Face hub.
DEFAULT_DETECTOR = "unc-nlp/frcnn-vg-finetuned"

# Pillow's shipped Image.MAX_IMAGE_PIXELS (1024 * 1024 * 1024 // 4 // 3, about 89.5 megapixels): the default
# decompression-bomb limit of load_image, the extractor and the command lines.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

# Box selection rules (extract.selection): bottom-up-attention's Caffe rule, the reference script's
# max-over-NMS-thresholds rule, detectron2's own test-time rule.
RULES = ("caffe", "maxnms", "d2")

# Image resizing (extract.preprocessing): Pillow bilinear on uint8 as detectron2 does, or on the tensor.
RESIZES = ("exact", "fast")

# Dtypes the detector's convolutions may run in (extract.devices.torch_dtype gives the torch dtype).
COMPUTE_DTYPES = ("float32", "float16", "bfloat16")

# Dtypes a feature store keeps its features in.
FEATURE_DTYPES = ("float16", "float32")

_BOX_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def check_rule(rule: Any) -> str:
    """`rule` when it is one of RULES; ValueError naming it and the rules otherwise."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}: expected one of {', '.join(RULES)}")
    return rule


def parse_num_boxes(num_boxes: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(MIN, MAX) boxes per image from a count N (N, N) or a range (MIN, MAX), as the extractor takes them.

    ValueError unless they are integers with 1 <= MIN <= MAX."""
    values = tuple(num_boxes) if isinstance(num_boxes, (tuple, list)) else (num_boxes, num_boxes)
    if len(values) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        low, high = (int(v) for v in values)
        if 1 <= low <= high:
            return low, high
    raise ValueError(
        f"num_boxes={num_boxes!r}: expected a count N >= 1 (e.g. 36) or a range (MIN, MAX) with 1 <= MIN <= MAX "
        "(e.g. (10, 100))"
    )


def parse_box_range(text: str) -> tuple[int, int]:
    """(MIN, MAX) from the text form of a box count or range, as a store and the command line write it:
    "36" -> (36, 36), "10-100" -> (10, 100). ValueError unless 1 <= MIN <= MAX."""
    match = _BOX_RANGE.fullmatch(str(text))
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
    if not 1 <= low <= high:
        raise ValueError(f'num_boxes must be a count like "36" or a range like "10-100", got {text!r}')
    return low, high


def num_boxes_spec(low: int, high: int) -> str:
    """The text form of a box count or range (what `parse_box_range` reads): "36" or "10-100"."""
    return str(low) if low == high else f"{low}-{high}"


def integer_at_least(least: int) -> Callable[[str], int]:
    """An argparse type for every command line of the project: an integer >= least (argparse's message then
    names the flag: "argument --batch-size: expected an integer >= 1, got 0")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {value}")
        return value

    parse.__name__ = f"integer >= {least}"
    return parse
