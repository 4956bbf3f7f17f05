"""Selection rules as pure functions, against hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import nms

from extract.boxes import boxes_to_original, boxes_to_resized, legacy_iou
from extract.selection import (
    MAXNMS_THRESHOLDS,
    ImagePredictions,
    attributes_caffe,
    attributes_fork,
    caffe_keep,
    caffe_max_conf,
    d2_keep,
    legacy_nms,
    legacy_nms_per_class,
    maxnms_keep,
    select_d2,
    select_regions,
)


def test_legacy_iou_adds_one_pixel():
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    # Caffe: areas 10 x 10, overlap 5 x 10 -> 50 / 150.
    assert legacy_iou(boxes)[0, 1].item() == pytest.approx(1 / 3)
    assert legacy_iou(boxes).dtype == torch.float64
    # The same boxes at threshold 0.3: Caffe suppresses the second, torchvision (IoU 36 / 126) does not.
    scores = torch.tensor([0.9, 0.8])
    assert legacy_nms(boxes, scores, 0.3).tolist() == [0]
    assert nms(boxes, scores, 0.3).tolist() == [0, 1]
    # The +1 makes the IoU depend on the pixel scale: at 2x, areas 19 x 19, overlap 9 x 19 -> 171 / 551.
    assert legacy_iou(boxes * 2)[0, 1].item() == pytest.approx(171 / 551)
    # Boxes 2 px apart do not overlap; boxes sharing an edge overlap by one pixel column.
    assert legacy_iou(torch.tensor([[0.0, 0.0, 4.0, 4.0], [6.0, 0.0, 10.0, 4.0]]))[0, 1].item() == 0.0
    assert legacy_iou(torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]]))[0, 1].item() == pytest.approx(5 / 45)


def test_legacy_nms_visits_by_descending_score():
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 9.0]]
    )
    scores = torch.tensor([0.5, 0.9, 0.7, 0.6])
    # 1 (0.9) suppresses 0 and 3; 2 is alone.
    assert legacy_nms(boxes, scores, 0.3).tolist() == [1, 2]
    # With a high threshold nothing is suppressed: all, by descending score.
    assert legacy_nms(boxes, scores, 0.99).tolist() == [1, 2, 3, 0]


def reference_legacy_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> list[int]:
    """bottom-up-attention's py_cpu_nms with the +1 IoU, written as plainly as possible (Python floats)."""
    x1, y1, x2, y2 = (boxes.to(torch.float64).T).tolist()
    areas = [(x2[i] - x1[i] + 1) * (y2[i] - y1[i] + 1) for i in range(len(x1))]
    order = sorted(range(len(x1)), key=lambda i: (-scores[i].item(), i))
    keep = []
    while order:
        i, order = order[0], order[1:]
        keep.append(i)
        remaining = []
        for j in order:
            w = max(0.0, min(x2[i], x2[j]) - max(x1[i], x1[j]) + 1)
            h = max(0.0, min(y2[i], y2[j]) - max(y1[i], y1[j]) + 1)
            if w * h / (areas[i] + areas[j] - w * h) <= thresh:
                remaining.append(j)
        order = remaining
    return keep


def random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(count, 2, generator=generator) * 100
    return torch.cat([xy, xy + 5 + torch.rand(count, 2, generator=generator) * 40], dim=1)


# Around the 63-bit word size of the packed suppression rows, and none at all.
@pytest.mark.parametrize("count", [0, 1, 40, 62, 63, 64, 127])
def test_legacy_nms_per_class_equals_the_plain_reference(count):
    generator = torch.Generator().manual_seed(count)
    boxes = random_boxes(count, generator)
    scores = torch.rand(count, 7, generator=generator).softmax(dim=1)
    scores[:, 3] = 0.0  # all tied: lower index first
    scores[::2, 5] = 0.25  # ties among some
    kept = legacy_nms_per_class(boxes, scores, 0.3)
    assert kept.shape == (count, 7) and kept.dtype == torch.bool
    for k in range(7):
        expected = reference_legacy_nms(boxes, scores[:, k], 0.3)
        assert legacy_nms(boxes, scores[:, k], 0.3).tolist() == expected, f"class {k}"
        assert torch.nonzero(kept[:, k]).flatten().tolist() == sorted(expected), f"class {k}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_legacy_nms_per_class_on_cuda_equals_the_cpu():
    # Float64 IoU (correctly rounded +, -, *, /), a stable sort and integer ops: no room for the
    # device to differ.
    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(300, generator) * 4
    scores = torch.rand(300, 401, generator=generator).softmax(dim=1)
    on_cuda = legacy_nms_per_class(boxes.cuda(), scores.cuda(), 0.3)
    assert on_cuda.is_cuda and torch.equal(on_cuda.cpu(), legacy_nms_per_class(boxes, scores, 0.3))


