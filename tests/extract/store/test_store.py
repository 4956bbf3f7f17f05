"""FeatureStore, StoreWriter, FeatureDataset and merge: round trips, layout, bad input, failed writes."""

from __future__ import annotations

import importlib.metadata
import json
import pickle
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import DIM, assert_record_equal, metadata, record, rewrite_settings, write_store

from extract.store import DuplicateIdError, FeatureRecord, FeatureStore, StoreError, StoreWriter, merge
from extract.store.store import LAYOUT_VERSION

# ---------------------------------------------------------------------------------------------------
# Round trips and layout


@pytest.mark.parametrize("feature_dtype", ["float16", "float32"])
@pytest.mark.parametrize("num_boxes", ["36", "10-100"])
def test_records_read_back_exactly(tmp_path, feature_dtype, num_boxes):
    count = 36 if num_boxes == "36" else None
    records = [record(i, count) for i in range(11)]
    write_store(tmp_path / "s.h5", records, num_boxes, feature_dtype)
    with FeatureStore(tmp_path / "s.h5") as store:
        assert len(store) == 11
        assert store.ids() == [r["id"] for r in records]
        assert records[3]["id"] in store and "COCO_val2014_missing" not in store
        for expected in reversed(records):  # random access
            assert_record_equal(store[expected["id"]], expected, feature_dtype)
        for stored, expected in zip(store, records, strict=True):  # iteration, in store order
            assert_record_equal(stored, expected, feature_dtype)
        assert store[records[0]["id"]].features.dtype == np.dtype(feature_dtype)
        assert store.feature_dtype == feature_dtype


def test_store_metadata(tmp_path):
    write_store(tmp_path / "s.h5", [record(0)])
    with FeatureStore(tmp_path / "s.h5") as store:
        assert store.metadata == metadata()
        assert store.metadata.detector_config == {"anchor_sizes": [64.0, 128.0], "score_thresh_test": 0.2}
        assert store.layout_version == LAYOUT_VERSION
        assert store.library_version == importlib.metadata.version("lxmert")
        assert datetime.fromisoformat(store.created.replace("Z", "+00:00")).tzinfo is not None
    with h5py.File(tmp_path / "s.h5", "r") as file:  # plain h5py sees the same, as documented
        assert file.attrs["layout"] == "lxmert-feature-store"
        assert json.loads(file.attrs["detector_config"])["score_thresh_test"] == 0.2
        assert file.attrs["num_boxes"] == "10-100" and file.attrs["feature_dtype"] == "float16"


def test_id_scheme_is_stored_and_must_match_to_resume_or_merge(tmp_path):
    path = tmp_path / "stem.h5"
    with StoreWriter(path, metadata=metadata(id_scheme="stem")) as writer:
        writer.append([record(0)])
    with FeatureStore(path) as store:
        assert store.metadata.id_scheme == "stem"
    with h5py.File(path, "r") as file:
        assert file.attrs["id_scheme"] == "stem"
    with pytest.raises(StoreError, match=r"different settings \(id_scheme: store has 'stem', writer has 'path'\)"):
        StoreWriter(path, metadata=metadata(id_scheme="path"), resume=True)
    with StoreWriter(path, metadata=metadata(), resume=True) as writer:  # "unknown": nothing to compare
        writer.append([record(1)])

    with StoreWriter(tmp_path / "path.h5", metadata=metadata(id_scheme="path")) as writer:
        writer.append([record(2)])
    with pytest.raises(StoreError, match=r"id_scheme: store has 'stem', path\.h5 has 'path'"):
        merge([path, tmp_path / "path.h5"], tmp_path / "all.h5")
    write_store(tmp_path / "unknown.h5", [record(3)])  # id_scheme "unknown"
    with StoreWriter(tmp_path / "unknown.h5", metadata=metadata(id_scheme="path"), resume=True) as writer:
        writer.append([record(4)])
    merge([tmp_path / "unknown.h5", path], tmp_path / "all.h5")
    with FeatureStore(tmp_path / "all.h5") as merged:
        assert merged.metadata.id_scheme == "stem"  # the one scheme that is known
        assert merged.ids() == [record(i)["id"] for i in (3, 4, 0, 1)]
    with pytest.raises(ValueError, match="id_scheme must be a non-empty str"):
        metadata(id_scheme="")


