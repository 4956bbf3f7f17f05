"""Extraction jobs: a whole image collection -> one feature store, resumable, sharded, on any number of GPUs.

    inputs (folders, globs, lists of paths, a `datasets` Dataset) -> (id, source) items -> this shard's
    items, minus those already in the store -> DataLoader workers decode -> the extractor, one batch at
    a time in the main process -> a writer thread commits each batch to the StoreWriter

`run_extraction` is the job; `extract.cli` (the `lxmert-extract` command) parses its options into it.
Under `torchrun` every process extracts its shard into its own file, and rank 0 merges the shards.
docs/extraction-jobs.md describes the options, ids, shards, resume, the error table and exit codes.

Decoding runs in DataLoader worker processes and writing on a thread, so both overlap the detector.
The workers are started before the store is opened for the run (an HDF5 file handle inherited by a
worker would keep the file locked after a kill of the main process, until the orphan worker exits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .checkpoints import locate_checkpoint
from .extractor import RegionFeatureExtractor, RegionFeatures, resolve_device
from .images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageLoadError,
    check_max_image_pixels,
    load_image,
    os_error_reason,
)
from .preprocess import output_size
from .selection import RULES, parse_num_boxes
from .store import (
    FEATURE_DTYPES,
    FeatureStore,
    StoreError,
    StoreMetadata,
    StoreWriter,
    box_range,
    merge,
    output_lock,
)

DEFAULT_DETECTOR = "unc-nlp/frcnn-vg-finetuned"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LIST_SUFFIX = ".txt"
ID_FROM = ("stem", "path")
COMPUTE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The ranks of a torchrun job wait for the slowest shard before rank 0 merges: that wait may be long.
DISTRIBUTED_TIMEOUT = timedelta(days=7)

ImageItem = tuple[str, str | int]  # (image id, file path or dataset row)


class InputError(ValueError):
    """Inputs or options the job cannot start with (names the input and the fix)."""


class JobError(RuntimeError):
    """The job stopped part-way (a failed write); the store keeps every committed batch and can be resumed."""


@dataclass
class JobSummary:
    """What a job did. ``total`` = ``done + skipped + failed + failed_before`` (the inputs of this shard,
    or of every shard under torchrun)."""

    output: Path  # the store written: a shard file with shard=, the merged store under torchrun
    total: int
    done: int  # extracted and committed by this run
    skipped: int  # already in the store (resume)
    failed: int  # could not be used in this run: now in the store's error table
    failed_before: int  # in the error table from an earlier run and not retried
    repeated_rows: int = 0  # dataset rows whose id an earlier row has: extracted once, from the first row
    seconds: float = 0.0  # the extraction loop (decode, detector, write), without start-up
    failures: dict[str, str] = field(default_factory=dict)  # id -> reason, this run's failures
    shards: list[Path] = field(default_factory=list)  # under torchrun: the shard files merged into output

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Every input is in the store (nothing failed, now or before)."""
        return self.failed == 0 and self.failed_before == 0


# ---------------------------------------------------------------------------------------------------
# Inputs -> (id, source) items


