"""FeatureStore: the region features of a whole image collection in one HDF5 file, random access by image id.

The layout is documented for plain h5py readers in docs/feature-store.md. In short: the boxes of every
image are rows of per-box datasets (``boxes/features`` (total_boxes, D), ``boxes/boxes``, ...), image i
owns rows ``box_offset[i] : box_offset[i] + num_boxes[i]``, and per-image datasets (``height``,
``width``, ``num_boxes``, ``box_offset``) index them. Fixed-K and adaptive stores share it. Image ids and
the error table are newline-terminated UTF-8 text in uint8 datasets.

Crash safety comes from a commit protocol, not from HDF5 (whose metadata updates are not atomic):
`StoreWriter` fills the rows after the committed ones, flushes, and only then changes the root attribute
``committed_images`` (or ``committed_errors``) and flushes again. Readers use the rows below the counts
only; a resumed writer overwrites whatever a killed batch left above them. What makes this hold under
SIGKILL, all measured with tests/extract/test_store_crash.py and a stress run of thousands of kills:

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
  in 1,800. The superblock stays in the default format: the 1.10 one marks the file "open for write",
  and after a kill HDF5 refuses to open it until `h5clear` is run on it.
- No HDF5 variable-length strings: they live in a global heap that a kill can leave referenced but
  unwritten, and writing over such a row then fails ("bad heap index").
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

LAYOUT = "lxmert-feature-store"
LAYOUT_VERSION = "1.0"  # major.minor: a reader refuses a newer major; a minor adds and never changes meaning

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
FEATURE_DTYPES = ("float16", "float32")
_DATASET_FORMAT = ("v110", "latest")  # extensible-array chunk indexes (see the module docstring)
_COUNTERS = ("committed_images", "committed_errors", "growth_in_progress")  # rewritten in place: page 0
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class StoreError(Exception):
    """A file that is not a feature store, cannot be read by this version, or does not fit the request."""


class DuplicateIdError(StoreError, ValueError):
    """Image ids given to a writer twice, or found in more than one shard."""


@dataclass
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


@dataclass(frozen=True)
class StoreMetadata:
    """What made the features: a store only accepts (resume) or merges records made the same way.

    ``num_boxes`` is "36" (every image has 36 boxes) or "10-100" (adaptive: 10 to 100 boxes).
    ``detector_config`` is any JSON-able mapping or dataclass (e.g. `DetectorConfig`).
    """

    num_boxes: str
    rule: str
    detector_config: Any
    checkpoint_sha256: str
    feature_dim: int = 2048

    def __post_init__(self) -> None:
        box_range(self.num_boxes)
        config = self.detector_config
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        # Canonical JSON (tuples -> lists, sorted keys) so that equal settings compare equal after a round trip.
        object.__setattr__(self, "detector_config", json.loads(json.dumps(config, sort_keys=True)))

    def settings(self, feature_dtype: str) -> dict[str, Any]:
        """Everything two stores must share to hold comparable features."""
        return {**dataclasses.asdict(self), "feature_dtype": feature_dtype}


def box_range(num_boxes: str) -> tuple[int, int]:
    """Parse a num_boxes spec: "36" -> (36, 36), "10-100" -> (10, 100)."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", str(num_boxes))
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
    if not 1 <= low <= high:
        raise ValueError(f'num_boxes must be a count like "36" or a range like "10-100", got {num_boxes!r}')
    return low, high


def normalize_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, 4) x1 y1 x2 y2 pixels -> (K, 4) float32 fractions of the width and height, as LXMERT's loaders do."""
    normalized = np.array(boxes, dtype=np.float32)
    normalized[:, 0::2] /= width
    normalized[:, 1::2] /= height
    return normalized


def library_version() -> str:
    try:
        return importlib_metadata.version("lxmert")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------------
# Reading


def _open_for_writing_here(path: Path) -> bool:
    """Whether this process has ``path`` open in HDF5 for writing."""
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            if file_id.get_intent() & h5py.h5f.ACC_RDWR and os.path.samefile(os.fsdecode(file_id.name), path):
                return True
        except (OSError, ValueError):  # a file id closed meanwhile, or a file since removed
            continue
    return False


