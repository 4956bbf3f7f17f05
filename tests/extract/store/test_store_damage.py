"""Damaged stores: every failure to read one is a StoreError naming the file and the damaged part, and the
checksums of layout 1.1 catch damage in the data; stores of layout 1.0 (no checksums) still open, read,
resume and merge.

Damage is made by flipping bits of a real store's bytes, where HDF5 or the checksums must notice it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import DIM, assert_record_equal, metadata, record, write_store

from extract.boxes import normalize_boxes
from extract.store import FeatureDataset, FeatureStore, StoreError, StoreWriter, VerifyReport, merge, verify
from extract.store.store import LAYOUT_VERSION

RECORDS = [record(i, 10 + 3 * i) for i in range(8)]
BOX_NAMES = (
    "features",
    "boxes",
    "normalized_boxes",
    "object_ids",
    "object_scores",
    "attribute_ids",
    "attribute_scores",
)
ERRORS = {"broken.jpg": "cannot identify image file", "gone.png": "No such file or directory"}


def make_store(path: Path) -> Path:
    """8 records in 2 batches and 2 errors, float16 features (DIM wide)."""
    with StoreWriter(path, metadata=metadata(id_scheme="stem")) as writer:
        writer.append(RECORDS[:4])
        writer.add_error("broken.jpg", ERRORS["broken.jpg"])
        writer.append(RECORDS[4:])
        writer.add_error("gone.png", ERRORS["gone.png"])
    return path


def flipped(data: bytes, position: int, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 1 << bit
    return bytes(damaged)


def file_offset(path: Path, name: str, row: int) -> int:
    """Where row ``row`` of the dataset ``name`` lies in the file (from its chunk's address)."""
    with h5py.File(path, "r") as file:
        dataset = file[name]
        chunk_rows = dataset.chunks[0]
        chunk = dataset.id.get_chunk_info_by_coord((row // chunk_rows * chunk_rows, *[0] * (dataset.ndim - 1)))
        row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:]))
        return chunk.byte_offset + row % chunk_rows * row_bytes


def first_box_row(i: int) -> int:
    return sum(len(r["features"]) for r in RECORDS[:i])


def damage(path: Path, position: int, bit: int = 0) -> None:
    path.write_bytes(flipped(path.read_bytes(), position, bit))


def read_everything(path: Path) -> None:
    """Everything the store holds, as written (AssertionError otherwise), or StoreError."""
    with FeatureStore(path) as store:
        assert store.metadata == metadata(id_scheme="stem") and store.feature_dtype == "float16"
        assert store.ids() == [r["id"] for r in RECORDS]
        for stored, expected in zip(store, RECORDS, strict=True):
            assert_record_equal(stored, expected)
        for expected in RECORDS[::3]:
            assert_record_equal(store[expected["id"]], expected)
        assert store.errors() == ERRORS


def test_single_bit_flips_anywhere_give_the_data_as_written_or_a_store_error(tmp_path):
    """Flips in the first 8 KiB (one byte in every 8, where HDF5's structures and the root attributes lie;
    STORE_FUZZ_ALL=1: every byte), at random through the file, and in every record's rows, text and
    checksum. Each outcome is either everything as written or StoreError, and verify() agrees."""
    path = make_store(tmp_path / "s.h5")
    data = path.read_bytes()
    rng = np.random.default_rng(11)
    if os.environ.get("STORE_FUZZ_ALL"):
        positions = list(range(8192))
    else:
        positions = [start + int(rng.integers(8)) for start in range(0, 8192, 8)]
    positions += [int(position) for position in rng.integers(8192, len(data), 150)]
    in_records = [file_offset(path, f"boxes/{name}", first_box_row(i) + 2) for i in (0, 5) for name in BOX_NAMES]
    in_records += [
        file_offset(path, name, row)
        for name, row in (("images/checksum", 5), ("images/ids", 30), ("errors", 10), ("images/num_boxes", 7))
    ]
    damaged = tmp_path / "damaged.h5"
    outcomes: Counter[str] = Counter()
    for position in [*positions, *in_records]:
        bit = int(rng.integers(8))
        damaged.write_bytes(flipped(data, position, bit))
        try:
            read_everything(damaged)
            outcome = "as written"
        except StoreError as error:
            outcome = "StoreError"
            assert str(error).startswith(f"{damaged} ") and "damaged" in str(error), error
        except Exception as error:
            pytest.fail(f"bit {bit} of byte {position} flipped: {type(error).__name__}: {error}")
        report = verify(damaged)
        assert report.ok == (outcome == "as written"), (position, bit, outcome, report)
        if position in in_records:
            assert outcome == "StoreError", (position, bit)
        outcomes[outcome] += 1
    assert outcomes["StoreError"] > 100 and outcomes["as written"] > 100, outcomes  # both kinds of byte were hit


