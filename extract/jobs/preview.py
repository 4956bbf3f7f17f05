"""A job's previews: the drawn regions of the first images a process extracts, written as PNG files while the
job runs, so that the first minutes of a long job show whether its boxes look right.

A preview never fails the job: the first one that cannot be drawn or written (a full disk, a folder that is
a file) is reported once, as a warning, and the process previews no more.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line imports this module for PREVIEW_COUNT; the network is not needed for it
    from ..extractor import RegionFeatures

PREVIEW_COUNT = 16
ID_CHARS = 60  # of the image id in a preview's file name
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def preview_name(ordinal: int, image_id: str, shard: tuple[int, int] | None = None) -> str:
    """The file name of the preview of the `ordinal`-th image (from 0) a process extracted:
    "0003-COCO_val2014_000000000042.png".

    The id is kept for the reader only: each run of characters other than ASCII letters, digits, ".", "_"
    and "-" becomes one "_" (slashes, tabs, newlines, escaped bytes, any other script), and it is cut to
    ID_CHARS characters; the ordinal keeps the names of one process unique. Shard I of N > 1 (a torchrun
    rank, or --shard I/N) prefixes "shard-0000I-", so that the processes of one job can share a folder.
    """
    prefix = f"shard-{shard[0]:05d}-" if shard is not None and shard[1] > 1 else ""
    return f"{prefix}{ordinal:04d}-{_UNSAFE.sub('_', image_id)[:ID_CHARS]}.png"


class PreviewWriter:
    """Writes `regions.draw()` (captions "attributes", the `top` best boxes) of the first `count` images
    it is given into `folder`, created at the first preview. `written`: the files, in order."""

    def __init__(
        self,
        folder: str | os.PathLike,
        count: int = PREVIEW_COUNT,
        *,
        top: int,
        shard: tuple[int, int] | None = None,
    ):
        self.folder = Path(folder)
        self.count = count
        self.shard = shard
        self.top = top
        self.written: list[Path] = []
        self.stopped = False

    @property
    def wanted(self) -> bool:
        """Whether the next image gets a preview."""
        return not self.stopped and len(self.written) < self.count

    def add(self, image_id: str, regions: RegionFeatures) -> None:
        """Write the preview of one extracted image, if it is among the first `count`; warn and stop
        previewing when that fails."""
        if not self.wanted:
            return
        path = self.folder / preview_name(len(self.written), image_id, self.shard)
        partial = path.with_name(f".{path.name}.partial")
        try:
            picture = io.BytesIO()
            regions.draw(captions="attributes", top=self.top).save(picture, format="PNG")
            self.folder.mkdir(parents=True, exist_ok=True)
            try:  # beside it first, so that a full disk leaves no truncated PNG under the preview's name
                partial.write_bytes(picture.getvalue())
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
        except Exception as error:  # whatever it is, it is the preview's failure, not the job's
            self.stopped = True
            reason = " ".join(str(error).split())
            warnings.warn(
                f"no more previews from this process: the preview of image {image_id!r} could not be written to "
                f"{path} ({type(error).__name__}: {reason}); the job goes on",
                stacklevel=2,
            )
            return
        self.written.append(path)
