"""extract.draw: boxes and captions on pixels we can predict, heat maps against hand-computed sums, and the
methods of RegionFeatures and FeatureRecord."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import IMAGES
from PIL import Image

import extract
from extract.draw import (
    box_color,
    caption_rectangle,
    caption_size,
    colormap,
    draw_regions,
    grid,
    kept_boxes,
    overlay_heatmap,
    region_heatmap,
    stack_vertically,
    text_color,
    text_panel,
)
from extract.extractor import RegionFeatures
from extract.images import load_image
from extract.labels import class_names
from extract.store import FeatureRecord

GRAY = (128, 128, 128)
# Two boxes on a 200 x 300 gray image: A covers columns 20..119 and rows 60..149, B columns 150..279 and
# rows 40..179 (pixel centres in [x1, x2) x [y1, y2)).
BOXES = np.array([[20.0, 60.0, 120.0, 150.0], [150.0, 40.0, 280.0, 180.0]])


def gray_image(height: int = 200, width: int = 300) -> np.ndarray:
    return np.full((height, width, 3), GRAY, dtype=np.uint8)


def noise_image(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def exact_color_bbox(picture: np.ndarray, color) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), inclusive, of the pixels of exactly `color`."""
    rows, columns = np.nonzero((picture == color).all(axis=-1))
    return columns.min(), rows.min(), columns.max(), rows.max()


# ---------------------------------------------------------------------------------------------------
# Boxes


def test_box_edges_have_their_box_color():
    picture = pixels(draw_regions(gray_image(), BOXES, object_names=["cat", "dog"], scores=[0.9, 0.8]))
    assert picture.shape == (200, 300, 3)
    for i, (left, top, right, bottom) in enumerate([(20, 60, 119, 149), (150, 40, 279, 179)]):
        color = box_color(i)
        # line width max(1, round(200 / 200)) = 1; the captions lie above the boxes, outside them
        assert (picture[bottom, left : right + 1] == color).all()
        assert (picture[top, left : right + 1] == color).all()
        assert (picture[top : bottom + 1, left] == color).all()
        assert (picture[top : bottom + 1, right] == color).all()
        assert (picture[bottom + 1, left : right + 1] == GRAY).all()  # just outside
        assert (picture[top + 1 : bottom, left + 1 : right] == GRAY).all()  # the inside
    assert box_color(0) != box_color(1)


def test_line_width_draws_inside_the_box():
    picture = pixels(draw_regions(gray_image(), BOXES[:1], line_width=3, captions=None))
    color = box_color(0)
    assert (picture[147:150, 20:120] == color).all() and (picture[146, 23:117] == GRAY).all()
    assert (picture[60:150, 117:120] == color).all() and (picture[63:147, 116] == GRAY).all()
    assert (picture[150] == GRAY).all() and (picture[:, 120] == GRAY).all()


def test_default_sizes_scale_with_the_image():
    big = pixels(draw_regions(gray_image(800, 1000), BOXES[:1] * 4, captions="none"))
    # line width round(800 / 200) = 4: rows 596..599 of the bottom edge, not 595
    assert (big[596:600, 100:400] == box_color(0)).all() and (big[595, 100:400] == GRAY).all()


def test_colors_are_deterministic_and_distinct():
    colors = np.array([box_color(i) for i in range(20)], dtype=float)
    distances = np.linalg.norm(colors[:, None] - colors[None, :], axis=-1)
    assert distances[~np.eye(20, dtype=bool)].min() > 30
    assert all(isinstance(c, int) and 0 <= c <= 255 for i in range(20) for c in box_color(i))
    assert text_color((250, 230, 40)) == (0, 0, 0) and text_color((20, 20, 160)) == (255, 255, 255)


