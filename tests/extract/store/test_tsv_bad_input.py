"""TSV import and export on bad input: every refusal is a TSVFormatError naming the file, line and field (or
the id), the valid lines before a bad one stay committed, and no side file is left behind."""

from __future__ import annotations

import os

import pytest
from helpers import good_lines, replace_field, store_with_ids, stored_ids, tiny_record

from extract.store import (
    FeatureStore,
    TSVFormatError,
    export_tsv,
    import_tsv,
    read_tsv,
    write_tsv,
)
from extract.store.tsv import encode_line


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (replace_field(good_lines()[2], 0, b"caf\xe9"), r"line 3: field img_id is not UTF-8 text"),
        (replace_field(good_lines()[2], 0, b""), r"line 3: field img_id is empty"),
        (
            encode_line(tiny_record("img2", count=5)),
            r"line 3 \(image 'img2'\): field num_boxes is 5; the store takes 3",
        ),
        (
            encode_line(tiny_record("img2", width=6)),
            r"line 3 \(image 'img2'\): field features holds 6 values per box; the store takes 8",
        ),
        (replace_field(good_lines()[2], 1, b"0"), r"line 3 \(image 'img2'\): field img_h is 0"),
        (replace_field(good_lines()[2], 2, b"4294967296"), r"line 3 \(image 'img2'\): field img_w is 4294967296"),
        (replace_field(good_lines()[2], 9, b""), r"line 3 \(image 'img2'\): field features is empty"),
    ],
)
def test_a_bad_line_names_file_line_and_field_and_the_lines_before_it_stay(tmp_path, bad_line, message):
    lines = good_lines()
    (tmp_path / "bad.tsv").write_bytes(b"".join([*lines[:2], bad_line, lines[3]]))
    with pytest.raises(TSVFormatError, match=r"bad\.tsv, " + message):
        import_tsv(tmp_path / "bad.tsv", tmp_path / "store.h5", batch_size=128)  # all four lines in one batch
    assert stored_ids(tmp_path / "store.h5") == ["img0", "img1"]


def test_resume_after_a_bad_line_continues_after_the_committed_lines(tmp_path):
    lines = good_lines()
    tsv = tmp_path / "data.tsv"
    tsv.write_bytes(b"".join([*lines[:2], replace_field(lines[2], 0, b""), lines[3]]))
    with pytest.raises(TSVFormatError, match="field img_id is empty"):
        import_tsv(tsv, tmp_path / "store.h5")
    tsv.write_bytes(b"".join(lines))  # the file fixed
    assert import_tsv(tsv, tmp_path / "store.h5", resume=True) == 2
    export_tsv(tmp_path / "store.h5", tmp_path / "back.tsv")
    assert (tmp_path / "back.tsv").read_bytes() == b"".join(lines)


def test_float16_overflow_is_named_and_the_lines_before_it_stay(tmp_path):
    lines = good_lines()
    huge = tiny_record("img2", seed=2)
    huge.features[1, 4] = 70000.0  # float16 tops out at 65504
    (tmp_path / "huge.tsv").write_bytes(b"".join([*lines[:2], encode_line(huge)]))
    with pytest.raises(
        TSVFormatError, match=r"huge\.tsv, line 3 \(image 'img2'\): field features holds 70000, beyond the float16"
    ):
        import_tsv(tmp_path / "huge.tsv", tmp_path / "half.h5", feature_dtype="float16")
    assert stored_ids(tmp_path / "half.h5") == ["img0", "img1"]
    assert import_tsv(tmp_path / "huge.tsv", tmp_path / "full.h5", feature_dtype="float32") == 3


@pytest.mark.parametrize(
    ("field", "row", "column", "value", "message"),
    [
        ("features", 1, 4, float("nan"), r"field features holds nan \(box 1\)"),
        ("features", 2, 0, float("-inf"), r"field features holds -inf \(box 2\)"),
        ("boxes", 0, 3, float("inf"), r"field boxes holds inf \(box 0\)"),
        ("object_scores", 2, None, float("nan"), r"field objects_conf holds nan \(box 2\)"),
    ],
)
def test_non_finite_values_are_refused_by_field_and_box(tmp_path, field, row, column, value, message):
    # A NaN feature would reach LXMERT's attention and turn every answer of the batch into NaN.
    lines = good_lines()
    record = tiny_record("img2", seed=2)
    values = getattr(record, field)
    values[row if column is None else (row, column)] = value
    (tmp_path / "nan.tsv").write_bytes(b"".join([*lines[:2], encode_line(record)]))
    with pytest.raises(TSVFormatError, match=r"nan\.tsv, line 3 \(image 'img2'\): " + message):
        import_tsv(tmp_path / "nan.tsv", tmp_path / "store.h5", feature_dtype="float32")
    assert stored_ids(tmp_path / "store.h5") == ["img0", "img1"]
    with pytest.raises(TSVFormatError, match=message):
        list(read_tsv(tmp_path / "nan.tsv"))