def test_caffe_max_conf_by_hand():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    fg_probs = torch.tensor([[0.6, 0.1], [0.3, 0.5], [0.05, 0.02]])
    # Class 0: box 0 (0.6) suppresses box 1. Class 1: box 1 (0.5) suppresses box 0. Box 2 survives both.
    max_conf = caffe_max_conf(boxes, fg_probs, 0.3)
    assert max_conf.dtype == torch.float64
    torch.testing.assert_close(max_conf, torch.tensor([0.6, 0.5, 0.05], dtype=torch.float64))
    # A box suppressed in every class has max_conf 0.
    fg_probs = torch.tensor([[0.6, 0.6], [0.3, 0.5], [0.05, 0.02]])
    assert caffe_max_conf(boxes, fg_probs, 0.3)[1].item() == 0.0


def test_caffe_keep_branches():
    max_conf = torch.tensor([0.1, 0.5, 0.25, 0.0, 0.9, 0.25, 0.3], dtype=torch.float64)
    # Threshold branch: max_conf >= 0.2, in proposal order.
    assert caffe_keep(max_conf, 2, 10, 0.2).tolist() == [1, 2, 4, 5, 6]
    assert caffe_keep(torch.tensor([0.2, 0.1], dtype=torch.float64), 1, 1, 0.2).tolist() == [0]  # >= is inclusive
    # MAX branch: the 3 largest, descending; ties (2 and 5 at 0.25) by ascending index.
    assert caffe_keep(max_conf, 1, 3, 0.2).tolist() == [4, 1, 6]
    assert caffe_keep(max_conf, 1, 4, 0.2).tolist() == [4, 1, 6, 2]
    # MIN branch: fewer than 6 pass -> the 6 largest.
    assert caffe_keep(max_conf, 6, 6, 0.2).tolist() == [4, 1, 6, 2, 5, 0]
    # More boxes asked for than exist: all of them.
    assert caffe_keep(max_conf, 10, 10, 0.2).tolist() == [4, 1, 6, 2, 5, 0, 3]


def test_maxnms_thresholds_are_numpy_arange():
    assert MAXNMS_THRESHOLDS == tuple(np.arange(0.3, 1.0, 0.1).tolist())
    # No float32 IoU lies between these and the decimal values, so torchvision's NMS (float32 IoU
    # compared with a float64 threshold) keeps the same boxes with either.
    for thresh, decimal in zip(MAXNMS_THRESHOLDS, (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), strict=True):
        nearest = np.float32(decimal)
        for iou in (np.nextafter(nearest, np.float32(0)), nearest, np.nextafter(nearest, np.float32(1))):
            assert (float(iou) > thresh) == (float(iou) > decimal)


def test_maxnms_keep_raises_the_threshold():
    # Three boxes, each pair with IoU 0.45 or so: at 0.3 and 0.4 only one survives, at 0.5 all three.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.5], [0.0, 5.5, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, thresh = maxnms_keep(boxes, scores, 1, 36)
    assert keep.tolist() == [0] and thresh == 0.3
    keep, thresh = maxnms_keep(boxes, scores, 3, 36)
    assert keep.tolist() == [0, 1, 2] and thresh == 0.5
    keep, thresh = maxnms_keep(boxes, scores, 3, 2)  # MAX cuts first, so MIN = 3 is never reached
    assert keep.tolist() == [0, 1] and thresh == MAXNMS_THRESHOLDS[-1]


