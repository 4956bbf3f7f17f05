"""Pictures of what the models see: region boxes with captions on the image, attention heat maps over it,
and the text bands and layouts of a figure. Pillow and numpy only; every function returns a new image.

Pixel rule, shared by the boxes and the heat maps: a box (x1, y1, x2, y2) in original pixels covers the
pixels whose centres lie in [x1, x2) x [y1, y2): columns ceil(x1 - 0.5) to ceil(x2 - 0.5) - 1, rows alike,
clipped to the image. A box [10, 20, 110, 80] covers columns 10..109 and rows 20..79.

Drawing (`draw_regions`):

- box i takes `box_color(i)` (golden-ratio hue steps), by its index in the input, so a box keeps its
  colour when `top` / `min_score` drop others;
- outlines lie inside the covered pixels, `line_width` thick (default max(1, round(min(H, W) / 200)));
  a box covering no pixel (zero area, or outside the image) is drawn on the nearest pixel row / column,
  so it shows as a line or a point;
- captions use Pillow's scalable default font at `font_size` (default max(10, round(min(H, W) / 30)))
  on a rectangle of the box colour, padded by max(1, round(font_size / 5)) pixels, in black or white,
  whichever contrasts more with that colour (WCAG relative luminance). The caption sits above the box
  when it fits there, else inside at its top, then is moved into the image (left edge at the box's,
  pushed left / up / down as needed); an image smaller than a caption shows its top-left part. Outlines
  are drawn first, captions over them.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import ImageInput, load_image

CAPTIONS = ("attributes", "objects", "none")
GOLDEN_RATIO_CONJUGATE = (math.sqrt(5) - 1) / 2
# Hue steps of the golden ratio spread any number of colours around the circle; alternating the
# saturation and value keeps neighbours apart when two hues come close (every 8th or so).
_SATURATIONS = (0.9, 0.65)
_VALUES = (0.95, 0.8, 0.65)

# The heat colour map: a dark violet -> blue -> teal -> green -> yellow ramp (our numbers, in the spirit of
# viridis). Luma (0.2126 R + 0.7152 G + 0.0722 B) rises at every control point: 21, 65, 101, 132, 176, 221,
# and is linear between them, so it rises everywhere and the map reads in gray scale too.
COLORMAP_POINTS = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
COLORMAP_COLORS = np.array(
    [(40, 10, 70), (60, 60, 135), (40, 115, 140), (40, 160, 120), (130, 200, 70), (250, 230, 40)],
    dtype=np.float64,
)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


# ---------------------------------------------------------------------------------------------------
# Regions


def draw_regions(
    image: ImageInput,
    boxes: Any,
    *,
    object_names: Sequence[str | None] | None = None,
    attribute_names: Sequence[str | None] | None = None,
    scores: Any = None,
    captions: str | None = "attributes",
    top: int | None = None,
    min_score: float | None = None,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """A new RGB picture of `image` with `boxes` (N, 4) x1 y1 x2 y2 (original pixels) outlined and captioned.

    image: anything `extract.images.load_image` reads (a path, bytes, a PIL image, an (H, W, 3) RGB array,
    a tensor), oriented as the extractor saw it. boxes, scores (N,): numpy arrays, lists or tensors (on
    any device). captions: "attributes" ("black cat 0.93"), "objects" ("cat 0.93") or "none" / None;
    each part appears when it is given (a None name is left out), the score with 2 decimals.
    min_score drops the boxes scoring below it, then top keeps the `top` best-scoring ones (the first
    `top` without scores). The module docstring gives the colours, sizes and caption placement.
    """
    if captions is None:
        captions = "none"
    if captions not in CAPTIONS:
        raise ValueError(f"captions={captions!r}: expected one of {', '.join(map(repr, CAPTIONS))} or None")
    picture = Image.fromarray(load_image(image), "RGB")
    boxes = _boxes_array(boxes, "boxes")
    scores = None if scores is None else _per_box(_float_array(scores), "scores", boxes)
    object_names = None if object_names is None else _per_box(list(object_names), "object_names", boxes)
    attribute_names = None if attribute_names is None else _per_box(list(attribute_names), "attribute_names", boxes)
    shown_names = {"attributes": (attribute_names, object_names), "objects": (object_names,), "none": ()}[captions]
    show_scores = scores is not None and captions != "none"

    height, width = picture.height, picture.width
    line_width = default_line_width(height, width) if line_width is None else line_width
    font_size = default_font_size(height, width) if font_size is None else font_size
    if line_width < 1 or font_size < 1:
        raise ValueError(f"line_width={line_width}, font_size={font_size}: both must be >= 1")
    canvas = ImageDraw.Draw(picture)
    spans = {i: pixel_span(boxes[i], height, width) for i in kept_boxes(len(boxes), scores, top, min_score)}
    for i, span in spans.items():
        _draw_outline(canvas, span, box_color(i), line_width)
    for i, span in spans.items():
        words = [names[i] for names in shown_names if names is not None and names[i] is not None]
        if show_scores:
            words.append(f"{scores[i]:.2f}")
        if words:
            _draw_caption(canvas, " ".join(words), span, box_color(i), font_size, (height, width))
    return picture


def kept_boxes(count: int, scores: np.ndarray | None, top: int | None, min_score: float | None) -> list[int]:
    """Indices of the boxes `draw_regions` draws, ascending: those scoring >= min_score, then the `top` best
    of them (ties: the lower index; without scores the first `top`)."""
    kept = np.arange(count)
    if min_score is not None:
        if scores is None:
            raise ValueError(f"min_score={min_score} needs scores")
        kept = kept[scores[kept] >= min_score]
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 0:
            raise ValueError(f"top={top!r}: expected an integer >= 0")
        if scores is not None:
            kept = kept[np.argsort(-scores[kept], kind="stable")]
        kept = np.sort(kept[:top])
    return kept.tolist()


def _draw_outline(canvas, span, color, line_width) -> None:
    # Four filled bands inside the span (Pillow's own outline grows outside boxes thinner than the line).
    left, top, right, bottom = span
    thickness_x = min(line_width, right - left + 1)
    thickness_y = min(line_width, bottom - top + 1)
    canvas.rectangle((left, top, right, top + thickness_y - 1), fill=color)
    canvas.rectangle((left, bottom - thickness_y + 1, right, bottom), fill=color)
    canvas.rectangle((left, top, left + thickness_x - 1, bottom), fill=color)
    canvas.rectangle((right - thickness_x + 1, top, right, bottom), fill=color)


def caption_rectangle(
    span: tuple[int, int, int, int], size: tuple[int, int], image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Where a caption of (width, height) pixels goes for a box covering the pixel `span` (left, top, right,
    bottom, inclusive): (left, top, right, bottom), inclusive. Above the box if it fits, else inside at its
    top; then moved into the (H, W) image."""
    (caption_width, caption_height), (height, width) = size, image_size
    left, top = span[0], span[1] - caption_height
    if top < 0:
        top = span[1]
    left = max(0, min(left, width - caption_width))
    top = max(0, min(top, height - caption_height))
    return left, top, left + caption_width - 1, top + caption_height - 1