def test_a_damaged_record_is_named_by_every_reader_and_the_others_stay_readable(tmp_path):
    path = make_store(tmp_path / "s.h5")
    damage(path, file_offset(path, "boxes/features", first_box_row(1) + 2), bit=3)  # a feature of RECORDS[1]
    damaged_id = RECORDS[1]["id"]
    message = rf"s\.h5 is damaged: record '{damaged_id}' \(image 1\) does not match its checksum"
    with FeatureStore(path) as store:
        with pytest.raises(StoreError, match=message):
            store[damaged_id]
        with pytest.raises(StoreError, match=message):
            list(store)
        for expected in RECORDS[:1] + RECORDS[2:]:
            assert_record_equal(store[expected["id"]], expected)
        assert store.errors() == ERRORS
    with FeatureStore(path, verify_checksums=False) as store:  # the damage is then not noticed
        assert store[damaged_id].features.shape == (13, DIM)
    dataset = FeatureDataset(path)
    with pytest.raises(StoreError, match=message):
        dataset[1]
    assert dataset[2]["id"] == RECORDS[2]["id"]
    del dataset  # and with it the file it keeps open

    report = verify(path)
    assert (report.images_checked, report.errors_checked, report.checksums) == (8, 2, True)
    assert list(report.damaged) == [damaged_id] and report.problems == [] and not report.ok

    existing = write_store(tmp_path / "merged.h5", [record(30)])
    before = existing.read_bytes()
    with pytest.raises(StoreError, match=message):
        merge([path], existing, overwrite=True)
    assert existing.read_bytes() == before  # a failed merge leaves the output as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.h5", "s.h5"]

    with StoreWriter(path, metadata=metadata(), resume=True) as writer:  # resuming writes after the last record
        writer.append([record(20)])
    assert verify(path).damaged.keys() == {damaged_id}


def test_a_damaged_last_record_stops_a_resume_before_it_writes(tmp_path):
    path = make_store(tmp_path / "s.h5")
    damage(path, file_offset(path, "images/box_offset", 7), bit=4)  # where the last record's boxes start
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"s\.h5 is damaged: its last record '{RECORDS[7]['id']}' \(image 7\)"):
        StoreWriter(path, metadata=metadata(), resume=True)
    assert path.read_bytes() == before
    assert list(verify(path).damaged) == [RECORDS[7]["id"]]


DAMAGED_ID = flipped(RECORDS[0]["id"].encode(), 3, 1).decode()  # "COCM_val2014_...": still a valid id


@pytest.mark.parametrize(
    ("name", "byte", "bit", "message", "resumable"),
    [
        ("settings", 5, 2, r"its settings \(the dataset settings\) do not match their checksum", False),
        ("images/ids", 3, 1, rf"its id text does not match its checksums \(line 1 \('{DAMAGED_ID}'\)\)", False),
        ("errors", 12, 2, r"line 1 of its error table does not match its checksum", False),
    ],
)
def test_damage_outside_the_records_is_named_by_every_entry_point(tmp_path, name, byte, bit, message, resumable):
    path = make_store(tmp_path / "s.h5")
    with h5py.File(path, "r") as file:
        start = file[name].id.get_offset() if name == "settings" else file_offset(path, name, 0)
    damage(path, start + byte, bit)
    message = rf"s\.h5 is damaged: {message}"

    def read_all() -> None:
        with FeatureStore(path) as store:
            list(store)
            store.errors()

    entries = [read_all, lambda: merge([path], tmp_path / "merged.h5")]
    if name != "errors":  # a Dataset reads no error
        entries.append(lambda: FeatureDataset(path)[0])
    for entry in entries:
        with pytest.raises(StoreError, match=message):
            entry()
    assert not (tmp_path / "merged.h5").exists()
    report = verify(path)
    assert not report.ok and re.search(message, " ".join([*report.problems, *report.damaged.values()]))
    if resumable:  # a damaged id is not where the writer writes: resuming goes on, verify keeps naming it
        StoreWriter(path, metadata=metadata(), resume=True).close()
    else:
        with pytest.raises(StoreError, match=message):
            StoreWriter(path, metadata=metadata(), resume=True)