def _open_store(path: Path, mode: str) -> h5py.File:
    """Open and check the layout name and version; errors name the file."""
    if not path.exists():
        raise FileNotFoundError(f"feature store {path} does not exist")
    if not h5py.is_hdf5(path):
        raise StoreError(f"{path} is not an HDF5 file, so not a feature store (made by extract.StoreWriter)")
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
            raise StoreError(
                f"{path} is being written by another process (an extraction job?); HDF5 lets no other process "
                "open a file while it is open for writing"
            ) from error
        raise StoreError(f"{path} is open in another process; a writer needs it to itself") from error
    except OSError as error:
        if "already open" not in str(error):
            raise
        raise StoreError(
            f"{path} is already open in this process (a FeatureStore or StoreWriter); HDF5 cannot open a file "
            "for reading and for writing at once: close the other one first"
        ) from error
    layout, version = file.attrs.get("layout"), str(file.attrs.get("layout_version", "?"))
    if layout != LAYOUT:
        file.close()
        raise StoreError(f"{path} is an HDF5 file but not a feature store (its root has no layout={LAYOUT!r})")
    if version.split(".")[0] != LAYOUT_VERSION.split(".")[0]:
        file.close()
        raise StoreError(
            f"{path} has feature-store layout version {version}, this library reads version {LAYOUT_VERSION}; "
            "upgrade the lxmert package to read it"
        )
    return file


def _settings_of(attrs: h5py.AttributeManager) -> dict[str, Any]:
    return {
        "num_boxes": str(attrs["num_boxes"]),
        "rule": str(attrs["rule"]),
        "detector_config": json.loads(attrs["detector_config"]),
        "checkpoint_sha256": str(attrs["checkpoint_sha256"]),
        "feature_dim": int(attrs["feature_dim"]),
        "feature_dtype": str(attrs["feature_dtype"]),
    }


def _read_lines(dataset: h5py.Dataset, count: int) -> list[str]:
    """The first ``count`` lines of a text dataset. Only the chunks that hold them are read: after them,
    a killed job may have left chunks that cannot be read (see `StoreWriter._grow`)."""
    pieces, found = [], 0
    for start in range(0, len(dataset), TEXT_CHUNK):
        if found >= count:
            break
        pieces.append(dataset[start : start + TEXT_CHUNK].tobytes())
        found += pieces[-1].count(b"\n")
    return [line.decode("utf-8") for line in b"".join(pieces).split(b"\n", count)[:count]]


def _encode_lines(lines: Iterable[str]) -> np.ndarray:
    return np.frombuffer("".join(f"{line}\n" for line in lines).encode("utf-8"), dtype=np.uint8)


