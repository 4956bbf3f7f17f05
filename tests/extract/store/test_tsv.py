"""LXMERT TSV interop, against the real Caffe bottom-up-attention features of 10 COCO images
(tests/fixtures/tsv/coco_train2014_obj36_caffe.tsv): import, export, byte-for-byte equality."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from helpers import FIXTURES

from extract.store import (
    FeatureRecord,
    FeatureStore,
    StoreMetadata,
    TSVFormatError,
    export_tsv,
    import_tsv,
    read_tsv,
    write_tsv,
)
from extract.store.tsv import decode_line, encode_line

CAFFE_TSV = FIXTURES / "tsv" / "coco_train2014_obj36_caffe.tsv"


def caffe_lines() -> list[bytes]:
    return CAFFE_TSV.read_bytes().split(b"\r\n")[:-1]


def test_import_then_export_gives_the_original_file_byte_for_byte(tmp_path):
    assert import_tsv(CAFFE_TSV, tmp_path / "caffe.h5") == 10
    assert export_tsv(tmp_path / "caffe.h5", tmp_path / "exported.tsv") == 10
    assert (tmp_path / "exported.tsv").read_bytes() == CAFFE_TSV.read_bytes()


def test_imported_records_hold_the_decoded_fields(tmp_path):
    """Decoded here independently, the way LXMERT's loaders do, and compared with the store."""
    import_tsv(CAFFE_TSV, tmp_path / "caffe.h5")
    with FeatureStore(tmp_path / "caffe.h5") as store:
        assert len(store) == 10 and store.feature_dtype == "float32"
        assert store.metadata.num_boxes == "36" and store.metadata.feature_dim == 2048
        for line in caffe_lines():
            fields = line.split(b"\t")
            record = store[fields[0].decode()]
            assert (record.height, record.width, record.num_boxes) == (int(fields[1]), int(fields[2]), 36)
            features = np.frombuffer(base64.b64decode(fields[9]), np.float32).reshape(36, 2048)
            boxes = np.frombuffer(base64.b64decode(fields[8]), np.float32).reshape(36, 4)
            np.testing.assert_array_equal(record.features, features)
            np.testing.assert_array_equal(record.boxes, boxes)
            np.testing.assert_array_equal(record.object_ids, np.frombuffer(base64.b64decode(fields[3]), np.int64))
            np.testing.assert_array_equal(
                record.attribute_scores, np.frombuffer(base64.b64decode(fields[6]), np.float32)
            )
            assert record.object_ids.dtype == np.int64 and record.attribute_ids.dtype == np.int64
            # LXMERT's visual_pos: x / width, y / height; its loaders assert [-1e-5, 1 + 1e-5]
            expected = boxes / np.array([record.width, record.height] * 2, dtype=np.float32)
            np.testing.assert_array_equal(record.normalized_boxes, expected)
            assert record.normalized_boxes.min() >= -1e-5 and record.normalized_boxes.max() <= 1 + 1e-5


def test_read_and_write_tsv_round_trip_without_a_store(tmp_path):
    records = list(read_tsv(CAFFE_TSV))
    assert [r.id for r in records] == [line.split(b"\t")[0].decode() for line in caffe_lines()]
    assert write_tsv(records, tmp_path / "copy.tsv") == 10
    assert (tmp_path / "copy.tsv").read_bytes() == CAFFE_TSV.read_bytes()
    assert encode_line(records[3]) == caffe_lines()[3] + b"\r\n"
    decoded = decode_line(caffe_lines()[3])
    for name in ("features", "boxes", "normalized_boxes", "object_ids", "attribute_scores"):
        np.testing.assert_array_equal(getattr(decoded, name), getattr(records[3], name))


def test_export_of_chosen_ids_in_their_order(tmp_path):
    import_tsv(CAFFE_TSV, tmp_path / "caffe.h5")
    lines = caffe_lines()
    chosen = [lines[7].split(b"\t")[0].decode(), lines[2].split(b"\t")[0].decode()]
    export_tsv(tmp_path / "caffe.h5", tmp_path / "two.tsv", ids=chosen)
    assert (tmp_path / "two.tsv").read_bytes() == lines[7] + b"\r\n" + lines[2] + b"\r\n"


def test_float16_import_keeps_features_to_half_precision(tmp_path):
    import_tsv(CAFFE_TSV, tmp_path / "half.h5", feature_dtype="float16")
    export_tsv(tmp_path / "half.h5", tmp_path / "half.tsv")
    for ours, original in zip(read_tsv(tmp_path / "half.tsv"), read_tsv(CAFFE_TSV), strict=True):
        # Rounding to float16: relative error at most 2**-11 (11-bit significand), and below 2**-14 (the
        # subnormals; the real features have such values) absolute error at most 2**-25
        np.testing.assert_allclose(ours.features, original.features, rtol=2**-11, atol=2**-25)
        np.testing.assert_array_equal(ours.boxes, original.boxes)


