"""Box-selection rules: which of an image's proposals become its regions, with which box and labels.

Each rule reads the detector's per-proposal outputs for one image (`ImagePredictions`) and returns
`Regions` (boxes in original-image pixels, features, object and attribute ids and scores):

- "caffe": bottom-up-attention's tools/generate_tsv.py, what LXMERT's features were made with.
  PROPOSAL boxes (not regressed) in original pixels; per foreground class an NMS at 0.3 with Caffe's
  +1 IoU; a proposal's max_conf is its best score among the classes where it survived; keep
  max_conf >= 0.2 (in proposal order), else the MIN best / MAX best (by max_conf, ties by proposal
  order). Attribute scores: softmax over all A + 1 logits, max over the A real attributes.
- "maxnms": py-bottom-up-attention's detectron2_mscoco_proposal_maxnms.py. The regressed box of each
  proposal's best foreground class (clipped to the network input), scored by that probability; one
  class-agnostic NMS, its threshold raised through 0.3, 0.4, ..., 0.9 until MIN boxes survive (cut to
  the first MAX each time). Attribute scores: softmax over the A real attribute logits.
- "d2": detectron2's standard inference (fast_rcnn_inference + detector_postprocess): (box, class)
  pairs with probability > score_thresh, class-specific regressed boxes, per-class NMS, the top
  detections_per_image, boxes empty in the original image dropped. A proposal may appear once per
  class. Attribute scores as "maxnms".
- given boxes (`given_regions`): the regions are boxes given in original pixels; classes as "caffe"
  but attribute scores as "maxnms".

Boxes go back to original pixels like detectron2's detector_postprocess: x times W / W', y times
H / H' (two factors: rounding the resized size makes them differ), then clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, nms

from .boxes import boxes_to_original, clip_boxes, legacy_iou, nonempty
from .options import check_rule, parse_num_boxes

# numpy.arange(0.3, 1.0, 0.1) as the reference script iterates it: float64 values with numpy's rounding
# (numpy 2 computes start + i * (fl(start + step) - start)).
MAXNMS_THRESHOLDS = (0.3, 0.4, 0.5, 0.6000000000000001, 0.7000000000000002, 0.8000000000000003, 0.9000000000000001)


@dataclass
class ImagePredictions:
    """The detector's per-proposal outputs for one image; row i of every tensor is proposal i.

    K classes (+ background, last), A attributes (+ "no attribute", last), D feature channels.
    """

    original_size: tuple[int, int]  # (H, W) of the decoded image
    resized_size: tuple[int, int]  # (H', W') of the network input
    proposal_boxes: torch.Tensor  # (R, 4) x1 y1 x2 y2 in network-input pixels
    objectness_logits: torch.Tensor | None  # (R,); None for given boxes
    pooled_features: torch.Tensor  # (R, D)
    class_logits: torch.Tensor  # (R, K + 1)
    class_probs: torch.Tensor  # (R, K + 1), softmax of class_logits
    box_deltas: torch.Tensor  # (R, 4 K)
    class_boxes: torch.Tensor  # (R, K, 4) regressed box per class, network-input pixels, not clipped
    attribute_logits: torch.Tensor | None  # (R, A + 1); None without the attribute head


@dataclass
class Regions:
    """The selected regions of one image, in output order."""

    rule: str
    image_size: tuple[int, int]  # (H, W) of the original image
    boxes: torch.Tensor  # (N, 4) x1 y1 x2 y2 in original-image pixels
    features: torch.Tensor  # (N, D)
    object_ids: torch.Tensor  # (N,) int64, 0-based foreground class
    object_scores: torch.Tensor  # (N,)
    attribute_ids: torch.Tensor | None  # (N,) int64, 0-based real attribute
    attribute_scores: torch.Tensor | None  # (N,)
    proposal_index: torch.Tensor  # (N,) int64 rows of the ImagePredictions
    nms_thresh: float | None = None  # "maxnms": the threshold that was used
    max_conf: torch.Tensor | None = None  # "caffe": (N,) the max_conf of each kept proposal

    def __len__(self) -> int:
        return len(self.boxes)


# ---------------------------------------------------------------------------------------------------
# Caffe rule


def legacy_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> torch.Tensor:
    """Caffe's greedy NMS of one class: visit by descending score (ties: lower index first), suppress
    the boxes whose IoU (+1 convention, `legacy_iou`) with a kept box is > thresh.

    Returns the kept indices in visiting order.
    """
    kept = legacy_nms_per_class(boxes, scores[:, None], thresh)[:, 0]
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[kept[order]]


# Suppression rows are packed into int64 words of 63 bits (the sign bit stays unused, so shifts and
# sums never overflow): a 300 x 1600 step then touches 1600 x 5 words instead of 1600 x 300 bools.
_WORD_BITS = 63


def legacy_nms_per_class(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> torch.Tensor:
    """`legacy_nms` of the same boxes (R, 4) for every column of scores (R, K) at once, on their device.

    Returns (R, K) bool: box r survives in class k. All classes share the boxes, so one suppression
    matrix (IoU > thresh, float64) serves them all. Step t visits each class's t-th best box (rank
    order: descending score, ties by lower index): it survives unless a box kept earlier in its class
    suppresses it, and if it survives its suppression row joins its class's removed set. R steps of a
    few small tensor ops, with the rows bit-packed; nothing leaves the device.
    """
    num_boxes, num_classes = scores.shape
    device = scores.device
    suppresses = legacy_iou(boxes) > thresh  # (R, R), symmetric, diagonal True
    words = -(-num_boxes // _WORD_BITS)
    padded = F.pad(suppresses, (0, words * _WORD_BITS - num_boxes)).view(num_boxes, words, _WORD_BITS)
    suppress_bits = (padded.long() << torch.arange(_WORD_BITS, device=device)).sum(dim=-1)  # (R, words)

    order = torch.sort(scores.T, dim=1, descending=True, stable=True).indices.T.contiguous()  # (R, K): rank -> box
    word_index = (order // _WORD_BITS)[:, :, None]  # (R, K, 1)
    bit = (1 << (order % _WORD_BITS))[:, :, None]  # (R, K, 1)
    removed = torch.zeros(num_classes, words, dtype=torch.int64, device=device)  # per class, packed over boxes
    survives = torch.empty(num_boxes, num_classes, 1, dtype=torch.bool, device=device)  # by rank
    for t in range(num_boxes):
        torch.eq(removed.gather(1, word_index[t]) & bit[t], 0, out=survives[t])
        removed |= suppress_bits[order[t]] * survives[t]
    kept = torch.zeros(num_boxes, num_classes, dtype=torch.bool, device=device)
    return kept.scatter_(0, order, survives[:, :, 0])


def caffe_max_conf(boxes: torch.Tensor, fg_probs: torch.Tensor, nms_thresh: float = 0.3) -> torch.Tensor:
    """(R,) float64: for each proposal, its best probability among the classes where it survives the
    per-class legacy NMS (0 when it survives none). boxes (R, 4) in original pixels; fg_probs (R, K)."""
    kept = legacy_nms_per_class(boxes, fg_probs, nms_thresh)
    scores = fg_probs.to(torch.float64)
    return torch.where(kept, scores, torch.zeros_like(scores)).amax(dim=1)


def caffe_keep(max_conf: torch.Tensor, min_boxes: int, max_boxes: int, conf_thresh: float = 0.2) -> torch.Tensor:
    """Indices of the proposals kept by generate_tsv.py: max_conf >= conf_thresh in proposal order;
    if that is fewer than min_boxes (more than max_boxes), the min_boxes (max_boxes) largest max_conf,
    by descending max_conf, ties by ascending index."""
    keep = torch.nonzero(max_conf >= conf_thresh).flatten()
    if min_boxes <= len(keep) <= max_boxes:
        return keep
    best = torch.sort(max_conf, descending=True, stable=True).indices
    return best[: min_boxes if len(keep) < min_boxes else max_boxes]


# ---------------------------------------------------------------------------------------------------
# maxnms and d2 rules


def maxnms_keep(
    boxes: torch.Tensor, scores: torch.Tensor, min_boxes: int, max_boxes: int
) -> tuple[torch.Tensor, float]:
    """Class-agnostic NMS with the first threshold of MAXNMS_THRESHOLDS that keeps >= min_boxes of
    the first max_boxes (the last threshold's result otherwise). -> (kept indices, threshold)."""
    for thresh in MAXNMS_THRESHOLDS:
        keep = nms(boxes, scores, thresh)[:max_boxes]
        if len(keep) >= min_boxes:
            break
    return keep, thresh


def d2_keep(
    class_boxes: torch.Tensor,
    fg_probs: torch.Tensor,
    *,
    score_thresh: float,
    nms_thresh: float,
    topk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """detectron2's fast_rcnn_inference_single_image on clipped class boxes (R, K, 4), fg_probs (R, K).

    -> proposal rows (N,), class ids (N,), scores (N,), boxes (N, 4), by descending score.
    """
    rows = torch.arange(len(fg_probs), device=fg_probs.device)
    valid = torch.isfinite(class_boxes).flatten(1).all(dim=1) & torch.isfinite(fg_probs).all(dim=1)
    if not valid.all():
        rows, class_boxes, fg_probs = rows[valid], class_boxes[valid], fg_probs[valid]
    mask = fg_probs > score_thresh
    pairs = mask.nonzero()  # (n, 2): row, class
    keep = batched_nms(class_boxes[mask].float(), fg_probs[mask], pairs[:, 1], nms_thresh)[:topk]
    pairs = pairs[keep]
    return rows[pairs[:, 0]], pairs[:, 1], fg_probs[mask][keep], class_boxes[mask][keep]


def attributes_fork(attribute_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """py-bottom-up-attention's convention: softmax over the A real attributes -> (ids, scores)."""
    scores, ids = attribute_logits[:, :-1].softmax(dim=-1).max(dim=-1)
    return ids, scores


def attributes_caffe(attribute_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """generate_tsv.py's convention: softmax over all A + 1, then the best real attribute -> (ids, scores)."""
    scores, ids = attribute_logits.softmax(dim=-1)[:, :-1].max(dim=-1)
    return ids, scores


# ---------------------------------------------------------------------------------------------------
# Rules on ImagePredictions


def select_caffe(
    pred: ImagePredictions, *, min_boxes: int, max_boxes: int, conf_thresh: float = 0.2, nms_thresh: float = 0.3
) -> Regions:
    """The "caffe" rule (module docstring)."""
    boxes = boxes_to_original(pred.proposal_boxes, pred.resized_size, pred.original_size)
    fg_probs = pred.class_probs[:, :-1]
    max_conf = caffe_max_conf(boxes, fg_probs, nms_thresh)
    index = caffe_keep(max_conf, min_boxes, max_boxes, conf_thresh)
    object_scores, object_ids = fg_probs[index].max(dim=1)
    return _regions(
        "caffe", pred, index, boxes[index], object_ids, object_scores, attributes_caffe, max_conf=max_conf[index]
    )


def select_maxnms(pred: ImagePredictions, *, min_boxes: int, max_boxes: int) -> Regions:
    """The "maxnms" rule (module docstring)."""
    scores, classes = pred.class_probs[:, :-1].max(dim=1)
    rows = torch.arange(len(scores), device=scores.device)
    boxes = clip_boxes(pred.class_boxes[rows, classes], pred.resized_size)
    index, thresh = maxnms_keep(boxes, scores, min_boxes, max_boxes)
    original = boxes_to_original(boxes[index], pred.resized_size, pred.original_size)
    return _regions("maxnms", pred, index, original, classes[index], scores[index], attributes_fork, nms_thresh=thresh)


def select_d2(
    pred: ImagePredictions, *, score_thresh: float = 0.2, nms_thresh: float = 0.6, detections_per_image: int = 100
) -> Regions:
    """The "d2" rule (module docstring)."""
    class_boxes = clip_boxes(pred.class_boxes, pred.resized_size)
    index, classes, scores, boxes = d2_keep(
        class_boxes,
        pred.class_probs[:, :-1],
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        topk=detections_per_image,
    )
    boxes = boxes_to_original(boxes, pred.resized_size, pred.original_size)
    keep = nonempty(boxes)
    return _regions("d2", pred, index[keep], boxes[keep], classes[keep], scores[keep], attributes_fork)


def given_regions(pred: ImagePredictions, boxes: torch.Tensor) -> Regions:
    """Regions for boxes given in original pixels (pred holds their predictions, row i = box i)."""
    index = torch.arange(len(boxes), device=pred.class_probs.device)
    object_scores, object_ids = pred.class_probs[:, :-1].max(dim=1)
    return _regions("given", pred, index, boxes, object_ids, object_scores, attributes_fork)


def select_regions(
    pred: ImagePredictions,
    rule: str = "caffe",
    num_boxes: int | tuple[int, int] = 36,
    *,
    conf_thresh: float = 0.2,
    score_thresh: float = 0.2,
    nms_thresh: float = 0.6,
    detections_per_image: int = 100,
) -> Regions:
    """Apply `rule` ("caffe", "maxnms" or "d2"). num_boxes: N (exactly N where the image has enough
    proposals) or (MIN, MAX); "d2" ignores it and keeps up to detections_per_image."""
    check_rule(rule)
    min_boxes, max_boxes = parse_num_boxes(num_boxes)
    if rule == "caffe":
        return select_caffe(pred, min_boxes=min_boxes, max_boxes=max_boxes, conf_thresh=conf_thresh)
    if rule == "maxnms":
        return select_maxnms(pred, min_boxes=min_boxes, max_boxes=max_boxes)
    return select_d2(pred, score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_image=detections_per_image)


def _regions(rule, pred, index, boxes, object_ids, object_scores, attribute_rule, **extra) -> Regions:
    attribute_ids = attribute_scores = None
    if pred.attribute_logits is not None:
        attribute_ids, attribute_scores = attribute_rule(pred.attribute_logits[index])
    return Regions(
        rule=rule,
        image_size=pred.original_size,
        boxes=boxes,
        features=pred.pooled_features[index],
        object_ids=object_ids,
        object_scores=object_scores,
        attribute_ids=attribute_ids,
        attribute_scores=attribute_scores,
        proposal_index=index,
        **extra,
    )