class FeatureStore:
    """Read-only access to a store: ``store[id]``, ``id in store``, ``len``, ``ids()``, iteration over records.

    Only complete records are visible: rows beyond the committed count (a job killed mid-batch) are ignored.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open_store(self.path, "r")
        attrs = self._file.attrs
        count = int(attrs["committed_images"])
        self.layout_version = str(attrs["layout_version"])
        self.feature_dtype = str(attrs["feature_dtype"])
        self.library_version = str(attrs["library_version"])
        self.created = str(attrs["created"])
        settings = _settings_of(attrs)
        settings.pop("feature_dtype")
        self.metadata = StoreMetadata(**settings)
        images = self._file["images"]
        self._ids = _read_lines(images["ids"], count)
        self._index = {image_id: row for row, image_id in enumerate(self._ids)}
        if len(self._index) != count:
            raise StoreError(f"{self.path} holds {len(self._index)} distinct ids for {count} images: it is damaged")
        self._height, self._width, self._num_boxes, self._box_offset = (
            images[name][:count] for name in ("height", "width", "num_boxes", "box_offset")
        )
        self._columns = {name: self._file["boxes"][name] for name in BOX_COLUMNS}

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
        start, stop = int(self._box_offset[row]), int(self._box_offset[row] + self._num_boxes[row])
        columns = {name: column[start:stop] for name, column in self._columns.items()}
        return FeatureRecord(image_id, int(self._height[row]), int(self._width[row]), **columns)

    def __iter__(self) -> Iterator[FeatureRecord]:
        """Every record in store order, read in blocks (faster than ``store[id]`` one by one)."""
        block = 256
        for first in range(0, len(self), block):
            rows = range(first, min(first + block, len(self)))
            start, stop = int(self._box_offset[rows[0]]), int(self._box_offset[rows[-1]] + self._num_boxes[rows[-1]])
            columns = {name: column[start:stop] for name, column in self._columns.items()}
            for row in rows:
                begin = int(self._box_offset[row]) - start
                end = begin + int(self._num_boxes[row])
                yield FeatureRecord(
                    self._ids[row],
                    int(self._height[row]),
                    int(self._width[row]),
                    **{name: values[begin:end] for name, values in columns.items()},
                )

    def ids(self) -> list[str]:
        """Image ids in store (write) order."""
        return list(self._ids)

    def errors(self) -> dict[str, str]:
        """Images the job could not process: id -> reason (the latest one, if an id failed more than once)."""
        lines = _read_lines(self._file["errors"], int(self._file.attrs["committed_errors"]))
        return {entry["id"]: entry["reason"] for entry in map(json.loads, lines)}

    def as_dataset(self, ids: Sequence[str] | None = None, pad_to: int | None = None) -> FeatureDataset:
        """A torch Dataset over ``ids`` (default: all) for a DataLoader; see `FeatureDataset`."""
        return FeatureDataset(self.path, ids, pad_to)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, images={len(self)}, num_boxes={self.metadata.num_boxes!r})"


class FeatureDataset(torch.utils.data.Dataset):
    """Records as tensors padded to K boxes, for ``torch.utils.data.DataLoader`` (any ``num_workers``).

    An item is a dict: ``id`` (str), ``features`` (K, D) float32, ``boxes`` and ``normalized_boxes`` (K, 4)
    float32, ``object_ids`` / ``attribute_ids`` (K,) int64, ``object_scores`` / ``attribute_scores`` (K,)
    float32, ``box_mask`` (K,) int64 with 1 = real box, 0 = padding (zeros everywhere), ``height``,
    ``width``. K is ``pad_to``, by default the store's largest box count ("10-100" -> 100, "36" -> 36).
    The HDF5 file is opened lazily in the process that reads, so no h5py handle crosses a fork.
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
            self.pad_to = box_range(store.metadata.num_boxes)[1] if pad_to is None else pad_to
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
        self._box_range = box_range(metadata.num_boxes)
        if self.path.exists() and resume:
            self._check_resumable()
            self._file = _open_store(self.path, "a")
        elif self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists; pass resume=True to continue it or overwrite=True to replace it"
            )
        else:
            self._create()
            self._file = _open_store(self.path, "a")
        file = self._file
        ids = _read_lines(file["images/ids"], int(file.attrs["committed_images"]))
        errors = _read_lines(file["errors"], int(file.attrs["committed_errors"]))
        self._completed = set(ids)
        self._failed = {json.loads(line)["id"] for line in errors}
        images, offsets, counts = len(ids), file["images/box_offset"], file["images/num_boxes"]
        boxes = int(offsets[images - 1] + counts[images - 1]) if images else 0
        self._sizes = {  # committed rows of every dataset; rows after them hold nothing or a killed batch
            "images/ids": len(_encode_lines(ids)),
            **{f"images/{name}": images for name in IMAGE_COLUMNS},
            **{f"boxes/{name}": boxes for name in BOX_COLUMNS},
            "errors": len(_encode_lines(errors)),
        }

    # -- set-up

    def _create(self) -> None:
        """Write the empty layout to a side file and rename it: a kill during creation leaves no half store."""
        partial = self.path.with_name(self.path.name + ".creating")
        settings = self.metadata.settings(self.feature_dtype)
        settings["detector_config"] = json.dumps(settings["detector_config"], sort_keys=True)
        with h5py.File(partial, "w") as file:  # HDF5's default superblock, and the counters first: page 0
            file.attrs.update(dict.fromkeys(_COUNTERS, np.int64(0)))
            file.attrs.update(
                layout=LAYOUT,
                layout_version=LAYOUT_VERSION,
                **settings,
                library_version=library_version(),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            )
        with h5py.File(partial, "a", libver=_DATASET_FORMAT) as file:
            low, high = self._box_range
            chunk_boxes = high if low == high else ADAPTIVE_CHUNK_BOXES
            for name, (dtype, shape) in BOX_COLUMNS.items():
                if name == "features":
                    dtype, shape = self.feature_dtype, (self.metadata.feature_dim,)
                _create_dataset(file, f"boxes/{name}", dtype, shape, chunk_boxes)
            for name, dtype in IMAGE_COLUMNS.items():
                _create_dataset(file, f"images/{name}", dtype, (), IMAGE_CHUNK)
            for name in ("images/ids", "errors"):
                _create_dataset(file, name, np.uint8, (), TEXT_CHUNK)
        os.replace(partial, self.path)

    def _check_resumable(self) -> None:
        """Refuse other settings; rebuild a store whose growth a kill cut short (see `_grow`), before opening
        it for writing (HDF5 would cut such a file at its recorded end on closing it)."""
        with _open_store(self.path, "r") as file:
            version = str(file.attrs["layout_version"])
            differences = _differences(_settings_of(file.attrs), self.metadata.settings(self.feature_dtype))
            intact = not file.attrs["growth_in_progress"]
        if version != LAYOUT_VERSION:
            raise StoreError(f"{self.path} has layout version {version}; this library appends to {LAYOUT_VERSION} only")
        if differences:
            raise StoreError(f"cannot resume {self.path} with different settings ({differences})")
        if not intact:
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
        image_id, height, width = _check_id(fields["id"]), int(fields["height"]), int(fields["width"])
        features = _as_numpy(fields["features"])
        if features.ndim != 2 or features.shape[1] != self.metadata.feature_dim:
            raise ValueError(
                f"image {image_id!r}: features must be (num_boxes, {self.metadata.feature_dim}), got {features.shape}"
            )
        count = len(features)
        low, high = self._box_range
        if not low <= count <= high:
            raise ValueError(f"image {image_id!r} has {count} boxes; this store takes {self.metadata.num_boxes}")
        if self.feature_dtype == "float16" and np.abs(features).max() > _FLOAT16_MAX:
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
        self._commit(
            {
                "images/ids": _encode_lines(ids),
                "images/height": np.array([height for _, height, _, _ in batch]),
                "images/width": np.array([width for _, _, width, _ in batch]),
                "images/num_boxes": num_boxes,
                "images/box_offset": box_offset,
                **{f"boxes/{name}": np.concatenate([columns[name] for *_, columns in batch]) for name in BOX_COLUMNS},
            },
            "committed_images",
            len(batch),
        )
        self._completed.update(ids)

    def add_error(self, image_id: str, reason: str) -> None:
        """Record an image that could not be processed (unreadable file, ...); committed at once."""
        line = json.dumps({"id": _check_id(image_id), "reason": str(reason)})
        self._commit({"errors": _encode_lines([line])}, "committed_errors", 1)
        self._failed.add(image_id)

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
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


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
    """Copy the committed records of a store into a new file that replaces it (see `StoreWriter._grow`)."""
    partial = path.with_name(path.name + ".rebuilding")
    with FeatureStore(path) as store:
        created, count = store.created, len(store)
    merge([path], partial, overwrite=True)
    with h5py.File(partial, "a") as file:
        file.attrs.modify("created", created)
    os.replace(partial, path)
    warnings.warn(
        f"{path}: the job writing it was killed while its datasets grew; its {count} complete records were "
        "copied into a new file, which replaces it",
        stacklevel=3,
    )


