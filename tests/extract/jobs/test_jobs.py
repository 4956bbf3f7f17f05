"""The extraction job (extract.jobs.run.run_extraction) and the lxmert-extract command: inputs and ids, the store
it writes against the extractor, resume, shards, the error table, exit statuses and bad input.

The detector is the tiny fixture in a cheaper setting (short side 300, long side 500, 100 proposals), as in
tests/conftest.py (detector_dir). A job batches images of one size together, which changes features by a few
1e-6 against one-by-one runs at this size (extract.model.detector), hence the tolerance of the comparisons.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import FIXTURES, rewrite_settings

from extract.checkpoints import read_weights
from extract.jobs.cli import EXIT_ERROR, EXIT_IMAGES_FAILED, EXIT_OK, main
from extract.jobs.distributed import parse_shard, shard_of, shard_path
from extract.jobs.inputs import InputError, list_images
from extract.jobs.records import weights_sha256
from extract.jobs.run import run_extraction
from extract.jobs.summary import JobError
from extract.store import FeatureStore, StoreError

IMAGES = FIXTURES / "images"
NAMES = ("000456", "000542", "input")  # the job's images: two of one size, one of another
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def expected(detector_dir) -> dict:
    """The extractor's own output for each image, one by one: what the store must hold."""
    from extract.extractor import RegionFeatureExtractor

    extractor = RegionFeatureExtractor.from_pretrained(detector_dir)
    return {name: extractor(IMAGES / f"{name}.jpg")[0] for name in NAMES}