@pytest.mark.parametrize(
    ("first_line", "message"),
    [
        (replace_field(good_lines()[0], 9, b""), r"line 1 \(image 'img0'\): field features is empty"),
        (replace_field(good_lines()[0], 0, b"\xff\xfe"), r"line 1: field img_id is not UTF-8 text"),
        (b"img0\t60\t80\r\n", r"line 1: 3 tab-separated fields, expected 10"),
    ],
)
def test_a_bad_first_line_creates_no_store_and_leaves_no_side_file(tmp_path, first_line, message):
    (tmp_path / "bad.tsv").write_bytes(first_line + good_lines()[1])
    with pytest.raises(TSVFormatError, match=r"bad\.tsv, " + message):
        import_tsv(tmp_path / "bad.tsv", tmp_path / "store.h5")
    assert sorted(os.listdir(tmp_path)) == ["bad.tsv"]


def test_first_line_misfit_with_given_num_boxes_creates_no_store(tmp_path):
    (tmp_path / "data.tsv").write_bytes(b"".join(good_lines()))
    with pytest.raises(TSVFormatError, match=r"line 1 \(image 'img0'\): field num_boxes is 3; the store takes 10-100"):
        import_tsv(tmp_path / "data.tsv", tmp_path / "store.h5", num_boxes="10-100")
    assert sorted(os.listdir(tmp_path)) == ["data.tsv"]
    assert import_tsv(tmp_path / "data.tsv", tmp_path / "store.h5", num_boxes="1-5") == 4
    with FeatureStore(tmp_path / "store.h5") as store:
        assert store.metadata.num_boxes == "1-5" and store.metadata.feature_dim == 8


def test_missing_tsv_and_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"TSV file .*nowhere\.tsv does not exist"):
        import_tsv(tmp_path / "nowhere.tsv", tmp_path / "store.h5")
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a TSV file"):
        import_tsv(tmp_path, tmp_path / "store.h5")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad_id", ["two\tparts", "carriage\rreturn"])
def test_export_refuses_an_id_that_cannot_be_a_field_and_writes_nothing(tmp_path, bad_id):
    store_with_ids(tmp_path / "store.h5", ["fine", bad_id, "also_fine"])
    (tmp_path / "out.tsv").write_bytes(b"keep me")
    with pytest.raises(TSVFormatError, match=r"1 image id\(s\) of .*store\.h5 hold a tab, carriage return or newline"):
        export_tsv(tmp_path / "store.h5", tmp_path / "out.tsv")
    with pytest.raises(TSVFormatError, match=repr(bad_id).replace("\\", "\\\\")):
        export_tsv(tmp_path / "store.h5", tmp_path / "out.tsv")
    assert sorted(os.listdir(tmp_path)) == ["out.tsv", "store.h5"]
    assert (tmp_path / "out.tsv").read_bytes() == b"keep me"


def test_write_tsv_removes_its_side_file_when_a_record_fails(tmp_path):
    records = [tiny_record("first"), tiny_record("sec\tond")]
    with pytest.raises(TSVFormatError, match=r"image id 'sec\\tond' holds a tab"):
        write_tsv(records, tmp_path / "out.tsv")
    assert os.listdir(tmp_path) == []


def test_outputs_through_a_symlink_write_the_target_and_keep_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "data.tsv").write_bytes(b"".join(good_lines()))
    (tmp_path / "store.h5").symlink_to(tmp_path / "real" / "store.h5")  # dangling until written
    (tmp_path / "out.tsv").symlink_to(tmp_path / "real" / "out.tsv")
    assert import_tsv(tmp_path / "data.tsv", tmp_path / "store.h5") == 4
    assert export_tsv(tmp_path / "store.h5", tmp_path / "out.tsv") == 4
    assert (tmp_path / "store.h5").is_symlink() and (tmp_path / "out.tsv").is_symlink()
    assert sorted(os.listdir(tmp_path / "real")) == ["out.tsv", "store.h5"]
    assert (tmp_path / "real" / "out.tsv").read_bytes() == b"".join(good_lines())
    assert [record.id for record in read_tsv(tmp_path / "out.tsv")] == ["img0", "img1", "img2", "img3"]
