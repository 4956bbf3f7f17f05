"""RPN pieces against hand-made numbers: anchor order, delta decoding, head output order, proposal selection."""

from __future__ import annotations

import math

import pytest
import torch

from extract.boxes import SCALE_CLAMP, clip_boxes, decode_boxes
from extract.model import DetectorConfig
from extract.model.rpn import RPN, RPNHead, cell_anchors, grid_anchors, select_proposals


def test_cell_anchors_by_hand():
    anchors = cell_anchors((64.0,), (0.5, 1.0, 2.0))
    # area 64^2, h / w = ratio: w = sqrt(4096 / ratio), h = ratio * w
    w, h = math.sqrt(4096 / 0.5), 0.5 * math.sqrt(4096 / 0.5)  # 90.51, 45.25
    expected = torch.tensor(
        [[-w / 2, -h / 2, w / 2, h / 2], [-32.0, -32.0, 32.0, 32.0], [-h / 2, -w / 2, h / 2, w / 2]]
    )
    torch.testing.assert_close(anchors, expected, rtol=0, atol=1e-5)
    assert anchors.dtype == torch.float32


def test_cell_anchors_are_size_major():
    anchors = cell_anchors((64.0, 128.0, 256.0, 512.0), (0.5, 1.0, 2.0))
    assert anchors.shape == (12, 4)
    widths = (anchors[:, 2] - anchors[:, 0]).tolist()
    heights = (anchors[:, 3] - anchors[:, 1]).tolist()
    # index = size_index * 3 + ratio_index
    assert widths[4] == pytest.approx(128.0) and heights[4] == pytest.approx(128.0)
    assert heights[9] / widths[9] == pytest.approx(0.5) and widths[9] * heights[9] == pytest.approx(512.0**2)


def test_grid_anchor_order():
    cell = torch.tensor([[-1.0, -2.0, 1.0, 2.0], [-3.0, -4.0, 3.0, 4.0]])
    anchors = grid_anchors(cell, (2, 3), stride=16)
    assert anchors.shape == (2 * 3 * 2, 4)
    for y in range(2):
        for x in range(3):
            for a in range(2):
                shift = torch.tensor([16.0 * x, 16.0 * y] * 2)
                assert torch.equal(anchors[(y * 3 + x) * 2 + a], shift + cell[a])
    # OFFSET 0.5 moves every anchor by half a stride.
    assert torch.equal(grid_anchors(cell, (2, 3), stride=16, offset=0.5)[0], torch.tensor([7.0, 6.0, 9.0, 10.0]))


