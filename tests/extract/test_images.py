"""load_image: detectron2 decoding parity, every input form, orientation, modes, limits, errors.

Reference: tests/fixtures/detectron2-vg-tiny/<image>.npz (detectron2 read_image(format="BGR") with
Pillow 13.0.0); tolerance 0 (SHA-256 of the whole decoded array).
"""

import hashlib
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURES
from PIL import Image

from extract.image_errors import ImageLoadError
from extract.images import load_image
from extract.options import DEFAULT_MAX_IMAGE_PIXELS

DETECTRON2 = FIXTURES / "detectron2-vg-tiny"
IMAGES = FIXTURES / "images"
FIXTURE_IMAGES = ["000456", "000542", "COCO_train2014_000000131486", "input"]


def sha256_of_bgr(rgb: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(rgb[:, :, ::-1]).tobytes()).digest()


@pytest.mark.parametrize("name", FIXTURE_IMAGES)
def test_decoding_matches_detectron2(name):
    reference = np.load(DETECTRON2 / f"{name}.npz")
    rgb = load_image(IMAGES / f"{name}.jpg")
    assert rgb.shape == (*reference["image_hw"].tolist(), 3)
    assert sha256_of_bgr(rgb) == reference["image_bgr_sha256"].tobytes()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(IMAGES / "000456.jpg")


def test_result_is_a_fresh_contiguous_uint8_rgb_array(photo):
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert photo.flags.c_contiguous and photo.flags.writeable
    again = load_image(photo)
    assert not np.shares_memory(again, photo)


def test_every_input_form_gives_the_same_array(photo):
    path = IMAGES / "000456.jpg"
    encoded = path.read_bytes()
    chw = torch.from_numpy(photo).permute(2, 0, 1)
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 7, np.uint8)], axis=2)
    forms = {
        "str path": str(path),
        "pathlib.Path": path,
        "bytes": encoded,
        "bytearray": bytearray(encoded),
        "memoryview": memoryview(encoded),
        "PIL image": Image.open(io.BytesIO(encoded)),
        "numpy RGB": photo,
        "numpy RGBA": rgba,
        "torch CHW uint8": chw,
        "torch HWC uint8": chw.permute(1, 2, 0),
        "torch CHW float in [0, 1]": chw.float() / 255,
        "torch CHW float16 in [0, 1]": (chw.float() / 255).half(),
        "numpy float64 in [0, 1]": photo / 255.0,
    }
    for form, image in forms.items():
        np.testing.assert_array_equal(load_image(image), photo, err_msg=form)
    np.testing.assert_array_equal(load_image(np.ascontiguousarray(photo[:, :, ::-1]), bgr=True), photo)
    np.testing.assert_array_equal(load_image(chw.flip(0), bgr=True), photo)
    np.testing.assert_array_equal(load_image(rgba[:, :, [2, 1, 0, 3]], bgr=True), photo)


# Orientation tag -> the same transform written with numpy (EXIF 2.3 orientation semantics).
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # stored image must be turned 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:8, :16] = (255, 0, 0)  # a red block in the top-left corner makes every transform visible
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "oriented.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    with Image.open(path) as raw:
        as_stored = np.array(raw.convert("RGB"))
    expected = ORIENTATIONS[orientation](as_stored)

    np.testing.assert_array_equal(load_image(path), expected)
    np.testing.assert_array_equal(load_image(path.read_bytes()), expected)
    with Image.open(path) as user_image:
        np.testing.assert_array_equal(load_image(user_image), expected)
        assert user_image.getexif().get(0x0112) == orientation  # the caller's image is untouched


def pixels(image: Image.Image) -> list:
    return load_image(image).reshape(-1, 3).tolist()


def test_grayscale_becomes_three_equal_channels():
    assert pixels(Image.fromarray(np.array([[0, 77, 255]], np.uint8))) == [[0] * 3, [77] * 3, [255] * 3]


def test_alpha_is_dropped_without_compositing(tmp_path):
    rgba = np.array([[[200, 100, 50, 0], [10, 20, 30, 128], [1, 2, 3, 255]]], np.uint8)
    assert pixels(Image.fromarray(rgba)) == [[200, 100, 50], [10, 20, 30], [1, 2, 3]]
    path = tmp_path / "transparent.png"
    Image.fromarray(rgba).save(path)
    assert load_image(path).reshape(-1, 3).tolist() == [[200, 100, 50], [10, 20, 30], [1, 2, 3]]
    assert pixels(Image.new("LA", (1, 1), (77, 0))) == [[77, 77, 77]]


@pytest.mark.parametrize("transparency", [0, bytes([0, 255])])
def test_palette_colours_are_kept_and_transparency_dropped_quietly(transparency):
    palette_image = Image.fromarray(np.array([[0, 1, 1]], np.uint8), mode="P")
    palette_image.putpalette([10, 20, 30, 200, 100, 50])
    palette_image.info["transparency"] = transparency
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pixels(palette_image) == [[10, 20, 30], [200, 100, 50], [200, 100, 50]]


def test_cmyk_uses_pillows_plain_conversion():
    # No colour management: R = 255 - C - K style arithmetic, here pure magenta.
    assert pixels(Image.new("CMYK", (1, 1), (0, 255, 0, 0))) == [[255, 0, 255]]