def test_resumed_import_skips_what_is_in_the_store(tmp_path):
    lines = caffe_lines()
    (tmp_path / "first_half.tsv").write_bytes(b"".join(line + b"\r\n" for line in lines[:4]))
    assert import_tsv(tmp_path / "first_half.tsv", tmp_path / "caffe.h5") == 4
    metadata = FeatureStore(tmp_path / "caffe.h5").metadata  # "imported from first_half.tsv"
    assert import_tsv(CAFFE_TSV, tmp_path / "caffe.h5", metadata=metadata, resume=True) == 6
    export_tsv(tmp_path / "caffe.h5", tmp_path / "exported.tsv")
    assert (tmp_path / "exported.tsv").read_bytes() == CAFFE_TSV.read_bytes()


def adaptive_records() -> list[FeatureRecord]:
    rng = np.random.default_rng(0)
    records = []
    for i, count in enumerate((10, 57, 100, 23)):
        boxes = rng.uniform(0, 300, (count, 4)).astype(np.float32)
        records.append(
            FeatureRecord(
                f"adaptive_{i}",
                320,
                480,
                features=rng.uniform(0, 10, (count, 2048)).astype(np.float32),
                boxes=boxes,
                normalized_boxes=boxes / np.array([480, 320, 480, 320], dtype=np.float32),
                object_ids=rng.integers(0, 1600, count),
                object_scores=rng.random(count, dtype=np.float32),
                attribute_ids=rng.integers(0, 400, count),
                attribute_scores=rng.random(count, dtype=np.float32),
            )
        )
    return records


def test_adaptive_tsv_round_trip(tmp_path):
    write_tsv(adaptive_records(), tmp_path / "adaptive.tsv")
    metadata = StoreMetadata(num_boxes="10-100", rule="caffe", detector_config={}, checkpoint_sha256="unknown")
    import_tsv(tmp_path / "adaptive.tsv", tmp_path / "adaptive.h5", metadata=metadata)
    assert [FeatureStore(tmp_path / "adaptive.h5")[f"adaptive_{i}"].num_boxes for i in range(4)] == [10, 57, 100, 23]
    export_tsv(tmp_path / "adaptive.h5", tmp_path / "exported.tsv")
    assert (tmp_path / "exported.tsv").read_bytes() == (tmp_path / "adaptive.tsv").read_bytes()
    # without metadata the first line's count is taken as the store's fixed count; the line before the
    # first misfit is committed, so that a resumed import continues after it
    with pytest.raises(
        TSVFormatError, match=r"adaptive\.tsv, line 2 \(image 'adaptive_1'\): field num_boxes is 57; the store takes 10"
    ):
        import_tsv(tmp_path / "adaptive.tsv", tmp_path / "fixed.h5")
    with FeatureStore(tmp_path / "fixed.h5") as store:
        assert store.ids() == ["adaptive_0"]


def test_python_bytes_repr_fields_and_unix_line_ends_are_read(tmp_path):
    """Files written by Python 3 ports of Python 2 scripts hold b'...' fields; some tools write "\\n" only."""
    quirky = []
    for line in caffe_lines()[:3]:
        fields = line.split(b"\t")
        quirky.append(b"\t".join(fields[:3] + [b"b'" + f + b"'" for f in fields[3:7]] + fields[7:]) + b"\n")
    (tmp_path / "quirky.tsv").write_bytes(b"".join(quirky))
    for ours, original in zip(read_tsv(tmp_path / "quirky.tsv"), read_tsv(CAFFE_TSV), strict=False):
        assert ours.id == original.id
        np.testing.assert_array_equal(ours.object_scores, original.object_scores)
        np.testing.assert_array_equal(ours.features, original.features)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (None, None, r"line 2: 9 tab-separated fields, expected 10"),
        (7, b"35", r"line 2 \(image 'COCO_train2014_000000573195'\): field objects_id holds 36 values, which does not"),
        (1, b"4x", r"line 2 .*img_h, img_w and num_boxes must be integers"),
        (9, b"AAAA!!!", r"line 2 .*field features: 3 bytes is not a whole number of float32 values"),
        (4, b"A", r"line 2 .*field objects_conf: not valid base64"),
    ],
)
def test_malformed_lines_are_reported_with_file_and_line(tmp_path, field, value, message):
    lines = caffe_lines()[:3]
    fields = lines[1].split(b"\t")
    if field is None:
        del fields[5]
    else:
        fields[field] = value
    lines[1] = b"\t".join(fields)
    (tmp_path / "bad.tsv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    with pytest.raises(TSVFormatError, match=r"bad\.tsv, " + message):
        list(read_tsv(tmp_path / "bad.tsv"))


def test_duplicate_ids_in_a_tsv_are_reported_with_both_lines(tmp_path):
    lines = caffe_lines()
    (tmp_path / "twice.tsv").write_bytes(b"".join(line + b"\r\n" for line in [*lines[:3], lines[1]]))
    with pytest.raises(
        TSVFormatError, match=r"twice\.tsv, line 4: image id 'COCO_train2014_000000573195' is also on line 2"
    ):
        import_tsv(tmp_path / "twice.tsv", tmp_path / "twice.h5", batch_size=2)
    with FeatureStore(tmp_path / "twice.h5") as store:  # the three lines before it, the last one uncommitted before
        assert store.ids() == [line.split(b"\t")[0].decode() for line in lines[:3]]


def test_empty_tsv(tmp_path):
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(TSVFormatError, match=r"empty\.tsv holds no lines"):
        import_tsv(tmp_path / "empty.tsv", tmp_path / "empty.h5")