def test_decode_boxes_by_hand():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # w 20, h 40, centre (20, 40)
    assert torch.equal(decode_boxes(torch.zeros(1, 4), boxes, (1.0, 1.0, 1.0, 1.0)), boxes)
    # dx 0.1 -> centre + 2 px; dh log 2 -> height doubles around the centre.
    out = decode_boxes(torch.tensor([[0.1, 0.0, 0.0, math.log(2.0)]]), boxes, (1.0, 1.0, 1.0, 1.0))
    torch.testing.assert_close(out, torch.tensor([[12.0, 0.0, 32.0, 80.0]]))
    # Weights divide: (10, 10, 5, 5) with deltas (1, -1, 5 log 2, 0): centre (22, 36), width 40.
    out = decode_boxes(torch.tensor([[1.0, -1.0, 5 * math.log(2.0), 0.0]]), boxes, (10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(out, torch.tensor([[2.0, 16.0, 42.0, 56.0]]))


def test_decode_clamps_growth_and_handles_several_boxes_per_row():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out = decode_boxes(torch.tensor([[0.0, 0.0, 100.0, 100.0, 0.0, 0.0, 0.0, 0.0]]), boxes, (1.0, 1.0, 1.0, 1.0))
    assert out.shape == (1, 8)
    side = math.exp(SCALE_CLAMP) * 16  # log(1000 / 16) caps the size at 1000 px
    torch.testing.assert_close(out[0, :4], torch.tensor([8 - side / 2, 8 - side / 2, 8 + side / 2, 8 + side / 2]))
    assert torch.equal(out[0, 4:], boxes[0])


def test_clip_boxes():
    boxes = torch.tensor([[-5.0, -1.0, 900.0, 30.0]])
    assert clip_boxes(boxes, (20, 800)).tolist() == [[0.0, 0.0, 800.0, 20.0]]


def test_rpn_head_output_order():
    # One input channel, identity 3x3 conv; anchor a's logit = (a + 1) * v and its delta k = (10 a + k + 1) * v,
    # where v = y * W + x + 1 is the value at (y, x).
    head = RPNHead(1, 1, num_anchors=2)
    with torch.no_grad():
        for conv in (head.conv, head.objectness_logits, head.anchor_deltas):
            conv.weight.zero_()
            conv.bias.zero_()
        head.conv.weight[0, 0, 1, 1] = 1.0
        head.objectness_logits.weight[:, 0, 0, 0] = torch.tensor([1.0, 2.0])
        head.anchor_deltas.weight[:, 0, 0, 0] = torch.tensor([10.0 * a + k + 1 for a in range(2) for k in range(4)])
        height, width = 2, 3
        x = torch.arange(1.0, height * width + 1).view(1, 1, height, width)
        logits, deltas = head(x)
    assert logits.shape == (1, 12) and deltas.shape == (1, 12, 4)
    for y in range(height):
        for x_ in range(width):
            v = y * width + x_ + 1
            for a in range(2):
                index = (y * width + x_) * 2 + a
                assert logits[0, index] == (a + 1) * v
                assert deltas[0, index].tolist() == [(10.0 * a + k + 1) * v for k in range(4)]


def test_select_proposals_by_hand():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # logit 5
            [0.0, 0.0, 10.0, 9.0],  # logit 4: IoU 0.9 with the first -> suppressed
            [50.0, 30.0, 60.0, 40.0],  # logit 3
            [float("nan"), 0.0, 1.0, 1.0],  # logit 9: not finite -> dropped
            [95.0, 5.0, 120.0, 8.0],  # logit 2: clipped to x <= 100
            [200.0, 5.0, 300.0, 8.0],  # logit 6: empty after clipping -> dropped
            [20.0, 20.0, 30.0, 30.0],  # logit -1: beyond pre_nms_topk
        ]
    )
    logits = torch.tensor([5.0, 4.0, 3.0, 9.0, 2.0, 6.0, -1.0])
    out_boxes, out_logits = select_proposals(boxes, logits, (50, 100), pre_nms_topk=6, post_nms_topk=10, nms_thresh=0.7)
    assert out_logits.tolist() == [5.0, 3.0, 2.0]
    assert out_boxes.tolist() == [[0.0, 0.0, 10.0, 10.0], [50.0, 30.0, 60.0, 40.0], [95.0, 5.0, 100.0, 8.0]]
    # post_nms_topk cuts after NMS; min_size drops boxes not larger than it (here the 3-px-high one).
    _, out_logits = select_proposals(boxes, logits, (50, 100), pre_nms_topk=6, post_nms_topk=2, nms_thresh=0.7)
    assert out_logits.tolist() == [5.0, 3.0]
    _, out_logits = select_proposals(
        boxes, logits, (50, 100), pre_nms_topk=6, post_nms_topk=10, nms_thresh=0.7, min_size=3.0
    )
    assert out_logits.tolist() == [5.0, 3.0]


def test_rpn_proposals_lie_in_each_image():
    torch.manual_seed(0)
    config = DetectorConfig(res2_out_channels=8, rpn_hidden_channels=4, rpn_post_nms_topk_test=50)
    rpn = RPN(config)
    with torch.no_grad():
        features = torch.randn(2, 32, 10, 12)
        # The second image's valid region is smaller than the feature map: proposals are clipped to it.
        results = rpn(features, [(160, 192), (150, 100)])
    for (boxes, logits), (height, width) in zip(results, [(160, 192), (150, 100)], strict=True):
        assert 0 < len(boxes) <= 50 and boxes.shape[1] == 4
        assert torch.all(logits[:-1] >= logits[1:])
        assert boxes.min() >= 0 and boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