def caption_size(caption: str, font_size: int) -> tuple[int, int]:
    """(width, height) in pixels of the rectangle of a caption: the text's ink width and the font's line
    height, plus max(1, round(font_size / 5)) of padding on every side."""
    return _caption_layout(caption, font_size)[0]


def _caption_layout(caption: str, font_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The caption's rectangle size and where its text goes from the rectangle's top left."""
    font, pad = _font(font_size), max(1, round(font_size / 5))
    text_left, _, text_right, _ = font.getbbox(caption)
    # One height per font (from a string with ascenders and descenders), so that captions line up.
    _, line_top, _, line_bottom = font.getbbox("Ag|y")
    return (text_right - text_left + 2 * pad, line_bottom - line_top + 2 * pad), (pad - text_left, pad - line_top)


def _draw_caption(canvas, caption, span, color, font_size, image_size) -> None:
    size, (text_x, text_y) = _caption_layout(caption, font_size)
    left, top, _, _ = rectangle = caption_rectangle(span, size, image_size)
    canvas.rectangle(rectangle, fill=color)
    canvas.text((left + text_x, top + text_y), caption, fill=text_color(color), font=_font(font_size))


def pixel_span(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """The pixels a box outline is drawn on: (left, top, right, bottom) inclusive, inside the image; the
    covered pixels (module docstring), or the nearest row / column of them when the box covers none."""
    columns = _covered(box[0], box[2], width)
    rows = _covered(box[1], box[3], height)
    return columns[0], rows[0], max(columns[0], columns[1] - 1), max(rows[0], rows[1] - 1)


def _covered(start: float, end: float, size: int) -> tuple[int, int]:
    """First and past-the-end pixel whose centre lies in [start, end), clipped to [0, size]; the first stays
    a pixel of the image (< size) so that an empty span still has a place."""
    first = min(max(math.ceil(start - 0.5), 0), size - 1)
    return first, min(max(math.ceil(end - 0.5), first), size)


def box_color(index: int) -> tuple[int, int, int]:
    """The RGB colour of box `index`: hue index * 0.618... (mod 1), saturation and value cycling through
    a few levels."""
    hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = _SATURATIONS[index % len(_SATURATIONS)]
    value = _VALUES[index % len(_VALUES)]
    return tuple(round(channel * 255) for channel in colorsys.hsv_to_rgb(hue, saturation, value))


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher contrast ratio with `background` (WCAG 2 relative
    luminance: black when it is above about 0.18)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in np.asarray(background) / 255]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return BLACK if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else WHITE


def default_line_width(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 200))


def default_font_size(height: int, width: int) -> int:
    return max(10, round(min(height, width) / 30))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's own scalable font (>= 10.1); without FreeType it falls back to a fixed bitmap font.
    return ImageFont.load_default(size=size)


# ---------------------------------------------------------------------------------------------------
# Heat maps


def region_heatmap(boxes: Any, weights: Any, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32: every box (N, 4) x1 y1 x2 y2 adds its weight (N,) to the pixels it covers (centres in
    [x1, x2) x [y1, y2), clipped; module docstring). A box covering no pixel adds nothing. size: (H, W)."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size={tuple(size)}: expected (height, width), both >= 1")
    boxes = _boxes_array(boxes, "boxes")
    weights = _per_box(_float_array(weights), "weights", boxes)
    heat = np.zeros((height, width), dtype=np.float64)
    for box, weight in zip(boxes, weights, strict=True):
        left, right = _covered(box[0], box[2], width)
        top, bottom = _covered(box[1], box[3], height)
        heat[top:bottom, left:right] += weight
    return heat.astype(np.float32)


def colormap(values: Any) -> np.ndarray:
    """(...) values in [0, 1] -> (..., 3) uint8 RGB of the heat colour map (COLORMAP_COLORS, linear between
    control points, rounded). Values outside [0, 1] are clipped; NaN maps to 0."""
    values = np.nan_to_num(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0), nan=0.0)
    channels = [np.interp(values, COLORMAP_POINTS, COLORMAP_COLORS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def overlay_heatmap(image: ImageInput, heat: Any, *, alpha: float = 0.5) -> Image.Image:
    """A new RGB picture of `image` (anything load_image reads) under the heat map `heat` (H, W) of its size.

    With h = heat / max(heat) (negative values count as 0) and a = alpha * h per pixel, each pixel becomes
    round((1 - a) * image + a * colormap(h)): the hottest pixels are mixed `alpha` of the colour map, and
    pixels of zero heat, or every pixel when the heat is all zero, keep the image's exact values.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: expected a value in [0, 1]")
    pixels = load_image(image)
    heat = np.clip(_float_array(heat), 0.0, None)
    if heat.shape != pixels.shape[:2]:
        raise ValueError(
            f"heat has shape {heat.shape} but the image is {pixels.shape[:2]} (H, W); make it with "
            "region_heatmap(boxes, weights, size=(H, W))"
        )
    peak = heat.max(initial=0.0)
    if not np.isfinite(peak):
        raise ValueError("heat holds NaN or infinite values")
    if peak == 0:
        return Image.fromarray(pixels, "RGB")
    level = heat / peak
    weight = (alpha * level)[..., None]
    blended = (1.0 - weight) * pixels + weight * colormap(level)
    return Image.fromarray(np.rint(blended).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------------
# Figures


def text_panel(lines: Sequence[str], width: int, *, font_size: int | None = None) -> Image.Image:
    """A white band `width` pixels wide with `lines` in black, one under the other, each wrapped at spaces
    to fit (a single word wider than the band is cut at its edge). font_size: default max(12, round(width /
    40))."""
    if width < 1:
        raise ValueError(f"width={width}: expected >= 1")
    font_size = max(12, round(width / 40)) if font_size is None else font_size
    font = _font(font_size)
    margin = max(2, font_size // 2)
    _, line_top, _, line_bottom = font.getbbox("Ag|y")
    line_height = line_bottom - line_top + max(1, font_size // 4)
    rows = [row for line in lines for row in _wrap(str(line), font, width - 2 * margin)]
    panel = Image.new("RGB", (width, 2 * margin + max(1, len(rows)) * line_height), WHITE)
    canvas = ImageDraw.Draw(panel)
    for k, row in enumerate(rows):
        canvas.text((margin, margin + k * line_height - line_top), row, fill=BLACK, font=font)
    return panel


def _wrap(line: str, font, width: int) -> list[str]:
    rows, current = [], ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            rows.append(current)
            candidate = word
        current = candidate
    return [*rows, current]


def stack_vertically(images: Sequence[Image.Image], *, spacing: int = 0) -> Image.Image:
    """The images one under the other, left-aligned, `spacing` white pixels apart, on white."""
    if not images:
        raise ValueError("stack_vertically needs at least one image")
    height = sum(image.height for image in images) + spacing * (len(images) - 1)
    figure = Image.new("RGB", (max(image.width for image in images), height), WHITE)
    top = 0
    for image in images:
        figure.paste(image.convert("RGB"), (0, top))
        top += image.height + spacing
    return figure


def grid(images: Sequence[Image.Image], columns: int, *, spacing: int = 4) -> Image.Image:
    """The images in rows of `columns`, left to right, each in a cell as large as the largest image (at its
    top left), cells `spacing` white pixels apart."""
    if not images:
        raise ValueError("grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns={columns}: expected >= 1")
    cell_width = max(image.width for image in images)
    cell_height = max(image.height for image in images)
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    figure = Image.new(
        "RGB",
        (columns * cell_width + (columns - 1) * spacing, rows * cell_height + (rows - 1) * spacing),
        WHITE,
    )
    for k, image in enumerate(images):
        row, column = divmod(k, columns)
        figure.paste(image.convert("RGB"), (column * (cell_width + spacing), row * (cell_height + spacing)))
    return figure


# ---------------------------------------------------------------------------------------------------
# Inputs


def _float_array(values: Any) -> np.ndarray:
    """A float64 numpy array of a list, an array or a tensor on any device (without importing torch)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _boxes_array(boxes: Any, name: str) -> np.ndarray:
    array = _float_array(boxes)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} has shape {array.shape}: expected (N, 4) x1 y1 x2 y2")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite coordinates")
    return array


def _per_box(values, name: str, boxes: np.ndarray):
    shape = values.shape if isinstance(values, np.ndarray) else (len(values),)
    if shape != (len(boxes),):
        raise ValueError(f"{name} has shape {shape} but boxes has shape {boxes.shape}: expected one entry per box")
    return values
