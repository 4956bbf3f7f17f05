"""FeatureStore: the region features of a whole image collection in one HDF5 file, random access by image id.

The layout is documented for plain h5py readers in docs/feature-store.md. In short: the boxes of every
image are rows of per-box datasets (``boxes/features`` (total_boxes, D), ``boxes/boxes``, ...), image i
owns rows ``box_offset[i] : box_offset[i] + num_boxes[i]``, and per-image datasets (``height``,
``width``, ``num_boxes``, ``box_offset``, ``checksum``) index them. Fixed-K and adaptive stores share it.
Image ids and the error table are newline-terminated UTF-8 text in uint8 datasets.

Crash safety comes from a commit protocol, not from HDF5 (whose metadata updates are not atomic):
`StoreWriter` fills the rows after the committed ones, flushes, and only then changes the root attribute
``committed_images`` (or ``committed_errors``) and flushes again. Readers use the rows below the counts
only; a resumed writer overwrites whatever a killed batch left above them. What makes this hold under
SIGKILL, all measured with tests/extract/store/test_store_crash.py and a stress run of thousands of kills:

- A batch rewrites no HDF5 structure: datasets grow ahead of the writes, by a quarter of their size at
  least, with their chunks allocated (not written: the file stays sparse) when they grow, so a batch
  writes raw chunk bytes and the 8 bytes of a counter, which lie in the file's first page (a write
  within one page is never torn). Growing a dataset at each batch instead rewrites its object header
  and chunk index every time, and a SIGKILL in the middle of such a multi-page write tears it (1 kill
  in 2,300 left a dataset unreadable).
- A growth is flushed between two flushes of a mark (``growth_in_progress``): a kill during it can leave
  chunk indexes pointing past the end of allocation the superblock records, which HDF5 then refuses to
  write to. A resumed writer finds the mark and copies the committed records into a new file.
- The chunk index is an extensible array (HDF5 1.10 dataset format), which never moves the entries of
  existing chunks; the default format's B-tree does (node splits) and lost committed chunks in 5 kills
  in 1,800. The superblock is not the 1.10 one, which marks the file "open for write" (after a kill
  HDF5 refuses to open it until `h5clear` is run on it), but the 1.8 one (version 2; the default,
  version 0, in layout 1.0), which has a checksum and no such flag; see `_create_store`.
- No HDF5 variable-length strings: they live in a global heap that a kill can leave referenced but
  unwritten, and writing over such a row then fails ("bad heap index").

Damage (a flipped bit on disk or in a copy) is found by checksums (layout 1.1): a CRC-32 of every record
(its id, size and rows), written in the same commit as the record and checked on every read; a running
one of the id text, checked on opening; one of every error line; one of the settings. HDF5's own
structures carry HDF5 checksums. Any failure to read a damaged store is a StoreError naming the part.
Not HDF5's fletcher32 filter: with a filter, HDF5 rewrites a whole chunk, committed rows and chunk
checksum included, to add rows to it, and a kill in the middle of that write leaves the committed rows
unreadable (see docs/feature-store.md).

One writer at a time: `StoreWriter` holds `output_lock` (an OS lock on ``<store>.lock``) for its whole
life, so another process cannot resume, overwrite or merge into a store that is being written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image

from ..boxes import normalize_boxes
from ..draw import draw_regions
from ..images import ImageInput
from ..labels import class_names, vg_synonyms
from ..options import FEATURE_DTYPES, parse_box_range
from .errors import DuplicateIdError, StoreBusyError, StoreError
from .lock import output_lock, resolved

LAYOUT = "lxmert-feature-store"
LAYOUT_VERSION = "1.1"  # major.minor: a reader refuses a newer major; a minor adds and never changes meaning
# 1.1 added checksums (images/checksum and ids_checksum, error_checksums, the settings dataset) and id_scheme.
# A 1.0 store is read (nothing to verify) and resumed as 1.0: adding datasets to it would rewrite its structure.

# Chunk rows of the per-box datasets, from benchmarks/bench_store.py --chunks (docs/feature-store.md):
# a chunk of about one image's boxes makes a random read touch one or two chunks and read little else.
ADAPTIVE_CHUNK_BOXES = 32
IMAGE_CHUNK = 1024  # rows of the small per-image datasets
TEXT_CHUNK = 65536  # bytes of the id and error text datasets

BOX_COLUMNS = {  # name -> (dtype, per-box shape); "features" takes the store's dtype and width
    "features": (None, None),
    "boxes": (np.float32, (4,)),
    "normalized_boxes": (np.float32, (4,)),
    "object_ids": (np.int64, ()),
    "object_scores": (np.float32, ()),
    "attribute_ids": (np.int64, ()),
    "attribute_scores": (np.float32, ()),
}
IMAGE_COLUMNS = {"height": np.int32, "width": np.int32, "num_boxes": np.int32, "box_offset": np.int64}
_DATASET_FORMAT = ("v110", "latest")  # extensible-array chunk indexes (see the module docstring)
_COUNTERS = ("committed_images", "committed_errors", "growth_in_progress")  # rewritten in place: page 0
# What a store was made with: root attributes written once, when it is created, and (1.1) the same as JSON in
# the dataset "settings", which this library reads instead (see _create_store).
_SETTINGS = (
    "layout",
    "layout_version",
    "feature_dtype",
    "feature_dim",
    "num_boxes",
    "rule",
    "detector_config",
    "checkpoint_sha256",
    "id_scheme",
    "library_version",
    "created",
)
FLOAT16_MAX = float(np.finfo(np.float16).max)
MAX_IMAGE_SIDE = int(np.iinfo(np.int32).max)  # image sides are int32


@dataclass(repr=False)
class FeatureRecord:
    """The regions of one image. K boxes; D = the store's feature width (2048 for the VG detector)."""

    id: str
    height: int  # of the original image, in pixels
    width: int
    features: np.ndarray  # (K, D) float16 or float32
    boxes: np.ndarray  # (K, 4) float32 x1 y1 x2 y2 in original pixels
    normalized_boxes: np.ndarray | None  # (K, 4) float32 x1/W y1/H x2/W y2/H; None: computed when written
    object_ids: np.ndarray  # (K,) int64
    object_scores: np.ndarray  # (K,) float32
    attribute_ids: np.ndarray  # (K,) int64
    attribute_scores: np.ndarray  # (K,) float32

    @property
    def num_boxes(self) -> int:
        return len(self.features)

    def draw(self, image: ImageInput, **options) -> Image.Image:
        """A new picture of `image` (the one this record was made from) with the boxes captioned by attribute,
        class and object score: extract.draw.draw_regions, whose keyword options pass through.

        A record does not know its detector's vocabulary: ids that all lie in the shipped VG vocabulary get
        its names, others generic ones ("class_1700"); attribute id -1 (no attribute head) gets none. Pass
        object_names / attribute_names to name them otherwise.
        """
        names = {
            "object_names": display_names("objects", self.object_ids),
            "attribute_names": display_names("attributes", self.attribute_ids),
        }
        return draw_regions(image, self.boxes, **(names | {"scores": self.object_scores} | options))

    def __repr__(self) -> str:
        """The id, the size and each array's dtype and shape, not the values (a record holds 100k numbers)."""
        arrays = ", ".join(f"{name}={_describe_array(getattr(self, name))}" for name in BOX_COLUMNS)
        return (
            f"FeatureRecord(id={self.id!r}, height={self.height}, width={self.width}, "
            f"num_boxes={self.num_boxes}, {arrays})"
        )