def test_d2_keep_by_hand():
    class_boxes = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]],
            [[0.0, 0.0, 10.0, 9.0], [30.0, 30.0, 40.0, 40.0]],
            [[0.0, 0.0, 1.0, float("inf")], [0.0, 0.0, 1.0, 1.0]],
        ]
    )
    fg_probs = torch.tensor([[0.5, 0.3], [0.4, 0.2], [0.9, 0.9]])
    rows, classes, scores, boxes = d2_keep(class_boxes, fg_probs, score_thresh=0.2, nms_thresh=0.6, topk=10)
    # Row 2 has a non-finite box: dropped. (1, class 1) has 0.2, not > 0.2. (1, class 0) overlaps (0, class 0).
    # The same proposal may appear with two classes.
    assert list(zip(rows.tolist(), classes.tolist(), strict=True)) == [(0, 0), (0, 1)]
    assert scores.tolist() == [0.5, 0.30000001192092896] and boxes.shape == (2, 4)
    rows, classes, _, _ = d2_keep(class_boxes, fg_probs, score_thresh=0.2, nms_thresh=0.6, topk=1)
    assert rows.tolist() == [0] and classes.tolist() == [0]


def test_boxes_to_original_and_back_per_axis():
    # 375 x 500 -> 600 x 800: x by 500 / 800, y by 375 / 600.
    boxes = torch.tensor([[80.0, 60.0, 800.0, 600.0], [-8.0, 0.0, 810.0, 700.0]])
    original = boxes_to_original(boxes, (600, 800), (375, 500))
    assert original.tolist() == [[50.0, 37.5, 500.0, 375.0], [0.0, 0.0, 500.0, 375.0]]  # clipped
    # Portrait 640 x 407 -> 943 x 600: two different factors (0.6787, 0.6787...) that rounding made unequal.
    given = torch.tensor([[0.0, 0.0, 407.0, 640.0], [-1.0, 700.0, 10.0, 720.0]])
    resized = boxes_to_resized(given, (640, 407), (943, 600))
    torch.testing.assert_close(resized[0], torch.tensor([0.0, 0.0, 600.0, 943.0]))
    assert resized[1, 0] < 0 and resized[1, 3] > 943  # not clipped


def test_attribute_conventions():
    logits = torch.tensor([[1.0, 2.0, 0.0, 3.0]])  # 3 real attributes + "no attribute" (last)
    ids, scores = attributes_fork(logits)
    e = torch.tensor([1.0, 2.0, 0.0]).exp()
    assert ids.tolist() == [1] and scores.item() == pytest.approx((e[1] / e.sum()).item())
    ids, scores = attributes_caffe(logits)
    e = torch.tensor([1.0, 2.0, 0.0, 3.0]).exp()
    assert ids.tolist() == [1] and scores.item() == pytest.approx((e[1] / e.sum()).item())


def _predictions(class_boxes: torch.Tensor, class_probs: torch.Tensor) -> ImagePredictions:
    count = len(class_probs)
    return ImagePredictions(
        original_size=(300, 400),
        resized_size=(600, 800),
        proposal_boxes=class_boxes[:, 0],
        objectness_logits=torch.zeros(count),
        pooled_features=torch.arange(count, dtype=torch.float32)[:, None].repeat(1, 3),
        class_logits=class_probs.log(),
        class_probs=class_probs,
        box_deltas=torch.zeros(count, 4 * class_boxes.shape[1]),
        class_boxes=class_boxes,
        attribute_logits=torch.zeros(count, 3),
    )


def test_d2_drops_boxes_empty_in_the_original_image():
    class_boxes = torch.tensor([[[10.0, 10.0, 50.0, 50.0]], [[810.0, 10.0, 900.0, 50.0]]])  # 2nd: beyond x = 800
    probs = torch.tensor([[0.7, 0.3], [0.6, 0.4]])
    regions = select_d2(_predictions(class_boxes, probs), score_thresh=0.2, nms_thresh=0.6, detections_per_image=100)
    assert regions.proposal_index.tolist() == [0]
    assert regions.boxes.tolist() == [[5.0, 5.0, 25.0, 25.0]]
    assert regions.features.tolist() == [[0.0, 0.0, 0.0]]


def test_select_regions_arguments():
    pred = _predictions(torch.tensor([[[10.0, 10.0, 50.0, 50.0]]]), torch.tensor([[0.7, 0.3]]))
    with pytest.raises(ValueError, match="unknown selection rule 'nms'"):
        select_regions(pred, "nms")
    with pytest.raises(ValueError, match="num_boxes"):
        select_regions(pred, "caffe", (10, 5))
    regions = select_regions(pred, "caffe", 36)  # fewer proposals than asked for: all of them
    assert len(regions) == 1 and regions.rule == "caffe" and regions.max_conf.tolist() == [pytest.approx(0.7)]
    regions = select_regions(pred, "maxnms", (1, 10))
    assert regions.nms_thresh == 0.3 and regions.object_ids.tolist() == [0]
