"""ROIPool on the CPU with torchvision's bins and values, bit for bit, on every core.

torchvision's CPU `roi_pool` is one scalar loop on one thread: about 1 s for 300 regions on the res4 map
of a 600 x 1000 image, whatever the number of cores (5% of a float32 forward on 2 cores; on a many-core
machine, or with the convolutions in bfloat16 on matrix units, the largest serial part of the detector).

Here each bin's maximum comes from a sparse table of range maxima: the maxima over 2^a x 2^b blocks of the
feature map, for the few block sizes the bins need (bins of a 14 x 14 grid are a few cells wide). A bin of
h x w cells is covered by four such blocks (the largest 2^a <= h, 2^b <= w, placed at its corners), so its
maximum is the maximum of four table entries. A maximum is exact, so the result equals torchvision's loop
value for value, in any dtype: pooling bfloat16 features gives what pooling them in float32 and rounding
back would give (the conversions are exact and keep the order).

The bins are torchvision's (Caffe's ROIPool): corners scaled in float32 and rounded half away from zero,
the end cell included, malformed regions forced to 1 x 1, bin edges floor(i * size) and ceil((i + 1) * size)
with size = cells / output size in float32, clipped to the map; an empty bin is 0, NaN never wins a bin, and
a bin's maximum is at least -FLT_MAX (torchvision's starting value).
"""

from __future__ import annotations

import torch

FLOAT32_MAX = torch.finfo(torch.float32).max
ROIS_PER_GATHER = 8  # regions per gather: their 8 x 196 x C values stay in cache (faster than 16, 32, 64)


def _round_half_away(values: torch.Tensor) -> torch.Tensor:
    """C's round(): halves go away from zero (torch.round sends them to the even neighbour)."""
    whole = torch.trunc(values)
    half = (values - whole).abs() == 0.5  # exact: the fractional part of a float32 is a float32
    return torch.where(half, whole + torch.sign(values), torch.round(values))