def list_images(inputs: str | os.PathLike | Sequence[str | os.PathLike], *, id_from: str = "stem") -> list[ImageItem]:
    """(id, path) of every image the inputs name, in a deterministic order.

    Each input is an image file, a folder (searched recursively for IMAGE_EXTENSIONS, any case; hidden
    files and folders skipped), a glob (``**`` recurses; every file it matches is taken) or a ``.txt``
    file of paths, one per line (relative ones are relative to the list's folder; blank lines and lines
    starting with ``#`` are skipped; a listed file that is missing becomes an error record).
    id_from: "stem" (the file name without its extension) or "path" (the path relative to the folder,
    list file's folder or glob's fixed leading folder it was found through, with its extension, "/"
    separators). Two inputs with one id raise InputError listing them. A file whose name cannot be an id
    (one line of UTF-8 text) is listed as an `UnnamedImage`, which the job records in the error table under
    its name with \\xNN and \\n escapes. A folder that cannot be read raises InputError (it is not skipped).
    """
    if id_from not in ID_FROM:
        raise InputError(f"id_from={id_from!r}: expected one of {', '.join(ID_FROM)}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, (str, os.PathLike)) for i in inputs):
        raise InputError(
            f"inputs is a {type(inputs).__name__}: expected a path or a list of paths (files, folders, globs, .txt "
            "lists), or a datasets.Dataset (not a streaming IterableDataset)"
        )
    if not inputs:
        raise InputError("no inputs: pass image files, folders, globs or .txt lists of paths")
    found: list[tuple[Path, Path]] = []  # (file, root its id is relative to)
    for item in inputs:
        found.extend(_expand(os.fspath(item)))
    items = [_item(path, root, id_from) for path, root in found]
    _refuse_duplicates(items, id_from)
    return items


def _expand(item: str) -> list[tuple[Path, Path]]:
    path = Path(item).expanduser()
    if path.is_dir():
        files = _images_in_folder(path)
        if not files:
            raise InputError(
                f"no images in folder {_shown(path)} (searched recursively for {', '.join(IMAGE_EXTENSIONS)}, any case)"
            )
        return [(file, path) for file in files]
    if path.is_file():
        if path.suffix.lower() == LIST_SUFFIX:
            return _images_in_list(path)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return [(path, path.parent)]
        raise InputError(
            f"{_shown(path)} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a {LIST_SUFFIX} list of image "
            "paths"
        )
    if glob.has_magic(item):
        pattern = os.path.expanduser(item)
        _refuse_unreadable_folders(pattern)
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not files:
            raise InputError(f"the pattern {_shown(item)} matches no files")
        return [(file, _glob_root(item)) for file in files]
    raise InputError(
        f"{_shown(path)}: {_why_unusable(path)} (expected an image, a folder, a glob or a {LIST_SUFFIX} list of paths)"
    )


def _refuse_unreadable_folders(pattern: str) -> None:
    """glob skips a folder it cannot read without a word: refuse one that the pattern would search (every
    folder below the fixed root for a ``**`` pattern, else the folders its folder part matches)."""
    if "**" in pattern:
        folders = [str(_glob_root(pattern))]
    else:
        folders = [folder for folder in glob.glob(os.path.dirname(pattern) or ".") if os.path.isdir(folder)]
    for folder in folders:
        if "**" in pattern:
            _images_in_folder(Path(folder))  # walks the tree, refusing an unreadable folder
            continue
        try:
            os.listdir(folder)
        except OSError as error:
            raise InputError(
                f"cannot read the folder {_shown(folder)} ({error.strerror}) that the pattern {_shown(pattern)} "
                "searches: its images would be left out; fix its permissions or change the pattern"
            ) from None


def _why_unusable(path: Path) -> str:
    """What the OS says of a path that is neither a file nor a folder (a symlink loop is not "missing")."""
    try:
        path.stat()
    except OSError as error:
        return os_error_reason(error, path)
    return "not a regular file or folder"


def _images_in_folder(folder: Path) -> list[Path]:
    def refuse(error: OSError) -> None:  # os.walk would skip an unreadable folder silently
        raise InputError(
            f"cannot read the folder {_shown(error.filename)} ({error.strerror}): its images would be left out; "
            "fix its permissions or move it out of the input folder"
        )

    files = []
    for directory, subfolders, names in os.walk(folder, onerror=refuse):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files.extend(
            Path(directory, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(files, key=lambda file: file.relative_to(folder).parts)


def _images_in_list(list_file: Path) -> list[tuple[Path, Path]]:
    """Paths are bytes to the OS: the list is split at newlines only (a form feed or other separator is part
    of a name) and decoded like file names, so a name that is not UTF-8 becomes that image's error record."""
    root = list_file.parent
    # only spaces and the \r of \r\n are trimmed: str.strip() would also cut a form feed or tab that ends a name
    lines = [os.fsdecode(line).strip(" \r") for line in list_file.read_bytes().split(b"\n")]
    files = [root / Path(line).expanduser() for line in lines if line and not line.startswith("#")]
    if not files:
        raise InputError(f"the list {_shown(list_file)} names no images (one path per line)")
    return [(file, root) for file in files]


def _glob_root(pattern: str) -> Path:
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))]
    return Path(*fixed) if fixed else Path(".")


class UnnamedImage(str):
    """The path of a listed image whose name cannot be an image id, which is one line of UTF-8 text (a file
    name in another encoding, or with a newline): the job records it in the error table, under its name
    with \\xNN and \\n escapes, and stores the other images."""


def _item(path: Path, root: Path, id_from: str) -> ImageItem:
    image_id = path.stem if id_from == "stem" else os.path.relpath(path, root).replace(os.sep, "/")
    if _is_text(image_id) and "\n" not in image_id:
        return image_id, str(path)
    return _one_line(image_id), UnnamedImage(path)


