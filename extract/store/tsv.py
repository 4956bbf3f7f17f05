"""LXMERT's TSV feature files: read, write, and convert to and from a feature store, byte for byte.

One line per image, tab-separated, no header, each line ended by "\\r\\n" (what Python's csv module
writes, and what the real Caffe file of tests/fixtures/tsv holds). Fields, in order (TSV_FIELDS):
img_id, img_h, img_w, objects_id (base64 of little-endian int64), objects_conf (base64 float32),
attrs_id (base64 int64), attrs_conf (base64 float32), num_boxes, boxes (base64 float32, num_boxes x 4,
x1 y1 x2 y2 in original pixels), features (base64 float32, num_boxes x D). LXMERT's loaders decode a
whole file into memory, which is what the feature store avoids; these functions stream one line at a time.

Bad input raises TSVFormatError naming the file, line, image and field, also for a line the store would
refuse (another box count or feature width, the float16 range); an import commits the lines before it.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..boxes import normalize_boxes
from ..options import parse_box_range
from .lock import output_lock
from .store import (
    FLOAT16_MAX,
    MAX_IMAGE_SIDE,
    FeatureRecord,
    FeatureStore,
    StoreMetadata,
    StoreWriter,
)

TSV_FIELDS = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)
LINE_END = b"\r\n"
ARRAY_FIELDS = {  # base64 fields -> little-endian dtype
    "objects_id": "<i8",
    "objects_conf": "<f4",
    "attrs_id": "<i8",
    "attrs_conf": "<f4",
    "boxes": "<f4",
    "features": "<f4",
}


class TSVFormatError(ValueError):
    """A line that is not in the LXMERT TSV format; the message names the file, line and field."""


def _lines(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, line) for each non-empty line, "where" naming the file and line number for errors."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a TSV file")
    if not path.exists():
        raise FileNotFoundError(f"TSV file {path} does not exist")
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip(b"\r\n"):
                yield f"{path}, line {number}", line


def _image_id(line: bytes, where: str) -> str:
    """The img_id field of a line, which must be non-empty UTF-8 text."""
    field = line.split(b"\t", 1)[0].rstrip(b"\r\n")
    try:
        image_id = field.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TSVFormatError(
            f"{where}: field img_id is not UTF-8 text ({error.reason} at byte {error.start}: {field!r})"
        ) from None
    if not image_id:
        raise TSVFormatError(f"{where}: field img_id is empty")
    return image_id


def _unwritable_id(image_id: str) -> bool:
    # A tab would split the field; LXMERT's loaders read with universal newlines, so "\r" ends a line too.
    return any(character in image_id for character in "\t\r\n")


def _decode_array(field: bytes, dtype: str, where: str) -> np.ndarray:
    # Files converted by Python 3 scripts written for Python 2 carry the repr of bytes: b'...'
    if field.startswith(b"b'") and field.endswith(b"'"):
        field = field[2:-1]
    try:
        data = base64.b64decode(field)
    except binascii.Error as error:
        raise TSVFormatError(f"{where}: not valid base64 ({error})") from None
    if len(data) % np.dtype(dtype).itemsize:
        raise TSVFormatError(f"{where}: {len(data)} bytes is not a whole number of {np.dtype(dtype).name} values")
    return np.frombuffer(data, dtype=dtype)


def decode_line(line: bytes, where: str = "TSV line") -> FeatureRecord:
    """One TSV line (with or without its line end) -> its record; errors start with ``where``."""
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != len(TSV_FIELDS):
        raise TSVFormatError(
            f"{where}: {len(fields)} tab-separated fields, expected {len(TSV_FIELDS)} ({', '.join(TSV_FIELDS)})"
        )
    image_id = _image_id(line, where)
    where = f"{where} (image {image_id!r})"
    try:
        height, width, count = int(fields[1]), int(fields[2]), int(fields[7])
    except ValueError:
        raise TSVFormatError(f"{where}: img_h, img_w and num_boxes must be integers") from None
    for field, value in (("img_h", height), ("img_w", width)):
        if not 1 <= value <= MAX_IMAGE_SIDE:  # the store keeps them as int32; 0 would divide the boxes by zero
            raise TSVFormatError(f"{where}: field {field} is {value}, not a size in pixels (1 to {MAX_IMAGE_SIDE})")
    if count < 1:
        raise TSVFormatError(f"{where}: field num_boxes is {count}, a line needs one box at least")
    arrays = {
        field: _decode_array(fields[TSV_FIELDS.index(field)], dtype, f"{where}, field {field}")
        for field, dtype in ARRAY_FIELDS.items()
    }
    if not len(arrays["features"]):
        raise TSVFormatError(f"{where}: field features is empty")
    for field, values in arrays.items():
        per_box = {"boxes": 4, "features": len(values) // count}.get(field, 1)
        if not per_box or len(values) != count * per_box:
            raise TSVFormatError(
                f"{where}: field {field} holds {len(values)} values, which does not fit num_boxes {count}"
            )
    for field, values in arrays.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            per_box = len(values) // count
            first = int(np.flatnonzero(~np.isfinite(values))[0])
            raise TSVFormatError(
                f"{where}: field {field} holds {values[first]} (box {first // per_box}): features, boxes and "
                "scores must be finite numbers"
            )
    return FeatureRecord(
        image_id,
        height,
        width,
        features=arrays["features"].reshape(count, -1),
        boxes=arrays["boxes"].reshape(count, 4),
        normalized_boxes=normalize_boxes(arrays["boxes"].reshape(count, 4), height, width),
        object_ids=arrays["objects_id"],
        object_scores=arrays["objects_conf"],
        attribute_ids=arrays["attrs_id"],
        attribute_scores=arrays["attrs_conf"],
    )


def read_tsv(path: str | os.PathLike) -> Iterator[FeatureRecord]:
    """Stream the records of an LXMERT TSV file (float32 features as stored), one line at a time."""
    for where, line in _lines(Path(path)):
        yield decode_line(line, where)


def _base64(values: np.ndarray, dtype: str) -> bytes:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes())


def encode_line(record: FeatureRecord) -> bytes:
    """One TSV line of a record, "\\r\\n" included; features are written as float32."""
    if _unwritable_id(record.id):
        raise TSVFormatError(
            f"image id {record.id!r} holds a tab, carriage return or newline: it cannot be a TSV field"
        )
    return (
        b"\t".join(
            (
                record.id.encode("utf-8"),
                str(int(record.height)).encode(),
                str(int(record.width)).encode(),
                _base64(record.object_ids, "<i8"),
                _base64(record.object_scores, "<f4"),
                _base64(record.attribute_ids, "<i8"),
                _base64(record.attribute_scores, "<f4"),
                str(record.num_boxes).encode(),
                _base64(record.boxes, "<f4"),
                _base64(record.features, "<f4"),
            )
        )
        + LINE_END
    )


def write_tsv(records: Iterable[FeatureRecord], path: str | os.PathLike) -> int:
    """Write records as an LXMERT TSV file; returns the line count.

    The lines go to a side file renamed at the end, so an error or a kill never leaves a partial file at
    ``path`` (an error removes the side file); a symlink at ``path`` stays, its target is written.
    """
    path = Path(os.path.realpath(path))
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        with open(partial, "wb") as file:
            for record in records:
                file.write(encode_line(record))
                count += 1
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _check_fits(record: FeatureRecord, metadata: StoreMetadata, feature_dtype: str, where: str) -> None:
    """Refuse a decoded line that the store would refuse, in TSV terms (file, line, field)."""
    where = f"{where} (image {record.id!r})"
    low, high = parse_box_range(metadata.num_boxes)
    if not low <= record.num_boxes <= high:
        raise TSVFormatError(
            f"{where}: field num_boxes is {record.num_boxes}; the store takes {metadata.num_boxes} boxes per image "
            "(a file whose lines have different box counts needs a range of counts, such as 10-100)"
        )
    if record.features.shape[1] != metadata.feature_dim:
        raise TSVFormatError(
            f"{where}: field features holds {record.features.shape[1]} values per box; the store takes "
            f"{metadata.feature_dim}"
        )
    if feature_dtype == "float16" and np.abs(record.features).max() > FLOAT16_MAX:
        raise TSVFormatError(
            f"{where}: field features holds {np.abs(record.features).max():g}, beyond the float16 range "
            f"(+-{FLOAT16_MAX:g}): import the file as float32"
        )


def import_tsv(
    tsv_path: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    metadata: StoreMetadata | None = None,
    num_boxes: str | None = None,
    feature_dtype: str = "float32",
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 128,
) -> int:
    """Copy an LXMERT TSV file into a new feature store; returns the number of images written.

    float32 (the default) keeps the features exact, so `export_tsv` gives the original file back.
    Without ``metadata`` the store is labelled as imported ("rule": "unknown", "id_scheme": "tsv"), takes
    the first line's feature width, and ``num_boxes`` boxes per image: the first line's count by default,
    a range such as "10-100" for an adaptive file. ``resume=True`` continues an interrupted import, skipping
    the images already in the store. ``overwrite=True`` replaces an existing store once the whole file is
    imported: the import goes to the side file ``<store>.importing``, renamed at the end, and the store is
    locked (`output_lock`) all along, so an error leaves it as it was and another process writing it makes
    this refuse (StoreBusyError) before anything is read.

    The first line is checked before any store is created. A later line that is malformed, repeats an id,
    or does not fit the store (box count, feature width, float16 range) raises `TSVFormatError` naming the
    file, line and field, after the lines before it are committed (without ``overwrite``): ``resume=True``
    continues after them. A symlink at ``store_path`` stays, its target is written.
    """
    if metadata is not None and num_boxes is not None:
        raise ValueError("pass metadata or num_boxes, not both (metadata holds num_boxes)")
    if resume and overwrite:
        raise ValueError("pass resume=True (continue the store) or overwrite=True (replace it), not both")
    tsv_path = Path(tsv_path)
    output = Path(os.path.realpath(store_path))
    with output_lock(output):
        lines = _lines(tsv_path)
        first = next(lines, None)
        if first is None:
            raise TSVFormatError(f"{tsv_path} holds no lines")
        record = decode_line(first[1], first[0])
        if metadata is None:
            metadata = StoreMetadata(
                num_boxes=str(record.num_boxes) if num_boxes is None else num_boxes,
                rule="unknown",
                detector_config={"imported_from": tsv_path.name},
                checkpoint_sha256="unknown",
                feature_dim=record.features.shape[1],
                id_scheme="tsv",
            )
        _check_fits(record, metadata, feature_dtype, first[0])
        lines = itertools.chain([first], lines)
        if not overwrite:
            return _write_records(lines, output, metadata, feature_dtype, resume, batch_size)
        side = output.with_name(output.name + ".importing")
        try:  # overwrite=True replaces a side file that a killed import left
            written = _write_records(lines, side, metadata, feature_dtype, False, batch_size, overwrite=True)
            os.replace(side, output)
        except BaseException:
            side.unlink(missing_ok=True)
            raise
        return written


def _write_records(
    lines: Iterable[tuple[str, bytes]],
    path: Path,
    metadata: StoreMetadata,
    feature_dtype: str,
    resume: bool,
    batch_size: int,
    overwrite: bool = False,
) -> int:
    written = 0
    with StoreWriter(path, metadata=metadata, feature_dtype=feature_dtype, resume=resume, overwrite=overwrite) as out:
        batch: list[FeatureRecord] = []
        try:
            for record in _records_to_import(lines, out.completed_ids(), metadata, feature_dtype):
                batch.append(record)
                if len(batch) == batch_size:
                    out.append(batch)
                    written, batch = written + len(batch), []
        except TSVFormatError:
            out.append(batch)  # the valid lines before the bad one: a resumed import continues after them
            raise
        out.append(batch)
    return written + len(batch)


def _records_to_import(
    lines: Iterable[tuple[str, bytes]], done: set[str], metadata: StoreMetadata, feature_dtype: str
) -> Iterator[FeatureRecord]:
    """The records of the lines whose id is not in ``done``, each checked to fit the store."""
    first_seen: dict[str, str] = {}  # id -> where, for the ids of this file
    for where, line in lines:
        image_id = _image_id(line, where)
        if image_id in done:
            continue
        if image_id in first_seen:
            raise TSVFormatError(
                f"{where}: image id {image_id!r} is also on {first_seen[image_id]}; a store holds each image once"
            )
        record = decode_line(line, where)
        _check_fits(record, metadata, feature_dtype, where)
        first_seen[image_id] = where.rsplit(", ", 1)[-1]
        yield record


def export_tsv(store_path: str | os.PathLike, tsv_path: str | os.PathLike, ids: Sequence[str] | None = None) -> int:
    """Write the records of a store (``ids`` in that order, or all in store order) as an LXMERT TSV file.

    An id that cannot be a TSV field (a tab, carriage return or newline in it) is refused before anything
    is written. A symlink at ``tsv_path`` stays, its target is written.
    """
    with FeatureStore(store_path) as store:
        chosen = store.ids() if ids is None else list(ids)
        unwritable = [image_id for image_id in chosen if _unwritable_id(image_id)]
        if unwritable:
            raise TSVFormatError(
                f"{len(unwritable)} image id(s) of {store_path} hold a tab, carriage return or newline, which a TSV "
                f"field cannot: {unwritable[:10]}"
            )
        return write_tsv(store if ids is None else (store[image_id] for image_id in chosen), tsv_path)
