"""load_image on hostile input: decompression bombs raise ImageTooLargeError (an ImageLoadError; a server answers
413 to it) whose message quotes the limit in force, whichever check fires (ours, Pillow's warning threshold,
Pillow's error at twice its limit), and unreadable paths name the OS error."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from extract.image_errors import ImageLoadError, ImageTooLargeError
from extract.images import load_image
from extract.options import DEFAULT_MAX_IMAGE_PIXELS

PILLOW_DEFAULT = 1024 * 1024 * 1024 // 4 // 3  # Image.MAX_IMAGE_PIXELS as Pillow ships it


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: opening it reads only the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# Sizes around Pillow's shipped limit: above it Pillow warns, above twice it Pillow raises
# DecompressionBombError (whose message quoted 178956970, twice the limit, instead of the limit in force).
PILLOW_WARNS = (10_000, 10_000)  # 100,000,000 pixels
PILLOW_RAISES = (20_000, 10_000)  # 200,000,000 pixels


def lazy_pil_image(data: bytes) -> Image.Image:
    """The image as a caller who lifted Pillow's limit to open it would pass it: header read, pixels not."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(io.BytesIO(data))
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@pytest.fixture(autouse=True)
def pillows_shipped_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT)


@pytest.mark.parametrize("size", [PILLOW_WARNS, PILLOW_RAISES], ids=["pillow-warns", "pillow-raises"])
@pytest.mark.parametrize("limit", [None, 1000, PILLOW_DEFAULT // 2], ids=["default", "1000", "half-pillows"])
@pytest.mark.parametrize("form", ["file", "bytes", "PIL image"])
def test_bomb_messages_quote_the_limit_in_force_and_name_the_image(tmp_path, size, limit, form):
    data = png_header(*size)
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    image = {"file": path, "bytes": data, "PIL image": lazy_pil_image(data)}[form]
    kwargs = {} if limit is None else {"max_image_pixels": limit}
    in_force = DEFAULT_MAX_IMAGE_PIXELS if limit is None else limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's own, for 100 MP files
        with pytest.raises(ImageTooLargeError) as raised:
            load_image(image, **kwargs)
    message = str(raised.value)
    assert f"exceeds max_image_pixels={in_force} (decompression-bomb guard)" in message
    assert str(2 * PILLOW_DEFAULT) not in message  # Pillow's error threshold
    assert f"{size[0] * size[1]} pixels" in message
    name = {"file": repr(str(path)), "bytes": f"<{len(data)} bytes>", "PIL image": "<PIL image, mode RGB"}[form]
    assert message.startswith(f"cannot load image {name}")


def test_pillows_warning_turned_into_an_error_quotes_the_limit_in_force(tmp_path):
    # With warnings as errors (python -W error), Pillow's warning was reported as "truncated or corrupt
    # image data" quoting Pillow's limit.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(*PILLOW_WARNS))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError) as raised:
            load_image(path, max_image_pixels=1000)
    assert "100000000 pixels (the size its header declares) exceeds max_image_pixels=1000" in raised.value.reason


def test_pillows_check_while_decoding_a_frame_quotes_the_limit_in_force(monkeypatch):
    # Pillow also checks frames and tiles while decoding (GIF, TIFF, ICO, ...); its error says 2x its limit.
    def bomb_on_load(self):
        raise Image.DecompressionBombError(
            f"Image size (400000000 pixels) exceeds limit of {2 * PILLOW_DEFAULT} pixels, could be decompression "
            "bomb DOS attack."
        )

    encoded = io.BytesIO()
    Image.new("RGB", (4, 4)).save(encoded, format="PNG")
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", bomb_on_load)
    with pytest.raises(ImageTooLargeError) as raised:
        load_image(encoded.getvalue(), max_image_pixels=5000)
    assert raised.value.reason.startswith("400000000 pixels (one frame or tile) exceeds max_image_pixels=5000")


def test_a_raised_limit_decodes_what_pillows_own_would_refuse(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(*PILLOW_RAISES))
    with pytest.raises(ImageLoadError, match="truncated") as raised:  # past both checks: the header holds no pixels
        load_image(path, max_image_pixels=PILLOW_RAISES[0] * PILLOW_RAISES[1])
    assert not isinstance(raised.value, ImageTooLargeError)  # broken, not too large
    assert Image.MAX_IMAGE_PIXELS == PILLOW_DEFAULT


def test_pil_images_and_arrays_where_the_limit_applies():
    # A PIL image is checked like a file (its pixels may not be decoded yet); an array is already decoded.
    with pytest.raises(ImageTooLargeError, match="2x3 = 6 pixels exceeds max_image_pixels=5"):
        load_image(Image.new("RGB", (2, 3)), max_image_pixels=5)
    assert load_image(Image.new("RGB", (2, 3)), max_image_pixels=6).shape == (3, 2, 3)
    assert load_image(np.zeros((3, 2, 3), np.uint8), max_image_pixels=5).shape == (3, 2, 3)


@pytest.mark.parametrize("limit", [0, -1, 2.5, "100"])
def test_a_bad_limit_is_refused(limit):
    with pytest.raises(ValueError, match=f"max_image_pixels={limit!r}: expected None"):
        load_image(np.zeros((2, 2, 3), np.uint8), max_image_pixels=limit)


def reason(path) -> str:
    with pytest.raises(ImageLoadError) as raised:
        load_image(path)
    assert repr(os.fspath(path)) in str(raised.value)  # the message names the path
    return raised.value.reason


def test_unreadable_paths_name_the_os_error(tmp_path):
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    assert reason(loop) == "symlink loop (too many levels of symbolic links)"  # was "file not found"
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "gone.jpg")
    assert reason(dangling) == "file not found (a symlink to a missing file)"
    assert reason(tmp_path / "missing.jpg") == "file not found"
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(b"x")
    assert reason(plain / "a.jpg") == "Not a directory"  # was "file not found"
    assert reason(str(tmp_path / ("x" * 300))) == "File name too long"
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    assert reason(fifo) == "not a regular file (a FIFO, socket or device)"  # was "the file is empty (0 bytes)"
    assert reason(str(tmp_path / "a\0b.jpg")) == "invalid path (embedded null byte)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_file_without_read_permission_names_the_os_error(tmp_path):
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (2, 2)).save(path, format="JPEG")
    path.chmod(0)
    assert reason(path) == "Permission denied"  # was "not an image format Pillow can decode"


def test_a_symlink_to_an_image_still_loads(tmp_path):
    target = tmp_path / "real.png"
    Image.new("RGB", (3, 2), (1, 2, 3)).save(target)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert load_image(link).reshape(-1, 3).tolist() == [[1, 2, 3]] * 6
