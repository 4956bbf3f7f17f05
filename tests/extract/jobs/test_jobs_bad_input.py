"""The extraction job against odd and hostile input (issue 11): file names that cannot be ids, unreadable
folders, symlink loops, list files with odd bytes, a changed id scheme on resume, the same weights in another
checkpoint format, a decoding worker killed by a signal, and a second job on the same output.

The detector is the tiny fixture in the cheaper setting of tests/conftest.py (detector_dir).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FIXTURES

import extract.jobs.records
from extract.checkpoints import read_checkpoint, read_weights, save_pretrained
from extract.jobs.cli import EXIT_ERROR, EXIT_IMAGES_FAILED, main
from extract.jobs.inputs import InputError, UnnamedImage, list_images
from extract.jobs.records import file_sha256, weights_sha256
from extract.jobs.run import run_extraction
from extract.jobs.summary import JobError
from extract.store import FeatureStore, StoreBusyError, StoreError

IMAGES = FIXTURES / "images"
LATIN1_NAME = b"caf\xe9.jpg"  # "café.jpg" in Latin-1: not UTF-8


def run(inputs, output, detector_dir, **options):
    settings = {"detector": detector_dir, "device": "cpu", "num_workers": 0, "batch_size": 2, "progress": False}
    return run_extraction(inputs, output, **(settings | options))


def cli(*args, detector_dir) -> int:
    return main([*map(os.fsdecode, args), "--detector", str(detector_dir), "--device", "cpu", "--quiet"])


@pytest.fixture
def latin1_folder(tmp_path) -> Path:
    """good.jpg and a file whose name is not UTF-8 (bytes path: the OS names it, Python escapes it)."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(IMAGES / "000456.jpg", root / "good.jpg")
    shutil.copy(IMAGES / "input.jpg", os.fsdecode(os.fsencode(root) + b"/" + LATIN1_NAME))
    return root


# ---------------------------------------------------------------------------------------------------
# File names that cannot be image ids


def test_a_file_name_that_is_not_utf8_is_an_error_record_and_the_rest_is_stored(
    latin1_folder, tmp_path, detector_dir, capsys
):
    output = tmp_path / "out.h5"
    assert cli(latin1_folder, "--output", output, detector_dir=detector_dir) == EXIT_IMAGES_FAILED
    out, err = capsys.readouterr()
    assert "1 done, 0 skipped (already in the store), 1 failed" in out
    assert "caf\\xe9" in err and "not valid UTF-8" in err
    with FeatureStore(output) as store:
        assert store.ids() == ["good"]
        errors = store.errors()
        assert list(errors) == ["caf\\xe9"] and "rename the file" in errors["caf\\xe9"]

    # Resuming skips both (the error record is not retried), and a shard of the folder works too.
    summary = run(latin1_folder, output, detector_dir, resume=True)
    assert (summary.done, summary.skipped, summary.failed_before) == (0, 1, 1)
    shards = [run(latin1_folder, tmp_path / "s.h5", detector_dir, shard=(index, 2)) for index in range(2)]
    assert sum(s.done for s in shards) == 1 and sum(s.failed for s in shards) == 1


def test_a_file_name_with_a_newline_is_an_error_record_not_the_end_of_the_job(tmp_path, detector_dir):
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(IMAGES / "000456.jpg", root / "good.jpg")
    shutil.copy(IMAGES / "input.jpg", root / "two\nlines.jpg")
    items = list_images(root)
    assert [image_id for image_id, _ in items] == ["good", "two\\nlines"]
    assert isinstance(items[1][1], UnnamedImage)
    summary = run(root, tmp_path / "out.h5", detector_dir)
    assert (summary.done, summary.failed) == (1, 1)
    assert "has a newline" in summary.failures["two\\nlines"]


def test_a_list_file_is_split_at_newlines_only_and_may_hold_any_bytes(tmp_path, detector_dir):
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(IMAGES / "000456.jpg", root / "form\ffeed.jpg")  # a form feed is a character of the name
    shutil.copy(IMAGES / "input.jpg", os.fsdecode(os.fsencode(root) + b"/" + LATIN1_NAME))
    (tmp_path / "list.txt").write_bytes(b"images/form\x0cfeed.jpg\r\nimages/" + LATIN1_NAME + b"\n# comment\n")
    items = list_images(tmp_path / "list.txt")
    assert [image_id for image_id, _ in items] == ["form\ffeed", "caf\\xe9"]
    summary = run(tmp_path / "list.txt", tmp_path / "out.h5", detector_dir)
    assert (summary.done, summary.failed) == (1, 1)
    with FeatureStore(tmp_path / "out.h5") as store:
        assert store.ids() == ["form\ffeed"]


# ---------------------------------------------------------------------------------------------------
# Folders and paths the OS refuses