def test_feature_record_repr_shows_shapes_not_values():
    fields = record(0, 36) | {"normalized_boxes": None}
    text = repr(FeatureRecord(**fields))
    assert text == (
        "FeatureRecord(id='COCO_val2014_000000000000', height=300, width=400, num_boxes=36, "
        "features=float32(36, 16), boxes=float32(36, 4), normalized_boxes=None, object_ids=int64(36,), "
        "object_scores=float32(36,), attribute_ids=int64(36,), attribute_scores=float32(36,))"
    )
    as_torch = FeatureRecord(**fields | {"features": torch.zeros(36, 16, dtype=torch.float16)})
    assert "features=float16(36, 16)" in repr(as_torch)


def test_detector_config_may_be_a_dataclass(tmp_path):
    from extract.model import DetectorConfig

    config = DetectorConfig()
    with StoreWriter(tmp_path / "s.h5", metadata=metadata(detector_config=config)) as writer:
        writer.append([record(0)])
    with FeatureStore(tmp_path / "s.h5") as store:
        assert store.metadata.detector_config["num_classes"] == config.num_classes
    # resuming with the same dataclass matches the stored JSON
    StoreWriter(tmp_path / "s.h5", metadata=metadata(detector_config=config), resume=True).close()


def test_plain_h5py_reading_as_documented(tmp_path, monkeypatch):
    """Runs the h5py recipe of docs/feature-store.md ("Datasets are longer than their content")."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "feature-store.md").read_text()
    recipe = next(block for block in docs.split("```python")[1:] if 'f.attrs["committed_images"]' in block)
    records = [record(i) for i in range(5)] + [record(6, id="COCO_val2014_000000000042")]
    with StoreWriter(tmp_path / "coco_val.h5", metadata=metadata()) as writer:
        writer.append(records[:3])
        writer.add_error("broken.jpg", "cannot identify image file")
        writer.append(records[3:])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(recipe.split("```")[0], namespace)
    assert namespace["ids"] == [r["id"] for r in records]
    np.testing.assert_array_equal(namespace["features"], records[-1]["features"].astype(np.float16))
    np.testing.assert_array_equal(namespace["boxes"], records[-1]["boxes"])
    assert namespace["errors"] == [{"id": "broken.jpg", "reason": "cannot identify image file"}]


def test_normalized_boxes_are_computed_when_omitted_and_kept_when_given(tmp_path):
    given = np.full((36, 4), 0.5, dtype=np.float32)
    write_store(tmp_path / "s.h5", [record(0, 36), record(1, 36, normalized_boxes=given)], "36")
    with FeatureStore(tmp_path / "s.h5") as store:
        first = store[record(0)["id"]]
        width, height = first.width, first.height
        np.testing.assert_array_equal(
            first.normalized_boxes, first.boxes / np.array([width, height, width, height], dtype=np.float32)
        )
        np.testing.assert_array_equal(store[record(1)["id"]].normalized_boxes, given)


def test_torch_tensors_and_feature_records_are_accepted(tmp_path):
    as_torch = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in record(0).items()}
    as_record = FeatureRecord(**record(1), normalized_boxes=None)
    write_store(tmp_path / "s.h5", [as_torch, as_record])
    with FeatureStore(tmp_path / "s.h5") as store:
        assert_record_equal(store[record(0)["id"]], record(0))
        assert_record_equal(store[record(1)["id"]], record(1))


def test_chunks_hold_about_one_image_and_the_format_survives_kills(tmp_path):
    write_store(tmp_path / "fixed.h5", [record(0, 36)], "36")
    with StoreWriter(tmp_path / "adaptive.h5", metadata=metadata()) as writer:
        writer.append([record(0)])
        writer.add_error("a.jpg", "unreadable")
    with h5py.File(tmp_path / "fixed.h5", "r") as fixed, h5py.File(tmp_path / "adaptive.h5", "r") as adaptive:
        assert fixed["boxes/features"].chunks == (36, DIM)
        assert adaptive["boxes/features"].chunks == (32, DIM)
        chunked = []
        adaptive.visititems(lambda name, item: chunked.append(name) if getattr(item, "chunks", None) else None)
    # The crash-safety choices of extract/store/store.py (_DATASET_FORMAT, _create_store): superblock version 2
    # (a checksum; no "open for write" flag, which version 3 has), an extensible-array chunk index (header
    # signature "EAHD") for every chunked dataset, and no v1 structure (B-tree "TREE", local heap "HEAP":
    # no checksums); the root object header is version 2 ("OHDR", with a checksum) and comes first.
    data = (tmp_path / "adaptive.h5").read_bytes()
    assert data[8] == 2
    assert data.count(b"EAHD") == len(chunked) == 16
    assert data.count(b"TREE") == data.count(b"HEAP") == 0
    assert data[48:52] == b"OHDR"


def test_a_commit_changes_only_new_rows_and_counter_bytes_in_the_first_page(tmp_path):
    """The property the crash safety rests on (extract/store/store.py docstring): appending a batch rewrites no
    byte of the file outside the chunks of the new rows, except the counter, which lies in page 0 (a
    write within one page is never torn by a kill)."""
    detector_config = {"long": "x" * 10_000}  # root attributes much larger than a page
    path = tmp_path / "s.h5"
    with StoreWriter(path, metadata=metadata(detector_config=detector_config)) as writer:
        writer.append([record(i) for i in range(40)])
        writer.append([record(40)])  # the datasets grow by a quarter: room for about 10 more images
    before = np.frombuffer(path.read_bytes(), np.uint8)
    with StoreWriter(path, metadata=metadata(detector_config=detector_config), resume=True) as writer:
        writer.append([record(i) for i in range(41, 44)])
    after = np.frombuffer(path.read_bytes(), np.uint8)
    assert len(after) == len(before)  # nothing grew
    changed = np.flatnonzero(after != before)
    chunk_bytes = np.zeros(len(after), bool)
    with h5py.File(path, "r") as file:
        datasets = []
        file.visititems(lambda name, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
        for dataset in datasets:
            for index in range(dataset.id.get_num_chunks() if dataset.chunks else 0):
                chunk = dataset.id.get_chunk_info(index)
                chunk_bytes[chunk.byte_offset : chunk.byte_offset + chunk.size] = True
    outside = changed[~chunk_bytes[changed]]
    assert len(outside) > 0 and outside.max() < 4096, outside


# ---------------------------------------------------------------------------------------------------
# torch Dataset


def test_dataset_pads_to_the_largest_box_count_with_a_mask(tmp_path):
    records = [record(i) for i in range(6)]
    with FeatureStore(write_store(tmp_path / "s.h5", records)) as store:
        dataset = store.as_dataset([records[4]["id"], records[1]["id"]])
        item = dataset[0]
    count = len(records[4]["features"])
    assert len(dataset) == 2 and item["id"] == records[4]["id"]
    assert item["features"].shape == (100, DIM) and item["features"].dtype == torch.float32
    assert item["boxes"].shape == item["normalized_boxes"].shape == (100, 4)
    assert item["object_ids"].dtype == torch.int64 and item["attribute_scores"].shape == (100,)
    assert item["box_mask"].tolist() == [1] * count + [0] * (100 - count)
    torch.testing.assert_close(item["features"][:count], torch.from_numpy(records[4]["features"]).half().float())
    assert item["features"][count:].abs().sum() == 0 and item["boxes"][count:].abs().sum() == 0
    assert (item["height"], item["width"]) == (records[4]["height"], records[4]["width"])


def test_dataset_pad_to(tmp_path):
    records = [record(i, 36) for i in range(3)]
    path = write_store(tmp_path / "s.h5", records, "36")
    assert FeatureStore(path).as_dataset()[0]["features"].shape == (36, DIM)
    assert FeatureStore(path).as_dataset(pad_to=50)[2]["box_mask"].sum() == 36
    with pytest.raises(ValueError, match=r"has 36 boxes, more than pad_to=20"):
        FeatureStore(path).as_dataset(pad_to=20)[0]


def test_dataset_with_dataloader_workers(tmp_path):
    records = [record(i) for i in range(20)]
    path = write_store(tmp_path / "s.h5", records)
    with FeatureStore(path) as store:
        store[records[0]["id"]]  # the parent has the file open and has read from it before the fork
        dataset = store.as_dataset()
        dataset[0]
        loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
        batches = list(loader)
    assert [i for batch in batches for i in batch["id"]] == [r["id"] for r in records]
    features = torch.cat([batch["features"] for batch in batches])
    mask = torch.cat([batch["box_mask"] for batch in batches]).bool()
    expected = torch.cat([torch.from_numpy(r["features"]).half().float() for r in records])
    torch.testing.assert_close(features[mask], expected, rtol=0, atol=0)
    assert pickle.loads(pickle.dumps(dataset))[5]["id"] == records[5]["id"]  # spawn-style workers


def test_closing_a_dataset_releases_its_file(tmp_path):
    # A dataset that has read holds the file open, and HDF5 cannot open it for writing in the same process:
    # close() (or the end of a with block) releases it; a later item opens the file again.
    path = write_store(tmp_path / "s.h5", [record(i) for i in range(3)])
    with FeatureStore(path).as_dataset() as dataset:
        assert dataset[0]["id"] == record(0)["id"]
        with pytest.raises(StoreError, match="already open in this process"):
            StoreWriter(path, metadata=metadata(), feature_dtype="float16", resume=True)
    with StoreWriter(path, metadata=metadata(), feature_dtype="float16", resume=True) as writer:
        writer.append([record(3)])
    assert dataset[1]["id"] == record(1)["id"]
    dataset.close()
    dataset.close()  # twice is fine
    with FeatureStore(path) as store:
        assert len(store) == 4


def test_dataset_refuses_unknown_ids(tmp_path):
    with FeatureStore(write_store(tmp_path / "s.h5", [record(0)])) as store:
        with pytest.raises(KeyError, match="1 of the 2 ids are not in the feature store.*'nope'"):
            store.as_dataset([record(0)["id"], "nope"])


# ---------------------------------------------------------------------------------------------------
# Errors table


def test_error_table(tmp_path):
    with StoreWriter(tmp_path / "s.h5", metadata=metadata()) as writer:
        writer.add_error("broken.jpg", "cannot identify image file 'broken.jpg'\nsecond line, ünïcode")
        writer.append([record(0)])
        writer.add_error("gone.png", "No such file or directory")
        writer.add_error("broken.jpg", "still broken")
        assert writer.failed_ids() == {"broken.jpg", "gone.png"}
    with FeatureStore(tmp_path / "s.h5") as store:
        assert store.errors() == {"broken.jpg": "still broken", "gone.png": "No such file or directory"}
        assert len(store) == 1
    with StoreWriter(tmp_path / "s.h5", metadata=metadata(), resume=True) as writer:
        assert writer.failed_ids() == {"broken.jpg", "gone.png"}


# ---------------------------------------------------------------------------------------------------
# Resume


def test_resume_skips_completed_ids_and_appends(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(i) for i in range(5)])
    with StoreWriter(path, metadata=metadata(), resume=True) as writer:
        assert writer.completed_ids() == {record(i)["id"] for i in range(5)} and len(writer) == 5
        assert record(2)["id"] in writer
        writer.append([record(i) for i in range(5, 9)])
    with FeatureStore(path) as store:
        assert store.ids() == [record(i)["id"] for i in range(9)]
        assert_record_equal(store[record(7)["id"]], record(7))


def test_resume_of_a_missing_file_creates_it(tmp_path):
    with StoreWriter(tmp_path / "new.h5", metadata=metadata(), resume=True) as writer:
        writer.append([record(0)])
    assert len(FeatureStore(tmp_path / "new.h5")) == 1


def test_uncommitted_rows_are_invisible_and_overwritten_by_resume(tmp_path):
    """What a job killed between a batch's writes and its commit leaves behind."""
    path = write_store(tmp_path / "s.h5", [record(i) for i in range(3)])
    ids_end = sum(len(record(i)["id"]) + 1 for i in range(3))
    with h5py.File(path, "a") as file:  # a killed batch: rows written after the committed ones, no count
        boxes_end = int(file["images/box_offset"][2] + file["images/num_boxes"][2])
        for name, start, values in (
            ("images/ids", ids_end, np.frombuffer(b"ghost_1\nghost_2\n", np.uint8)),
            ("images/num_boxes", 3, np.array([50, 50])),
            ("boxes/features", boxes_end, np.ones((100, DIM))),
        ):
            file[name].resize(max(len(file[name]), start + len(values)), axis=0)
            file[name][start : start + len(values)] = values
    with FeatureStore(path) as store:
        assert store.ids() == [record(i)["id"] for i in range(3)] and "ghost_1" not in store
    with StoreWriter(path, metadata=metadata(), resume=True) as writer:
        assert "ghost_1" not in writer
        writer.append([record(3, 20)])
    with FeatureStore(path) as store:
        assert store.ids() == [record(i)["id"] for i in range(4)]
        for i in range(3):
            assert_record_equal(store[record(i)["id"]], record(i))
        assert_record_equal(store[record(3)["id"]], record(3, 20))


