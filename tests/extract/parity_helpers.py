"""Comparing our detector with reference outputs made on another CPU.

float32 convolution and GEMM kernels may sum in another order on another CPU (oneDNN and MKL pick AVX-512,
AVX2, ... code paths), so what a convolution or a Linear layer computes need not be bit-identical to a
reference made elsewhere. Values are compared within tolerances; decisions (an argmax, a sort order, ROIPool's
rounding of a box corner) agree except where the reference sits closer to the decision boundary than
those tolerances: there either outcome is right, and these helpers say where.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from extract.config import FEATURE_STRIDE
from extract.rpn import decode_boxes

# The fields of ImagePredictions that hold one row per proposal.
PER_PROPOSAL = (
    "proposal_boxes",
    "objectness_logits",
    "pooled_features",
    "class_logits",
    "class_probs",
    "box_deltas",
    "class_boxes",
    "attribute_logits",
)


def match_rows(ref_boxes, our_boxes, tol, ref_ids=None, our_ids=None) -> np.ndarray:
    """Index into ours of each reference row: the same box within tol (and the same id if given), 1:1."""
    ref_boxes, our_boxes = np.asarray(ref_boxes), np.asarray(our_boxes)
    assert ref_boxes.shape == our_boxes.shape, f"{len(ref_boxes)} reference boxes vs {len(our_boxes)} ours"
    distance = np.abs(ref_boxes[:, None, :] - our_boxes[None, :, :]).max(axis=-1)
    if ref_ids is not None:
        distance = np.where(np.asarray(ref_ids)[:, None] == np.asarray(our_ids)[None, :], distance, np.inf)
    match = distance.argmin(axis=1)
    worst = distance[np.arange(len(match)), match].max(initial=0.0)
    assert worst <= tol, f"a reference box has no counterpart within {tol} px (closest: {worst})"
    assert len(set(match.tolist())) == len(match), "two reference boxes matched the same box of ours"
    return match


def near_tie_rows(values: np.ndarray, tol: float) -> np.ndarray:
    """Rows whose two largest entries are within tol: their argmax may flip with summation order."""
    top2 = np.sort(values, axis=1)[:, -2:]
    return np.nonzero(top2[:, 1] - top2[:, 0] < tol)[0]


def assert_argmax_up_to_ties(ours: np.ndarray, ref_values: np.ndarray, ref_argmax: np.ndarray, tol: float, what):
    """Our argmax per row equals the reference's, except where the reference's two best values are closer
    than tol (`near_tie_rows`): there ours may be either of the two."""
    ours = np.asarray(ours)
    ties = near_tie_rows(ref_values, tol)
    clear = np.setdiff1d(np.arange(len(ours)), ties)
    np.testing.assert_array_equal(ours[clear], np.asarray(ref_argmax)[clear], err_msg=f"argmax {what}")
    for row in ties:
        assert ours[row] in np.argsort(ref_values[row])[-2:], f"argmax {what} of row {row}"


def assert_order_up_to_ties(order: np.ndarray, keys: np.ndarray, tol: float, what: str) -> None:
    """order[k]: our position of reference row k. Ours may list two reference rows the other way round only
    if their sort keys (the reference's, e.g. descending scores) are closer than tol: a near tie."""
    order, keys = np.asarray(order), np.asarray(keys, dtype=np.float64)
    first, second = np.nonzero(np.triu(order[:, None] > order[None, :], k=1))  # reference rows first < second
    gaps = np.abs(keys[first] - keys[second])
    bad = np.nonzero(gaps >= tol)[0]
    assert len(bad) == 0, (
        f"{what}: reference rows {first[bad[0]]} and {second[bad[0]]} come in the other order, "
        f"{gaps[bad[0]]:.3g} apart in sort key (ties: < {tol:.3g})"
    )


def roi_pool_ties(boxes: np.ndarray, image_hw: tuple[int, int], tol: float) -> np.ndarray:
    """Rows of (R, 4) network-input boxes with a corner within tol px of where ROIPool's rounding jumps.

    torchvision's roi_pool rounds each corner to the feature grid, round(x / 16), which jumps at
    x = 16 k + 8: a box that is within tol of the reference's may pool other cells there (the features
    then differ by ~0.1, not by float noise). A corner clipped to the image border is exact on every
    CPU and is no tie.
    """
    height, width = image_hw
    exact = (boxes == 0) | (boxes == np.array([width, height, width, height], dtype=boxes.dtype))
    cells = boxes.astype(np.float64) / FEATURE_STRIDE - 0.5
    distance = np.abs(cells - np.round(cells)) * FEATURE_STRIDE
    return np.nonzero(((distance < tol) & ~exact).any(axis=1))[0]


def by_reference_row(detector, image, pred, match: np.ndarray, ref_boxes: np.ndarray, tol: float):
    """Our per-proposal outputs (ImagePredictions) in the reference's row order: row i is our proposal
    matched to reference proposal i. Rows whose reference box is a ROIPool tie (`roi_pool_ties`) are
    recomputed by our own network on the reference box, so that every row compares at float tolerances."""
    rows = torch.from_numpy(match)
    with torch.inference_mode():
        per_row = {name: getattr(pred, name) for name in PER_PROPOSAL}
        aligned = dataclasses.replace(pred, **{name: t if t is None else t[rows] for name, t in per_row.items()})
        tied = roi_pool_ties(ref_boxes, pred.resized_size, tol)
        if len(tied):
            boxes = torch.from_numpy(ref_boxes[tied])
            res4 = detector.backbone(image.tensor[None])
            pooled, class_logits, box_deltas, attribute_logits = detector.roi_heads(res4, [boxes])
            class_boxes = decode_boxes(box_deltas, boxes, detector.config.box_reg_weights)
            t = torch.from_numpy(tied)
            aligned.pooled_features[t] = pooled
            aligned.class_logits[t] = class_logits
            aligned.class_probs[t] = class_logits.softmax(dim=-1)
            aligned.box_deltas[t] = box_deltas
            aligned.class_boxes[t] = class_boxes.view(len(tied), -1, 4)
            if attribute_logits is not None:
                aligned.attribute_logits[t] = attribute_logits
    return aligned