def display_names(kind: str, ids: np.ndarray) -> list[str | None]:
    """The names of a record's object ids (kind "objects") or attribute ids ("attributes"), as `draw` captions
    them: the VG names when every id lies in the shipped vocabulary, else generic ones ("class_1700"); None
    for attribute id -1 (no attribute head)."""
    ids = np.asarray(ids, dtype=np.int64)
    count = max(len(vg_synonyms(kind)), int(ids.max(initial=-1)) + 1)
    names = class_names(kind, count)
    return [names[i] if i >= 0 else None for i in ids.tolist()]


def _describe_array(values: Any) -> str:
    if values is None or not hasattr(values, "shape"):
        return repr(values)
    dtype = str(values.dtype).removeprefix("torch.")
    return f"{dtype}{tuple(values.shape)}"


@dataclass(frozen=True)
class StoreMetadata:
    """What made the features: a store only accepts (resume) or merges records made the same way.

    ``num_boxes`` is "36" (every image has 36 boxes) or "10-100" (adaptive: 10 to 100 boxes).
    ``detector_config`` is any JSON-able mapping or dataclass (e.g. `DetectorConfig`).
    ``id_scheme`` says how the ids were made ("stem", "path", "dataset-row", "dataset-column:image_id",
    "tsv", ...); "unknown" (stores of layout 1.0) matches any scheme when resuming or merging.
    """

    num_boxes: str
    rule: str
    detector_config: Any
    checkpoint_sha256: str
    feature_dim: int = 2048
    id_scheme: str = "unknown"

    def __post_init__(self) -> None:
        parse_box_range(self.num_boxes)
        if not isinstance(self.id_scheme, str) or not self.id_scheme or "\n" in self.id_scheme:
            raise ValueError(f"id_scheme must be a non-empty str without newlines, got {self.id_scheme!r}")
        config = self.detector_config
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        # Canonical JSON (tuples -> lists, sorted keys) so that equal settings compare equal after a round trip.
        object.__setattr__(self, "detector_config", json.loads(json.dumps(config, sort_keys=True)))

    def settings(self, feature_dtype: str) -> dict[str, Any]:
        """Everything two stores must share to hold comparable features."""
        return {**dataclasses.asdict(self), "feature_dtype": feature_dtype}


_METADATA_FIELDS = tuple(field.name for field in dataclasses.fields(StoreMetadata))


def library_version() -> str:
    try:
        return importlib_metadata.version("lxmert")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------------
# Checksums


def _record_checksum(image_id: str, height: int, width: int, columns: Mapping[str, np.ndarray]) -> int:
    """CRC-32 of a record: its id in UTF-8, height and width as int32, then its rows of every box column
    (BOX_COLUMNS order, the stored dtypes, little-endian, C order)."""
    crc = zlib.crc32(image_id.encode("utf-8"))
    crc = zlib.crc32(np.array([height, width], "<i4").tobytes(), crc)
    for name in BOX_COLUMNS:
        values = columns[name]
        crc = zlib.crc32(np.ascontiguousarray(values, values.dtype.newbyteorder("<")), crc)
    return crc


def _line_checksum(line: str) -> int:
    return zlib.crc32(line.encode("utf-8"))


def _id_chain(ids: Sequence[str], previous: int) -> np.ndarray:
    """ids_checksum of these ids: for each, the CRC-32 of the id text up to and including its line."""
    chain = np.empty(len(ids), np.uint32)
    for row, image_id in enumerate(ids):
        previous = chain[row] = zlib.crc32(f"{image_id}\n".encode(), previous)
    return chain


# ---------------------------------------------------------------------------------------------------
# Reading