def _is_text(name: str | os.PathLike) -> bool:
    """Whether a name the OS gave (surrogate escapes for bytes that are not UTF-8) is valid UTF-8 text."""
    try:
        os.fspath(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _one_line(name: str | os.PathLike) -> str:
    return _shown(name).replace("\n", "\\n")


def _shown(name: str | os.PathLike) -> str:
    """A name as printable UTF-8 text: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _refuse_duplicates(items: list[ImageItem], id_from: str) -> None:
    sources: dict[str, list[str]] = {}
    for image_id, source in items:
        sources.setdefault(image_id, []).append(str(source))
    repeated = {image_id: paths for image_id, paths in sources.items() if len(paths) > 1}
    if not repeated:
        return
    shown = "; ".join(f"{image_id!r}: {', '.join(paths)}" for image_id, paths in list(repeated.items())[:10])
    same_files = all(len({os.path.realpath(p) for p in paths}) == 1 for paths in repeated.values())
    if same_files:
        hint = "the same file is named twice (by two inputs): remove the duplicates"
    elif id_from == "stem":
        hint = (
            "ids are file stems: pass --id-from path (id_from='path') for ids that keep the folders and the "
            "extension, or remove the duplicates"
        )
    else:
        hint = "give each file one input root, or remove the duplicates"
    raise InputError(f"{len(repeated)} image id(s) belong to more than one input ({shown}); {hint}")


def dataset_images(
    dataset: Any, *, image_column: str = "image", id_column: str | None = None
) -> tuple[list[ImageItem], int]:
    """(id, row) of a `datasets.Dataset`'s images, and how many rows repeat an earlier row's id.

    Ids are row indices (as str) without ``id_column``, else its values as str. Rows with one id (a VQA
    dataset has one row per question) are taken to hold one image: it is extracted once, from its first
    row; the count of the other rows is returned (the job reports it).
    """
    from .hf_datasets import check_columns

    check_columns(dataset, image_column=image_column, id_column=id_column)
    if len(dataset) == 0:
        raise InputError("the dataset has no rows")
    if id_column is None:
        return [(str(row), row) for row in range(len(dataset))], 0
    first_row: dict[str, int] = {}
    for row, value in enumerate(dataset[id_column]):
        image_id = "" if value is None else str(value)
        if not image_id or "\n" in image_id:
            raise InputError(
                f"row {row} of the id column {id_column!r} holds {value!r}: ids must be non-empty, one line"
            )
        first_row.setdefault(image_id, row)
    return list(first_row.items()), len(dataset) - len(first_row)


# ---------------------------------------------------------------------------------------------------
# Shards


def parse_shard(spec: str | tuple[int, int]) -> tuple[int, int]:
    """ "I/N" (or (I, N)) -> (I, N): shard I of N, 0 <= I < N."""
    if isinstance(spec, str):
        index, _, count = spec.partition("/")
        try:
            spec = (int(index), int(count))
        except ValueError:
            raise InputError(f"shard {spec!r}: expected I/N with integers, e.g. 0/4 (the first of 4 shards)") from None
    index, count = spec
    if count < 1:
        raise InputError(f"shard {index}/{count}: the shard count N must be at least 1")
    if not 0 <= index < count:
        raise InputError(f"shard {index}/{count}: the index must be 0 to {count - 1} (shards are numbered from 0)")
    return index, count


def shard_of(image_id: str, count: int) -> int:
    """The shard an id belongs to: a hash of the id, so the split does not depend on the order of the
    inputs or on which other images there are (adding images never moves one to another shard)."""
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_path(output: str | os.PathLike, index: int, count: int) -> Path:
    """The file shard ``index`` of ``count`` is written to: coco.h5 -> coco.shard-00003-of-00008.h5."""
    output = Path(output)
    return output.with_name(f"{output.stem}.shard-{index:05d}-of-{count:05d}{output.suffix}")


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_launch() -> Launch | None:
    """The rank, world size and local rank torchrun gives this process, or None when not launched by it."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if not all(name in os.environ for name in names):
        return None
    return Launch(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))


# ---------------------------------------------------------------------------------------------------
# Decoding (in DataLoader workers) and records


