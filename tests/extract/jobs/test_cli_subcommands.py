"""lxmert-extract merge / tsv-import / tsv-export / verify on bad input, faults and a busy output: one line
`lxmert-extract <cmd>: error: ...` in flag terms and exit status 1, never a traceback, and an existing
output left as it was (replaced only once the new one is complete)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import h5py
import pytest
from helpers import SUPPORT, good_lines, replace_field, run_help, store_with_ids, stored_ids, tiny_record

import extract.store.tsv
from extract.jobs.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, SHOWN_DAMAGED, main
from extract.store import FeatureStore, StoreWriter
from extract.store.tsv import encode_line

PYTHON_TERMS = ("resume=True", "overwrite=True", "feature_dtype=", "writer.completed_ids")


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert not any(term in out + err for term in PYTHON_TERMS), out + err
    return status, out, err


def error_line(err: str, command: str) -> str:
    """The one error line, checked to be the whole of stderr (no traceback)."""
    assert err.count("\n") == 1 and err.startswith(f"lxmert-extract {command}: error: "), err
    return err


@pytest.fixture
def tsv(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_bytes(b"".join(good_lines()))
    return path


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


# -- merge


def test_merge_refuses_an_existing_output_in_flag_terms(tmp_path, capsys):
    store_with_ids(tmp_path / "a.h5", ["a0", "a1"])
    store_with_ids(tmp_path / "old.h5", ["old"])
    status, _, err = run(capsys, "merge", tmp_path / "a.h5", "--output", tmp_path / "old.h5")
    assert status == EXIT_ERROR
    assert "old.h5 already exists; pass --overwrite to replace it" in error_line(err, "merge")
    assert stored_ids(tmp_path / "old.h5") == ["old"]


@pytest.mark.parametrize(
    ("shard", "output", "message"),
    [
        ("missing.h5", "out.h5", r"feature store .*missing\.h5 does not exist"),
        ("notes.txt", "out.h5", r"notes\.txt is not an HDF5 file"),
        ("a.h5", "nowhere/out.h5", r"--output .*nowhere/out\.h5: the folder .*nowhere does not exist"),
        ("a.h5", ".", r"--output .* is a folder; give a file name"),
    ],
)
def test_merge_bad_input_is_one_error_line(tmp_path, capsys, shard, output, message):
    store_with_ids(tmp_path / "a.h5", ["a0"])
    (tmp_path / "notes.txt").write_text("not a store")
    status, _, err = run(capsys, "merge", tmp_path / shard, "--output", tmp_path / output)
    assert status == EXIT_ERROR
    assert error_line(err, "merge")
    assert re.search(message, err), err
    assert listing(tmp_path) == ["a.h5", "notes.txt"]


def test_merge_overwrite_that_fails_midway_keeps_the_old_store(tmp_path, capsys, monkeypatch):
    store_with_ids(tmp_path / "a.h5", ["a0", "a1"])
    store_with_ids(tmp_path / "old.h5", ["old"])

    def disk_full(self, records):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StoreWriter, "append", disk_full)
    status, _, err = run(capsys, "merge", tmp_path / "a.h5", "--output", tmp_path / "old.h5", "--overwrite")
    monkeypatch.undo()
    assert status == EXIT_ERROR and "No space left on device" in error_line(err, "merge")
    assert stored_ids(tmp_path / "old.h5") == ["old"]
    assert listing(tmp_path) == ["a.h5", "old.h5"]  # no side file


def test_merge_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path, capsys):
    store_with_ids(tmp_path / "a.h5", ["a0"])
    store_with_ids(tmp_path / "b.h5", ["b0"])
    (tmp_path / "real").mkdir()
    store_with_ids(tmp_path / "real" / "all.h5", ["old"])
    (tmp_path / "all.h5").symlink_to(tmp_path / "real" / "all.h5")
    status, out, _ = run(
        capsys, "merge", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "all.h5", "--overwrite"
    )
    assert status == EXIT_OK and "2 shards, 2 images, 0 errors" in out
    assert (tmp_path / "all.h5").is_symlink()
    assert stored_ids(tmp_path / "real" / "all.h5") == ["a0", "b0"]
    assert listing(tmp_path / "real") == ["all.h5"]


def test_merge_into_one_of_its_shards_is_refused(tmp_path, capsys):
    store_with_ids(tmp_path / "a.h5", ["a0"])
    store_with_ids(tmp_path / "b.h5", ["b0"])
    status, _, err = run(capsys, "merge", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "a.h5", "--overwrite")
    assert status == EXIT_ERROR and "is also one of the shards" in error_line(err, "merge")
    assert stored_ids(tmp_path / "a.h5") == ["a0"]


# -- tsv-import


@pytest.mark.parametrize(
    ("tsv_name", "content", "message"),
    [
        ("typo.tsv", None, r"TSV file .*typo\.tsv does not exist"),
        ("bad.tsv", b"img0\t60\r\n", r"bad\.tsv, line 1: 2 tab-separated fields, expected 10"),
        ("bad.tsv", replace_field(good_lines()[0], 0, b"\xff"), r"bad\.tsv, line 1: field img_id is not UTF-8"),
        ("late.tsv", b"".join([*good_lines(3), b"x\r\n"]), r"late\.tsv, line 4: 1 tab-separated fields"),
    ],
)
def test_tsv_import_overwrite_keeps_the_old_store_when_the_tsv_is_bad(tmp_path, capsys, tsv_name, content, message):
    store_with_ids(tmp_path / "old.h5", ["old"])
    if content is not None:
        (tmp_path / tsv_name).write_bytes(content)
    status, _, err = run(capsys, "tsv-import", tmp_path / tsv_name, "--output", tmp_path / "old.h5", "--overwrite")
    assert status == EXIT_ERROR
    assert re.search(message, error_line(err, "tsv-import")), err
    assert stored_ids(tmp_path / "old.h5") == ["old"]
    assert listing(tmp_path) == sorted(["old.h5", *([tsv_name] if content is not None else [])])


def test_tsv_import_overwrite_through_a_symlink_replaces_the_target(tmp_path, capsys, tsv):
    (tmp_path / "real").mkdir()
    store_with_ids(tmp_path / "real" / "store.h5", ["old"])
    (tmp_path / "store.h5").symlink_to(tmp_path / "real" / "store.h5")
    status, out, _ = run(capsys, "tsv-import", tsv, "--output", tmp_path / "store.h5", "--overwrite")
    assert status == EXIT_OK and "tsv-import: 4 images" in out
    assert (tmp_path / "store.h5").is_symlink()
    assert stored_ids(tmp_path / "real" / "store.h5") == ["img0", "img1", "img2", "img3"]
    assert listing(tmp_path / "real") == ["store.h5"]


def test_tsv_import_bad_line_keeps_the_lines_before_it_and_resume_continues(tmp_path, capsys):
    lines = good_lines()
    wide = encode_line(tiny_record("img2", width=6))
    (tmp_path / "data.tsv").write_bytes(b"".join([*lines[:2], wide, lines[3]]))
    status, _, err = run(capsys, "tsv-import", tmp_path / "data.tsv", "-o", tmp_path / "s.h5", "--num-boxes", "1-5")
    assert status == EXIT_ERROR
    line = error_line(err, "tsv-import")
    assert "data.tsv, line 3 (image 'img2'): field features holds 6 values per box; the store takes 8" in line
    assert "run again with --resume" in line
    assert stored_ids(tmp_path / "s.h5") == ["img0", "img1"]
    (tmp_path / "data.tsv").write_bytes(b"".join(lines))
    # --resume takes the store's --num-boxes (1-5) and --feature-dtype when they are not given
    status, out, _ = run(capsys, "tsv-import", tmp_path / "data.tsv", "-o", tmp_path / "s.h5", "--resume")
    assert status == EXIT_OK and "tsv-import: 2 images" in out
    assert stored_ids(tmp_path / "s.h5") == ["img0", "img1", "img2", "img3"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--resume", "--overwrite"], "pass --resume or --overwrite, not both"),
        ([], "s.h5 already exists; pass --resume to continue it or --overwrite to replace it"),
        (["--overwrite", "--num-boxes", "0"], "--num-boxes 0: expected a count like 36 or a range like 10-100"),
        (["--resume", "--num-boxes", "1-5"], "cannot resume"),
    ],
)
def test_tsv_import_option_errors_name_the_flags(tmp_path, capsys, tsv, options, message):
    store_with_ids(tmp_path / "s.h5", ["old"])
    status, _, err = run(capsys, "tsv-import", tsv, "--output", tmp_path / "s.h5", *options)
    assert status == EXIT_ERROR and message in error_line(err, "tsv-import")
    assert stored_ids(tmp_path / "s.h5") == ["old"]


def test_tsv_import_float16_overflow_is_one_error_line(tmp_path, capsys):
    huge = tiny_record("huge", seed=5)
    huge.features[0, 0] = -1e6
    (tmp_path / "huge.tsv").write_bytes(good_lines()[0] + encode_line(huge))
    status, _, err = run(
        capsys, "tsv-import", tmp_path / "huge.tsv", "-o", tmp_path / "s.h5", "--feature-dtype", "float16"
    )
    assert status == EXIT_ERROR
    assert "huge.tsv, line 2 (image 'huge'): field features holds 1e+06, beyond the float16 range" in err
    assert error_line(err, "tsv-import") and stored_ids(tmp_path / "s.h5") == ["img0"]


# -- tsv-export


def test_tsv_export_refuses_an_id_with_a_tab_and_leaves_no_file(tmp_path, capsys):
    store_with_ids(tmp_path / "s.h5", ["fine", "tab\there"])
    status, _, err = run(capsys, "tsv-export", tmp_path / "s.h5", "--output", tmp_path / "out.tsv")
    assert status == EXIT_ERROR and "['tab\\there']" in error_line(err, "tsv-export")
    assert listing(tmp_path) == ["s.h5"]


@pytest.mark.parametrize(
    ("store", "output", "options", "message"),
    [
        ("s.h5", "old.tsv", [], "old.tsv already exists; pass --overwrite to replace it"),
        ("s.h5", "s.h5", ["--overwrite"], "is the store"),
        ("gone.h5", "out.tsv", [], "gone.h5 does not exist"),
        ("old.tsv", "out.tsv", [], "old.tsv is not an HDF5 file"),
        ("s.h5", "nowhere/out.tsv", [], "does not exist"),
    ],
)
def test_tsv_export_bad_input_is_one_error_line(tmp_path, capsys, store, output, options, message):
    store_with_ids(tmp_path / "s.h5", ["a", "b"])
    (tmp_path / "old.tsv").write_bytes(b"keep me")
    status, _, err = run(capsys, "tsv-export", tmp_path / store, "--output", tmp_path / output, *options)
    assert status == EXIT_ERROR and message in error_line(err, "tsv-export")
    assert listing(tmp_path) == ["old.tsv", "s.h5"] and (tmp_path / "old.tsv").read_bytes() == b"keep me"
    assert stored_ids(tmp_path / "s.h5") == ["a", "b"]


def test_tsv_export_through_a_symlink_writes_the_target(tmp_path, capsys, tsv):
    assert run(capsys, "tsv-import", tsv, "-o", tmp_path / "s.h5")[0] == EXIT_OK
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "out.tsv").write_bytes(b"old")
    (tmp_path / "out.tsv").symlink_to(tmp_path / "real" / "out.tsv")
    status, _, _ = run(capsys, "tsv-export", tmp_path / "s.h5", "-o", tmp_path / "out.tsv", "--overwrite")
    assert status == EXIT_OK and (tmp_path / "out.tsv").is_symlink()
    assert (tmp_path / "real" / "out.tsv").read_bytes() == tsv.read_bytes()
    assert listing(tmp_path / "real") == ["out.tsv"]


# -- Ctrl-C


def test_ctrl_c_during_tsv_import_overwrite_leaves_the_old_store(tmp_path, capsys, monkeypatch, tsv):
    store_with_ids(tmp_path / "s.h5", ["old"])

    def interrupted(self, records):
        raise KeyboardInterrupt

    monkeypatch.setattr(StoreWriter, "append", interrupted)
    status, _, err = run(capsys, "tsv-import", tsv, "-o", tmp_path / "s.h5", "--overwrite")
    monkeypatch.undo()
    assert status == EXIT_INTERRUPTED and err.endswith(
        "tsv-import: interrupted; " + f"{tmp_path / 's.h5'} is as it was\n"
    )
    assert stored_ids(tmp_path / "s.h5") == ["old"] and listing(tmp_path) == ["data.tsv", "s.h5"]


def test_ctrl_c_during_tsv_export_leaves_no_partial_file(tmp_path, capsys, monkeypatch, tsv):
    assert run(capsys, "tsv-import", tsv, "-o", tmp_path / "s.h5")[0] == EXIT_OK
    lines = []

    def interrupted_after_two(record):
        if len(lines) == 2:
            raise KeyboardInterrupt
        lines.append(encode_line(record))
        return lines[-1]

    monkeypatch.setattr(extract.store.tsv, "encode_line", interrupted_after_two)
    status, _, err = run(capsys, "tsv-export", tmp_path / "s.h5", "-o", tmp_path / "out.tsv")
    assert status == EXIT_INTERRUPTED and "tsv-export: interrupted; " in err and len(lines) == 2
    assert listing(tmp_path) == ["data.tsv", "s.h5"]


# -- verify


def damage_records(path, rows: list[int]) -> None:
    """Flip a byte of the features of the images at ``rows`` (3 boxes each, one chunk each), in the file."""
    with h5py.File(path, "r") as file:
        features = file["boxes/features"]
        assert features.chunks[0] == 3
        offsets = [features.id.get_chunk_info_by_coord((3 * row, 0)).byte_offset for row in rows]
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_a_clean_store(tmp_path, capsys):
    store_with_ids(tmp_path / "s.h5", ["a", "b"])
    status, out, err = run(capsys, "verify", tmp_path / "s.h5")
    assert status == EXIT_OK and err == ""
    assert out.count("\n") == 1
    assert "s.h5: 2 images and 0 error lines checked against their checksums: no damage found" in out


def test_verify_lists_damaged_records_up_to_a_cap(tmp_path, capsys):
    ids = [f"img{i:02d}" for i in range(25)]
    store_with_ids(tmp_path / "s.h5", ids)
    damaged = [1, *range(3, 24)]  # 22 records
    damage_records(tmp_path / "s.h5", damaged)
    status, out, err = run(capsys, "verify", tmp_path / "s.h5")
    assert status == EXIT_ERROR and err == ""
    lines = out.splitlines()
    assert "25 images and 0 error lines checked against their checksums: 22 damaged record(s)" in lines[0]
    assert [line.split()[1] for line in lines[1:-1]] == [f"{ids[row]}:" for row in damaged[:SHOWN_DAMAGED]]
    assert all("does not match its checksum" in line for line in lines[1:-1])
    assert lines[-1] == f"  ... and {22 - SHOWN_DAMAGED} more damaged records"


def test_verify_reports_a_damaged_error_line(tmp_path, capsys):
    store_with_ids(tmp_path / "s.h5", ["a"])
    with FeatureStore(tmp_path / "s.h5") as store:
        metadata = store.metadata
    with StoreWriter(tmp_path / "s.h5", metadata=metadata, feature_dtype="float32", resume=True) as writer:
        writer.add_error("broken", "cannot decode it")
    data = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "s.h5").write_bytes(data.replace(b"cannot decode it", b"Cannot decode it"))
    status, out, _ = run(capsys, "verify", tmp_path / "s.h5")
    assert status == EXIT_ERROR
    lines = out.splitlines()
    assert (
        "1 images and 1 error lines checked against their checksums: 0 damaged record(s), 1 other problem(s)"
        in (lines[0])
    )
    assert len(lines) == 2 and "line 1 of its error table does not match its checksum" in lines[1]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"not a store", "notes.txt is not an HDF5 file"),
        ("gone.h5", None, "gone.h5 does not exist"),
        ("plain.h5", "hdf5", "plain.h5 is an HDF5 file but not a feature store"),
    ],
)
def test_verify_of_a_file_that_is_not_a_store_is_one_error_line(tmp_path, capsys, name, content, message):
    if content == "hdf5":
        with h5py.File(tmp_path / name, "w") as file:
            file["x"] = [1, 2, 3]
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    status, out, err = run(capsys, "verify", tmp_path / name)
    assert status == EXIT_ERROR and out == "" and message in error_line(err, "verify")


# -- another process writing the output


WRITER_CHILD = """
import sys
from pathlib import Path
from extract.store import FeatureStore, StoreWriter
from helpers import store_with_ids, tiny_record