@contextlib.contextmanager
def _reading(path: Path, part: str) -> Iterator[None]:
    """Turn any failure to read ``part`` of the store at ``path`` into a StoreError naming both."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        raise StoreError(f"{path} is damaged: cannot read {part} ({type(error).__name__}: {error})") from error


def _open_for_writing_here(path: Path) -> bool:
    """Whether this process has ``path`` open in HDF5 for writing."""
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            if file_id.get_intent() & h5py.h5f.ACC_RDWR and os.path.samefile(os.fsdecode(file_id.name), path):
                return True
        except (OSError, ValueError):  # a file id closed meanwhile, or a file since removed
            continue
    return False


def _open_store(path: Path, mode: str) -> tuple[h5py.File, dict[str, Any]]:
    """Open a store and read its header (`_read_header`); errors name the file."""
    if not path.exists():
        raise FileNotFoundError(f"feature store {path} does not exist")
    if not h5py.is_hdf5(path):
        raise StoreError(
            f"{path} is not an HDF5 file (or its first bytes are damaged), so not a feature store (made by "
            "extract.StoreWriter)"
        )
    if mode == "r" and _open_for_writing_here(path):
        # HDF5 would hand the reader the writer's file, still open for writing after the writer closes.
        raise StoreError(
            f"{path} is open for writing in this process (a StoreWriter); HDF5 cannot open a file for reading "
            "and for writing at once: close the writer first"
        )
    try:
        # No chunk cache: a chunk is bigger than one image's share of it, and HDF5 then reads (and writes)
        # just the rows asked for, straight to and from the file (faster random reads, see the docs; and a
        # batch never rewrites the committed rows that share its first chunk).
        file = h5py.File(path, mode, rdcc_nbytes=0)
    except BlockingIOError as error:  # errno 11: another process holds HDF5's lock on the file
        if mode == "r":
            raise StoreBusyError(
                f"{path} is being written by another process (an extraction job?); HDF5 lets no other process "
                "open a file while it is open for writing"
            ) from error
        raise StoreBusyError(f"{path} is open in another process; a writer needs it to itself") from error
    except OSError as error:
        if "already open" in str(error):
            raise StoreError(
                f"{path} is already open in this process (a FeatureStore or StoreWriter); HDF5 cannot open a "
                "file for reading and for writing at once: close the other one first"
            ) from error
        if error.errno is not None:  # the system's (permissions, ...): the message names the file
            raise
        raise StoreError(f"{path} is damaged: HDF5 cannot open it ({error})") from error
    except Exception as error:
        raise StoreError(f"{path} is damaged: HDF5 cannot open it ({type(error).__name__}: {error})") from error
    try:
        return file, _read_header(file, path)
    except BaseException:
        file.close()
        raise


def _read_header(file: h5py.File, path: Path) -> dict[str, Any]:
    """The settings (_SETTINGS), counters and metadata of a store, each checked: StoreError names what is wrong.

    Layout 1.1 keeps its settings in the dataset "settings" under a checksum, and this reads nothing else:
    the string attributes beside them are for other readers (HDF5 crashes or hangs on some damaged ones).
    """
    with _reading(path, "its root attributes"):
        has_settings = "settings_checksum" in file.attrs
    if has_settings:
        header = _read_settings(file, path)
    else:  # layout 1.0, or not a store
        with _reading(path, "its root attribute 'layout'"):
            layout = file.attrs.get("layout")
        if layout != LAYOUT:
            raise StoreError(
                f"{path} is an HDF5 file but not a feature store (its root has no layout={LAYOUT!r}, or its root "
                "attributes are damaged)"
            )
        header = {"layout_version": _attribute(file, path, "layout_version", str)}
    version = header["layout_version"]
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
        raise StoreError(f"{path} is damaged: its layout version is {version!r}, not a version like {LAYOUT_VERSION!r}")
    if version.split(".")[0] != LAYOUT_VERSION.split(".")[0]:
        raise StoreError(
            f"{path} has feature-store layout version {version}, this library reads version {LAYOUT_VERSION}; "
            "upgrade the lxmert package to read it"
        )
    kinds = {name: int if name == "feature_dim" else dict if name == "detector_config" else str for name in _SETTINGS}
    if has_settings:
        wrong = [name for name, kind in kinds.items() if not isinstance(header.get(name), kind)]
        if wrong or header["layout"] != LAYOUT:
            raise StoreError(
                f"{path} is damaged: its settings (the dataset settings) lack or misstate {wrong or 'layout'}"
            )
    else:
        header |= {name: _attribute(file, path, name, str if kind is dict else kind) for name, kind in kinds.items()}
        with _reading(path, "its root attribute 'detector_config'"):
            header["detector_config"] = json.loads(header["detector_config"])
    header |= {name: _attribute(file, path, name, int) for name in _COUNTERS}
    with _reading(path, "its settings (the settings it was made with)"):
        if header["feature_dtype"] not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype {header['feature_dtype']!r} is not one of {FEATURE_DTYPES}")
        header["metadata"] = StoreMetadata(**{key: header[key] for key in _METADATA_FIELDS})
        if header["metadata"].feature_dim < 1:
            raise ValueError(f"feature_dim is {header['feature_dim']}")
    return header


def _read_settings(file: h5py.File, path: Path) -> dict[str, Any]:
    checksum = _attribute(file, path, "settings_checksum", int)
    dataset = _dataset(file, path, "settings")
    with _reading(path, "its settings (the dataset settings)"):
        text = dataset[()].tobytes()
    if zlib.crc32(text) != checksum:
        raise StoreError(f"{path} is damaged: its settings (the dataset settings) do not match their checksum")
    with _reading(path, "its settings (the dataset settings)"):
        settings = json.loads(text)
        if not isinstance(settings, dict):
            raise TypeError(f"expected a JSON object, got {text[:100]!r}")
    return settings


def _attribute(file: h5py.File, path: Path, name: str, kind: type) -> Any:
    """A root attribute: a string, or a count (int, not negative)."""
    if name == "id_scheme" and name not in file.attrs:
        return "unknown"  # layout 1.0
    with _reading(path, f"its root attribute {name!r}"):
        value = file.attrs[name]
        if kind is int:
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"expected a count, got {value!r}")
            return int(value)
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value


def _has_checksums(layout_version: str) -> bool:
    return int(layout_version.split(".")[1]) >= 1


def _settings_of(header: Mapping[str, Any]) -> dict[str, Any]:
    return header["metadata"].settings(header["feature_dtype"])


def _dataset(file: h5py.File, path: Path, name: str) -> h5py.Dataset:
    with _reading(path, f"the dataset {name}"):
        dataset = file[name]
        if not isinstance(dataset, h5py.Dataset):
            raise TypeError(f"{name} is a {type(dataset).__name__}, not a dataset")
    return dataset


def _read_rows(file: h5py.File, path: Path, name: str, count: int) -> np.ndarray:
    """The first ``count`` rows of a per-image (or per-error) dataset."""
    dataset = _dataset(file, path, name)
    with _reading(path, f"the dataset {name}"):
        rows = dataset[:count]
    if len(rows) != count:
        raise StoreError(f"{path} is damaged: the dataset {name} has {len(rows)} rows where the store counts {count}")
    return rows


def _read_lines(file: h5py.File, path: Path, name: str, count: int) -> list[str]:
    """The first ``count`` lines of a text dataset. Only the chunks that hold them are read: after them,
    a killed job may have left chunks that cannot be read (see `StoreWriter._grow`)."""
    dataset = _dataset(file, path, name)
    part = "its id text" if name == "images/ids" else "its error table"
    with _reading(path, part):
        pieces, found = [], 0
        for start in range(0, len(dataset), TEXT_CHUNK):
            if found >= count:
                break
            pieces.append(dataset[start : start + TEXT_CHUNK].tobytes())
            found += pieces[-1].count(b"\n")
    lines = b"".join(pieces).split(b"\n", count)
    if len(lines) <= count:
        raise StoreError(
            f"{path} is damaged: {part} holds {len(lines) - 1} complete lines where the store counts {count}"
        )
    decoded = []
    for number, line in enumerate(lines[:count]):
        try:
            decoded.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise StoreError(f"{path} is damaged: line {number + 1} of {part} is not UTF-8: {line[:100]!r}") from None
    return decoded


def _read_ids(file: h5py.File, path: Path, count: int, checked: bool) -> list[str]:
    """The committed ids; with ``checked`` (layout 1.1), the id text is checked against images/ids_checksum
    in one pass, then line by line to name the damaged ones."""
    ids = _read_lines(file, path, "images/ids", count)
    if not checked or not count:
        return ids
    chain = _read_rows(file, path, "images/ids_checksum", count)
    if zlib.crc32(_encode_lines(ids)) == chain[-1]:
        return ids
    damaged = [
        f"line {row + 1} ({image_id!r})"
        for row, image_id in enumerate(ids)
        if _id_chain([image_id], int(chain[row - 1]) if row else 0)[0] != chain[row]
    ]
    raise StoreError(
        f"{path} is damaged: its id text does not match its checksums ({', '.join(damaged[:5]) or 'the last line'}"
        f"{' and more' if len(damaged) > 5 else ''}), so no id can be trusted to name its record"
    )


def _parse_error_line(path: Path, number: int, line: str, checksum: int | None) -> tuple[str, str]:
    part = f"line {number + 1} of its error table"
    if checksum is not None and _line_checksum(line) != checksum:
        raise StoreError(f"{path} is damaged: {part} does not match its checksum: {line[:100]!r}")
    with _reading(path, part):
        entry = json.loads(line)
        image_id, reason = entry["id"], entry["reason"]
        if not isinstance(image_id, str) or not isinstance(reason, str):
            raise TypeError(f"expected an id and a reason, got {line[:100]!r}")
    return image_id, reason


def _encode_lines(lines: Iterable[str]) -> np.ndarray:
    return np.frombuffer("".join(f"{line}\n" for line in lines).encode("utf-8"), dtype=np.uint8)


class FeatureStore:
    """Read-only access to a store: ``store[id]``, ``id in store``, ``len``, ``ids()``, iteration over records.

    Only complete records are visible: rows beyond the committed count (a job killed mid-batch) are ignored.
    Every record read is checked against its checksum (layout 1.1; ``verify_checksums=False`` skips that);
    a damaged store or record raises StoreError naming the file and the part. Close the store when done
    (``store.close()``, or ``with FeatureStore(path) as store:``): while a reader has the file open, HDF5
    lets no process open it for writing (a job resuming the store fails with StoreBusyError).
    """

    def __init__(self, path: str | os.PathLike, *, verify_checksums: bool = True):
        self.path = Path(path)
        self.verify_checksums = verify_checksums
        self._file, header = _open_store(self.path, "r")
        try:
            self._load(header)
        except BaseException:
            self._file.close()
            raise

    def _load(self, header: dict[str, Any]) -> None:
        file, path = self._file, self.path
        self.layout_version = header["layout_version"]
        self.feature_dtype = header["feature_dtype"]
        self.library_version = header["library_version"]
        self.created = header["created"]
        self.metadata: StoreMetadata = header["metadata"]
        self._box_range = parse_box_range(self.metadata.num_boxes)
        count, self._error_count = header["committed_images"], header["committed_errors"]
        self._has_checksums = _has_checksums(self.layout_version)
        self._ids = _read_ids(file, path, count, self._has_checksums)
        self._index = {image_id: row for row, image_id in enumerate(self._ids)}
        if len(self._index) != count:
            raise StoreError(f"{path} is damaged: its id text holds {len(self._index)} distinct ids for {count} images")
        self._height, self._width, self._num_boxes, self._box_offset = (
            _read_rows(file, path, f"images/{name}", count) for name in IMAGE_COLUMNS
        )
        self._checksums = _read_rows(file, path, "images/checksum", count) if self._has_checksums else None
        self._columns = {name: _dataset(file, path, f"boxes/{name}") for name in BOX_COLUMNS}
        with _reading(path, "the boxes/ datasets"):
            self._box_rows = min(len(column) for column in self._columns.values())
            shape = self._columns["features"].shape[1:]
            if shape != (self.metadata.feature_dim,):
                raise ValueError(
                    f"boxes/features has rows of shape {shape}, feature_dim is {self.metadata.feature_dim}"
                )

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    def __getitem__(self, image_id: str) -> FeatureRecord:
        try:
            row = self._index[image_id]
        except KeyError:
            raise KeyError(
                f"image id {image_id!r} is not in the feature store {self.path} ({len(self)} images)"
            ) from None
        return self._record(row)

    def __iter__(self) -> Iterator[FeatureRecord]:
        """Every record in store order, read in blocks (faster than ``store[id]`` one by one)."""
        for record in self._records(range(len(self))):
            if isinstance(record, StoreError):
                raise record
            yield record

    def _span(self, row: int) -> tuple[int, int]:
        """The box rows of image ``row``, checked against the store's bounds."""
        start, count = int(self._box_offset[row]), int(self._num_boxes[row])
        low, high = self._box_range
        if not (low <= count <= high and 0 <= start and start + count <= self._box_rows):
            raise StoreError(
                f"{self.path} is damaged: the index of record {self._ids[row]!r} (image {row}) says {count} boxes "
                f"from box row {start}; the store takes {self.metadata.num_boxes} boxes per image and has "
                f"{self._box_rows} box rows"
            )
        return start, start + count

    def _record(self, row: int, block: Mapping[str, np.ndarray] | None = None, block_start: int = 0) -> FeatureRecord:
        """Record ``row``, from ``block`` (the box rows from ``block_start`` on) or else from the file; checked."""
        image_id = self._ids[row]
        start, stop = self._span(row)
        if block is None:
            with _reading(self.path, f"record {image_id!r}"):
                columns = {name: column[start:stop] for name, column in self._columns.items()}
        else:
            columns = {name: values[start - block_start : stop - block_start] for name, values in block.items()}
        height, width = self._height[row], self._width[row]
        if (
            self._checksums is not None
            and self.verify_checksums
            and _record_checksum(image_id, height, width, columns) != self._checksums[row]
        ):
            raise StoreError(
                f"{self.path} is damaged: record {image_id!r} (image {row}) does not match its checksum: its "
                "features, boxes, labels, size or id changed after it was written"
            )
        return FeatureRecord(image_id, int(height), int(width), **columns)

    def _records(self, rows: range) -> Iterator[FeatureRecord | StoreError]:
        """The records of ``rows`` in order, read in blocks; a damaged record comes as its StoreError."""
        for first in range(rows.start, rows.stop, 256):
            block_rows = range(first, min(first + 256, rows.stop))
            block, block_start = self._block(block_rows)
            for row in block_rows:
                try:
                    yield self._record(row, block, block_start)
                except StoreError as error:
                    yield error

    def _block(self, rows: range) -> tuple[dict[str, np.ndarray] | None, int]:
        """The box rows of consecutive images in one read each, or None where the index (damaged) or the read
        fails: the records are then read one by one."""
        starts, counts = self._box_offset[rows.start : rows.stop], self._num_boxes[rows.start : rows.stop]
        start, stop = int(starts[0]), int(starts[-1]) + int(counts[-1])
        consecutive = np.array_equal(starts[1:], starts[:-1] + counts[:-1])
        if not (
            consecutive and 0 <= start <= stop <= self._box_rows and stop - start <= len(rows) * self._box_range[1]
        ):
            return None, 0
        try:
            with _reading(self.path, "a block of records"):
                return {name: column[start:stop] for name, column in self._columns.items()}, start
        except StoreError:
            return None, 0

    def ids(self) -> list[str]:
        """Image ids in store (write) order."""
        return list(self._ids)

    def errors(self) -> dict[str, str]:
        """Images the job could not process: id -> reason (the latest one, if an id failed more than once)."""
        errors = {}
        for entry in self._error_entries():
            if isinstance(entry, StoreError):
                raise entry
            errors[entry[0]] = entry[1]
        return errors

    def _error_entries(self) -> list[tuple[str, str] | StoreError]:
        """Every line of the error table as (id, reason), or as its StoreError where it is damaged."""
        file, path, count = self._file, self.path, self._error_count
        lines = _read_lines(file, path, "errors", count)
        checksums = None
        if self._has_checksums and self.verify_checksums:
            checksums = _read_rows(file, path, "error_checksums", count)
        entries: list[tuple[str, str] | StoreError] = []
        for number, line in enumerate(lines):
            try:
                entries.append(_parse_error_line(path, number, line, None if checksums is None else checksums[number]))
            except StoreError as error:
                entries.append(error)
        return entries

    def as_dataset(self, ids: Sequence[str] | None = None, pad_to: int | None = None) -> FeatureDataset:
        """A torch Dataset over ``ids`` (default: all) for a DataLoader; see `FeatureDataset`."""
        return FeatureDataset(self.path, ids, pad_to)

    def close(self) -> None:
        """Close the file (a writer in any process can open it again). Idempotent."""
        self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, images={len(self)}, num_boxes={self.metadata.num_boxes!r})"


