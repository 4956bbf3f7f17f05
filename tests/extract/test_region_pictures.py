"""RegionFeatures remembers its image (`source`, the very object the extractor was given) and draws itself:
`draw()` on the source, in true colours for BGR arrays, and `_repr_png_` for notebooks.

The detector is the tiny fixture in the cheaper setting of tests/conftest.py (detector_dir); the images are
small synthetic ones, upscaled to its 300-pixel input.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from extract.extractor import SHOWN_BOXES, RegionFeatureExtractor, RegionFeatures
from extract.labels import class_names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def extractor(detector_dir) -> RegionFeatureExtractor:
    return RegionFeatureExtractor.from_pretrained(detector_dir)


def colour_image(height: int = 45, width: int = 60, seed: int = 0) -> np.ndarray:
    """Random colours: a channel swap (BGR read as RGB) changes nearly every pixel."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pixels(picture: Image.Image) -> np.ndarray:
    assert picture.mode == "RGB"
    return np.asarray(picture)


def test_source_is_the_very_object_given(extractor, tmp_path):
    array = colour_image()
    pil = Image.fromarray(colour_image(seed=1))
    path = tmp_path / "a.png"
    Image.fromarray(colour_image(seed=2)).save(path)
    data = path.read_bytes()
    tensor = torch.from_numpy(colour_image(seed=3))
    inputs = [array, pil, str(path), path, data, tensor]
    results = extractor(inputs)
    for given, regions in zip(inputs, results, strict=True):
        assert regions.source is given and regions.source_bgr is False
        assert "source" not in repr(regions)
    assert extractor(array)[0].source is array  # a single image too


def test_draw_defaults_to_the_source_and_repr_png_shows_the_best_boxes(extractor):
    array = colour_image(50, 70)
    regions = extractor(array)[0]
    assert len(regions) > SHOWN_BOXES
    assert (pixels(regions.draw()) == pixels(regions.draw(array))).all()
    assert (
        pixels(regions.draw(top=3, captions="objects")) == pixels(regions.draw(array, top=3, captions="objects"))
    ).all()

    png = regions._repr_png_()
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as shown:
        assert shown.format == "PNG" and shown.size == (70, 50)
        assert (np.asarray(shown.convert("RGB")) == pixels(regions.draw(array, top=SHOWN_BOXES))).all()


def test_bgr_arrays_are_drawn_in_true_colours(extractor):
    rgb = colour_image(seed=4)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    pil = Image.fromarray(rgb)
    from_bgr, from_pil = extractor([bgr, pil], bgr=True)  # bgr= applies to the array only
    assert from_bgr.source is bgr and from_bgr.source_bgr is True
    assert from_pil.source is pil and from_pil.source_bgr is False
    # top=0 draws no box: the picture is the image itself, as the detector saw it
    assert (pixels(from_bgr.draw(top=0)) == rgb).all()
    assert (pixels(from_pil.draw(top=0)) == rgb).all()
    assert (pixels(from_bgr.draw(top=5)) == pixels(from_pil.draw(top=5))).all()
    tensor_bgr = torch.from_numpy(bgr).permute(2, 0, 1)  # channels first
    assert (pixels(extractor(tensor_bgr, bgr=True)[0].draw(top=0)) == rgb).all()


def test_without_a_source_draw_asks_for_the_image_and_there_is_no_png():
    regions = RegionFeatures(
        rule="given",
        image_size=(20, 30),
        boxes=torch.tensor([[2.0, 3.0, 12.0, 15.0]]),
        features=torch.zeros(1, 3),
        object_ids=torch.tensor([0]),
        object_scores=torch.tensor([0.5]),
        attribute_ids=None,
        attribute_scores=None,
        proposal_index=torch.arange(1),
        object_vocabulary=class_names("objects", 1600),
    )
    assert regions.source is None
    with pytest.raises(ValueError, match=r"no source image .* pass the image they came from, regions.draw\(image\)"):
        regions.draw()
    assert regions._repr_png_() is None
    assert regions.draw(np.zeros((20, 30, 3), np.uint8)).size == (30, 20)


def test_a_source_file_replaced_by_another_size_is_refused(extractor, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(colour_image(40, 60)).save(path)
    regions = extractor(path)[0]
    assert regions.draw().size == (60, 40)
    Image.fromarray(colour_image(41, 60)).save(path)
    with pytest.raises(ValueError, match=r"now 41x60 .* in a 40x60 image \(was the file replaced\?\)"):
        regions.draw()
    path.unlink()
    with pytest.raises(ValueError, match="file not found"):
        regions._repr_png_()


def test_to_and_replace_keep_the_source_as_given(extractor):
    tensor = torch.from_numpy(colour_image(seed=5))
    regions = extractor(tensor)[0]
    moved = regions.to("meta")
    assert moved.boxes.device.type == "meta" and moved.features.device.type == "meta"
    assert moved.source is tensor and tensor.device.type == "cpu"
    assert dataclasses.replace(regions, source=None).source is None
    assert [f.name for f in dataclasses.fields(RegionFeatures)][-2:] == ["source", "source_bgr"]