class DecodedImages(torch.utils.data.Dataset):
    """Item i: (id, (H, W, 3) uint8 tensor), or (id, reason) for an image that cannot be used, so that a
    corrupt file becomes an error record instead of stopping the job.

    Sources are file paths, or rows of ``rows`` (a Dataset) whose ``column`` holds the image. Images too
    elongated for the detector's input size are refused here too (min_size / max_size).
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        *,
        min_size: int,
        max_size: int,
        rows: Any = None,
        column: str = "",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        self.items = list(items)
        self.min_size, self.max_size = min_size, max_size
        self.rows, self.column = rows, column
        self.max_image_pixels = max_image_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | str]:
        image_id, source = self.items[index]
        if isinstance(source, UnnamedImage):
            problem = "has a newline" if _is_text(source) else "is not valid UTF-8"
            return image_id, (
                f"{_one_line(source)}: the file name {problem}, and an image id is one line of UTF-8 text; rename "
                "the file and run the job again with --resume"
            )
        try:
            if self.rows is None:
                pixels = load_image(source, max_image_pixels=self.max_image_pixels)
            else:
                from .hf_datasets import image_input

                cell = image_input(self.rows[source][self.column])
                pixels = load_image(cell, max_image_pixels=self.max_image_pixels)
            output_size(*pixels.shape[:2], self.min_size, self.max_size)
        except Exception as error:  # any unusable input is the image's failure, not the job's
            reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            if self.rows is not None:
                return image_id, f"row {source}: {reason}"
            return image_id, reason if isinstance(error, ImageLoadError) else f"{_shown(source)}: {reason}"
        return image_id, torch.from_numpy(pixels)


def _as_list(batch: list) -> list:
    return batch


def regions_to_record(image_id: str, regions: RegionFeatures) -> dict[str, Any]:
    """One image's regions as host numpy arrays under the store's record fields (`FeatureRecord`'s).
    A detector without the attribute head gets attribute ids -1 and attribute scores 0."""
    count = len(regions)
    height, width = regions.image_size
    attribute_ids, attribute_scores = regions.attribute_ids, regions.attribute_scores
    if attribute_ids is None:
        attribute_ids, attribute_scores = torch.full((count,), -1), torch.zeros(count)
    columns = {
        "features": regions.features,  # (K, D)
        "boxes": regions.boxes,  # (K, 4) original pixels
        "normalized_boxes": regions.normalized_boxes,
        "object_ids": regions.object_ids,
        "object_scores": regions.object_scores,
        "attribute_ids": attribute_ids,
        "attribute_scores": attribute_scores,
    }
    record = {name: values.cpu().numpy() for name, values in columns.items()}
    return {"id": image_id, "height": int(height), "width": int(width), **record}


# ---------------------------------------------------------------------------------------------------
# The detector and the store's settings


def load_extractor(
    detector: str | os.PathLike, *, device: str | torch.device | None = None, dtype: str = "float32"
) -> tuple[RegionFeatureExtractor, str]:
    """The extractor (convolutions in ``dtype``; resizing on the device when that is a GPU: bit-identical
    to Pillow's, and off the main process's CPU) and the `weights_sha256` of the weights as loaded, before
    any conversion to ``dtype`` (the same weights in any checkpoint format give the same hash)."""
    if dtype not in COMPUTE_DTYPES:
        raise InputError(f"dtype={dtype!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    device = resolve_device(device)
    extractor = RegionFeatureExtractor.from_pretrained(
        detector, device=device, resize="exact" if device.type == "cpu" else "fast"
    )
    weights = weights_sha256(extractor.detector.state_dict())
    extractor.detector.set_compute_dtype(COMPUTE_DTYPES[dtype])
    return extractor, weights


def weights_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: each tensor's name, dtype, shape and bytes, in name order. Unlike the hash of
    a file, it does not depend on the checkpoint format the weights came in (.pkl, .safetensors, .bin)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{str(values.dtype).removeprefix('torch.')}\0{tuple(values.shape)}\0".encode())
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes: how stores of earlier versions named their detector weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def box_setting(num_boxes: int | str | tuple[int, int] | None, rule: str, detections_per_image: int) -> tuple[str, Any]:
    """(the store's num_boxes spec, the extractor's num_boxes) for a job's num_boxes and rule.

    "d2" takes no num_boxes: it keeps up to the config's detections_per_image, so its store takes
    "1-<detections_per_image>" (an image with no detection becomes an error record).
    """
    if rule not in RULES:
        raise InputError(f"unknown rule {rule!r}: expected one of {', '.join(RULES)}")
    if rule == "d2":
        if num_boxes is not None:
            raise InputError(
                f"the d2 rule keeps up to the config's detections_per_image ({detections_per_image}) boxes and "
                "takes no --num-boxes (num_boxes)"
            )
        return f"1-{detections_per_image}", 36
    num_boxes = 36 if num_boxes is None else num_boxes
    try:
        low, high = box_range(num_boxes) if isinstance(num_boxes, str) else parse_num_boxes(num_boxes)
    except ValueError as error:
        raise InputError(str(error)) from None
    return (str(low), low) if low == high else (f"{low}-{high}", (low, high))


def job_metadata(
    extractor: RegionFeatureExtractor, spec: str, rule: str, checkpoint_sha256: str, *, id_scheme: str = "unknown"
) -> StoreMetadata:
    """StoreMetadata of a job: its num_boxes spec and rule, the detector's config (with the input sizes the
    extractor runs at) plus its compute dtype, the weights' hash, the feature width, how ids were made."""
    config = {**dataclasses.asdict(extractor.config), "compute_dtype": str(extractor.dtype).removeprefix("torch.")}
    feature_dim = extractor.detector.roi_heads.box_predictor.cls_score.in_features
    return StoreMetadata(
        num_boxes=spec,
        rule=rule,
        detector_config=config,
        checkpoint_sha256=checkpoint_sha256,
        feature_dim=feature_dim,
        id_scheme=id_scheme,
    )