def test_captions_stay_inside_the_image():
    corners = np.array([[0.0, 0.0, 40.0, 30.0], [260.0, 170.0, 300.0, 200.0]])
    names = ["cat", "dog"]
    picture = pixels(
        draw_regions(gray_image(), corners, object_names=names, attribute_names=["black", "white"], scores=[0.93, 0.5])
    )
    # top-left box: no room above, so the caption lies inside the box at its top
    width, height = caption_size("black cat 0.93", 10)  # font size max(10, round(200 / 30))
    assert 40 < width < 300 and height < 30
    assert exact_color_bbox(picture, box_color(0)) == (0, 0, max(39, width - 1), 29)
    # bottom-right box: above it, its right end pushed back to the image's right edge
    width, height = caption_size("white dog 0.50", 10)
    assert exact_color_bbox(picture, box_color(1)) == (min(260, 300 - width), 170 - height, 299, 199)
    # text is drawn on the caption in the contrasting colour (anti-aliased: within 16 levels of it)
    width, height = caption_size("black cat 0.93", 10)
    text = np.abs(picture[:height, :width].astype(int) - text_color(box_color(0))).max(axis=-1) <= 16
    assert text.sum() > 20


def test_caption_rectangle_rule():
    image_size = (200, 300)
    assert caption_rectangle((20, 60, 119, 149), (50, 14), image_size) == (20, 46, 69, 59)  # above
    assert caption_rectangle((20, 10, 119, 149), (50, 14), image_size) == (20, 10, 69, 23)  # inside, top
    assert caption_rectangle((280, 100, 299, 120), (50, 14), image_size) == (250, 86, 299, 99)  # pushed left
    assert caption_rectangle((0, 195, 5, 199), (50, 14), image_size) == (0, 181, 49, 194)
    assert caption_rectangle((0, 0, 0, 0), (50, 14), (10, 20)) == (0, 0, 49, 13)  # larger than the image


def test_top_and_min_score_drop_the_right_boxes():
    boxes = np.array([[10.0, 10.0, 60.0, 60.0], [100.0, 10.0, 150.0, 60.0], [200.0, 10.0, 250.0, 60.0]])
    scores = np.array([0.2, 0.9, 0.5])

    def drawn(picture):
        return [bool((picture[59, left : left + 50] == box_color(i)).all()) for i, left in enumerate((10, 100, 200))]

    assert drawn(pixels(draw_regions(gray_image(), boxes, scores=scores))) == [True, True, True]
    picture = pixels(draw_regions(gray_image(), boxes, scores=scores, top=2))
    assert drawn(picture) == [False, True, True] and (picture[59, 10:60] == GRAY).all()
    picture = pixels(draw_regions(gray_image(), boxes, scores=scores, min_score=0.6))
    assert drawn(picture) == [False, True, False] and (picture[59, 200:250] == GRAY).all()
    assert drawn(pixels(draw_regions(gray_image(), boxes, scores=scores, min_score=0.3, top=1))) == [False, True, False]
    assert drawn(pixels(draw_regions(gray_image(), boxes, top=1))) == [True, False, False]  # no scores: first
    assert (pixels(draw_regions(gray_image(), boxes, scores=scores, top=0)) == GRAY).all()


def test_kept_boxes_rule():
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert kept_boxes(4, scores, top=2, min_score=None) == [0, 1]  # a tie goes to the lower index
    assert kept_boxes(4, scores, top=None, min_score=0.5) == [0, 1, 2]
    assert kept_boxes(4, scores, top=5, min_score=0.2) == [0, 1, 2]
    assert kept_boxes(4, None, top=3, min_score=None) == [0, 1, 2]
    assert kept_boxes(0, None, top=3, min_score=None) == []


def test_no_boxes_tiny_images_and_degenerate_boxes():
    assert (pixels(draw_regions(gray_image(), np.zeros((0, 4)), scores=[])) == GRAY).all()
    assert (pixels(draw_regions(gray_image(), [])) == GRAY).all()
    tiny = draw_regions(gray_image(1, 1), [[0.0, 0.0, 1.0, 1.0]], object_names=["cat"], scores=[0.5])
    assert tiny.size == (1, 1) and tiny.mode == "RGB"
    degenerate = np.array([[50.0, 50.0, 50.0, 50.0], [10.0, 5.0, 10.0, 40.0], [400.0, 300.0, 500.0, 350.0]])
    picture = pixels(draw_regions(gray_image(), degenerate, scores=[0.1, 0.2, 0.3], captions="none"))
    assert (picture[50, 50] == box_color(0)).all()  # a point
    assert (picture[5:40, 10] == box_color(1)).all() and (picture[5:40, 11] == GRAY).all()  # a line
    assert (picture[199, 299] == box_color(2)).all()  # outside: clipped onto the corner