@dataclass
class VerifyReport:
    """What `verify` found in a store. ``damaged``: image id -> what is wrong with its record; ``problems``:
    damage that is not one record's (the file, its attributes, its id text, lines of its error table)."""

    path: Path
    images_checked: int = 0
    errors_checked: int = 0
    checksums: bool = False  # layout 1.1; a 1.0 store's records can only be checked for readability
    damaged: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.problems


def verify(path: str | os.PathLike) -> VerifyReport:
    """Read every record and every error line of the store at ``path``, check each against its checksum,
    and report all the damage found (it does not stop at the first). A store that cannot be opened because
    it is damaged (or is no store) is reported as a problem; a missing file raises FileNotFoundError, a
    store being written StoreBusyError."""
    report = VerifyReport(Path(path))
    try:
        store = FeatureStore(path)
    except StoreBusyError:
        raise
    except StoreError as error:
        report.problems.append(str(error))
        return report
    with store:
        report.checksums = store._has_checksums
        for row, record in enumerate(store._records(range(len(store)))):
            report.images_checked += 1
            if isinstance(record, StoreError):
                report.damaged[store._ids[row]] = str(record)
        try:
            entries = store._error_entries()
        except StoreError as error:
            report.problems.append(str(error))
        else:
            report.errors_checked = len(entries)
            report.problems += [str(entry) for entry in entries if isinstance(entry, StoreError)]
    return report