def test_a_kill_during_a_growth_is_repaired_when_resumed(tmp_path, monkeypatch):
    """The state a SIGKILL during the flush of a growth left in a stress run: chunk indexes that point past
    the end of allocation recorded in the superblock (HDF5 writes it after them). Made here by hand:
    grow, then put back the superblock's end-of-allocation address from before the growth and the mark
    that the writer sets during a growth."""
    path = write_store(tmp_path / "s.h5", [record(i, 50) for i in range(8)])
    superblock = path.read_bytes()[:48]  # version 2: end of allocation at 28 (8 bytes), a checksum at 44
    assert superblock[8] == 2 and superblock[9] == 8
    with StoreWriter(path, metadata=metadata(), resume=True) as writer, monkeypatch.context() as patch:
        writes, original = [], h5py.Dataset.__setitem__

        def write_then_fail(dataset, key, value):  # fails after the growth, at the batch's last column
            writes.append(dataset.name)
            if len(writes) == 12:
                raise OSError(28, "No space left on device")
            original(dataset, key, value)

        patch.setattr(h5py.Dataset, "__setitem__", write_then_fail)
        with pytest.raises(OSError):
            writer.append([record(i, 50) for i in range(8, 40)])
    with h5py.File(path, "a") as file:
        file.attrs.modify("growth_in_progress", np.int64(1))
    data = bytearray(path.read_bytes())
    data[:48] = superblock
    path.write_bytes(bytes(data))

    with FeatureStore(path) as store:  # readers see every committed record
        created = store.created
        for i in range(8):
            assert_record_equal(store[record(i)["id"]], record(i, 50))
    with h5py.File(path, "r") as file, pytest.raises((OSError, RuntimeError), match="addr overflow"):
        features = file["boxes/features"]  # what a writer would hit
        features.id.read_direct_chunk(((len(features) - 1) // 32 * 32, 0))
    with pytest.warns(UserWarning, match=r"s\.h5: the job writing it was killed while its datasets grew; its 8"):
        writer = StoreWriter(path, metadata=metadata(), resume=True)
    with writer:
        writer.append([record(i, 50) for i in range(8, 40)])
    with FeatureStore(path) as store:
        assert store.ids() == [record(i)["id"] for i in range(40)] and store.created == created
        for i in range(40):
            assert_record_equal(store[record(i)["id"]], record(i, 50))


# ---------------------------------------------------------------------------------------------------
# Bad input


def test_newer_major_layout_version_is_refused_naming_both_versions(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    rewrite_settings(path, layout_version="2.0")
    with pytest.raises(
        StoreError, match=rf"s\.h5 has feature-store layout version 2\.0.*reads version {LAYOUT_VERSION}"
    ):
        FeatureStore(path)
    with pytest.raises(StoreError, match="layout version 2.0"):
        StoreWriter(path, metadata=metadata(), resume=True)


def test_newer_minor_layout_version_is_read_but_not_appended_to(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    rewrite_settings(path, layout_version="1.9")
    assert len(FeatureStore(path)) == 1
    with pytest.raises(StoreError, match=r"layout version 1\.9; this library appends to versions up to 1\.1 only"):
        StoreWriter(path, metadata=metadata(), resume=True)


def test_files_that_are_not_stores(tmp_path):
    (tmp_path / "features.npz").write_bytes(b"PK\x03\x04 not an hdf5 file")
    with pytest.raises(StoreError, match=r"features\.npz is not an HDF5 file"):
        FeatureStore(tmp_path / "features.npz")
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["x"] = 1
    with pytest.raises(StoreError, match=r"other\.h5 is an HDF5 file but not a feature store"):
        FeatureStore(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5 does not exist"):
        FeatureStore(tmp_path / "missing.h5")


def test_unknown_id_raises_key_error_naming_it(tmp_path):
    with FeatureStore(write_store(tmp_path / "s.h5", [record(0)])) as store:
        with pytest.raises(KeyError, match=r"image id 'COCO_val2014_000000000042' is not in the feature store .*s\.h5"):
            store["COCO_val2014_000000000042"]


def test_duplicate_ids_are_reported_and_nothing_of_the_batch_is_written(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, metadata=metadata()) as writer:
        writer.append([record(0), record(1)])
        with pytest.raises(
            DuplicateIdError, match=r"already in .*s\.h5 or repeated in the batch: \['COCO_val2014_000000000001'\]"
        ):
            writer.append([record(2), record(1)])
        with pytest.raises(DuplicateIdError, match=r"\['COCO_val2014_000000000003'\]"):
            writer.append([record(3), record(3)])
        writer.append([record(2)])
    with FeatureStore(path) as store:
        assert store.ids() == [record(i)["id"] for i in range(3)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": np.zeros((20, 8), np.float32)}, r"features must be \(num_boxes, 16\), got \(20, 8\)"),
        ({"features": np.zeros((101, DIM), np.float32)}, r"has 101 boxes; this store takes 10-100"),
        ({"object_ids": np.zeros(3, np.int64)}, r"object_ids must have shape \(20,\) for 20 boxes, got \(3,\)"),
        ({"boxes": np.zeros((20, 5), np.float32)}, r"boxes must have shape \(20, 4\)"),
        ({"features": np.full((20, DIM), 1e5, np.float32)}, r"exceeds the float16 range"),
        ({"id": "two\nlines"}, r"non-empty str without newlines"),
        ({"height": 0}, r"height must be a positive integer \(pixels\), got 0"),
        ({"width": 2**31}, r"width must be a positive integer \(pixels\), got 2147483648"),
        ({"height": 480.5}, r"height must be a positive integer \(pixels\), got 480.5"),
    ],
)
def test_malformed_records_are_refused_naming_the_image(tmp_path, changes, message):
    with StoreWriter(tmp_path / "s.h5", metadata=metadata()) as writer:
        with pytest.raises(ValueError, match=message):
            writer.append([record(0, 20) | changes])
        assert len(writer) == 0


def test_writer_refuses_to_overwrite_unless_asked(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    with pytest.raises(FileExistsError, match="pass resume=True to continue it or overwrite=True"):
        StoreWriter(path, metadata=metadata())
    StoreWriter(path, metadata=metadata(), overwrite=True).close()
    assert len(FeatureStore(path)) == 0


def test_resume_with_other_settings_is_refused(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    with pytest.raises(StoreError, match=r"different settings \(rule: store has 'caffe', writer has 'maxnms'\)"):
        StoreWriter(path, metadata=metadata(rule="maxnms"), resume=True)
    with pytest.raises(StoreError, match=r"feature_dtype: store has 'float16', writer has 'float32'"):
        StoreWriter(path, metadata=metadata(), feature_dtype="float32", resume=True)
    with pytest.raises(StoreError, match=r"detector_config"):
        StoreWriter(path, metadata=metadata(detector_config={"score_thresh_test": 0.3}), resume=True)


def test_bad_num_boxes_spec():
    with pytest.raises(
        ValueError, match=r'num_boxes must be a count like "36" or a range like "10-100", got \'100-10\''
    ):
        metadata("100-10")


def test_a_store_being_written_by_another_process_gives_a_clear_error(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import h5py, sys\nf = h5py.File({str(path)!r}, 'a')\nprint('open', flush=True)\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match=r"s\.h5 is being written by another process"):
            FeatureStore(path)
    finally:
        holder.communicate("")


def test_writing_a_store_open_for_reading_in_this_process_gives_a_clear_error(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    with FeatureStore(path):
        with pytest.raises(StoreError, match=r"s\.h5 is already open in this process .*close the other one"):
            StoreWriter(path, metadata=metadata(), resume=True)
    StoreWriter(path, metadata=metadata(), resume=True).close()


def test_reading_a_store_open_for_writing_in_this_process_gives_a_clear_error(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    with StoreWriter(path, metadata=metadata(), resume=True) as writer:
        with pytest.raises(StoreError, match=r"s\.h5 is open for writing in this process .*close the writer first"):
            FeatureStore(path)
        writer.append([record(1)])
    with FeatureStore(path) as store:  # once the writer is closed
        assert len(store) == 2
    # The lock HDF5 takes for writing is gone: another process can read the store.
    code = f"from extract.store import FeatureStore; print(len(FeatureStore({str(path)!r})))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "2\n"


# ---------------------------------------------------------------------------------------------------
# Failed writes (disk full)


@pytest.mark.parametrize("fail_at", [1, 5, 9, "flush"])
def test_failed_write_keeps_committed_records_and_the_store_usable(tmp_path, monkeypatch, fail_at):
    path = write_store(tmp_path / "s.h5", [record(i) for i in range(4)])
    writes = {"calls": 0}
    original_write = h5py.Dataset.__setitem__

    def failing_write(dataset, key, value):
        writes["calls"] += 1
        if writes["calls"] == fail_at:
            raise OSError(28, "No space left on device")
        return original_write(dataset, key, value)

    def failing_flush(file):
        raise OSError(28, "No space left on device")

    writer = StoreWriter(path, metadata=metadata(), resume=True)
    with monkeypatch.context() as patch:
        patch.setattr(h5py.Dataset, "__setitem__", failing_write)
        if fail_at == "flush":
            patch.setattr(h5py.File, "flush", failing_flush)
        with pytest.raises(OSError, match="No space left on device"):
            writer.append([record(i) for i in range(4, 8)])
    assert len(writer) == 4 and record(5)["id"] not in writer
    writer.append([record(i) for i in range(4, 6)])  # space is back: the same writer goes on
    writer.close()
    with FeatureStore(path) as store:  # on disk: the committed records only, nothing of the failed batch
        assert store.ids() == [record(i)["id"] for i in range(6)]
    with StoreWriter(path, metadata=metadata(), resume=True) as resumed:  # and so does a resumed one
        resumed.append([record(i) for i in range(6, 8)])
    with FeatureStore(path) as store:
        assert store.ids() == [record(i)["id"] for i in range(8)]
        for i in range(8):
            assert_record_equal(store[record(i)["id"]], record(i))


def test_failed_error_write_keeps_the_table(tmp_path, monkeypatch):
    with StoreWriter(tmp_path / "s.h5", metadata=metadata()) as writer:
        writer.add_error("a.jpg", "truncated")
        with monkeypatch.context() as patch:
            patch.setattr(h5py.Dataset, "__setitem__", lambda *args: (_ for _ in ()).throw(OSError(28, "disk full")))
            with pytest.raises(OSError, match="disk full"):
                writer.add_error("b.jpg", "truncated")
        writer.add_error("c.jpg", "truncated")
    assert FeatureStore(tmp_path / "s.h5").errors() == {"a.jpg": "truncated", "c.jpg": "truncated"}


# ---------------------------------------------------------------------------------------------------
# merge


def test_merge_copies_every_shard(tmp_path):
    shards = [tmp_path / "shard0.h5", tmp_path / "shard1.h5"]
    write_store(shards[0], [record(i) for i in range(0, 5)])
    with StoreWriter(shards[1], metadata=metadata()) as writer:
        writer.append([record(i) for i in range(5, 12)])
        writer.add_error("broken.jpg", "cannot decode")
    merge(shards, tmp_path / "all.h5")
    with FeatureStore(tmp_path / "all.h5") as merged:
        assert merged.ids() == [record(i)["id"] for i in range(12)]
        for i in range(12):
            assert_record_equal(merged[record(i)["id"]], record(i))
        assert merged.errors() == {"broken.jpg": "cannot decode"}
        assert merged.metadata == metadata() and merged.feature_dtype == "float16"


def test_merge_refuses_duplicate_ids_naming_them(tmp_path):
    write_store(tmp_path / "a.h5", [record(0), record(1)])
    write_store(tmp_path / "b.h5", [record(1), record(2)])
    with pytest.raises(
        DuplicateIdError, match=r"1 image id\(s\) of .*b\.h5 are also in .*a\.h5: \['COCO_val2014_000000000001'\]"
    ):
        merge([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "all.h5")
    assert not (tmp_path / "all.h5").exists()


def test_merge_refuses_shards_made_with_other_settings(tmp_path):
    write_store(tmp_path / "a.h5", [record(0)])
    with StoreWriter(tmp_path / "b.h5", metadata=metadata(checkpoint_sha256="cd" * 32)) as writer:
        writer.append([record(1)])
    with pytest.raises(
        StoreError,
        match=r"b\.h5 was made with other settings than the store .*a\.h5 "
        r"\(checkpoint_sha256: store has 'abab.*', b\.h5 has 'cdcd",
    ):
        merge([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "all.h5")
    assert not (tmp_path / "all.h5").exists()
