"""ROI head: ROI rows, ROIPool + mean pooling by hand, box predictor shapes, attribute head input class."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from extract.boxes import boxes_to_rois
from extract.model import DetectorConfig
from extract.model.roi_heads import BoxPredictor, Res5ROIHeads

TINY = DetectorConfig(
    resnet_depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8, num_classes=5, num_attributes=3
)


def test_boxes_to_rois():
    rois = boxes_to_rois(
        [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4), torch.tensor([[5.0, 6.0, 7.0, 8.0]] * 2)]
    )
    assert rois.tolist() == [[0, 1, 2, 3, 4], [2, 5, 6, 7, 8], [2, 5, 6, 7, 8]]


def test_roi_pool_then_mean_by_hand():
    heads = Res5ROIHeads(dataclasses.replace(TINY, pooler_resolution=2))
    heads.res5 = nn.Identity()  # look at the pooled grid itself
    features = torch.zeros(2, 1, 5, 5)
    features[0, 0] = torch.arange(25.0).view(5, 5)
    features[1, 0] = -torch.arange(25.0).view(5, 5)
    # Box (0, 0, 48, 50) at 1/16: corners round to cells 0 and 3 (48 / 16 = 3, 50 / 16 = 3.1), the end
    # cell included: a 4 x 4 region in 2 x 2 bins of 2 x 2 cells; max per bin = 6, 8, 16, 18; mean 12.
    boxes = [torch.tensor([[0.0, 0.0, 48.0, 50.0]]), torch.tensor([[16.0, 16.0, 16.0, 16.0]])]
    with torch.no_grad():
        pooled = heads.pooled_features(features, boxes)
    # Second image, a one-cell box at cell (1, 1): every bin is that cell, -6.
    assert pooled.flatten().tolist() == [12.0, -6.0]


def test_box_predictor_shapes():
    predictor = BoxPredictor(16, num_classes=5, num_attributes=3)
    class_logits, box_deltas, attribute_logits = predictor(torch.randn(7, 16))
    assert class_logits.shape == (7, 6) and box_deltas.shape == (7, 20) and attribute_logits.shape == (7, 4)
    # Released-model sizes: embedding D / 8, hidden D / 4 (256 and 512 for D = 2048).
    assert predictor.cls_embedding.weight.shape == (6, 2) and predictor.fc_attr.weight.shape == (4, 18)
    assert BoxPredictor(16, num_classes=5, num_attributes=None)(torch.randn(7, 16))[2] is None


def test_attribute_head_embeds_the_argmax_over_all_classes_background_included():
    torch.manual_seed(0)
    predictor = BoxPredictor(16, num_classes=5, num_attributes=3)
    pooled = torch.randn(2, 16)
    with torch.no_grad():
        predictor.cls_score.weight.zero_()
        # Background (index 5, the last) has the largest logit: the head must embed class 5.
        predictor.cls_score.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 2.0]))
        class_logits, _, attribute_logits = predictor(pooled)
        assert class_logits.argmax(dim=1).tolist() == [5, 5]
        assert torch.equal(attribute_logits, predictor.attribute_logits(pooled, torch.tensor([5, 5])))
        assert not torch.equal(attribute_logits, predictor.attribute_logits(pooled, torch.tensor([2, 2])))
        # By hand: concat(pooled, embedding of the class) -> fc_attr -> ReLU -> attr_score.
        hidden = torch.relu(predictor.fc_attr(torch.cat([pooled, predictor.cls_embedding.weight[[5, 5]]], dim=1)))
        torch.testing.assert_close(attribute_logits, predictor.attr_score(hidden), rtol=0, atol=0)
        # With a foreground class on top, that class is embedded.
        predictor.cls_score.bias[2] = 3.0
        _, _, attribute_logits = predictor(pooled)
        assert torch.equal(attribute_logits, predictor.attribute_logits(pooled, torch.tensor([2, 2])))


def test_res5_roi_heads_forward_shapes():
    heads = Res5ROIHeads(TINY)
    features = torch.randn(1, 128, 10, 12)
    with torch.no_grad():
        pooled, class_logits, box_deltas, attribute_logits = heads(
            features, [torch.tensor([[0.0, 0.0, 100.0, 80.0]] * 3)]
        )
    assert pooled.shape == (3, 256) and class_logits.shape == (3, 6)
    assert box_deltas.shape == (3, 20) and attribute_logits.shape == (3, 4)
    assert torch.equal(pooled[0], pooled[2])  # same box, same feature


def test_regions_go_through_res5_in_bounded_passes():
    """rois_per_pass bounds memory; the features are those of one pass over all regions."""
    torch.manual_seed(0)
    heads = Res5ROIHeads(TINY).eval()
    features = torch.randn(2, 128, 20, 24)
    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(70, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + 20 + torch.rand(70, 2, generator=generator) * 150], dim=1)
    per_image = [boxes[:40], boxes[40:]]
    with torch.no_grad():
        whole = heads.pooled_features(features, per_image)
        heads.rois_per_pass = 17  # 70 regions in 5 passes, one of them across the two images
        chunked = heads.pooled_features(features, per_image)
    assert whole.shape == (70, 256)
    # convolutions over fewer regions may sum in another order: float32 rounding only
    assert torch.allclose(chunked, whole, atol=1e-5, rtol=1e-5)