class FeatureDataset(torch.utils.data.Dataset):
    """Records as tensors padded to K boxes, for ``torch.utils.data.DataLoader`` (any ``num_workers``).

    An item is a dict: ``id`` (str), ``features`` (K, D) float32, ``boxes`` and ``normalized_boxes`` (K, 4)
    float32, ``object_ids`` / ``attribute_ids`` (K,) int64, ``object_scores`` / ``attribute_scores`` (K,)
    float32, ``box_mask`` (K,) int64 with 1 = real box, 0 = padding (zeros everywhere), ``height``,
    ``width``. K is ``pad_to``, by default the store's largest box count ("10-100" -> 100, "36" -> 36).
    The HDF5 file is opened lazily in the process that reads, so no h5py handle crosses a fork. Each item
    is checked against its checksum: a damaged record raises StoreError. ``close()`` (or a ``with`` block)
    releases this process's handle; a later item opens the file again.
    """

    def __init__(self, path: str | os.PathLike, ids: Sequence[str] | None = None, pad_to: int | None = None):
        self.path = Path(path)
        with FeatureStore(self.path) as store:
            self.ids = store.ids() if ids is None else list(ids)
            missing = [image_id for image_id in self.ids if image_id not in store]
            if missing:
                raise KeyError(
                    f"{len(missing)} of the {len(self.ids)} ids are not in the feature store {self.path}, "
                    f"e.g. {missing[:5]}"
                )
            self.pad_to = parse_box_range(store.metadata.num_boxes)[1] if pad_to is None else pad_to
        self._store: FeatureStore | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = FeatureStore(self.path), os.getpid()
        record = self._store[self.ids[index]]
        count, pad = record.num_boxes, self.pad_to
        if count > pad:
            raise ValueError(
                f"image {record.id!r} has {count} boxes, more than pad_to={pad}; pass a larger pad_to "
                f"(the store allows {self._store.metadata.num_boxes} boxes per image)"
            )
        item: dict[str, Any] = {"id": record.id, "height": record.height, "width": record.width}
        for name in BOX_COLUMNS:
            values = getattr(record, name)
            dtype = np.float32 if name == "features" else values.dtype  # float16 features are widened
            padded = np.zeros((pad, *values.shape[1:]), dtype)
            padded[:count] = values
            item[name] = torch.from_numpy(padded)
        item["box_mask"] = torch.from_numpy((np.arange(pad) < count).astype(np.int64))
        return item

    def close(self) -> None:
        """Close the file handle this process holds (none in a fresh copy, e.g. a DataLoader worker's)."""
        store, self._store, self._pid = self._store, None, None
        if store is not None:
            store.close()

    def __enter__(self) -> FeatureDataset:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "_pid": None}