def _differences(store: dict[str, Any], other: dict[str, Any], other_name: str = "writer") -> str:
    return "; ".join(
        f"{key}: store has {store[key]!r}, {other_name} has {other[key]!r}" for key in store if store[key] != other[key]
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


# ---------------------------------------------------------------------------------------------------
# Merging shards


def merge(shard_paths: Sequence[str | os.PathLike], output: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Copy the records and errors of shard stores into one new store at ``output``.

    The shards must have been made with the same settings (`StoreMetadata` and feature dtype) and share no
    image id; otherwise nothing is written and the error names the shard and the ids or settings.
    """
    if not shard_paths:
        raise ValueError("merge needs at least one shard")
    shards = [FeatureStore(path) for path in shard_paths]
    try:
        first = shards[0]
        reference = first.metadata.settings(first.feature_dtype)
        owner: dict[str, Path] = {}
        for shard in shards:
            differences = _differences(reference, shard.metadata.settings(shard.feature_dtype), shard.path.name)
            if differences:
                raise StoreError(
                    f"{shard.path} was made with other settings than the store {first.path} ({differences})"
                )
            duplicates = [image_id for image_id in shard.ids() if image_id in owner]
            if duplicates:
                raise DuplicateIdError(
                    f"{len(duplicates)} image id(s) of {shard.path} are also in {owner[duplicates[0]]}"
                    f"{' (or another shard)' if len(shards) > 2 else ''}: {duplicates[:10]}"
                )
            owner.update(dict.fromkeys(shard.ids(), shard.path))
        with StoreWriter(
            output, metadata=first.metadata, feature_dtype=first.feature_dtype, overwrite=overwrite
        ) as out:
            for shard in shards:
                for batch in batched(shard, 256):
                    out.append(batch)
                for image_id, reason in shard.errors().items():
                    out.add_error(image_id, reason)
    finally:
        for shard in shards:
            shard.close()
    return Path(output)
