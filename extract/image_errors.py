"""Errors about image inputs, and the words for an unreadable path: no torch, no Pillow, so that the command
lines (their --help, their argument checks) and the job's input listing can raise and word them cheaply.
extract.images raises them while decoding."""

from __future__ import annotations

import errno
import os


class ImageLoadError(ValueError):
    """An input that cannot be turned into an image; names the input and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot load image {source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):
        # Keep it picklable across worker processes despite the two-argument constructor.
        return (type(self), (self.source, self.reason))


class ImageTooLargeError(ImageLoadError):
    """An image with more pixels than max_image_pixels allows (the decompression-bomb guard): a valid image,
    refused for its size (a server answers 413 to it, and 415 to other ImageLoadErrors)."""


def os_error_reason(error: OSError | ValueError, path: str | os.PathLike) -> str:
    """The OS error behind an unreadable path, in words (never a bare "not found" for a link loop); the one
    wording of extract's messages about images, config files and job inputs."""
    if not isinstance(error, OSError):
        return f"invalid path ({error})"
    if error.errno == errno.ENOENT:
        return "file not found (a symlink to a missing file)" if os.path.islink(path) else "file not found"
    if error.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if error.errno == errno.EISDIR:
        return "this is a directory, not an image file"
    return error.strerror or str(error)  # "Permission denied", "Not a directory", "File name too long", ...