def check_resumable(path: Path, metadata: StoreMetadata, feature_dtype: str) -> None:
    """StoreError naming each setting (each detector config key) in which the store at ``path`` differs."""
    with FeatureStore(path) as store:
        theirs = store.metadata.settings(store.feature_dtype)
    ours = metadata.settings(feature_dtype)
    changes = []
    for key, value in ours.items():
        if key == "detector_config":
            keys = sorted(set(value) | set(theirs[key]))
            changes += [
                f"detector_config.{k}: store {theirs[key].get(k)!r}, this job {value.get(k)!r}"
                for k in keys
                if theirs[key].get(k) != value.get(k)
            ]
        elif key == "id_scheme":
            if "unknown" not in (value, theirs[key]) and value != theirs[key]:
                changes.append(
                    f"ids: the store's are {_id_scheme_text(theirs[key])}, this job's {_id_scheme_text(value)}"
                )
        elif theirs[key] != value:
            changes.append(f"{key}: store {theirs[key]!r}, this job {value!r}")
    if changes:
        raise StoreError(
            f"cannot resume {path}: it was made with other settings ({'; '.join(changes)}); run with the store's "
            "settings, write to another output, or replace it with --overwrite (overwrite=True)"
        )


def _id_scheme_text(id_scheme: str) -> str:
    if id_scheme in ID_FROM:
        return f"file {id_scheme}s (--id-from {id_scheme})"
    if id_scheme == "dataset-row":
        return "dataset row indices (no --id-column)"
    if id_scheme.startswith("dataset-column:"):
        return f"the dataset column {id_scheme.partition(':')[2]!r} (--id-column)"
    return repr(id_scheme)


# ---------------------------------------------------------------------------------------------------
# Writing on a thread