def test_verify_reports_every_damaged_record_and_error_line(tmp_path):
    path = make_store(tmp_path / "s.h5")
    for row in (0, 5, 6):
        damage(path, file_offset(path, "boxes/object_ids", first_box_row(row) + 4))
    second_line = len(json.dumps({"id": "broken.jpg", "reason": ERRORS["broken.jpg"]})) + 1
    damage(path, file_offset(path, "errors", second_line + 10), bit=1)
    report = verify(path)
    assert sorted(report.damaged) == sorted(RECORDS[row]["id"] for row in (0, 5, 6))
    assert all("does not match its checksum" in text for text in report.damaged.values())
    assert len(report.problems) == 1 and "line 2 of its error table does not match its checksum" in report.problems[0]
    assert (report.images_checked, report.errors_checked) == (8, 2)
    assert verify(make_store(tmp_path / "good.h5")) == VerifyReport(tmp_path / "good.h5", 8, 2, True, {}, [])


def test_verify_reports_a_store_that_cannot_be_opened(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    report = verify(tmp_path / "x.h5")
    assert not report.ok and report.images_checked == 0 and "x.h5" in report.problems[0]
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "missing.h5")


# ---------------------------------------------------------------------------------------------------
# Layout 1.0: no checksums, settings in root attributes only


def write_layout_1_0(path: Path, records: list[dict], errors: dict[str, str]) -> Path:
    """A store as the 1.0 writer made it (docs/feature-store.md before 1.1): string root attributes, no
    settings dataset, no checksums, the default HDF5 superblock."""
    with h5py.File(path, "w") as file:
        file.attrs.update(dict.fromkeys(["committed_images", "committed_errors", "growth_in_progress"], np.int64(0)))
        file.attrs.update(
            layout="lxmert-feature-store",
            layout_version="1.0",
            num_boxes="10-100",
            rule="caffe",
            detector_config=json.dumps(metadata().detector_config, sort_keys=True),
            checkpoint_sha256="ab" * 32,
            feature_dim=DIM,
            feature_dtype="float16",
            library_version="0.1.0",
            created="2026-01-02T03:04:05Z",
        )
    counts = np.array([len(r["features"]) for r in records])
    columns = {
        "images/ids": (np.frombuffer("".join(f"{r['id']}\n" for r in records).encode(), np.uint8), 65536),
        "images/height": (np.array([r["height"] for r in records], np.int32), 1024),
        "images/width": (np.array([r["width"] for r in records], np.int32), 1024),
        "images/num_boxes": (counts.astype(np.int32), 1024),
        "images/box_offset": (np.cumsum(counts) - counts, 1024),
        "boxes/features": (np.concatenate([r["features"] for r in records]).astype(np.float16), 32),
        "boxes/normalized_boxes": (
            np.concatenate([normalize_boxes(r["boxes"], r["height"], r["width"]) for r in records]),
            32,
        ),
        "errors": (
            np.frombuffer(
                "".join(json.dumps({"id": i, "reason": r}) + "\n" for i, r in errors.items()).encode(), np.uint8
            ),
            65536,
        ),
    }
    for name in ("boxes", "object_ids", "object_scores", "attribute_ids", "attribute_scores"):
        columns[f"boxes/{name}"] = (np.concatenate([r[name] for r in records]), 32)
    with h5py.File(path, "a", libver=("v110", "latest")) as file:
        for name, (values, chunk) in columns.items():
            file.create_dataset(
                name, data=values, maxshape=(None, *values.shape[1:]), chunks=(chunk, *values.shape[1:])
            )
        file.attrs.modify("committed_images", np.int64(len(records)))
        file.attrs.modify("committed_errors", np.int64(len(errors)))
    return path