store_with_ids(sys.argv[1], ["first"])
metadata = FeatureStore(sys.argv[1]).metadata
with StoreWriter(sys.argv[1], metadata=metadata, feature_dtype="float32", resume=True) as writer:
    print("writing", flush=True)
    sys.stdin.readline()
    writer.append([tiny_record("second")])
"""


def writing_child(path):
    """A process that holds ``path`` open for writing (a StoreWriter) until told to add a record and close.
    Run from a script file: the busy error quotes the holder's command line."""
    script = path.with_name("writer_child.py")
    script.write_text(WRITER_CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = child.stdout.readline()  # the child has the store open for writing once it says so
    assert line == "writing\n", (line, child.stderr.read())
    return child


def test_overwrite_is_refused_while_another_process_writes_the_output(tmp_path, capsys, tsv):
    store_with_ids(tmp_path / "shard.h5", ["shard0"])
    child = writing_child(tmp_path / "busy.h5")  # one child for both commands: it takes seconds to start
    try:
        for command, source in (("merge", tmp_path / "shard.h5"), ("tsv-import", tsv)):
            status, _, err = run(capsys, command, source, "--output", tmp_path / "busy.h5", "--overwrite")
            assert status == EXIT_ERROR
            assert "busy.h5 is being written by another process" in error_line(err, command)
        status, out, err = run(capsys, "verify", tmp_path / "busy.h5")
        assert status == EXIT_ERROR and out == "" and "busy.h5 is being written" in error_line(err, "verify")
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert stored_ids(tmp_path / "busy.h5") == ["first", "second"]
    assert listing(tmp_path) == ["busy.h5", "data.tsv", "shard.h5", "writer_child.py"]  # no side or lock file


@pytest.mark.parametrize("command", [[], ["merge"], ["tsv-import"], ["tsv-export"], ["verify"]], ids=str)
def test_help_loads_neither_torch_nor_pillow_nor_h5py(command):
    # `lxmert-extract --help` took about 3 s when the command line imported extract.images (and torch with it).
    code, printed, loaded = run_help("extract.jobs.cli", [*command, "--help"])
    assert code == 0 and not {"torch", "PIL", "h5py", "extract.images"} & loaded
    assert "lxmert-extract" in printed