@pytest.fixture
def folder(tmp_path) -> Path:
    """The three images in nested folders, a corrupt "image" and a file the folder search ignores."""
    root = tmp_path / "images"
    (root / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(IMAGES / "000456.jpg", root / "000456.jpg")
    shutil.copy(IMAGES / "000542.jpg", root / "nested" / "000542.jpg")
    shutil.copy(IMAGES / "input.jpg", root / "nested" / "deeper" / "input.JPG")
    (root / "nested" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (root / "notes.txt").write_text("not an image")
    return root


def job(inputs, output, detector_dir, **options):
    options = {
        "detector": detector_dir,
        "device": "cpu",
        "num_workers": 0,
        "batch_size": 2,
        "progress": False,
    } | options
    return run_extraction(inputs, output, **options)


def cli(*args, detector_dir) -> int:
    return main([*map(str, args), "--detector", str(detector_dir), "--device", "cpu", "--quiet"])


def assert_matches_extractor(store: FeatureStore, expected: dict, names=NAMES) -> None:
    for name in names:
        record, regions = store[name], expected[name]
        assert (record.height, record.width) == regions.image_size
        np.testing.assert_allclose(record.features, regions.features.numpy(), **TOLERANCE)
        np.testing.assert_allclose(record.boxes, regions.boxes.numpy(), **TOLERANCE)
        np.testing.assert_allclose(record.normalized_boxes, regions.normalized_boxes.numpy(), **TOLERANCE)
        np.testing.assert_array_equal(record.object_ids, regions.object_ids.numpy())
        np.testing.assert_array_equal(record.attribute_ids, regions.attribute_ids.numpy())
        np.testing.assert_allclose(record.object_scores, regions.object_scores.numpy(), **TOLERANCE)


# ---------------------------------------------------------------------------------------------------
# The job end to end


def test_folder_job_writes_every_image_records_the_broken_one_and_exits_3(
    folder, tmp_path, detector_dir, expected, capsys
):
    output = tmp_path / "out.h5"
    status = cli(folder, "--output", output, "--batch-size", "2", "--num-workers", "1", detector_dir=detector_dir)
    assert status == EXIT_IMAGES_FAILED
    out, err = capsys.readouterr()
    assert f"3 done, 0 skipped (already in the store), 1 failed -> {output}" in out
    assert "failed broken: cannot load image" in err and "--allow-errors" in err
    with FeatureStore(output) as store:
        assert sorted(store.ids()) == sorted(NAMES)
        assert_matches_extractor(store, expected)
        errors = store.errors()
        assert list(errors) == ["broken"] and "broken.png" in errors["broken"] and "Pillow" in errors["broken"]
        metadata = store.metadata
        assert (metadata.num_boxes, metadata.rule, metadata.feature_dim) == ("36", "caffe", 256)
        # The hash of the tensors the file holds (the model loaded exactly those), not of the file's bytes.
        assert metadata.checkpoint_sha256 == weights_sha256(read_weights(detector_dir / "model.safetensors"))
        assert metadata.id_scheme == "stem"
        assert metadata.detector_config["min_size_test"] == 300
        assert metadata.detector_config["compute_dtype"] == "float32"
        assert store.feature_dtype == "float32"

    # Nothing left to do; the broken image still counts as failed, unless errors are allowed.
    status = cli(folder, "--output", output, "--resume", "--allow-errors", detector_dir=detector_dir)
    assert status == EXIT_OK
    assert "0 done, 3 skipped (already in the store), 1 failed" in capsys.readouterr().out


def test_adaptive_boxes_float16_and_the_summary(folder, tmp_path, detector_dir, expected):
    summary = job(folder, tmp_path / "a.h5", detector_dir, num_boxes="10-100", feature_dtype="float16", num_workers=2)
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (4, 3, 0, 1)
    assert not summary.complete and summary.images_per_second > 0 and summary.output == tmp_path / "a.h5"
    assert list(summary.failures) == ["broken"]
    with FeatureStore(tmp_path / "a.h5") as store:
        assert store.metadata.num_boxes == "10-100" and store.feature_dtype == "float16"
        for name in NAMES:
            assert 10 <= store[name].num_boxes <= 100
            assert store[name].features.dtype == np.float16


def test_d2_rule_takes_no_num_boxes_and_stores_up_to_detections_per_image(tmp_path, detector_dir):
    with pytest.raises(InputError, match=r"d2 rule keeps up to .* takes no --num-boxes \(num_boxes\)"):
        job(IMAGES / "input.jpg", tmp_path / "d2.h5", detector_dir, rule="d2", num_boxes=36)
    summary = job(IMAGES / "input.jpg", tmp_path / "d2.h5", detector_dir, rule="d2")
    with FeatureStore(tmp_path / "d2.h5") as store:
        assert store.metadata.num_boxes == "1-100" and store.metadata.rule == "d2"
        assert summary.done + summary.failed == 1  # the tiny model may detect nothing (an error record then)


def test_an_image_too_elongated_for_the_detector_is_an_error_record(tmp_path, detector_dir):
    from PIL import Image

    Image.new("RGB", (3000, 1)).save(tmp_path / "line.png")
    summary = job(tmp_path / "line.png", tmp_path / "out.h5", detector_dir)
    assert summary.failed == 1 and "line.png" in summary.failures["line"]
    assert "line" in FeatureStore(tmp_path / "out.h5").errors()


def test_images_over_max_image_pixels_are_error_records(tmp_path, detector_dir, capsys):
    # 000456.jpg is 500 x 375 = 187,500 pixels: refused under a limit of 100,000, before decoding.
    output = tmp_path / "out.h5"
    status = cli(IMAGES / "000456.jpg", "--output", output, "--max-image-pixels", "100000", detector_dir=detector_dir)
    assert status == EXIT_IMAGES_FAILED
    with FeatureStore(output) as store:
        assert len(store) == 0
        assert "187500 pixels exceeds max_image_pixels=100000" in store.errors()["000456"]
    capsys.readouterr()
    status = cli(IMAGES / "000456.jpg", "--output", output, "--resume", "--retry-failed", "--max-image-pixels", "0",
                 detector_dir=detector_dir)  # fmt: skip
    assert status == EXIT_OK  # 0: no limit
    assert "000456" in FeatureStore(output)


# ---------------------------------------------------------------------------------------------------
# Inputs and ids


def test_folder_search_is_recursive_sorted_and_skips_other_files(folder):
    items = list_images(folder)
    assert [image_id for image_id, _ in items] == ["000456", "000542", "broken", "input"]
    assert items[3][1] == str(folder / "nested" / "deeper" / "input.JPG")


def test_ids_from_paths_relative_to_the_folder(folder):
    ids = [image_id for image_id, _ in list_images(folder, id_from="path")]
    assert ids == ["000456.jpg", "nested/000542.jpg", "nested/broken.png", "nested/deeper/input.JPG"]


def test_glob_list_file_and_single_file_inputs(folder, tmp_path):
    globbed = list_images(str(folder / "**" / "*.jpg"))  # the pattern is case-sensitive: input.JPG is not in it
    assert [image_id for image_id, _ in globbed] == ["000456", "000542"]
    assert [i for i, _ in list_images(str(folder / "**" / "*.jpg"), id_from="path")] == [
        "000456.jpg",
        "nested/000542.jpg",
    ]
    listing = folder / "nested" / "list.txt"
    listing.write_text("# images of the job\n000542.jpg\n\ndeeper/input.JPG\n/no/such/file.jpg\n")
    items = list_images([listing, folder / "000456.jpg"])
    assert items == [
        ("000542", str(folder / "nested" / "000542.jpg")),  # relative to the list's folder
        ("input", str(folder / "nested" / "deeper" / "input.JPG")),
        ("file", "/no/such/file.jpg"),  # missing: an error record when the job reaches it
        ("000456", str(folder / "000456.jpg")),
    ]


def test_a_listed_file_that_is_missing_becomes_an_error_record(tmp_path, detector_dir):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{IMAGES / 'input.jpg'}\nmissing.jpg\n")
    summary = job(listing, tmp_path / "out.h5", detector_dir)
    assert summary.done == 1 and "file not found" in summary.failures["missing"]


def test_duplicate_ids_are_an_error_listing_them_with_the_fix(folder):
    for id_from in ("stem", "path"):
        with pytest.raises(InputError, match="the same file is named twice"):
            list_images([folder, folder / "000456.jpg"], id_from=id_from)
    (folder / "other").mkdir()
    shutil.copy(IMAGES / "000456.jpg", folder / "other" / "000456.jpg")
    with pytest.raises(InputError) as raised:
        list_images(folder)
    message = str(raised.value)
    assert "'000456'" in message and str(folder / "other" / "000456.jpg") in message
    assert str(folder / "000456.jpg") in message and "--id-from path" in message
    assert len(list_images(folder, id_from="path")) == 5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no images in folder .*empty"),
        (lambda tmp: tmp / "absent", "absent: file not found"),
        (lambda tmp: str(tmp / "*.png"), "matches no files"),
        (lambda tmp: (tmp / "x.csv").write_text("a") and tmp / "x.csv", "neither an image .* nor a .txt list"),
        (lambda tmp: (tmp / "l.txt").write_text("# nothing\n\n") and tmp / "l.txt", "names no images"),
        (lambda tmp: [], "no inputs"),
        (lambda tmp: {"image": ["a.jpg"]}, "inputs is a dict: expected a path or a list of paths"),
    ],
)
def test_inputs_that_name_no_images(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        list_images(make(tmp_path))


def test_an_empty_folder_stops_the_command_with_exit_1(tmp_path, detector_dir, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(tmp_path / "empty", "--output", tmp_path / "o.h5", detector_dir=detector_dir) == EXIT_ERROR
    assert "error: no images in folder" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


# ---------------------------------------------------------------------------------------------------
# Shards


def test_shard_specs():
    assert parse_shard("3/8") == (3, 8) and parse_shard((0, 1)) == (0, 1)
    for spec, message in [
        ("3/2", "index must be 0 to 1"),
        ("0/0", "at least 1"),
        ("x/y", "expected I/N"),
        ("2", "I/N"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_shard(spec)


def test_shards_split_ids_by_hash_independently_of_order_and_name_their_files():
    ids = [f"COCO_val2014_{i:012d}" for i in range(1000)]
    shards = [shard_of(image_id, 4) for image_id in ids]
    assert set(shards) == {0, 1, 2, 3} and all(150 < shards.count(i) < 350 for i in range(4))
    assert [shard_of(image_id, 4) for image_id in reversed(ids)] == shards[::-1]
    assert shard_path("/data/coco.h5", 3, 8) == Path("/data/coco.shard-00003-of-00008.h5")


def test_shard_jobs_then_merge_equal_one_job(folder, tmp_path, detector_dir, expected, capsys):
    output = tmp_path / "all.h5"
    for index in range(2):
        status = cli(folder, "--output", output, "--shard", f"{index}/2", "--allow-errors", detector_dir=detector_dir)
        assert status == EXIT_OK
    shards = [tmp_path / f"all.shard-0000{i}-of-00002.h5" for i in range(2)]
    assert not output.exists() and all(shard.exists() for shard in shards)
    assert main(["merge", *map(str, shards), "--output", str(output)]) == EXIT_OK
    assert f"2 shards, 3 images, 1 errors -> {output}" in capsys.readouterr().out
    with FeatureStore(output) as store:
        assert sorted(store.ids()) == sorted(NAMES) and list(store.errors()) == ["broken"]
        assert_matches_extractor(store, expected)
    assert main(["merge", *map(str, shards), "--output", str(output)]) == EXIT_ERROR
    assert "already exists" in capsys.readouterr().err
    assert main(["merge", *map(str, shards), "--output", str(output), "--overwrite"]) == EXIT_OK


def test_bad_shard_spec_on_the_command_line(folder, tmp_path, detector_dir, capsys):
    assert cli(folder, "--output", tmp_path / "o.h5", "--shard", "3/2", detector_dir=detector_dir) == EXIT_ERROR
    assert "shard 3/2: the index must be 0 to 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Existing stores: overwrite, resume


def test_an_existing_output_is_refused_without_resume_or_overwrite(tmp_path, detector_dir, capsys):
    output = tmp_path / "out.h5"
    job(IMAGES / "input.jpg", output, detector_dir)
    assert cli(IMAGES / "input.jpg", "--output", output, detector_dir=detector_dir) == EXIT_ERROR
    assert "out.h5 already exists; pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert cli(IMAGES / "000456.jpg", "--output", output, "--overwrite", detector_dir=detector_dir) == EXIT_OK
    assert FeatureStore(output).ids() == ["000456"]
    assert cli(IMAGES / "input.jpg", "--output", output, "--resume", "--overwrite", detector_dir=detector_dir) == 1
    assert "not both" in capsys.readouterr().err


def test_resume_skips_complete_and_failed_images_and_retries_failed_ones_when_asked(folder, tmp_path, detector_dir):
    output = tmp_path / "out.h5"
    first = job([folder / "000456.jpg", folder / "nested" / "broken.png"], output, detector_dir)
    assert (first.done, first.failed) == (1, 1)
    resumed = job(folder, output, detector_dir, resume=True)
    assert (resumed.total, resumed.done, resumed.skipped, resumed.failed, resumed.failed_before) == (4, 2, 1, 0, 1)
    again = job(folder, output, detector_dir, resume=True, retry_failed=True)
    assert (again.done, again.skipped, again.failed, again.failed_before) == (0, 3, 1, 0)
    with FeatureStore(output) as store:
        assert sorted(store.ids()) == sorted(NAMES) and len(store) == 3


def test_resume_with_other_settings_names_each_difference(tmp_path, detector_dir, capsys):
    output = tmp_path / "out.h5"
    job(IMAGES / "input.jpg", output, detector_dir)
    with pytest.raises(StoreError, match=r"detector_config.compute_dtype: store 'float32', this job 'bfloat16'"):
        job(IMAGES / "input.jpg", output, detector_dir, resume=True, dtype="bfloat16")
    status = cli(IMAGES / "input.jpg", "--output", output, "--resume", "--rule", "maxnms", detector_dir=detector_dir)
    assert status == EXIT_ERROR
    err = capsys.readouterr().err
    assert "cannot resume" in err and "rule: store 'caffe', this job 'maxnms'" in err
    other = tmp_path / "other-detector"
    shutil.copytree(detector_dir, other)
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("MIN_SIZE_TEST: 300", "MIN_SIZE_TEST: 320"))
    with pytest.raises(StoreError, match=r"detector_config.min_size_test: store 300, this job 320"):
        job(IMAGES / "input.jpg", output, other, resume=True)


def test_a_store_of_a_newer_layout_version_is_refused(tmp_path, detector_dir, capsys):
    output = tmp_path / "out.h5"
    job(IMAGES / "input.jpg", output, detector_dir)
    rewrite_settings(output, layout_version="2.0")
    status = cli(IMAGES / "000456.jpg", "--output", output, "--resume", detector_dir=detector_dir)
    assert status == EXIT_ERROR
    assert "layout version 2.0, this library reads version 1." in capsys.readouterr().err


def test_a_failed_write_stops_the_job_and_the_store_resumes(folder, tmp_path, detector_dir, expected, monkeypatch):
    output = tmp_path / "out.h5"
    images = [folder / "000456.jpg", folder / "nested" / "000542.jpg", folder / "nested" / "deeper" / "input.JPG"]
    writes = {"calls": 0}
    original = h5py.Dataset.__setitem__

    def disk_full_after_the_first_batch(dataset, key, value):
        writes["calls"] += 1
        if writes["calls"] > 14:  # 14 writes commit a batch (ids, 4 image columns, 2 checksum columns, 7 box columns)
            raise OSError(28, "No space left on device")
        return original(dataset, key, value)

    with monkeypatch.context() as patch:
        patch.setattr(h5py.Dataset, "__setitem__", disk_full_after_the_first_batch)
        with pytest.raises(JobError) as raised:
            job(images, output, detector_dir, batch_size=1)
    message = str(raised.value)
    assert "No space left on device" in message and "keeps its 1 complete images" in message and "resume" in message
    with FeatureStore(output) as store:
        assert store.ids() == ["000456"]
    summary = job(images, output, detector_dir, resume=True)
    assert (summary.done, summary.skipped) == (2, 1)
    with FeatureStore(output) as store:
        assert store.ids() == ["000456", "000542", "input"]
        assert_matches_extractor(store, expected)


def test_a_failed_write_exits_1_with_the_message(tmp_path, detector_dir, monkeypatch, capsys):
    monkeypatch.setattr(h5py.Dataset, "__setitem__", lambda *args: (_ for _ in ()).throw(OSError(28, "disk full")))
    assert cli(IMAGES / "input.jpg", "--output", tmp_path / "o.h5", detector_dir=detector_dir) == EXIT_ERROR
    assert "error: writing" in capsys.readouterr().err
    monkeypatch.undo()
    assert len(FeatureStore(tmp_path / "o.h5")) == 0


# ---------------------------------------------------------------------------------------------------
# Options and the other commands


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "int8"}, "dtype='int8'"),
        ({"feature_dtype": "float64"}, "feature_dtype='float64'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"num_workers": -1}, "num_workers=-1"),
        ({"rule": "nms"}, "unknown selection rule 'nms'"),
        ({"num_boxes": "100-10"}, "num_boxes must be"),
        ({"id_from": "name"}, "id_from='name'"),
        ({"max_image_pixels": -5}, "max_image_pixels=-5"),
    ],
)
def test_bad_options(tmp_path, detector_dir, options, message):
    with pytest.raises(InputError, match=message):
        job(IMAGES / "input.jpg", tmp_path / "o.h5", detector_dir, **options)


