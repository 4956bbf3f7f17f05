"""Turn any image input into one C-contiguous (H, W, 3) uint8 RGB array.

This is the only module that decodes with Pillow. It does what detectron2's
``read_image(path, format="BGR")`` does before its channel flip: Pillow decode, EXIF orientation
applied, conversion to 8-bit RGB. The flip to BGR happens once, in ``extract.preprocessing.normalize``.

Conversions, and where they differ from a plain ``Image.convert("RGB")``:

- alpha (RGBA, LA, PA, HxWx4 arrays) is dropped without compositing onto any background, as
  detectron2 / Pillow do: a fully transparent pixel keeps whatever colour it stores (often black);
- palette images (P, PA) take their palette colours; their transparency is dropped like alpha;
- 16-bit images (I;16*) and 32-bit integer images (I) are read as 16-bit levels and mapped to
  8 bits by ``round(v / 257)`` (so 65535 -> 255, 257 * k -> k) after clipping to [0, 65535].
  Pillow's own ``convert("RGB")`` clips them at 255 instead, which turns most 16-bit photos white;
  this is a deliberate difference from detectron2 for such files;
- CMYK, YCbCr, 1-bit (0/255), F (float levels 0..255, as Pillow converts them) and the other
  modes go through Pillow's ``convert("RGB")`` unchanged (CMYK without colour management);
- animated or multi-page files give their first frame.

Arrays and tensors follow one rule, whatever the container: uint8 is 0..255, uint16 is 16-bit
levels (divided by 257 as above), bool is 0/255, floats must lie in [0, 1] (torchvision's
convention) and are mapped by ``floor(x * 255 + 0.5)``. A float image in 0..255 is refused
rather than guessed at; other integer dtypes are refused too (cast to uint8 if they hold 0..255).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import threading
from collections.abc import Iterator
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .image_errors import ImageLoadError, ImageTooLargeError, os_error_reason
from .options import DEFAULT_MAX_IMAGE_PIXELS

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray | torch.Tensor

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Raising the pixel limit means changing Pillow's module-level MAX_IMAGE_PIXELS for the duration
# of one decode; the lock keeps two of our own calls from restoring each other's value.
_PILLOW_LIMIT_LOCK = threading.Lock()


def load_image(
    image: ImageInput,
    *,
    bgr: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode, orient and convert ``image`` to a C-contiguous (H, W, 3) uint8 RGB array.

    ``image`` may be a file path (str or os.PathLike), encoded file contents (bytes, bytearray,
    memoryview), a PIL image, a numpy array (HxW, HxWx1, HxWx3 or HxWx4; RGB(A) unless
    ``bgr=True`` says BGR(A)) or a torch tensor (same layouts, or channels first: CxHxW with C in
    1, 3, 4; a shape that reads both ways, such as 3x5x3, is refused). URLs are not fetched.

    EXIF orientation is applied to files, bytes and PIL images (unreadable EXIF is ignored, as
    detectron2 does). ``max_image_pixels`` guards against decompression bombs in files, bytes and
    PIL images (arrays and tensors are already decoded): an image with more pixels raises
    ImageTooLargeError (an ImageLoadError) before its pixels are decoded, and the message quotes
    ``max_image_pixels`` whichever check fired (ours on the image size, or Pillow's on a frame or
    tile); None means no limit. Pillow's global ``Image.MAX_IMAGE_PIXELS`` is left as it was found: only a limit above
    it (or None) lifts it, for the duration of one decode and under a lock, so another thread
    decoding at that very moment runs without Pillow's check. A path that cannot be read names the
    OS error (file not found, symlink loop, permission denied, a directory, ...). The result never
    shares memory with the input.
    """
    check_max_image_pixels(max_image_pixels)
    if isinstance(image, (str, os.PathLike)):
        _refuse_bgr(bgr, "file")
        return _load_path(image, max_image_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        _refuse_bgr(bgr, "bytes")
        data = bytes(image)
        source = f"<{len(data)} bytes>"
        if not data:
            raise ImageLoadError(source, "the input is empty (0 bytes)")
        return _decode(io.BytesIO(data), source, max_image_pixels)
    if isinstance(image, Image.Image):
        _refuse_bgr(bgr, "PIL image")
        source = f"<PIL image, mode {image.mode}, {image.width}x{image.height}>"
        with _pillow_limit_lifted(max_image_pixels):
            return _pil_to_rgb(image, source, max_image_pixels)
    if isinstance(image, np.ndarray):
        source = f"<numpy array, shape {image.shape}, {image.dtype}>"
        return _array_to_rgb(image, bgr, source)
    if isinstance(image, torch.Tensor):
        source = f"<torch tensor, shape {tuple(image.shape)}, {image.dtype}>"
        return _array_to_rgb(_tensor_to_hwc(image, source), bgr, source)
    raise TypeError(
        f"load_image accepts a path, bytes, a PIL image, a numpy array or a torch tensor; got {type(image).__name__}"
    )


def _refuse_bgr(bgr: bool, kind: str) -> None:
    if bgr:
        raise ValueError(f"bgr=True only applies to numpy arrays and torch tensors; a {kind} knows its mode")


def _load_path(image: str | os.PathLike, max_image_pixels: int | None) -> np.ndarray:
    path = os.fspath(image)
    path = os.fsdecode(path) if isinstance(path, bytes) else path
    source = repr(path)
    if _URL.match(path):
        raise ImageLoadError(source, "URLs are not fetched by load_image; download the file and pass its path or bytes")
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as error:  # ValueError: a NUL character in the path
        raise ImageLoadError(source, os_error_reason(error, path)) from None
    if stat.S_ISDIR(mode):
        raise ImageLoadError(source, "this is a directory, not an image file")
    if not stat.S_ISREG(mode):  # reading a FIFO or a device could block or never end
        raise ImageLoadError(source, "not a regular file (a FIFO, socket or device)")
    try:
        file = open(path, "rb")
    except OSError as error:
        raise ImageLoadError(source, os_error_reason(error, path)) from None
    with file:
        if os.fstat(file.fileno()).st_size == 0:
            raise ImageLoadError(source, "the file is empty (0 bytes)")
        return _decode(file, source, max_image_pixels)


def check_max_image_pixels(max_image_pixels: int | None) -> int | None:
    """The decompression-bomb limit as given, if it is one: None (no limit) or an integer >= 1."""
    if max_image_pixels is not None and (
        isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or max_image_pixels < 1
    ):
        raise ValueError(f"max_image_pixels={max_image_pixels!r}: expected None (no limit) or an integer >= 1")
    return max_image_pixels


def _decode(fp: IO[bytes], source: str, max_image_pixels: int | None) -> np.ndarray:
    with _pillow_limit_lifted(max_image_pixels):
        try:
            with Image.open(fp) as decoded:
                return _pil_to_rgb(decoded, source, max_image_pixels)
        except ImageLoadError:
            raise
        except UnidentifiedImageError as error:
            raise ImageLoadError(source, "not an image format Pillow can decode") from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise _pillow_bomb_error(source, max_image_pixels, error, counted="the size its header declares") from error
        except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, EOFError, ...
            raise ImageLoadError(source, f"truncated or corrupt image data ({error})") from error


@contextlib.contextmanager
def _pillow_limit_lifted(max_image_pixels: int | None) -> Iterator[None]:
    """Make sure Pillow's own bomb check cannot fire before ours (only needed to raise the limit)."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is None or (max_image_pixels is not None and max_image_pixels <= pillow_limit):
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixel_limit(decoded: Image.Image, source: str, max_image_pixels: int | None) -> None:
    pixels = decoded.width * decoded.height
    if max_image_pixels is not None and pixels > max_image_pixels:
        raise ImageTooLargeError(
            source, f"{decoded.width}x{decoded.height} = {pixels} pixels {_over_the_limit(max_image_pixels)}"
        )


def _pillow_bomb_error(source: str, max_image_pixels: int | None, error: Exception, counted: str) -> ImageTooLargeError:
    """Pillow's decompression-bomb check (its DecompressionBombError above twice its limit, or its warning
    above the limit when warnings are errors) in our words: its message quotes its own limit, not the one
    in force. It only runs while its limit is at or above ours (_pillow_limit_lifted), so what it counted
    (`counted`: the size the header declares, at open; a frame or tile, while decoding) exceeds ours too."""
    if max_image_pixels is None:  # Image.MAX_IMAGE_PIXELS was set again by someone else meanwhile
        return ImageTooLargeError(source, f"Pillow's decompression-bomb check refused it ({error})")
    pixels = re.search(r"\((\d+) pixels\)", str(error))
    found = f"{pixels[1]} pixels ({counted})" if pixels else f"the image ({counted})"
    return ImageTooLargeError(source, f"{found} {_over_the_limit(max_image_pixels)}")


def _over_the_limit(max_image_pixels: int) -> str:
    return (
        f"exceeds max_image_pixels={max_image_pixels} (decompression-bomb guard); pass a larger "
        "max_image_pixels, or None, for a file you trust"
    )


def _pil_to_rgb(image: Image.Image, source: str, max_image_pixels: int | None) -> np.ndarray:
    _check_pixel_limit(image, source, max_image_pixels)
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _pillow_bomb_error(source, max_image_pixels, error, counted="one frame or tile") from error
    except Exception as error:
        raise ImageLoadError(source, f"truncated or corrupt image data ({error})") from error
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception:  # detectron2 also keeps the stored orientation when EXIF cannot be read
        oriented = image
    mode = oriented.mode
    if mode == "RGB":
        return np.array(oriented, dtype=np.uint8)
    if mode in _SIXTEEN_BIT_MODES:
        levels = _sixteen_bit_to_uint8(np.asarray(oriented))
        return np.repeat(levels[:, :, None], 3, axis=2)
    # Through RGBA rather than straight to RGB: same colours, without Pillow's warning about
    # palette transparency; the alpha band is then dropped like any other alpha.
    target = "RGBA" if mode in ("P", "PA") else "RGB"
    try:
        converted = oriented.convert(target)
    except Exception as error:
        raise ImageLoadError(source, f"Pillow cannot convert mode {mode} to RGB ({error})") from error
    return np.array(np.asarray(converted)[:, :, :3], dtype=np.uint8, order="C")


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    # round(v / 257) in integers: 257 is odd, so there are no ties.
    clipped = np.clip(values.astype(np.int64), 0, 65535)
    return ((clipped + 128) // 257).astype(np.uint8)


def _tensor_to_hwc(tensor: torch.Tensor, source: str) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    if tensor.ndim == 3:
        channels_first = tensor.shape[0] in (1, 3, 4)
        channels_last = tensor.shape[-1] in (1, 3, 4)
        if channels_first and channels_last:
            raise ImageLoadError(
                source,
                "the shape reads both as CxHxW and as HxWxC; pass tensor.numpy() (always HxWxC) or "
                "tensor.permute(1, 2, 0).numpy()",
            )
        if channels_first:
            tensor = tensor.permute(1, 2, 0)
    return tensor.numpy()


def _array_to_rgb(array: np.ndarray, bgr: bool, source: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageLoadError(source, "expected HxW, HxWx1, HxWx3 or HxWx4 (tensors also CxHxW)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(source, "the image has no pixels")
    levels = _levels_to_uint8(array, source)
    if levels.ndim == 2:
        return np.repeat(levels[:, :, None], 3, axis=2)
    rgb = levels[:, :, 2::-1] if bgr else levels[:, :, :3]
    return np.array(rgb, dtype=np.uint8, order="C", copy=True)


def _levels_to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _sixteen_bit_to_uint8(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError(source, "the float image contains NaN or infinity")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageLoadError(
                source,
                f"float images must lie in [0, 1] (torchvision's convention), got values in "
                f"[{low:g}, {high:g}]; for 0..255 levels pass uint8, e.g. x.round().clip(0, 255) "
                f"cast to uint8",
            )
        return np.floor(array * 255.0 + 0.5).astype(np.uint8)
    raise ImageLoadError(
        source,
        f"unsupported dtype {array.dtype}; pass uint8 (0..255), uint16 (16-bit levels), bool or "
        f"float in [0, 1] (cast with .astype(np.uint8) if the values are 0..255 levels)",
    )