def _drop_capabilities() -> None:
    """Make a root process subject to file permissions (clear its capabilities), as any other user is."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")


UNREADABLE_FOLDER_CHILD = """
import sys
from test_jobs_bad_input import _drop_capabilities
from extract.jobs.inputs import InputError, list_images
_drop_capabilities()
for inputs in sys.argv[1:]:
    try:
        items = list_images(inputs)
    except InputError as error:
        print("InputError:", error)
    else:
        print("listed:", [image_id for image_id, _ in items])
"""


def test_an_unreadable_subfolder_stops_the_listing_naming_it(tmp_path):
    root = tmp_path / "images"
    (root / "locked").mkdir(parents=True)
    shutil.copy(IMAGES / "000456.jpg", root / "good.jpg")
    shutil.copy(IMAGES / "input.jpg", root / "locked" / "hidden.jpg")
    (root / "locked").chmod(0)
    try:
        child = subprocess.run(
            [sys.executable, "-c", UNREADABLE_FOLDER_CHILD, str(root), f"{root}/**/*.jpg", f"{root}/*/*.jpg"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])},
            timeout=120,
        )
    finally:
        (root / "locked").chmod(0o755)
    assert child.returncode == 0, child.stderr
    lines = child.stdout.splitlines()
    assert len(lines) == 3, child.stdout  # the folder, a ** glob and a glob through it: none skips it silently
    for line in lines:
        assert line.startswith("InputError: cannot read the folder") and "locked" in line, line
        assert "Permission denied" in line


def test_a_symlink_loop_is_named_as_such(tmp_path, detector_dir, capsys):
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="loop.jpg: symlink loop"):
        list_images(loop)
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(InputError, match=r"dangling.jpg: file not found \(a symlink to a missing file\)"):
        list_images(dangling)
    with pytest.raises(InputError, match="nothing.jpg: file not found"):
        list_images(tmp_path / "nothing.jpg")
    assert cli(loop, "--output", tmp_path / "out.h5", detector_dir=detector_dir) == EXIT_ERROR
    assert "symlink loop" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Resume: ids and weights


def test_resuming_with_other_ids_is_refused(tmp_path, detector_dir, capsys):
    output = tmp_path / "out.h5"
    run(IMAGES / "input.jpg", output, detector_dir)
    with FeatureStore(output) as store:
        assert store.metadata.id_scheme == "stem"
    with pytest.raises(StoreError, match=r"ids: the store's are file stems \(--id-from stem\), this job's file paths"):
        run(IMAGES / "input.jpg", output, detector_dir, resume=True, id_from="path")
    status = cli(IMAGES / "input.jpg", "--output", output, "--resume", "--id-from", "path", detector_dir=detector_dir)
    assert status == EXIT_ERROR and "--id-from path" in capsys.readouterr().err
    with FeatureStore(output) as store:
        assert store.ids() == ["input"]


def test_the_same_weights_in_another_checkpoint_format_resume_the_store(tmp_path, detector_dir):
    """detector_dir holds model.safetensors; the same weights as the original detectron2 .pkl (with the same
    config) must resume its store, and other weights must not."""
    as_pickle = tmp_path / "as-pickle"
    as_pickle.mkdir()
    shutil.copy(detector_dir / "config.yaml", as_pickle / "config.yaml")
    shutil.copy(FIXTURES / "detectron2-vg-tiny" / "model_final.pkl", as_pickle / "model_final.pkl")
    assert file_sha256(as_pickle / "model_final.pkl") != file_sha256(detector_dir / "model.safetensors")

    output = tmp_path / "out.h5"
    run(IMAGES / "input.jpg", output, detector_dir)
    summary = run([IMAGES / "input.jpg", IMAGES / "000456.jpg"], output, as_pickle, resume=True)
    assert (summary.done, summary.skipped) == (1, 1)

    changed = tmp_path / "changed"
    checkpoint = read_checkpoint(detector_dir)
    config, state_dict = checkpoint.config, checkpoint.state_dict
    state_dict = dict(state_dict)
    name = next(name for name in sorted(state_dict) if state_dict[name].is_floating_point())
    state_dict[name] = state_dict[name] + 1e-3
    save_pretrained(config, state_dict, changed)
    with pytest.raises(StoreError, match="checkpoint_sha256"):
        run(IMAGES / "000542.jpg", output, changed, resume=True)


def test_the_weights_hash_covers_names_dtypes_shapes_and_bytes(detector_dir):
    tensors = dict(read_weights(detector_dir / "model.safetensors"))
    reference = weights_sha256(tensors)
    name = sorted(tensors)[0]
    renamed = {("x" + k if k == name else k): v for k, v in tensors.items()}
    assert weights_sha256(renamed) != reference
    assert weights_sha256({**tensors, name: tensors[name].double()}) != reference
    assert weights_sha256({**tensors, name: tensors[name].reshape(1, -1)}) != reference
    bumped = tensors[name].clone()
    bumped.view(-1)[0] += 1
    assert weights_sha256({**tensors, name: bumped}) != reference
    assert weights_sha256(dict(reversed(list(tensors.items())))) == reference


def test_a_store_of_the_previous_version_named_by_its_weights_file_still_resumes(tmp_path, detector_dir):
    """tests/fixtures/stores/layout-1.0-job.h5 was written by lxmert 0.1.0, which named the detector by the
    SHA-256 of its weights file: the job that loads that very file resumes it, and it stays a 1.0 store."""
    detector = FIXTURES / "detectron2-vg-tiny"
    output = shutil.copy(FIXTURES / "stores" / "layout-1.0-job.h5", tmp_path / "old.h5")
    with FeatureStore(output) as store:
        assert store.layout_version == "1.0" and store.ids() == ["input"]
        assert store.metadata.checkpoint_sha256 == file_sha256(detector / "model_final.pkl")
    summary = run([IMAGES / "input.jpg", IMAGES / "000456.jpg"], output, detector, resume=True)
    assert (summary.done, summary.skipped) == (1, 1)
    with FeatureStore(output) as store:
        assert store.layout_version == "1.0" and store.ids() == ["input", "000456"]
    with pytest.raises(StoreError, match="checkpoint_sha256"):  # other weights (and config) are still refused
        run(IMAGES / "000542.jpg", output, detector_dir, resume=True)


# ---------------------------------------------------------------------------------------------------
# Decoding workers and concurrent jobs


def test_a_decoding_worker_killed_by_a_signal_stops_the_job_with_a_message(tmp_path, detector_dir, monkeypatch, capsys):
    real_load_image = extract.jobs.records.load_image

    def load_image(source, **kwargs):
        if "input" in os.fspath(source):  # the worker decoding this image is killed, as the OOM killer would
            os.kill(os.getpid(), signal.SIGKILL)
        return real_load_image(source, **kwargs)

    monkeypatch.setattr(extract.jobs.records, "load_image", load_image)
    output = tmp_path / "out.h5"
    images = [IMAGES / "000456.jpg", IMAGES / "000542.jpg", IMAGES / "input.jpg"]
    with pytest.raises(JobError, match=r"image-decoding worker process died .*--resume"):
        run(images, output, detector_dir, num_workers=1, batch_size=1)
    status = main([*map(str, images), "--output", str(tmp_path / "cli.h5"), "--detector", str(detector_dir)]
                  + ["--device", "cpu", "--quiet", "--num-workers", "1", "--batch-size", "1"])  # fmt: skip
    assert status == EXIT_ERROR
    err = capsys.readouterr().err
    assert "image-decoding worker process died" in err and "Traceback" not in err
    monkeypatch.undo()
    summary = run(images, output, detector_dir, resume=True)
    assert summary.done + summary.skipped == 3


SLOW_JOB_CHILD = """
import sys, time
import extract.jobs.records
from extract.jobs.run import run_extraction

