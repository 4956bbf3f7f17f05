"""extract.model.pooling.roi_pool against torchvision.ops.roi_pool (the reference): equal bit for bit
(tolerance 0: a maximum is exact), over random maps with NaN and infinities, boxes on the rounding halves,
malformed and out-of-map boxes, several images, every dtype; plus its errors and its bins by hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torchvision.ops import roi_pool as torchvision_roi_pool

from extract.model import DetectorConfig
from extract.model.pooling import _round_half_away, roi_bins, roi_pool
from extract.model.roi_heads import Res5ROIHeads


def reference(features: torch.Tensor, rois: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    return torchvision_roi_pool(features.float(), rois, (size, size), scale).to(features.dtype)


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert ours.is_contiguous()
    # NaN never comes out of either (a bin of NaN is -FLT_MAX): compare the bits as they are.
    assert not ours.isnan().any()
    assert torch.equal(ours, theirs)


def random_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    generator = torch.Generator().manual_seed(seed)
    images = int(torch.randint(1, 4, (), generator=generator))
    height, width = (int(v) for v in torch.randint(1, 45, (2,), generator=generator))
    channels = int(torch.randint(1, 7, (), generator=generator))
    features = torch.randn(images, channels, height, width, generator=generator)
    if seed % 3 == 0:  # values torchvision's loop never takes (NaN) or floors (-inf -> -FLT_MAX)
        features[features > 1.7] = float("nan")
        features[features < -1.7] = float("-inf")
        features[(features > 1.2) & (features < 1.3)] = float("inf")
    scale = [1 / 16, 1 / 8, 0.5, 1.0, 0.3][seed % 5]
    count = int(torch.randint(0, 40, (), generator=generator))
    span = torch.tensor([width, height, width, height]) / scale
    boxes = (torch.rand(count, 4, generator=generator) * 1.5 - 0.25) * span  # some reach past the map
    if seed % 4 == 0:  # corners on the halves of the grid, negative ones included
        boxes = torch.round(boxes * scale * 2) / 2 / scale
    if seed % 7 == 0:  # x2 < x1, y2 < y1: torchvision forces them to one cell
        boxes = boxes[:, [2, 3, 0, 1]]
    image_index = torch.randint(0, images, (count, 1), generator=generator).float()  # any order
    size = [14, 7, 3, 1, 5][seed % 5]
    return features, torch.cat([image_index, boxes], dim=1), size, scale


@pytest.mark.parametrize("seed", range(60))
def test_equals_torchvision_bit_for_bit(seed):
    features, rois, size, scale = random_case(seed)
    assert_same(roi_pool(features, rois, size, scale), reference(features, rois, size, scale))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes_pool_as_float32_then_round(dtype):
    # Conversions to and from float32 are exact and keep the order, so pooling in the features' dtype equals
    # pooling their float32 values with torchvision and converting the result.
    for seed in range(1, 12):
        features, rois, size, scale = random_case(seed)
        features = features.nan_to_num(0.0, 1e4, -1e4).to(dtype)
        ours = roi_pool(features, rois, size, scale)
        assert ours.dtype == dtype
        assert torch.equal(ours, reference(features, rois, size, scale))


@pytest.mark.parametrize("seed", [0, 3, 8])
def test_channels_last_output_holds_the_same_values(seed):
    features, rois, size, scale = random_case(seed)
    grid = roi_pool(features, rois, size, scale, channels_last=True)
    assert grid.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grid, reference(features, rois, size, scale))


def test_full_size_map_and_proposals():
    # The detector's case: a 600 x 1000 image's res4 map, 300 proposals inside the image, many
    # bins of 4 to 6 cells (table levels up to 2 x 2), and one box covering the whole map.
    generator = torch.Generator().manual_seed(5)
    features = torch.rand(1, 64, 38, 63, generator=generator)
    corner = torch.rand(300, 2, generator=generator) * torch.tensor([1000.0, 600.0])
    extent = torch.rand(300, 2, generator=generator) * torch.tensor([1000.0, 600.0])
    boxes = torch.cat([corner, torch.minimum(corner + extent, torch.tensor([999.0, 599.0]))], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, 999.0, 599.0])
    rois = torch.cat([torch.zeros(300, 1), boxes], dim=1)
    assert_same(roi_pool(features, rois, 14, 1 / 16), reference(features, rois, 14, 1 / 16))


def test_large_bins_use_deep_tables():
    # A 14 x 14 grid over a 200 x 300 map: bins of 14 to 22 cells, table levels up to 4 x 4.
    generator = torch.Generator().manual_seed(6)
    features = torch.randn(2, 3, 200, 300, generator=generator)
    rois = torch.tensor([[1.0, 0.0, 0.0, 299.0, 199.0], [0.0, 10.0, 3.0, 250.0, 190.0], [1.0, 5.0, 5.0, 5.0, 5.0]])
    assert_same(roi_pool(features, rois, 14, 1.0), reference(features, rois, 14, 1.0))


def test_corners_round_half_away_from_zero():
    values = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999998, -0.49999997, 3.0])
    assert _round_half_away(values).tolist() == [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 2.0, 0.0, 3.0]
    # torch.round would give -2, -2, 0, 0, 2, 2: a box edge at 8 px (0.5 cell) starts in cell 1, not 0.
    rows = roi_bins(torch.tensor([[0.0, 8.0, 8.0, 40.0, 40.0]]), 2, 1 / 16, 10, 10)
    row_start, row_end, col_start, col_end = (edge.tolist() for edge in rows)
    # Cells 1 .. 3 (40 / 16 = 2.5 -> 3): 3 cells in 2 bins of 1.5: [1, 3) and [2, 4).
    assert row_start == col_start == [[1, 2]]
    assert row_end == col_end == [[3, 4]]


def test_empty_bins_are_zero_and_a_bin_of_nan_is_float32_min():
    features = torch.full((1, 1, 4, 4), float("nan"))
    features[0, 0, 0, 0] = -1.0
    rois = torch.tensor([[0.0, 0.0, 0.0, 15.0, 15.0], [0.0, 100.0, 100.0, 120.0, 120.0]])
    pooled = roi_pool(features, rois, 2, 1 / 16)
    lowest = torch.finfo(torch.float32).min
    assert pooled[0, 0].tolist() == [[-1.0, lowest], [lowest, lowest]]  # NaN never wins; -FLT_MAX floor
    assert pooled[1].eq(0).all()  # the box lies past the map: every bin empty
    assert torch.equal(pooled, reference(features, rois, 2, 1 / 16))


def test_no_regions_and_errors():
    features = torch.rand(2, 3, 5, 5)
    assert roi_pool(features, torch.zeros(0, 5), 14, 1 / 16).shape == (0, 3, 14, 14)
    with pytest.raises(ValueError, match=r"roi 1 names image 2.0 but features hold 2"):
        roi_pool(features, torch.tensor([[0.0, 0, 0, 1, 1], [2.0, 0, 0, 1, 1]]), 2, 1.0)
    with pytest.raises(ValueError, match=r"rois must be \(R, 5\).*\(3, 4\)"):
        roi_pool(features, torch.zeros(3, 4), 2, 1.0)
    with pytest.raises(ValueError, match=r"features must be \(N, C, H, W\).*\(3, 5, 5\)"):
        roi_pool(features[0], torch.zeros(1, 5), 2, 1.0)


def test_roi_head_pools_low_precision_features_without_float32():
    # On the CPU the head pools res4 in its own dtype: bfloat16 res5 input equal to torchvision's pooling of
    # the float32 copy rounded back (the route before), with no float32 copy of the map in between.
    config = DetectorConfig(
        resnet_depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8, num_classes=5, num_attributes=3
    )
    heads = Res5ROIHeads(dataclasses.replace(config, pooler_resolution=7))
    seen = []

    class Spy(nn.Module):
        def forward(self, grid):
            seen.append(grid)
            return grid.float()

    heads.res5 = Spy()
    features = torch.rand(1, 4, 20, 30).to(torch.bfloat16)
    boxes = [torch.tensor([[3.0, 4.0, 200.0, 150.0], [0.0, 0.0, 479.0, 319.0]])]
    with torch.no_grad():
        heads.pooled_features(features, boxes)
    rois = torch.cat([torch.zeros(2, 1), boxes[0]], dim=1)
    assert seen[0].dtype == torch.bfloat16
    assert torch.equal(seen[0], reference(features, rois, 7, 1 / 16))


def test_a_gradient_goes_through_torchvision():
    # Ours has no backward pass and says so; the ROI head then pools with torchvision's kernel, whose gradient
    # goes to each bin's first maximum.
    features = torch.rand(1, 2, 6, 6, requires_grad=True)
    rois = torch.tensor([[0.0, 0.0, 0.0, 80.0, 80.0]])
    with pytest.raises(ValueError, match=r"no gradient\): use torchvision.ops.roi_pool"):
        roi_pool(features, rois, 2, 1 / 16)
    with torch.no_grad():
        assert torch.equal(roi_pool(features, rois, 2, 1 / 16), reference(features, rois, 2, 1 / 16))
    config = DetectorConfig(
        resnet_depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8, num_classes=5, num_attributes=3
    )
    heads = Res5ROIHeads(dataclasses.replace(config, pooler_resolution=2))
    heads.res5 = nn.Identity()
    pooled = heads.pooled_features(features, [rois[:, 1:]])
    pooled.sum().backward()
    assert features.grad is not None and features.grad.sum() == 2 * 4 / 4  # 2 channels x 4 bins, mean of 4


def test_roi_head_gathers_the_grid_in_res5s_layout():
    # res5 channels-last (low precision, or a .to(memory_format=...)): the grid comes channels-last, no transpose.
    config = DetectorConfig(
        resnet_depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8, num_classes=5, num_attributes=3
    )
    heads = Res5ROIHeads(dataclasses.replace(config, pooler_resolution=7)).eval()
    features = torch.rand(1, heads.res5[0].conv1.in_channels, 20, 30)
    boxes = [torch.tensor([[3.0, 4.0, 200.0, 150.0]])]
    seen = []
    heads.res5.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        default = heads.pooled_features(features, boxes)
        heads.res5.to(memory_format=torch.channels_last)
        channels_last = heads.pooled_features(features, boxes)
    assert seen[0].is_contiguous() and not seen[0].is_contiguous(memory_format=torch.channels_last)
    assert seen[1].is_contiguous(memory_format=torch.channels_last) and not seen[1].is_contiguous()
    assert torch.equal(seen[0], seen[1])
    torch.testing.assert_close(channels_last, default, rtol=1e-5, atol=1e-5)  # the layouts' kernels differ by ~1e-6