def test_sixteen_bit_is_divided_by_257_not_clipped(tmp_path):
    values = np.array([[0, 257, 65535, 128, 129, 32896]], np.uint16)
    expected = [0, 1, 255, 0, 1, 128]  # round(v / 257): 128/257 = 0.498, 129/257 = 0.502
    sixteen_bit = Image.fromarray(values)
    assert sixteen_bit.mode == "I;16"
    assert [p[0] for p in pixels(sixteen_bit)] == expected
    path = tmp_path / "sixteen.png"
    sixteen_bit.save(path)
    assert load_image(path)[0, :, 1].tolist() == expected
    assert load_image(values)[0, :, 2].tolist() == expected
    assert load_image(torch.from_numpy(values))[0, :, 0].tolist() == expected


def test_32_bit_integer_mode_is_read_as_16_bit_levels_and_clipped():
    image = Image.fromarray(np.array([[-5, 257, 70000]], np.int32))
    assert image.mode == "I"
    assert [p[0] for p in pixels(image)] == [0, 1, 255]


def test_float_mode_and_one_bit_follow_pillow():
    floats = Image.fromarray(np.array([[0.0, 100.0, 300.0, -5.0]], np.float32))
    assert [p[0] for p in pixels(floats)] == [0, 100, 255, 0]
    one_bit = Image.fromarray(np.array([[True, False]]))
    assert one_bit.mode == "1"
    assert pixels(one_bit) == [[255] * 3, [0] * 3]


def test_array_dtypes_and_layouts():
    gray = np.array([[0, 128, 255, 3, 9]], np.uint8)
    expected = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(load_image(gray), expected)
    np.testing.assert_array_equal(load_image(gray[:, :, None]), expected)
    np.testing.assert_array_equal(load_image(torch.from_numpy(gray)[None]), expected)  # 1xHxW
    np.testing.assert_array_equal(load_image(np.array([[True, False]])), [[[255] * 3, [0] * 3]])
    # floats: x * 255 rounded half up
    floats = np.array([[0.0, 0.5, 1.0, 0.1]])
    np.testing.assert_array_equal(load_image(floats)[0, :, 0], [0, 128, 255, 26])


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.full((2, 2, 3), 12.0), "[0, 1]"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.zeros((2, 2, 3), np.int64), "astype(np.uint8)"),
        (np.zeros((2, 2, 2), np.uint8), "HxWx3"),
        (np.zeros((1, 2, 2, 3), np.uint8), "HxWx3"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (torch.zeros(3, 5, 3, dtype=torch.uint8), "both as CxHxW and as HxWxC"),
        (torch.full((3, 4, 5), 2.0), "[0, 1]"),
    ],
)
def test_unusable_arrays_are_refused_with_the_fix(image, words):
    with pytest.raises(ImageLoadError, match="shape") as raised:
        load_image(image)
    assert words in str(raised.value)


def write_png(path: Path, height: int, width: int) -> Path:
    Image.new("RGB", (width, height), (9, 8, 7)).save(path)
    return path


def test_decompression_bomb_limit(tmp_path):
    path = write_png(tmp_path / "hundred.png", 100, 100)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    assert DEFAULT_MAX_IMAGE_PIXELS == pillow_limit  # Pillow's shipped default

    with pytest.raises(ImageLoadError, match="max_image_pixels=9999") as raised:
        load_image(path, max_image_pixels=9999)
    assert "hundred.png" in str(raised.value) and "100x100" in str(raised.value)
    with pytest.raises(ImageLoadError, match="max_image_pixels"):
        load_image(path.read_bytes(), max_image_pixels=50)
    assert load_image(path, max_image_pixels=10_000).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_a_raised_limit_overrides_pillows_and_restores_it(tmp_path, monkeypatch):
    path = write_png(tmp_path / "hundred.png", 100, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 10,000 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    assert load_image(path, max_image_pixels=None).shape == (100, 100, 3)
    assert load_image(path).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.jpg"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((IMAGES / "000456.jpg").read_bytes()[:30_000])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    cases = {
        missing: "file not found",
        empty: "empty (0 bytes)",
        truncated: "truncated",
        text: "not an image format",
        tmp_path: "directory",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError) as raised:
            load_image(path)
        assert str(path) in str(raised.value), path
        assert reason in raised.value.reason, path


@pytest.mark.parametrize("url", ["http://example.com/a.jpg", "https://example.com/a.jpg", "s3://bucket/a.jpg"])
def test_urls_are_not_fetched(url):
    with pytest.raises(ImageLoadError, match="URLs are not fetched by load_image") as raised:
        load_image(url)
    assert url in str(raised.value)


def test_bad_bytes_and_bad_arguments():
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="not an image format"):
        load_image(b"GIF89a but not really")
    jpeg = (IMAGES / "000456.jpg").read_bytes()
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(jpeg[:30_000])
    with pytest.raises(TypeError, match="got int"):
        load_image(3)
    with pytest.raises(ValueError, match="bgr=True only applies"):
        load_image(IMAGES / "000456.jpg", bgr=True)


def test_image_load_error_is_a_value_error_and_pickles():
    error = ImageLoadError("'a.jpg'", "file not found")
    assert isinstance(error, ValueError)
    assert str(error) == "cannot load image 'a.jpg': file not found"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.reason, str(copy)) == (error.source, error.reason, str(error))