real = extract.jobs.records.load_image
def slow(source, **kwargs):  # a long job: each image takes a while to decode
    time.sleep(float(sys.argv[4]))
    return real(source, **kwargs)
extract.jobs.records.load_image = slow
summary = run_extraction(sys.argv[1].split(","), sys.argv[2], detector=sys.argv[3], device="cpu", num_workers=0,
                         batch_size=1, progress=False)
print("done", summary.done)
"""


def test_overwrite_and_resume_are_refused_while_another_job_writes_the_output(tmp_path, detector_dir, capsys):
    output = tmp_path / "s.h5"
    first = [IMAGES / "000456.jpg", IMAGES / "000542.jpg", IMAGES / "input.jpg"]
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_JOB_CHILD, ",".join(map(str, first)), str(output), str(detector_dir), "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{output}.lock").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, child.communicate()
        with pytest.raises(StoreBusyError, match="s.h5"):
            run(IMAGES / "input.jpg", output, detector_dir, overwrite=True)
        with pytest.raises(StoreBusyError):
            run(IMAGES / "input.jpg", output, detector_dir, resume=True)
        status = cli(IMAGES / "input.jpg", "--output", output, "--overwrite", detector_dir=detector_dir)
        assert status == EXIT_ERROR and "s.h5" in capsys.readouterr().err
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0 and "done 3" in out, err
    with FeatureStore(output) as store:
        assert sorted(store.ids()) == ["000456", "000542", "input"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--batch-size", "0", "argument --batch-size: expected an integer >= 1, got 0"),
        ("--num-workers", "-1", "argument --num-workers: expected an integer >= 0, got -1"),
        ("--max-image-pixels", "-5", "argument --max-image-pixels: expected an integer >= 0, got -5"),
        ("--batch-size", "two", "argument --batch-size: expected an integer, got 'two'"),
    ],
)
def test_command_line_numbers_are_checked_naming_the_flag(tmp_path, flag, value, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main([str(IMAGES / "input.jpg"), "--output", str(tmp_path / "out.h5"), flag, value])
    assert raised.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out.h5").exists()


def test_resume_and_overwrite_together_name_the_flags(tmp_path, detector_dir, capsys):
    status = cli(
        IMAGES / "input.jpg", "--output", tmp_path / "o.h5", "--resume", "--overwrite", detector_dir=detector_dir
    )
    assert status == EXIT_ERROR and "pass --resume (resume=True" in capsys.readouterr().err