def test_mismatched_lengths_and_bad_options_name_the_argument():
    image = gray_image()
    with pytest.raises(ValueError, match=r"scores has shape \(3,\) but boxes has shape \(2, 4\)"):
        draw_regions(image, BOXES, scores=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"object_names has shape \(1,\)"):
        draw_regions(image, BOXES, object_names=["cat"])
    with pytest.raises(ValueError, match=r"attribute_names has shape \(3,\)"):
        draw_regions(image, BOXES, attribute_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"boxes has shape \(2, 3\)"):
        draw_regions(image, BOXES[:, :3])
    with pytest.raises(ValueError, match="captions='fancy'"):
        draw_regions(image, BOXES, captions="fancy")
    with pytest.raises(ValueError, match="min_score=0.5 needs scores"):
        draw_regions(image, BOXES, min_score=0.5)
    with pytest.raises(ValueError, match="top=-1"):
        draw_regions(image, BOXES, top=-1)
    with pytest.raises(ValueError, match=r"weights has shape \(1,\)"):
        region_heatmap(BOXES, [1.0], (200, 300))


def test_inputs_are_not_modified_and_all_kinds_agree(tmp_path):
    array = noise_image()
    original = array.copy()
    path = tmp_path / "noise.png"
    Image.fromarray(array).save(path)
    boxes = [[5.0, 20.0, 40.0, 50.0], [30.0, 10.0, 70.0, 45.0]]
    options = {"object_names": ["cat", "mat"], "attribute_names": ["black", None], "scores": [0.93, 0.41]}
    from_array = pixels(draw_regions(array, boxes, **options))
    assert (array == original).all() and not (from_array == original).all()
    pil = Image.fromarray(array)
    assert (pixels(draw_regions(pil, boxes, **options)) == from_array).all()
    assert (np.asarray(pil) == original).all()
    assert (pixels(draw_regions(path, boxes, **options)) == from_array).all()
    assert (pixels(draw_regions(str(path), boxes, **options)) == from_array).all()
    tensors = {**options, "scores": torch.tensor([0.93, 0.41], requires_grad=True)}
    assert (pixels(draw_regions(array, torch.tensor(boxes), **tensors)) == from_array).all()


def test_caption_kinds():
    options = {"object_names": ["cat"], "attribute_names": ["black"], "scores": [0.93]}
    box = [[100.0, 100.0, 110.0, 150.0]]  # narrower than any caption

    def caption_bbox(**changes):
        return exact_color_bbox(pixels(draw_regions(gray_image(), box, **(options | changes))), box_color(0))

    assert caption_bbox()[0:3:2] == (100, 100 + caption_size("black cat 0.93", 10)[0] - 1)
    assert caption_bbox(captions="objects")[0:3:2] == (100, 100 + caption_size("cat 0.93", 10)[0] - 1)
    assert caption_bbox(attribute_names=[None])[0:3:2] == (100, 100 + caption_size("cat 0.93", 10)[0] - 1)
    assert caption_bbox(captions="none") == (100, 100, 109, 149)
    assert caption_bbox(scores=None, attribute_names=None) == caption_bbox(captions="objects", scores=None)


# ---------------------------------------------------------------------------------------------------
# Heat maps