class _BackgroundWriter:
    """Commits batches on a thread, in order, so that copying results to the host and writing overlap the
    next batch's compute. A batch: its error records (one commit each), then its records (one append)."""

    def __init__(self, writer: StoreWriter, depth: int = 2):
        self.writer = writer
        self.done = 0
        self.failures: dict[str, str] = {}
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="feature-store-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.error is None:  # after a failure, batches are dropped (the job is stopping)
                try:
                    self._write(*batch)
                except BaseException as error:
                    self.error = error

    def _write(self, results: list[tuple[str, RegionFeatures]], errors: list[tuple[str, str]]) -> None:
        for image_id, reason in errors:
            self.writer.add_error(image_id, reason)
            self.failures[image_id] = reason
        records = [regions_to_record(image_id, regions) for image_id, regions in results]
        self.writer.append(records)
        self.done += len(records)

    def submit(self, results: list[tuple[str, RegionFeatures]], errors: list[tuple[str, str]]) -> None:
        self.raise_if_failed()
        self._queue.put((results, errors))

    def close(self) -> None:
        """Wait until every submitted batch is written (or dropped after a failure)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            path = self.writer.path
            reason = " ".join(str(self.error).split())  # HDF5's messages span lines
            raise JobError(
                f"writing {path} failed: {reason}. The store keeps its {len(self.writer)} complete images and "
                "stays readable; fix the cause (disk space?) and run the same job again with --resume (resume=True)"
            ) from self.error


# ---------------------------------------------------------------------------------------------------
# The job


def run_extraction(
    inputs: Any,
    output: str | os.PathLike,
    *,
    detector: str | os.PathLike = DEFAULT_DETECTOR,
    num_boxes: int | str | tuple[int, int] | None = None,
    rule: str = "caffe",
    device: str | torch.device | None = None,
    dtype: str = "float32",
    batch_size: int = 8,
    num_workers: int = 2,
    feature_dtype: str = "float32",
    resume: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    shard: str | tuple[int, int] | None = None,
    id_from: str = "stem",
    image_column: str = "image",
    id_column: str | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    progress: bool | None = None,
) -> JobSummary:
    """Extract the region features of every input image into the feature store ``output``.

    inputs: image files, folders, globs or .txt lists of paths (`list_images`; ids by ``id_from``), or a
    `datasets.Dataset` (`dataset_images`: images in ``image_column``, ids from ``id_column`` or row indices).
    detector: hub id or folder (`RegionFeatureExtractor.from_pretrained`); device (default: cuda when
    available), dtype (of the convolutions). num_boxes: 36, "36", (10, 100) or "10-100" (default 36; none
    for rule "d2"). batch_size: images per detector call and per committed batch. num_workers: DataLoader
    processes decoding images (0: in this process). feature_dtype: of the stored features.
    max_image_pixels: images with more pixels are refused before decoding (an error record; None: no limit).

    resume: continue an existing store (same settings), skipping the ids it holds and those in its error
    table (``retry_failed``: try those again); overwrite: replace it; neither: an existing output is
    refused (FileExistsError). shard: "I/N" writes shard I of N (split by a hash of the ids) to
    `shard_path(output, I, N)`. Launched by torchrun, each process takes its shard from the launcher and
    rank 0 merges the shards into ``output`` once all are done. progress: a tqdm bar (None: when stderr is
    a terminal; only rank 0 under torchrun).

    Unreadable images are recorded in the store's error table and counted in the summary; an error of the
    detector itself (e.g. out of GPU memory) stops the job, which can then be resumed. Raises InputError
    for bad inputs or options, StoreError for a store that cannot be resumed, JobError for a failed write.
    """
    output = Path(output)
    _check_options(rule, dtype, feature_dtype, batch_size, num_workers, resume, overwrite)
    try:
        check_max_image_pixels(max_image_pixels)
    except ValueError as error:
        raise InputError(str(error)) from None
    launch = torchrun_launch()
    if launch is not None:
        if shard is not None:
            raise InputError("under torchrun each process takes its shard from the launcher: drop shard (--shard)")
        shard, progress = (launch.rank, launch.world_size), progress if launch.rank == 0 else False
    shard = None if shard is None else parse_shard(shard)
    path = output if shard is None else shard_path(output, *shard)
    # Held for the whole job, so that no other job resumes or overwrites this output (or, under torchrun,
    # the merged output) while this one loads the detector, writes, or merges.
    with contextlib.ExitStack() as locks:
        for locked in (path, output) if launch is not None and launch.rank == 0 else (path,):
            locks.enter_context(output_lock(locked))
        return _run_locked(
            inputs, output, path, launch, shard, detector=detector, num_boxes=num_boxes, rule=rule, device=device,
            dtype=dtype, batch_size=batch_size, num_workers=num_workers, feature_dtype=feature_dtype, resume=resume,
            overwrite=overwrite, retry_failed=retry_failed, id_from=id_from, image_column=image_column,
            id_column=id_column, max_image_pixels=max_image_pixels, progress=progress,
        )  # fmt: skip


def _run_locked(
    inputs: Any,
    output: Path,
    path: Path,
    launch: Launch | None,
    shard: tuple[int, int] | None,
    *,
    detector: str | os.PathLike,
    num_boxes: int | str | tuple[int, int] | None,
    rule: str,
    device: str | torch.device | None,
    dtype: str,
    batch_size: int,
    num_workers: int,
    feature_dtype: str,
    resume: bool,
    overwrite: bool,
    retry_failed: bool,
    id_from: str,
    image_column: str,
    id_column: str | None,
    max_image_pixels: int | None,
    progress: bool | None,
) -> JobSummary:
    for existing in {path, output} if launch is not None else {path}:
        if existing.exists() and not (resume or overwrite):
            raise FileExistsError(
                f"{existing} already exists; pass --resume to continue it or --overwrite to replace it"
            )

    is_dataset = _is_hf_dataset(inputs)
    if is_dataset:
        items, repeated_rows = dataset_images(inputs, image_column=image_column, id_column=id_column)
        id_scheme = "dataset-row" if id_column is None else f"dataset-column:{id_column}"
    else:
        items, repeated_rows, id_scheme = list_images(inputs, id_from=id_from), 0, id_from
    if shard is not None:
        items = [item for item in items if shard_of(item[0], shard[1]) == shard[0]]

    group = _join_process_group() if launch is not None else None
    device = _job_device(device, launch)
    extractor, weights = load_extractor(detector, device=device, dtype=dtype)
    spec, extractor_boxes = box_setting(num_boxes, rule, extractor.config.detections_per_image)
    if resume and path.exists():
        weights = _legacy_weights_hash(path, weights, detector)
    metadata = job_metadata(extractor, spec, rule, weights, id_scheme=id_scheme)
    if resume and path.exists():
        check_resumable(path, metadata, feature_dtype)
    with StoreWriter(path, metadata=metadata, feature_dtype=feature_dtype, resume=resume, overwrite=overwrite) as w:
        completed, failed_ids = w.completed_ids(), w.failed_ids()
    failed_before = set() if retry_failed else failed_ids - completed
    todo = [item for item in items if item[0] not in completed and item[0] not in failed_before]
    summary = JobSummary(
        output=path,
        total=len(items),
        done=0,
        skipped=sum(image_id in completed for image_id, _ in items),
        failed=0,
        failed_before=sum(image_id in failed_before for image_id, _ in items),
        repeated_rows=repeated_rows,
    )
    if todo:
        images = DecodedImages(
            todo,
            min_size=extractor.config.min_size_test,
            max_size=extractor.config.max_size_test,
            rows=_image_rows(inputs, image_column) if is_dataset else None,
            column=image_column,
            max_image_pixels=max_image_pixels,
        )
        start = time.perf_counter()
        summary.done, summary.failures = _extract(
            images, path, metadata, feature_dtype, extractor, rule=rule, num_boxes=extractor_boxes,
            spec=spec, batch_size=batch_size, num_workers=num_workers, progress=progress,
        )  # fmt: skip
        summary.seconds = time.perf_counter() - start
        summary.failed = len(summary.failures)
    if launch is None:
        return summary
    return _finish_distributed(launch, group, summary, output, overwrite=resume or overwrite)


def _legacy_weights_hash(path: Path, weights: str, detector: str | os.PathLike) -> str:
    """The weights hash to resume ``path`` with: stores of earlier versions hold the SHA-256 of the weights
    file instead of `weights_sha256`; when that is the file this job loaded, the store's value is kept."""
    with FeatureStore(path) as store:
        theirs = store.metadata.checkpoint_sha256
    if theirs == weights:
        return weights
    weights_file, _ = locate_checkpoint(detector, {}, need_config=False)
    return theirs if file_sha256(weights_file) == theirs else weights


