"""ResNet C4 backbone of the VG Faster R-CNN: stem, bottleneck blocks, stages, FrozenBatchNorm.

Module names follow detectron2, so checkpoint names map one to one: `stem.conv1.weight`,
`stem.conv1.norm.running_mean`, `res2.0.shortcut.norm.weight`, ... (the norm of a convolution lives
inside it). The backbone ends at res4 (stride 16); res5 is built here but owned by the ROI head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DetectorConfig


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters: y = x * s + (bias - running_mean * s),
    s = weight / sqrt(running_var + eps).

    All four tensors are buffers (nothing here is trained). The forward pass calls the fused
    `F.batch_norm` in inference mode, which computes that formula; it is also what detectron2's
    FrozenBatchNorm2d runs without gradients, so the results are bit-identical to the reference.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class ConvFrozenBN(nn.Conv2d):
    """A bias-free convolution followed by its FrozenBatchNorm2d, held as `.norm` (detectron2 layout)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False)
        self.norm = FrozenBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block. With `stride_in_1x1` (the Caffe/MSRA weights) the block's
    stride sits on the first 1x1 conv, otherwise on the 3x3 conv. The shortcut is a projection when
    the channel count changes, the identity otherwise."""

    def __init__(
        self,
        in_channels: int,
        bottleneck_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        num_groups: int = 1,
        stride_in_1x1: bool = True,
        dilation: int = 1,
    ):
        super().__init__()
        if in_channels != out_channels:
            self.shortcut = ConvFrozenBN(in_channels, out_channels, 1, stride=stride)
        else:
            self.shortcut = None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvFrozenBN(in_channels, bottleneck_channels, 1, stride=stride_1x1)
        self.conv2 = ConvFrozenBN(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
            groups=num_groups,
        )
        self.conv3 = ConvFrozenBN(bottleneck_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


def make_stage(
    num_blocks: int,
    in_channels: int,
    bottleneck_channels: int,
    out_channels: int,
    *,
    first_stride: int,
    num_groups: int = 1,
    stride_in_1x1: bool = True,
    dilation: int = 1,
) -> nn.Sequential:
    """`num_blocks` bottleneck blocks; only the first one strides and changes the channel count."""
    blocks = []
    for i in range(num_blocks):
        blocks.append(
            BottleneckBlock(
                in_channels if i == 0 else out_channels,
                bottleneck_channels,
                out_channels,
                stride=first_stride if i == 0 else 1,
                num_groups=num_groups,
                stride_in_1x1=stride_in_1x1,
                dilation=dilation,
            )
        )
    return nn.Sequential(*blocks)


class Stem(nn.Module):
    """conv 7x7 / 2 + FrozenBN + ReLU, then a 3x3 / 2 max-pool.

    The Caffe pooling (padding 0, ceil_mode) is what the VG weights were trained with; detectron2's
    default (padding 1, floor) gives another output size and other values (e.g. 301 -> 150 vs 151).
    """

    def __init__(self, in_channels: int, out_channels: int, *, caffe_maxpool: bool = True):
        super().__init__()
        self.caffe_maxpool = caffe_maxpool
        self.conv1 = ConvFrozenBN(in_channels, out_channels, 7, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        if self.caffe_maxpool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ResNetC4(nn.Module):
    """Stem + res2 + res3 + res4: (N, 3, H, W) normalized BGR -> (N, C4, ~H/16, ~W/16) res4 features."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.stem = Stem(3, config.stem_out_channels, caffe_maxpool=config.caffe_maxpool)
        in_channels = config.stem_out_channels
        out_channels = config.res2_out_channels
        bottleneck_channels = config.num_groups * config.width_per_group
        for index, name in enumerate(("res2", "res3", "res4")):
            stage = make_stage(
                config.stage_blocks[index],
                in_channels,
                bottleneck_channels,
                out_channels,
                first_stride=1 if index == 0 else 2,
                num_groups=config.num_groups,
                stride_in_1x1=config.stride_in_1x1,
            )
            self.add_module(name, stage)
            in_channels, out_channels, bottleneck_channels = out_channels, out_channels * 2, bottleneck_channels * 2
        self.out_channels = in_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.res4(self.res3(self.res2(self.stem(images))))


def build_res5(config: DetectorConfig) -> nn.Sequential:
    """The res5 stage run on each pooled region: 3 blocks, res4 channels -> 8 x res2 channels.

    Built like detectron2's Res5ROIHeads (first stride 2). Unless RES5HALVE, it is then changed the way
    py-bottom-up-attention changes it to match the Caffe prototxt: block 1's conv1 and shortcut
    stride 1, and every conv2 dilated by 2 (padding 2), so a 14x14 ROI stays 14x14. Like the fork,
    this only moves the stride off conv1; with STRIDE_IN_1X1 false the stride-2 conv2 would stay.
    """
    stage = make_stage(
        config.stage_blocks[3],
        config.res4_channels,
        config.num_groups * config.width_per_group * 8,
        config.pooled_dim,
        first_stride=2,
        num_groups=config.num_groups,
        stride_in_1x1=config.stride_in_1x1,
    )
    if not config.res5_halve:
        stage[0].conv1.stride = (1, 1)
        stage[0].shortcut.stride = (1, 1)
        for block in stage:
            block.conv2.dilation = (2, 2)
            block.conv2.padding = (2, 2)
    return stage