# ---------------------------------------------------------------------------------------------------
# Writing


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class StoreWriter:
    """Appends records in committed batches; a killed job resumes with nothing lost and nothing half-written.

    ``StoreWriter(path, metadata=..., feature_dtype="float16")`` creates a store and refuses an existing
    file unless ``resume=True`` (continue it: its settings must equal ``metadata``; a missing file is
    created) or ``overwrite=True`` (replace it). ``append(records)`` writes one batch: a record is a
    `FeatureRecord` or a mapping with its fields (numpy arrays or torch tensors; ``normalized_boxes`` may be
    omitted). The batch becomes visible to readers all at once, after its data is flushed.

    The writer holds `output_lock(path)` from the start to `close()`: another writer, resume or overwrite
    of the same store (in another process) fails with StoreBusyError before touching anything. A symlinked
    ``path`` is written through: the file it points to is created or replaced, the link stays. `close()`
    raises StoreError if ``path`` no longer names the file this writer wrote (replaced or removed by hand).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        metadata: StoreMetadata,
        feature_dtype: str = "float16",
        resume: bool = False,
        overwrite: bool = False,
    ):
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
        if resume and overwrite:
            raise ValueError("pass resume=True (continue the store) or overwrite=True (replace it), not both")
        self.path = Path(path)
        self.metadata = metadata
        self.feature_dtype = feature_dtype
        self._box_range = parse_box_range(metadata.num_boxes)
        self._appended = self._errors_added = 0
        self._closed = False
        self._resources = contextlib.ExitStack()  # the lock, then the file: released in reverse
        self._resources.enter_context(output_lock(self.path))
        try:
            self._open(resume, overwrite)
        except BaseException:
            self._resources.close()
            raise

    # -- set-up

    def _open(self, resume: bool, overwrite: bool) -> None:
        if self.path.exists() and resume:
            self._check_resumable()
        elif self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists; pass resume=True to continue it or overwrite=True to replace it"
            )
        else:
            self._create()
        self._file, header = _open_store(self.path, "a")
        file, path = self._file, self.path
        self._resources.callback(file.close)
        # What close() checks: that the path still names this file.
        self._identity = os.fstat(file.id.get_vfd_handle())
        self._checksums = _has_checksums(header["layout_version"])  # a resumed 1.0 store stays 1.0
        images, errors = header["committed_images"], header["committed_errors"]
        ids = _read_ids(file, path, images, self._checksums)
        lines = _read_lines(file, path, "errors", errors)
        checksums = _read_rows(file, path, "error_checksums", errors) if self._checksums else [None] * errors
        self._completed = set(ids)
        if len(self._completed) != images:
            raise StoreError(f"{path} is damaged: its id text holds {len(self._completed)} distinct ids for {images}")
        self._failed = {
            _parse_error_line(path, number, line, checksum)[0]
            for number, (line, checksum) in enumerate(zip(lines, checksums, strict=True))
        }
        boxes = self._next_box_row(ids)
        self._sizes = {  # committed rows of every dataset; rows after them hold nothing or a killed batch
            "images/ids": len(_encode_lines(ids)),
            **{f"images/{name}": images for name in IMAGE_COLUMNS},
            **{f"boxes/{name}": boxes for name in BOX_COLUMNS},
            "errors": len(_encode_lines(lines)),
        }
        if self._checksums:
            self._sizes |= {"images/checksum": images, "images/ids_checksum": images, "error_checksums": errors}
        self._id_chain_end = int(file["images/ids_checksum"][images - 1]) if self._checksums and images else 0

    def _next_box_row(self, ids: list[str]) -> int:
        """Where the next record's boxes go: after the last record's, which is checked first, since writing
        from a damaged offset would overwrite committed records."""
        if not ids:
            return 0
        file, path, last = self._file, self.path, len(ids) - 1
        with _reading(path, f"the index of record {ids[last]!r}"):
            height, width, count, offset = (int(file[f"images/{name}"][last]) for name in IMAGE_COLUMNS)
            columns = {name: file[f"boxes/{name}"][offset : offset + count] for name in BOX_COLUMNS}
            checksum = int(file["images/checksum"][last]) if self._checksums else None
        low, high = self._box_range
        fits = low <= count <= high and offset >= 0 and all(len(values) == count for values in columns.values())
        if not fits or (checksum is not None and _record_checksum(ids[last], height, width, columns) != checksum):
            raise StoreError(
                f"{path} is damaged: its last record {ids[last]!r} (image {last}) does not match its index or "
                "checksum, so the writer cannot tell where to add records; run extract.store.verify on it"
            )
        return offset + count

    def _create(self) -> None:
        """Write the empty layout to a side file and rename it: a kill during creation leaves no half store.
        A symlink is written through: the side file lies beside the link's target, which it replaces."""
        target = resolved(self.path)
        partial = target.with_name(target.name + ".creating")
        _create_store(partial, self.metadata, self.feature_dtype)
        os.replace(partial, target)

    def _check_resumable(self) -> None:
        """Refuse other settings; rebuild a store whose growth a kill cut short (see `_grow`), before opening
        it for writing (HDF5 would cut such a file at its recorded end on closing it)."""
        file, header = _open_store(self.path, "r")
        file.close()
        version = header["layout_version"]
        if int(version.split(".")[1]) > int(LAYOUT_VERSION.split(".")[1]):
            raise StoreError(
                f"{self.path} has layout version {version}; this library appends to versions up to "
                f"{LAYOUT_VERSION} only"
            )
        differences = settings_differences(_settings_of(header), self.metadata.settings(self.feature_dtype))
        if differences:
            raise StoreError(f"cannot resume {self.path} with different settings ({differences})")
        if header["growth_in_progress"]:
            _rebuild(self.path)

    # -- the records

    def completed_ids(self) -> set[str]:
        """Ids already committed (a resumed job skips them)."""
        return set(self._completed)

    def failed_ids(self) -> set[str]:
        """Ids in the error table (a resumed job may skip them or try them again)."""
        return set(self._failed)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._completed

    def __len__(self) -> int:
        return len(self._completed)

    def _columns_of(self, record: FeatureRecord | Mapping[str, Any]) -> tuple[str, int, int, dict[str, np.ndarray]]:
        fields = dict(vars(record) if isinstance(record, FeatureRecord) else record)
        image_id, height, width = _check_id(fields["id"]), fields["height"], fields["width"]
        for name, size in (("height", height), ("width", width)):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_IMAGE_SIDE:
                raise ValueError(f"image {image_id!r}: {name} must be a positive integer (pixels), got {size!r}")
        height, width = int(height), int(width)
        features = _as_numpy(fields["features"])
        if features.ndim != 2 or features.shape[1] != self.metadata.feature_dim:
            raise ValueError(
                f"image {image_id!r}: features must be (num_boxes, {self.metadata.feature_dim}), got {features.shape}"
            )
        count = len(features)
        low, high = self._box_range
        if not low <= count <= high:
            raise ValueError(f"image {image_id!r} has {count} boxes; this store takes {self.metadata.num_boxes}")
        if self.feature_dtype == "float16" and np.abs(features).max() > FLOAT16_MAX:
            raise ValueError(f"image {image_id!r}: a feature exceeds the float16 range; use feature_dtype='float32'")
        columns = {"features": features.astype(self.feature_dtype, copy=False)}
        boxes = _as_numpy(fields["boxes"])
        if fields.get("normalized_boxes") is None and boxes.shape == (count, 4):
            fields["normalized_boxes"] = normalize_boxes(boxes, height, width)
        for name, (dtype, shape) in BOX_COLUMNS.items():
            if name != "features":
                values = _as_numpy(fields[name])
                if values.shape != (count, *shape):
                    raise ValueError(
                        f"image {image_id!r}: {name} must have shape {(count, *shape)} for {count} boxes, "
                        f"got {values.shape}"
                    )
                columns[name] = values.astype(dtype, copy=False)
        return image_id, height, width, columns

    def append(self, records: Iterable[FeatureRecord | Mapping[str, Any]]) -> None:
        """Write one batch and commit it; on any error nothing of the batch is visible and the store stays usable."""
        batch = [self._columns_of(record) for record in records]
        ids = [image_id for image_id, *_ in batch]
        repeated = sorted({i for i, n in Counter(ids).items() if n > 1 or i in self._completed})
        if repeated:
            raise DuplicateIdError(
                f"{len(repeated)} image id(s) already in {self.path} or repeated in the batch: {repeated[:10]}; "
                "skip the ids in writer.completed_ids()"
            )
        if not batch:
            return
        num_boxes = np.array([len(columns["features"]) for *_, columns in batch], dtype=np.int64)
        box_offset = self._sizes["boxes/features"] + np.cumsum(num_boxes) - num_boxes
        columns = {
            "images/ids": _encode_lines(ids),
            "images/height": np.array([height for _, height, _, _ in batch]),
            "images/width": np.array([width for _, _, width, _ in batch]),
            "images/num_boxes": num_boxes,
            "images/box_offset": box_offset,
            **{f"boxes/{name}": np.concatenate([columns[name] for *_, columns in batch]) for name in BOX_COLUMNS},
        }
        if self._checksums:
            columns["images/checksum"] = np.array([_record_checksum(*fields) for fields in batch], np.uint32)
            columns["images/ids_checksum"] = _id_chain(ids, self._id_chain_end)
        self._commit(columns, "committed_images", len(batch))
        if self._checksums:
            self._id_chain_end = int(columns["images/ids_checksum"][-1])
        self._completed.update(ids)
        self._appended += len(batch)

    def add_error(self, image_id: str, reason: str) -> None:
        """Record an image that could not be processed (unreadable file, ...); committed at once."""
        line = json.dumps({"id": _check_id(image_id), "reason": str(reason)})
        columns = {"errors": _encode_lines([line])}
        if self._checksums:
            columns["error_checksums"] = np.array([_line_checksum(line)], np.uint32)
        self._commit(columns, "committed_errors", 1)
        self._failed.add(image_id)
        self._errors_added += 1

    def _commit(self, columns: dict[str, np.ndarray], counter: str, added: int) -> None:
        """Write the rows after the committed ones, flush, then advance the counter: the one protocol for
        every write. Nothing committed is touched, so a failure at any point leaves the store as it was."""
        file = self._file
        committed = int(file.attrs[counter])
        needed = {name: self._sizes[name] + len(values) for name, values in columns.items()}
        to_grow = {name: rows for name, rows in needed.items() if rows > len(file[name])}
        try:
            if to_grow:
                self._grow(to_grow)
            for name, values in columns.items():
                start = self._sizes[name]
                file[name][start : start + len(values)] = values
            file.flush()
            # The commit point. modify() rewrites the 8 bytes of the value in place (attrs[...] = would
            # delete and recreate the attribute, rewriting much of the root object header).
            file.attrs.modify(counter, np.int64(committed + added))
            file.flush()
        except BaseException:
            file.attrs.modify(counter, np.int64(committed))
            raise
        for name, values in columns.items():
            self._sizes[name] += len(values)

    def _grow(self, needed: dict[str, int]) -> None:
        """Make room for ``needed`` rows in datasets, allocating their chunks, between two flushes of a mark.

        A kill during the flush of a growth can leave chunk indexes pointing past the end of allocation
        that the superblock records (HDF5 writes it after them): the committed rows are all readable, but
        HDF5 fails to write after them ("addr overflow"). A store left marked is rebuilt when resumed.
        """
        file = self._file
        file.attrs.modify("growth_in_progress", np.int64(1))
        file.flush()
        for name, rows in needed.items():
            file[name].resize(_grown(len(file[name]), rows, file[name].chunks[0]), axis=0)
        file.flush()
        file.attrs.modify("growth_in_progress", np.int64(0))
        file.flush()

    def close(self) -> None:
        """Close the file and release the lock. Raises StoreError if the path no longer names the file this
        writer wrote (replaced or removed meanwhile): what it wrote is then not at that path."""
        if self._closed:
            return
        self._closed = True
        try:
            problem = self._replaced()
        finally:
            self._resources.close()
        if problem:
            raise StoreError(
                f"{self.path} was {problem} while this writer had it open: the {self._appended} images and "
                f"{self._errors_added} errors it wrote are not at that path any more (they went into the file "
                "that was there before)"
            )

    def _replaced(self) -> str | None:
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return "removed"
        return None if os.path.samestat(current, self._identity) else "replaced by another file"

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _create_store(path: Path, metadata: StoreMetadata, feature_dtype: str, created: str | None = None) -> None:
    """Write an empty store (layout 1.1) to ``path``, a side file that the caller renames into place.

    The root group is in the HDF5 1.8 format, whose object header has a checksum (the 1.0 layout's had none,
    and HDF5 crashed on some damaged ones), with every attribute in that header (not in a heap): the
    counters first, so that a commit changes the first page only. The string attributes are HDF5
    variable-length strings, which plain h5py reads as str, but they live in a heap without a checksum:
    the settings are also written as JSON to the dataset "settings", under the checksum settings_checksum,
    and this library reads those.
    """
    low, high = parse_box_range(metadata.num_boxes)
    settings = {
        "layout": LAYOUT,
        "layout_version": LAYOUT_VERSION,
        **metadata.settings(feature_dtype),
        "library_version": library_version(),
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    text = json.dumps(settings, sort_keys=True).encode("utf-8")
    file_creation = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    file_creation.set_attr_phase_change(65535, 0)  # attributes stay in the object header ("compact")
    file_access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    file_access.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_V110)
    with h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, file_creation, file_access)) as file:
        file.attrs.update(dict.fromkeys(_COUNTERS, np.int64(0)))  # first: in the first page
        file.attrs.update(settings | {"detector_config": json.dumps(settings["detector_config"], sort_keys=True)})
        file.attrs["settings_checksum"] = np.int64(zlib.crc32(text))
    with h5py.File(path, "a", libver=_DATASET_FORMAT) as file:
        file.create_dataset("settings", data=np.frombuffer(text, np.uint8))
        chunk_boxes = high if low == high else ADAPTIVE_CHUNK_BOXES
        for name, (dtype, shape) in BOX_COLUMNS.items():
            if name == "features":
                dtype, shape = feature_dtype, (metadata.feature_dim,)
            _create_dataset(file, f"boxes/{name}", dtype, shape, chunk_boxes)
        for name, dtype in IMAGE_COLUMNS.items():
            _create_dataset(file, f"images/{name}", dtype, (), IMAGE_CHUNK)
        _create_dataset(file, "images/checksum", np.uint32, (), IMAGE_CHUNK)
        _create_dataset(file, "images/ids_checksum", np.uint32, (), IMAGE_CHUNK)
        _create_dataset(file, "error_checksums", np.uint32, (), IMAGE_CHUNK)
        for name in ("images/ids", "errors"):
            _create_dataset(file, name, np.uint8, (), TEXT_CHUNK)