def test_a_layout_1_0_store_opens_reads_resumes_and_merges(tmp_path):
    path = write_layout_1_0(tmp_path / "old.h5", RECORDS[:5], ERRORS)
    with FeatureStore(path) as store:
        assert (store.layout_version, store.created) == ("1.0", "2026-01-02T03:04:05Z")
        assert store.metadata == metadata()  # id_scheme "unknown"
        for stored, expected in zip(store, RECORDS[:5], strict=True):
            assert_record_equal(stored, expected)
        assert store.errors() == ERRORS
    assert verify(path) == VerifyReport(path, 5, 2, False, {}, [])

    # A half-done 1.0 job resumes (its job now knows its id scheme), and the store stays 1.0.
    with StoreWriter(path, metadata=metadata(id_scheme="stem"), resume=True) as writer:
        assert writer.completed_ids() == {r["id"] for r in RECORDS[:5]} and writer.failed_ids() == set(ERRORS)
        writer.append(RECORDS[5:])
        writer.add_error("late.jpg", "truncated")
    with h5py.File(path, "r") as file:
        assert file.attrs["layout_version"] == "1.0" and "checksum" not in file["images"] and "settings" not in file
    with FeatureStore(path) as store:
        for stored, expected in zip(store, RECORDS, strict=True):
            assert_record_equal(stored, expected)
        assert store.errors() == ERRORS | {"late.jpg": "truncated"}

    merge([path], tmp_path / "merged.h5")  # the copy is a 1.1 store, with checksums
    with FeatureStore(tmp_path / "merged.h5") as merged:
        assert merged.layout_version == LAYOUT_VERSION == "1.1" and merged.ids() == [r["id"] for r in RECORDS]
    assert verify(tmp_path / "merged.h5") == VerifyReport(tmp_path / "merged.h5", 8, 3, True, {}, [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.attrs.__setitem__("detector_config", '{"score_thresh_test": 0.2, "anchor'),
            r"its root attribute 'detector_config' \(JSONDecodeError",
        ),
        (
            lambda f: f.attrs.__setitem__("rule", np.bytes_(b"caf\xe9")),
            r"its root attribute 'rule' \(TypeError: expected a string",
        ),
        (lambda f: f.attrs.__delitem__("committed_errors"), r"its root attribute 'committed_errors' \(KeyError"),
        (
            lambda f: f.attrs.__setitem__("num_boxes", "10-"),
            r"its settings \(the settings it was made with\) \(ValueError: num_boxes must be",
        ),
        (
            lambda f: f.attrs.__setitem__("layout_version", "1.O"),
            r"its layout version is '1\.O', not a version like '1\.1'",
        ),
        (
            lambda f: f.attrs.modify("committed_images", np.int64(9)),
            r"its id text holds 5 complete lines where the store counts 9",
        ),
        (lambda f: f["images/ids"].__setitem__(3, 0xFF), r"line 1 of its id text is not UTF-8"),
        (
            lambda f: f["images/num_boxes"].__setitem__(2, 1000),
            r"the index of record 'COCO_val2014_000000000002' \(image 2\) says 1000 boxes",
        ),
        (lambda f: f["errors"].__setitem__(0, ord("x")), r"line 1 of its error table \(JSONDecodeError"),
        (lambda f: f.__delitem__("boxes/object_scores"), r"cannot read the dataset boxes/object_scores \(KeyError"),
    ],
)
def test_damage_to_a_layout_1_0_store_is_a_store_error_naming_the_part(tmp_path, change, message):
    path = write_layout_1_0(tmp_path / "old.h5", RECORDS[:5], ERRORS)
    with h5py.File(path, "a") as file:
        change(file)
    message = rf"old\.h5 is damaged: .*{message}"

    def read_all() -> None:
        with FeatureStore(path) as store:
            list(store)
            store.errors()

    with pytest.raises(StoreError, match=message):
        read_all()
    with pytest.raises(StoreError, match=message):
        merge([path], tmp_path / "merged.h5")
    report = verify(path)
    assert not report.ok and re.search(message, " ".join([*report.problems, *report.damaged.values()]))
