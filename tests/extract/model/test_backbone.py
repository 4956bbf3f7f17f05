"""ResNet C4 backbone: FrozenBN formula, caffe max-pool, bottleneck strides, stage shapes, res5 variants."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from extract.model import DetectorConfig
from extract.model.backbone import BottleneckBlock, FrozenBatchNorm2d, ResNetC4, Stem, build_res5

# The tiny fixture model's sizes (res4 = 128 channels, pooled = 256), fast to run.
TINY = DetectorConfig(
    resnet_depth=50,
    stem_out_channels=16,
    res2_out_channels=32,
    width_per_group=8,
    rpn_hidden_channels=64,
    num_classes=400,
    num_attributes=100,
)


def test_frozen_batchnorm_formula():
    norm = FrozenBatchNorm2d(2)
    norm.weight.copy_(torch.tensor([2.0, 0.5]))
    norm.bias.copy_(torch.tensor([1.0, -1.0]))
    norm.running_mean.copy_(torch.tensor([3.0, 0.0]))
    norm.running_var.copy_(torch.tensor([3.0, 1.0]))
    x = torch.tensor([5.0, 4.0]).view(1, 2, 1, 1)
    # y = x * s + (bias - mean * s), s = weight / sqrt(var + 1e-5), by hand:
    s0, s1 = 2.0 / math.sqrt(3.0 + 1e-5), 0.5 / math.sqrt(1.0 + 1e-5)
    expected = torch.tensor([5.0 * s0 + (1.0 - 3.0 * s0), 4.0 * s1 - 1.0])
    # float32 against float64 hand arithmetic: a few ulps.
    torch.testing.assert_close(norm(x).flatten(), expected, rtol=1e-6, atol=1e-6)


def test_frozen_batchnorm_equals_eval_batchnorm():
    torch.manual_seed(0)
    frozen, reference = FrozenBatchNorm2d(8), torch.nn.BatchNorm2d(8).eval()
    for name in ("weight", "bias", "running_mean"):
        value = torch.randn(8)
        getattr(frozen, name).copy_(value)
        getattr(reference, name).data.copy_(value)
    var = torch.rand(8) + 0.1
    frozen.running_var.copy_(var)
    reference.running_var.copy_(var)
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), reference(x), rtol=0, atol=0)
    # No parameters: nothing here is trained; the four tensors are buffers (checkpoint names).
    assert list(frozen.parameters()) == []
    assert set(frozen.state_dict()) == {"weight", "bias", "running_mean", "running_var"}


def _stem_picking_even_pixels(caffe_maxpool: bool) -> Stem:
    # conv1 copies channel 0 at stride 2 (centre tap of the 7x7 kernel), identity norm.
    stem = Stem(3, 1, caffe_maxpool=caffe_maxpool)
    with torch.no_grad():
        stem.conv1.weight.zero_()
        stem.conv1.weight[0, 0, 3, 3] = 1.0
        stem.conv1.norm.running_var.fill_(1.0 - 1e-5)  # var + eps = 1: an exact identity
    return stem


def test_caffe_maxpool_values_and_size():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0] = torch.arange(64.0).view(8, 8)
    # After conv1: x[::2, ::2] = [[0, 2, 4, 6], [16, ...], [32, ...], [48, ..., 54]] (4 x 4).
    caffe = _stem_picking_even_pixels(True)(x)
    upstream = _stem_picking_even_pixels(False)(x)
    # Caffe: kernel 3, stride 2, no padding, ceil: windows rows/cols {0, 1, 2} and {2, 3}.
    assert caffe[0, 0].tolist() == [[36.0, 38.0], [52.0, 54.0]]
    # detectron2's default: padding 1, floor: windows {-1, 0, 1} and {1, 2, 3}.
    assert upstream[0, 0].tolist() == [[18.0, 22.0], [50.0, 54.0]]


@pytest.mark.parametrize("size, caffe_out, upstream_out", [(600, 150, 150), (602, 150, 151), (943, 236, 236)])
def test_caffe_maxpool_output_size(size, caffe_out, upstream_out):
    # conv1 (7x7 / 2, padding 3) halves with ceil: 602 -> 301; then caffe ceil((301 - 3) / 2) + 1 = 150
    # vs upstream floor((301 + 2 - 3) / 2) + 1 = 151.
    x = torch.zeros(1, 3, size, 8)
    assert _stem_picking_even_pixels(True)(x).shape[2] == caffe_out
    assert _stem_picking_even_pixels(False)(x).shape[2] == upstream_out


def test_bottleneck_stride_placement_and_shortcut():
    block = BottleneckBlock(64, 32, 128, stride=2, stride_in_1x1=True)
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1) and block.shortcut.stride == (2, 2)
    block = BottleneckBlock(64, 32, 128, stride=2, stride_in_1x1=False)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    identity = BottleneckBlock(128, 32, 128)
    assert identity.shortcut is None
    assert all(conv.bias is None for conv in (block.conv1, block.conv2, block.conv3, block.shortcut))
    dilated = BottleneckBlock(128, 32, 128, dilation=2)
    assert dilated.conv2.dilation == (2, 2) and dilated.conv2.padding == (2, 2)


def test_bottleneck_forward_by_hand():
    torch.manual_seed(0)
    block = BottleneckBlock(4, 2, 8, stride=2)
    for conv in (block.conv1, block.conv2, block.conv3, block.shortcut):
        torch.nn.init.normal_(conv.weight)
        conv.norm.weight.uniform_(0.5, 1.5)
        conv.norm.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 4, 9, 9)

    def conv_bn(conv, t):
        t = F.conv2d(t, conv.weight, None, conv.stride, conv.padding, conv.dilation)
        s = conv.norm.weight / torch.sqrt(conv.norm.running_var + 1e-5)
        return t * s.view(1, -1, 1, 1) + (conv.norm.bias - conv.norm.running_mean * s).view(1, -1, 1, 1)

    out = F.relu(conv_bn(block.conv1, x))
    out = F.relu(conv_bn(block.conv2, out))
    expected = F.relu(conv_bn(block.conv3, out) + conv_bn(block.shortcut, x))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert block(x).shape == (1, 8, 5, 5)


def test_resnet_c4_shapes_and_names():
    backbone = ResNetC4(TINY)
    assert [len(backbone.res2), len(backbone.res3), len(backbone.res4)] == [3, 4, 6]
    assert backbone.out_channels == 128
    names = set(backbone.state_dict())
    assert "stem.conv1.norm.running_mean" in names and "res2.0.shortcut.norm.weight" in names
    assert "res3.1.shortcut.weight" not in names  # identity shortcut after the first block
    with torch.no_grad():
        # 600 x 800 -> stem 150 x 200 -> res4 at stride 16: 38 x 50 (the fixture's res4_shape); portrait 943 x 600.
        assert backbone(torch.zeros(1, 3, 600, 800)).shape == (1, 128, 38, 50)
        assert backbone(torch.zeros(1, 3, 943, 600)).shape == (1, 128, 59, 38)


def test_res5_keeps_the_roi_size_unless_halved():
    res5 = build_res5(TINY)
    assert res5[0].conv1.stride == (1, 1) and res5[0].shortcut.stride == (1, 1)
    assert all(block.conv2.dilation == (2, 2) and block.conv2.padding == (2, 2) for block in res5)
    with torch.no_grad():
        assert res5(torch.zeros(2, 128, 14, 14)).shape == (2, 256, 14, 14)
    halved = build_res5(dataclasses.replace(TINY, res5_halve=True))
    assert halved[0].conv1.stride == (2, 2) and halved[0].conv2.dilation == (1, 1)
    with torch.no_grad():
        assert halved(torch.zeros(2, 128, 14, 14)).shape == (2, 256, 7, 7)