def test_region_heatmap_sums_weights_over_covered_pixels():
    boxes = [[0.0, 0.0, 6.0, 5.0], [4.0, 2.0, 12.0, 10.0], [0.4, 7.6, 2.5, 9.4]]
    heat = region_heatmap(torch.tensor(boxes), np.array([1.0, 2.5, 0.5]), (10, 12))
    assert heat.shape == (10, 12) and heat.dtype == np.float32
    assert heat[0, 0] == 1.0 and heat[9, 11] == 2.5 and heat[9, 3] == 0.0
    assert heat[3, 5] == 3.5 and heat.max() == 3.5  # covered by the first two boxes
    rows, columns = np.nonzero(heat == heat.max())
    assert rows.min() >= 2 and rows.max() <= 4 and columns.min() >= 4 and columns.max() <= 5
    # the fractional box covers the pixels whose centres lie in [0.4, 2.5) x [7.6, 9.4): columns 0, 1; rows 8
    expected = np.zeros((10, 12), dtype=np.float32)
    expected[0:5, 0:6] += 1.0
    expected[2:10, 4:12] += 2.5
    expected[8, 0:2] += 0.5
    assert (heat == expected).all()
    clipped = region_heatmap([[-5.0, -5.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]], [1.0, 9.0], (10, 12))
    assert clipped.sum() == 30.0 and (clipped[:, :3] == 1.0).all()  # the zero-area box adds nothing
    assert region_heatmap(np.zeros((0, 4)), [], (3, 4)).shape == (3, 4)


def test_colormap_endpoints_and_rising_luma():
    assert colormap(0.0).tolist() == [40, 10, 70] and colormap(1.0).tolist() == [250, 230, 40]
    assert colormap(-3.0).tolist() == [40, 10, 70] and colormap(np.nan).tolist() == [40, 10, 70]
    colors = colormap(np.linspace(0, 1, 64))
    assert colors.shape == (64, 3) and colors.dtype == np.uint8
    luma = colors.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(luma) > 0).all()
    assert colormap(np.zeros((2, 3))).shape == (2, 3, 3)


def test_overlay_heatmap_blends_by_heat():
    image = noise_image(10, 12)
    zero = overlay_heatmap(image, np.zeros((10, 12)))
    assert zero.mode == "RGB" and (pixels(zero) == image).all()
    heat = region_heatmap([[0.0, 0.0, 6.0, 5.0], [4.0, 2.0, 12.0, 10.0]], [1.0, 2.5], (10, 12))
    blended = pixels(overlay_heatmap(image, heat, alpha=0.6)).astype(int)
    assert (blended[heat == 0] == image[heat == 0]).all()
    hottest = np.rint(0.4 * image[3, 5] + 0.6 * colormap(1.0)).astype(int)
    assert (blended[3, 5] == hottest).all()
    level = 1.0 / 3.5  # a pixel of the first box only: heat 1 of a maximum 3.5
    expected = np.rint((1 - 0.6 * level) * image[0, 0] + 0.6 * level * colormap(level)).astype(int)
    assert (blended[0, 0] == expected).all()
    assert (pixels(overlay_heatmap(image, heat, alpha=0.0)) == image).all()
    with pytest.raises(ValueError, match=r"heat has shape \(5, 5\) but the image is \(10, 12\)"):
        overlay_heatmap(image, np.ones((5, 5)))
    with pytest.raises(ValueError, match="alpha=1.5"):
        overlay_heatmap(image, heat, alpha=1.5)


# ---------------------------------------------------------------------------------------------------
# Figures


def test_text_panel_and_layouts():
    panel = text_panel(["Q: what color is the cat?", "A: black 0.93"], 300)
    assert panel.mode == "RGB" and panel.width == 300
    values = pixels(panel)
    assert (values[0] == 255).all() and (values.sum(axis=-1) == 0).any()
    wrapped = text_panel(["word " * 40], 300)
    assert wrapped.height > panel.height
    assert text_panel([], 50).size[0] == 50
    red, blue = Image.new("RGB", (30, 20), (255, 0, 0)), Image.new("RGB", (10, 40), (0, 0, 255))
    figure = pixels(grid([red, blue, red], columns=2, spacing=4))
    assert figure.shape == (40 + 4 + 40, 30 + 4 + 30, 3)
    assert (figure[0, 0] == (255, 0, 0)).all() and (figure[39, 34] == (0, 0, 255)).all()
    assert (figure[0, 44] == 255).all() and (figure[44, 29] == (255, 0, 0)).all()
    stacked = stack_vertically([red, blue])
    assert stacked.size == (30, 60) and (pixels(stacked)[59, 9] == (0, 0, 255)).all()
    assert (pixels(stacked)[59, 10] == 255).all() and stack_vertically([red, red], spacing=3).size == (30, 43)