def _check_options(rule, dtype, feature_dtype, batch_size, num_workers, resume, overwrite) -> None:
    if resume and overwrite:
        raise InputError(
            "pass --resume (resume=True: continue the store) or --overwrite (overwrite=True: replace it), not both"
        )
    if rule not in RULES:
        raise InputError(f"unknown rule {rule!r}: expected one of {', '.join(RULES)}")
    if dtype not in COMPUTE_DTYPES:
        raise InputError(f"dtype={dtype!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    if feature_dtype not in FEATURE_DTYPES:
        raise InputError(f"feature_dtype={feature_dtype!r}: expected one of {', '.join(FEATURE_DTYPES)}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise InputError(f"batch_size={batch_size!r}: expected an integer >= 1")
    if not (isinstance(num_workers, int) and num_workers >= 0):
        raise InputError(f"num_workers={num_workers!r}: expected an integer >= 0")


def _job_device(device: str | torch.device | None, launch: Launch | None) -> torch.device:
    """The device asked for (default: cuda when available); under torchrun "cuda" is cuda:LOCAL_RANK."""
    try:
        device = resolve_device(device)
        if device.type == "cuda" and device.index is None:
            index = launch.local_rank if launch is not None else torch.cuda.current_device()
            device = resolve_device(torch.device("cuda", index))
    except ValueError as error:
        raise InputError(str(error)) from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _extract(
    images: DecodedImages,
    path: Path,
    metadata: StoreMetadata,
    feature_dtype: str,
    extractor: RegionFeatureExtractor,
    *,
    rule: str,
    num_boxes: Any,
    spec: str,
    batch_size: int,
    num_workers: int,
    progress: bool | None,
) -> tuple[int, dict[str, str]]:
    """The loop: decoded batches in, committed batches out. Returns (images written, failures)."""
    low, high = box_range(spec)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list)
    batches = iter(loader)  # starts (forks) the workers before the store is opened: see the module docstring
    bar = tqdm(total=len(images), unit="img", desc=path.name, disable=None if progress is None else not progress)
    failed = 0
    try:
        with (
            _worker_deaths_explained(num_workers),
            StoreWriter(path, metadata=metadata, feature_dtype=feature_dtype, resume=True) as writer,
        ):
            background = _BackgroundWriter(writer)
            try:
                for batch in batches:
                    errors = [(image_id, value) for image_id, value in batch if isinstance(value, str)]
                    decoded = [(image_id, value.numpy()) for image_id, value in batch if not isinstance(value, str)]
                    regions = extractor(
                        [pixels for _, pixels in decoded], rule=rule, num_boxes=num_boxes, batch_size=batch_size
                    )
                    results = []
                    for (image_id, _), region in zip(decoded, regions, strict=True):
                        if low <= len(region) <= high:
                            results.append((image_id, region))
                        else:
                            errors.append(
                                (image_id, f"the {rule} rule gave {len(region)} regions; the store takes {spec}")
                            )
                    background.submit(results, errors)
                    failed += len(errors)
                    bar.update(len(batch))
                    if errors:
                        bar.set_postfix(failed=failed, refresh=False)
            finally:
                background.close()
            background.raise_if_failed()
            return background.done, background.failures
    finally:
        bar.close()
        batches = None  # shuts the workers down now, also when an error is on its way up


@contextlib.contextmanager
def _worker_deaths_explained(num_workers: int) -> Iterator[None]:
    """A decoding worker that dies (killed by a signal, out of memory) stops the job with a JobError that says
    so, instead of the loader's bare RuntimeError (raised by its SIGCHLD handler wherever the main thread is)."""
    try:
        yield
    except RuntimeError as error:
        if not str(error).startswith("DataLoader worker"):
            raise
        raise JobError(
            f"an image-decoding worker process died ({error}); it was most likely killed by the system for "
            f"memory (a very large image?) or by a signal. Every committed batch is in the store: run the job "
            f"again with --resume (resume=True), with fewer --num-workers than {num_workers} or 0 to decode in "
            "the main process"
        ) from None


def _is_hf_dataset(inputs: Any) -> bool:
    datasets = sys.modules.get("datasets")  # a Dataset argument means the library is imported
    if datasets is not None and isinstance(inputs, datasets.DatasetDict):
        raise InputError(f"pass one split of the DatasetDict (its splits: {', '.join(inputs)}), e.g. dataset['train']")
    return datasets is not None and isinstance(inputs, datasets.Dataset)


def _image_rows(dataset: Any, image_column: str) -> Any:
    from .hf_datasets import undecoded

    return undecoded(dataset.select_columns([image_column]), image_column)


# ---------------------------------------------------------------------------------------------------
# torchrun


def _join_process_group() -> Any:
    """The gloo group the ranks coordinate over (None: the default group, which this job created). It only
    exchanges a few small Python objects, once, so it needs no GPU, and its wait for the slowest shard
    is bounded by DISTRIBUTED_TIMEOUT only (NCCL's watchdog would stop ranks that wait long)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=DISTRIBUTED_TIMEOUT)
        return None
    return dist.new_group(backend="gloo", timeout=DISTRIBUTED_TIMEOUT)  # the caller's own group stays theirs


def _finish_distributed(
    launch: Launch, group: Any, summary: JobSummary, output: Path, *, overwrite: bool
) -> JobSummary:
    """Wait for every shard, merge them on rank 0, and give every rank the whole job's summary."""
    import torch.distributed as dist

    summaries: list[JobSummary | None] = [None] * launch.world_size
    dist.all_gather_object(summaries, summary, group=group)  # also the barrier: every shard is done
    shards = [shard_path(output, rank, launch.world_size) for rank in range(launch.world_size)]
    total = JobSummary(
        output=output,
        total=sum(s.total for s in summaries),
        done=sum(s.done for s in summaries),
        skipped=sum(s.skipped for s in summaries),
        failed=sum(s.failed for s in summaries),
        failed_before=sum(s.failed_before for s in summaries),
        repeated_rows=summary.repeated_rows,
        seconds=max(s.seconds for s in summaries),
        failures={image_id: reason for s in summaries for image_id, reason in s.failures.items()},
        shards=shards,
    )
    error = None
    if launch.rank == 0:
        try:
            merge(shards, output, overwrite=overwrite)
        except Exception as caught:
            error = f"{type(caught).__name__}: {caught}"
    outcome = [error]
    dist.broadcast_object_list(outcome, src=0, group=group)  # the other ranks wait for the merge
    dist.destroy_process_group(group)  # None: the default group, which this job created
    if outcome[0] is not None:
        raise JobError(
            f"merging the shards into {output} failed ({outcome[0]}); the shards are complete: merge them with "
            f"`lxmert-extract merge {' '.join(map(str, shards))} --output {output}`"
        )
    return total


if __name__ == "__main__":  # torchrun -m extract.jobs ... (the lxmert-extract command line)
    from extract.cli import main

    sys.exit(main())