def roi_bins(
    rois: torch.Tensor, output_size: int, spatial_scale: float, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cells each bin covers. rois (R, 5) float32 rows (image, x1, y1, x2, y2) in input pixels ->
    row_start, row_end (R, output_size) and col_start, col_end (R, output_size), int64, end excluded,
    clipped to the height x width map (an empty bin has end <= start)."""
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    corners = _round_half_away(rois[:, 1:5].to(torch.float32) * scale).to(torch.int64)  # (R, 4)
    x1, y1, x2, y2 = corners.unbind(dim=1)
    steps = torch.arange(output_size + 1, dtype=torch.float32)

    def edges(start: torch.Tensor, end: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        cells = (end - start + 1).clamp(min=1).to(torch.float32)
        bin_size = cells / torch.tensor(float(output_size), dtype=torch.float32)  # (R,), float32 as in C
        scaled = steps[None, :] * bin_size[:, None]  # (R, output_size + 1)
        first = scaled[:, :-1].floor().to(torch.int64) + start[:, None]
        last = scaled[:, 1:].ceil().to(torch.int64) + start[:, None]
        return first.clamp(0, limit), last.clamp(0, limit)

    row_start, row_end = edges(y1, y2, height)
    col_start, col_end = edges(x1, x2, width)
    return row_start, row_end, col_start, col_end


def _range_max_table(image: torch.Tensor, row_levels: int, col_levels: int) -> torch.Tensor:
    """image (H, W, C), no NaN -> (row_levels, col_levels, H, W, C): entry [a, b, h, w] is the maximum over
    rows h .. h + 2^a - 1 and columns w .. w + 2^b - 1 (the cells of that block inside the map)."""
    table = image.new_empty(row_levels, col_levels, *image.shape)
    table[0, 0] = image
    for a in range(row_levels):
        if a > 0:
            previous, step = table[a - 1, 0], 1 << (a - 1)
            table[a, 0, -step:] = previous[-step:]
            torch.maximum(previous[:-step], previous[step:], out=table[a, 0, :-step])
        for b in range(1, col_levels):
            previous, step = table[a, b - 1], 1 << (b - 1)
            table[a, b, :, -step:] = previous[:, -step:]
            torch.maximum(previous[:, :-step], previous[:, step:], out=table[a, b, :, :-step])
    return table


def _floor_log2(lengths: torch.Tensor) -> torch.Tensor:
    """floor(log2(n)) of positive int64 lengths, exactly (no floating-point logarithm)."""
    largest = int(lengths.max())
    table = torch.tensor([max(n.bit_length() - 1, 0) for n in range(largest + 1)], dtype=torch.int64)
    return table[lengths]


def roi_pool(
    features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float, *, channels_last: bool = False
) -> torch.Tensor:
    """features (N, C, H, W), rois (R, 5) (image index, x1, y1, x2, y2) -> (R, C, output_size, output_size)
    in the features' dtype: torchvision.ops.roi_pool's values (module docstring), on torch's threads; contiguous,
    or channels-last with ``channels_last`` (the order the values are gathered in: no transposing copy).
    Inference only: features that need a gradient are refused (torchvision's kernel has the backward pass)."""
    if features.dim() != 4:
        raise ValueError(f"roi_pool: features must be (N, C, H, W), got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_pool: rois must be (R, 5) rows (image, x1, y1, x2, y2), got {tuple(rois.shape)}")
    if torch.is_grad_enabled() and features.requires_grad:
        raise ValueError(
            "roi_pool here computes values only (no gradient): use torchvision.ops.roi_pool where a gradient must flow"
        )
    num_images, channels, height, width = features.shape
    bins = output_size * output_size
    if rois.shape[0] == 0 or channels == 0 or bins == 0 or height == 0 or width == 0:
        empty_output = features.new_zeros(rois.shape[0], channels, output_size, output_size)
        return empty_output.contiguous(memory_format=torch.channels_last) if channels_last else empty_output
    image_index = rois[:, 0].to(torch.float32).to(torch.int64)  # C's int(): truncation
    outside = (image_index < 0) | (image_index >= num_images)
    if bool(outside.any()):
        row = int(outside.nonzero()[0, 0])
        raise ValueError(f"roi_pool: roi {row} names image {float(rois[row, 0])} but features hold {num_images}")
    row_start, row_end, col_start, col_end = roi_bins(rois, output_size, spatial_scale, height, width)
    empty = (row_end <= row_start)[:, :, None] | (col_end <= col_start)[:, None, :]  # (R, P, P)
    # Empty bins read cell 0 (and are zeroed after): every lookup stays inside the map.
    row_cells = (row_end - row_start).clamp(min=1)
    col_cells = (col_end - col_start).clamp(min=1)
    row_start = torch.where(row_end > row_start, row_start, 0)
    col_start = torch.where(col_end > col_start, col_start, 0)
    row_level, col_level = _floor_log2(row_cells), _floor_log2(col_cells)  # (R, P) each
    row_last = row_start + row_cells - (1 << row_level)  # the second block's first row: inside the bin
    col_last = col_start + col_cells - (1 << col_level)
    # torchvision starts each bin at -FLT_MAX and takes a value only when it is greater: NaN never wins and
    # nothing below -FLT_MAX does. Those values become -FLT_MAX here, so a plain maximum gives the same bins.
    lowest = torch.tensor(-FLOAT32_MAX, dtype=torch.float32).to(features.dtype)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    output = torch.empty(
        rois.shape[0],
        channels,
        output_size,
        output_size,
        dtype=features.dtype,
        device=features.device,
        memory_format=layout,
    )
    for image in range(num_images):
        selected = (image_index == image).nonzero().squeeze(1)
        if len(selected) == 0:
            continue
        row_levels = int(row_level[selected].max()) + 1
        col_levels = int(col_level[selected].max()) + 1
        cells = features[image].permute(1, 2, 0)  # (H, W, C)
        cells = torch.where(cells.isnan(), lowest, cells).clamp_(min=lowest)  # copied into the table below
        table = _range_max_table(cells, row_levels, col_levels).reshape(-1, channels)
        for chunk in selected.split(ROIS_PER_GATHER):
            # table row of [a, b, h, w]: ((a * col_levels + b) * H + h) * W + w
            level = (row_level[chunk][:, :, None] * col_levels + col_level[chunk][:, None, :]) * (height * width)
            corners = [
                (level + row[chunk][:, :, None] * width + col[chunk][:, None, :]).reshape(-1)
                for row in (row_start, row_last)
                for col in (col_start, col_last)
            ]
            pooled = torch.index_select(table, 0, corners[0])  # (r * P * P, C)
            other = torch.empty_like(pooled)
            for corner in corners[1:]:
                torch.maximum(pooled, torch.index_select(table, 0, corner, out=other), out=pooled)
            pooled = pooled.view(len(chunk), output_size, output_size, channels)
            chunk_empty = empty[chunk]
            if bool(chunk_empty.any()):
                pooled.masked_fill_(chunk_empty[..., None], 0)
            first = int(chunk[0])
            if int(chunk[-1]) - first + 1 == len(chunk):  # regions come in image order: a slice, no scatter
                output[first : first + len(chunk)] = pooled.permute(0, 3, 1, 2)
            else:
                output[chunk] = pooled.permute(0, 3, 1, 2)
    return output