def test_job_devices(monkeypatch):
    from extract.jobs.distributed import Launch
    from extract.jobs.run import _job_device

    if not torch.cuda.is_available():
        assert _job_device(None, None) == torch.device("cpu")
    assert _job_device("cpu", None) == torch.device("cpu")
    with pytest.raises(InputError, match="device='tpu0' is not a torch device"):
        _job_device("tpu0", None)
    # A machine with two GPUs, simulated: "cuda" means the current device, or the rank's under torchrun.
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert _job_device("cuda", None) == torch.device("cuda", 0)
    assert _job_device(None, None) == torch.device("cuda", 0)
    assert _job_device("cuda", Launch(rank=3, world_size=4, local_rank=1)) == torch.device("cuda", 1)
    assert _job_device("cuda:1", None) == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", i) for i in (0, 0, 1, 1)]
    with pytest.raises(InputError, match="device 'cuda:2': this machine has 2 CUDA device"):
        _job_device("cuda:2", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="device 'cuda': CUDA is not available here"):
        _job_device("cuda", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_exits_1_with_the_message(tmp_path, detector_dir, capsys):
    argv = [str(IMAGES / "input.jpg"), "--output", str(tmp_path / "o.h5"), "--detector", str(detector_dir), "-q"]
    assert main([*argv, "--device", "cuda"]) == EXIT_ERROR
    assert "lxmert-extract: error: device 'cuda': CUDA is not available here" in capsys.readouterr().err


def test_the_module_form_runs_without_warnings():
    # torchrun -m extract.jobs: the package must not have imported the module before it runs as __main__.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "extract.jobs", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: lxmert-extract") and not done.stderr


def test_command_line_usage_errors(tmp_path, detector_dir, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0 and "exit status" in capsys.readouterr().out
    assert cli("--output", tmp_path / "o.h5", detector_dir=detector_dir) == EXIT_ERROR  # no inputs
    assert cli(IMAGES, "--dataset", "x", "--output", tmp_path / "o.h5", detector_dir=detector_dir) == EXIT_ERROR
    assert cli(IMAGES, "--split", "train", "--output", tmp_path / "o.h5", detector_dir=detector_dir) == EXIT_ERROR
    assert cli(IMAGES, "--retry-failed", "--output", tmp_path / "o.h5", detector_dir=detector_dir) == EXIT_ERROR
    assert capsys.readouterr().err.count("error:") == 4


def test_tsv_import_and_export_commands(tmp_path, capsys):
    tsv = FIXTURES / "tsv" / "coco_train2014_obj36_caffe.tsv"
    assert main(["tsv-import", str(tsv), "--output", str(tmp_path / "t.h5")]) == EXIT_OK
    assert main(["tsv-import", str(tsv), "--output", str(tmp_path / "t.h5")]) == EXIT_ERROR
    assert main(["tsv-export", str(tmp_path / "t.h5"), "--output", str(tmp_path / "t.tsv")]) == EXIT_OK
    assert (tmp_path / "t.tsv").read_bytes() == tsv.read_bytes()
    assert main(["tsv-import", str(tsv), "--output", str(tmp_path / "a.h5"), "--num-boxes", "10-100"]) == EXIT_OK
    assert FeatureStore(tmp_path / "a.h5").metadata.num_boxes == "10-100"
    assert "tsv-import: 10 images" in capsys.readouterr().out
    # An existing TSV is kept unless --overwrite.
    tsv_out = tmp_path / "t.tsv"
    tsv_out.write_text("keep me")
    assert main(["tsv-export", str(tmp_path / "t.h5"), "--output", str(tsv_out)]) == EXIT_ERROR
    assert "t.tsv already exists; pass --overwrite" in capsys.readouterr().err and tsv_out.read_text() == "keep me"
    assert main(["tsv-export", str(tmp_path / "t.h5"), "--output", str(tsv_out), "--overwrite"]) == EXIT_OK
    assert tsv_out.read_bytes() == tsv.read_bytes()
    # A float16 store exports with a note that the features went through float16.
    half = tmp_path / "half.h5"
    assert main(["tsv-import", str(tsv), "--output", str(half), "--feature-dtype", "float16"]) == EXIT_OK
    capsys.readouterr()
    assert main(["tsv-export", str(half), "--output", str(tmp_path / "half.tsv")]) == EXIT_OK
    assert "keeps float16 features" in capsys.readouterr().err