def _create_dataset(file: h5py.File, name: str, dtype: Any, row_shape: tuple, chunk_rows: int) -> None:
    # Chunks are allocated when the dataset grows (so a batch never changes the chunk index), and never
    # filled (so the file stays sparse until written).
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    file.create_dataset(
        name, (0, *row_shape), dtype, maxshape=(None, *row_shape), chunks=(chunk_rows, *row_shape), dcpl=dcpl
    )


def _grown(size: int, needed: int, chunk_rows: int) -> int:
    """The next size of a dataset: room for a quarter more rows at least, in whole chunks."""
    rows = max(needed, size + size // 4)
    return -(-rows // chunk_rows) * chunk_rows


def _rebuild(path: Path) -> None:
    """Copy the committed records of a store into a new file that replaces it (see `StoreWriter._grow`).
    The copy has checksums (layout 1.1) even if the store had none. The caller holds the store's lock."""
    target = resolved(path)
    partial = target.with_name(target.name + ".rebuilding")
    with FeatureStore(path) as store:
        count = len(store)
        copy_into(partial, [store], store.metadata, created=store.created)
    os.replace(partial, target)
    warnings.warn(
        f"{path}: the job writing it was killed while its datasets grew; its {count} complete records were "
        "copied into a new file, which replaces it",
        stacklevel=5,  # the code that made the writer
    )


def copy_into(
    partial: Path, stores: Sequence[FeatureStore], metadata: StoreMetadata, created: str | None = None
) -> None:
    """Write every record and error of ``stores`` into a new store at the side file ``partial``, removed if
    the copy fails (a damaged record, a full disk): the caller renames it into place."""
    feature_dtype = stores[0].feature_dtype
    try:
        _create_store(partial, metadata, feature_dtype, created)
        with StoreWriter(partial, metadata=metadata, feature_dtype=feature_dtype, resume=True) as out:
            for store in stores:
                for batch in batched(store, 256):
                    out.append(batch)
                for image_id, reason in store.errors().items():
                    out.add_error(image_id, reason)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def settings_differences(store: dict[str, Any], other: dict[str, Any], other_name: str = "writer") -> str:
    """The settings in which two stores (or a store and a writer) differ; an "unknown" id scheme (a store of
    layout 1.0) matches any."""
    return "; ".join(
        f"{key}: store has {store[key]!r}, {other_name} has {other[key]!r}"
        for key in store
        if store[key] != other[key] and not (key == "id_scheme" and "unknown" in (store[key], other[key]))
    )


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_id(image_id: Any) -> str:
    if not isinstance(image_id, str) or not image_id or "\n" in image_id:
        raise ValueError(f"an image id must be a non-empty str without newlines, got {image_id!r}")
    return image_id