# ---------------------------------------------------------------------------------------------------
# Methods and exports


def test_region_features_draw_uses_its_names_and_scores():
    regions = RegionFeatures(
        rule="given",
        image_size=(200, 300),
        boxes=torch.tensor(BOXES, dtype=torch.float32),
        features=torch.zeros(2, 3),
        object_ids=torch.tensor([0, 2]),
        object_scores=torch.tensor([0.5, 0.25]),
        attribute_ids=torch.tensor([1, 0]),
        attribute_scores=torch.tensor([0.7, 0.6]),
        proposal_index=torch.arange(2),
        object_vocabulary=class_names("objects", 1600),
        attribute_vocabulary=class_names("attributes", 400),
    )
    expected = draw_regions(
        gray_image(),
        BOXES,
        object_names=regions.object_names,
        attribute_names=regions.attribute_names,
        scores=[0.5, 0.25],
    )
    assert (pixels(regions.draw(gray_image())) == pixels(expected)).all()
    boxes_only = draw_regions(gray_image(), BOXES, captions=None)
    assert (pixels(regions.draw(gray_image(), captions=None)) == pixels(boxes_only)).all()


def test_feature_record_draw_names_its_ids():
    def record(object_ids, attribute_ids):
        return FeatureRecord(
            id="cat",
            height=200,
            width=300,
            features=np.zeros((2, 4), dtype=np.float32),
            boxes=BOXES.astype(np.float32),
            normalized_boxes=None,
            object_ids=np.array(object_ids),
            object_scores=np.array([0.5, 0.25], dtype=np.float32),
            attribute_ids=np.array(attribute_ids),
            attribute_scores=np.array([0.7, 0.0], dtype=np.float32),
        )

    objects, attributes = class_names("objects", 1600), class_names("attributes", 400)
    expected = draw_regions(
        gray_image(),
        BOXES,
        object_names=[objects[0], objects[2]],
        attribute_names=[attributes[3], None],
        scores=[0.5, 0.25],
    )
    assert (pixels(record([0, 2], [3, -1]).draw(gray_image())) == pixels(expected)).all()
    generic = draw_regions(
        gray_image(),
        BOXES,
        object_names=["class_0", "class_1700"],
        attribute_names=[attributes[3], None],
        scores=[0.5, 0.25],
    )
    assert (pixels(record([0, 1700], [3, -1]).draw(gray_image())) == pixels(generic)).all()


def test_lazy_exports():
    assert extract.draw_regions is draw_regions and extract.colormap is colormap
    assert extract.region_heatmap is region_heatmap and extract.overlay_heatmap is overlay_heatmap


def test_a_real_image():
    path = IMAGES / "000456.jpg"
    array = load_image(path)
    height, width = array.shape[:2]
    boxes = np.array([[0.0, 0.0, width / 2, height / 2], [width / 3, height / 3, width, height]])
    options = {"object_names": ["sky", "dog"], "attribute_names": ["blue", "brown"], "scores": [0.8, 0.6]}
    picture = draw_regions(path, boxes, **options)
    assert picture.size == (width, height)
    values = pixels(picture)
    line = max(1, round(min(height, width) / 200))
    assert (values[height - line : height, width // 2 : width] == box_color(1)).all()
    with Image.open(path) as opened:
        assert (pixels(draw_regions(opened, boxes, **options)) == values).all()
    heat = region_heatmap(boxes, [1.0, 2.0], (height, width))
    overlay = pixels(overlay_heatmap(path, heat))
    assert overlay.shape == array.shape and not (overlay == array).all()
