"""LXMERT's TSV feature files: read, write, and convert to and from a feature store, byte for byte.

One line per image, tab-separated, no header, each line ended by "\\r\\n" (what Python's csv module
writes, and what the real Caffe file of tests/fixtures/tsv holds). Fields, in order (TSV_FIELDS):
img_id, img_h, img_w, objects_id (base64 of little-endian int64), objects_conf (base64 float32),
attrs_id (base64 int64), attrs_conf (base64 float32), num_boxes, boxes (base64 float32, num_boxes x 4,
x1 y1 x2 y2 in original pixels), features (base64 float32, num_boxes x D). LXMERT's loaders decode a
whole file into memory, which is what the feature store avoids; these functions stream one line at a time.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .store import FeatureRecord, FeatureStore, StoreMetadata, StoreWriter, batched, normalize_boxes

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


class TSVFormatError(ValueError):
    """A line that is not in the LXMERT TSV format; the message names the file, line and field."""


def _lines(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, line) for each non-empty line, "where" naming the file and line number for errors."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip(b"\r\n"):
                yield f"{path}, line {number}", line


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
    image_id = fields[0].decode("utf-8")
    where = f"{where} (image {image_id!r})"
    try:
        height, width, count = int(fields[1]), int(fields[2]), int(fields[7])
    except ValueError:
        raise TSVFormatError(f"{where}: img_h, img_w and num_boxes must be integers") from None
    arrays = {
        name: _decode_array(fields[TSV_FIELDS.index(field)], dtype, f"{where}, field {field}")
        for name, field, dtype in (
            ("object_ids", "objects_id", "<i8"),
            ("object_scores", "objects_conf", "<f4"),
            ("attribute_ids", "attrs_id", "<i8"),
            ("attribute_scores", "attrs_conf", "<f4"),
            ("boxes", "boxes", "<f4"),
            ("features", "features", "<f4"),
        )
    }
    if count < 1:
        raise TSVFormatError(f"{where}: num_boxes is {count}")
    for name, values in arrays.items():
        if len(values) != count * {"boxes": 4, "features": len(values) // count}.get(name, 1):
            raise TSVFormatError(f"{where}: {name} holds {len(values)} values, which does not fit {count} boxes")
    arrays["boxes"], arrays["features"] = arrays["boxes"].reshape(count, 4), arrays["features"].reshape(count, -1)
    return FeatureRecord(
        image_id,
        height,
        width,
        normalized_boxes=normalize_boxes(arrays["boxes"], height, width),
        **arrays,
    )


def read_tsv(path: str | os.PathLike) -> Iterator[FeatureRecord]:
    """Stream the records of an LXMERT TSV file (float32 features as stored), one line at a time."""
    for where, line in _lines(Path(path)):
        yield decode_line(line, where)


def _base64(values: np.ndarray, dtype: str) -> bytes:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes())


def encode_line(record: FeatureRecord) -> bytes:
    """One TSV line of a record, "\\r\\n" included; features are written as float32."""
    if "\t" in record.id or "\n" in record.id:
        raise ValueError(f"image id {record.id!r} contains a tab or newline and cannot be a TSV field")
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
    """Write records as an LXMERT TSV file (through a side file renamed at the end); returns the line count."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with open(partial, "wb") as file:
        for record in records:
            file.write(encode_line(record))
            count += 1
    os.replace(partial, path)
    return count


def import_tsv(
    tsv_path: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    metadata: StoreMetadata | None = None,
    feature_dtype: str = "float32",
    resume: bool = False,
    batch_size: int = 128,
) -> int:
    """Copy an LXMERT TSV file into a new feature store; returns the number of images written.

    float32 (the default) keeps the features exact, so `export_tsv` gives the original file back.
    Without ``metadata`` the store is labelled as imported ("rule": "unknown") and takes the first line's
    box count as its fixed count: pass a ``StoreMetadata`` with ``num_boxes="10-100"`` for an adaptive file.
    ``resume=True`` continues an interrupted import, skipping the images already in the store.
    """
    tsv_path = Path(tsv_path)
    lines = _lines(tsv_path)
    first = next(lines, None)
    if first is None:
        raise TSVFormatError(f"{tsv_path} holds no lines")
    if metadata is None:
        record = decode_line(first[1], first[0])
        metadata = StoreMetadata(
            num_boxes=str(record.num_boxes),
            rule="unknown",
            detector_config={"imported_from": tsv_path.name},
            checkpoint_sha256="unknown",
            feature_dim=record.features.shape[1],
        )
    written = 0
    with StoreWriter(store_path, metadata=metadata, feature_dtype=feature_dtype, resume=resume) as writer:
        done = writer.completed_ids()  # skipped; a line repeating an id of this file is an error (the writer's)
        records = (
            decode_line(line, where)
            for where, line in itertools.chain([first], lines)
            if line.split(b"\t", 1)[0].decode("utf-8") not in done
        )
        for batch in batched(records, batch_size):
            writer.append(batch)
            written += len(batch)
    return written


def export_tsv(store_path: str | os.PathLike, tsv_path: str | os.PathLike, ids: Sequence[str] | None = None) -> int:
    """Write the records of a store (``ids`` in that order, or all in store order) as an LXMERT TSV file."""
    with FeatureStore(store_path) as store:
        return write_tsv(store if ids is None else (store[image_id] for image_id in ids), tsv_path)
