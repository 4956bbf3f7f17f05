"""A job's previews (--preview DIR, extract.jobs.preview): the drawn regions of the first N images a process
extracts, with safe and unique file names for odd ids, from files or a dataset, with decoding workers, on
resume and per shard; a preview that fails warns once and the job still completes its store.

The detector is the tiny fixture in the cheaper setting of test_jobs.py (detector_dir).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES
from PIL import Image

from extract.draw import draw_regions
from extract.extractor import SHOWN_BOXES
from extract.images import load_image
from extract.jobs.cli import EXIT_ERROR, EXIT_OK, main
from extract.jobs.preview import ID_CHARS, PREVIEW_COUNT, preview_name
from extract.jobs.run import run_extraction
from extract.labels import class_names
from extract.store import FeatureStore

IMAGES = FIXTURES / "images"
NAMES = ("000456", "000542", "input")
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def job(inputs, output, detector_dir, **options):
    defaults = {"detector": detector_dir, "device": "cpu", "num_workers": 0, "batch_size": 2, "progress": False}
    return run_extraction(inputs, output, **defaults | options)


def cli(*args, detector_dir) -> int:
    return main([*map(str, args), "--detector", str(detector_dir), "--device", "cpu", "--quiet"])


def pngs(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def assert_preview_of(preview: Path, store: FeatureStore, image_id: str, image) -> None:
    """The preview is the stored regions drawn on the image: captions "attributes", the SHOWN_BOXES best."""
    record, config = store[image_id], store.metadata.detector_config
    objects = class_names("objects", config["num_classes"])
    attributes = class_names("attributes", config["num_attributes"])
    expected = draw_regions(
        image,
        record.boxes,
        object_names=[objects[i] for i in record.object_ids],
        attribute_names=[attributes[i] for i in record.attribute_ids],
        scores=record.object_scores,
        top=SHOWN_BOXES,
    )
    with Image.open(preview) as written:
        assert written.format == "PNG" and written.size == (record.width, record.height)
        assert (np.asarray(written.convert("RGB")) == np.asarray(expected)).all()


def test_preview_names_are_safe_unique_and_carry_the_shard():
    assert preview_name(3, "COCO_val2014_000000000042") == "0003-COCO_val2014_000000000042.png"
    assert preview_name(0, "train/0001.jpg") == "0000-train_0001.jpg.png"
    assert preview_name(1, "a\tb\nc\\d/../e\x00f") == "0001-a_b_c_d_.._e_f.png"
    assert preview_name(2, "caf\\xe9 caf\udce9 café 猫") == "0002-caf_xe9_caf_caf_.png"
    long = preview_name(4, "x" * 1000)
    assert long == f"0004-{'x' * ID_CHARS}.png" and len(long.encode()) < 255
    # ids that read alike stay apart by their ordinal
    assert preview_name(5, "a/b") != preview_name(6, "a b")
    assert preview_name(7, "img", shard=(3, 8)) == "shard-00003-0007-img.png"
    assert preview_name(7, "img", shard=(0, 1)) == "0007-img.png"
    assert PREVIEW_COUNT == 16


def test_the_first_n_extracted_images_are_previewed_in_job_order(tmp_path, detector_dir, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "0-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")  # failed: no preview, not counted
    odd = ["a\ttab", "b line\nbreak", "c" * 200]  # the newline makes an error record (no id), not a preview
    for name, source in zip(odd, NAMES, strict=True):
        shutil.copy(IMAGES / f"{source}.jpg", folder / f"{name}.jpg")
    output, previews = tmp_path / "out.h5", tmp_path / "previews" / "nested"
    args = [folder, "--output", output, "--preview", previews, "--preview-count", "5", "--num-workers", "1"]
    assert cli(*args, "--allow-errors", detector_dir=detector_dir) == EXIT_OK
    assert "2 done, 0 skipped (already in the store), 2 failed" in capsys.readouterr().out
    assert pngs(previews) == ["0000-a_tab.png", f"0001-{'c' * ID_CHARS}.png"]
    with FeatureStore(output) as store:
        assert_preview_of(previews / "0000-a_tab.png", store, "a\ttab", folder / "a\ttab.jpg")
        assert_preview_of(previews / pngs(previews)[1], store, "c" * 200, folder / f"{'c' * 200}.jpg")

    # N smaller than the images: exactly N; the summary line counts them
    args = [*(IMAGES / f"{name}.jpg" for name in NAMES), "--output", tmp_path / "two.h5"]
    assert cli(*args, "--preview", tmp_path / "two", "--preview-count", "2", detector_dir=detector_dir) == EXIT_OK
    assert pngs(tmp_path / "two") == ["0000-000456.png", "0001-000542.png"]
    assert "; 2 previews in" in capsys.readouterr().out


def test_dataset_rows_with_odd_ids_are_previewed(tmp_path, detector_dir):
    datasets = pytest.importorskip("datasets")
    ids = ["tab\there", "slash/../x", "é" * 100]
    paths = [str(IMAGES / f"{name}.jpg") for name in NAMES]
    dataset = datasets.Dataset.from_dict({"image": paths, "image_id": ids}).cast_column("image", datasets.Image())
    summary = job(dataset, tmp_path / "d.h5", detector_dir, id_column="image_id", preview=tmp_path / "p", num_workers=1)
    assert summary.done == 3
    names = pngs(tmp_path / "p")
    assert names == ["0000-tab_here.png", "0001-slash_.._x.png", "0002-_.png"]
    assert all(set(name) <= SAFE for name in names)
    assert summary.previews == [tmp_path / "p" / name for name in names]
    with FeatureStore(tmp_path / "d.h5") as store:
        for name, image_id, path in zip(names, ids, paths, strict=True):
            assert_preview_of(tmp_path / "p" / name, store, image_id, load_image(path))


def test_resume_previews_only_this_runs_images_and_shards_name_their_files(tmp_path, detector_dir):
    output, previews = tmp_path / "r.h5", tmp_path / "p"
    job([IMAGES / "000456.jpg"], output, detector_dir, preview=previews)
    assert pngs(previews) == ["0000-000456.png"]
    shutil.rmtree(previews)
    summary = job([IMAGES / f"{name}.jpg" for name in NAMES], output, detector_dir, resume=True, preview=previews)
    assert (summary.done, summary.skipped) == (2, 1)
    assert pngs(previews) == ["0000-000542.png", "0001-input.png"]

    # 000456 falls in shard 0 of 2, 001150 in shard 1: one preview each, apart by the shard's prefix
    shard_previews, inputs = tmp_path / "s", [IMAGES / "000456.jpg", IMAGES / "001150.jpg"]
    for index in range(2):
        job(inputs, tmp_path / "s.h5", detector_dir, shard=f"{index}/2", preview=shard_previews)
    assert pngs(shard_previews) == ["shard-00000-0000-000456.png", "shard-00001-0000-001150.png"]


def test_a_folder_that_is_a_file_warns_once_and_the_job_completes(tmp_path, detector_dir, capsys):
    blocker = tmp_path / "previews"
    blocker.write_text("a file, not a folder")
    inputs = [IMAGES / f"{name}.jpg" for name in NAMES]
    with pytest.warns(UserWarning) as caught:
        summary = job(inputs, tmp_path / "a.h5", detector_dir, preview=blocker)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("no more previews from this process: the preview of image '000456' could not be")
    assert "previews/0000-000456.png" in message and message.endswith("the job goes on")
    assert summary.done == 3 and summary.previews == [] and blocker.read_text() == "a file, not a folder"
    with FeatureStore(tmp_path / "a.h5") as store:
        assert sorted(store.ids()) == sorted(NAMES) and not store.errors()

    # the command says it in one line
    assert cli(*inputs, "--output", tmp_path / "b.h5", "--preview", blocker, detector_dir=detector_dir) == EXIT_OK
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"lxmert-extract: warning: {message.replace('a.h5', 'b.h5')}"]
    assert "3 done" in out and "; 0 previews in" in out


def test_a_write_that_fails_midway_leaves_no_partial_file(tmp_path, detector_dir, monkeypatch):
    writes = []
    original = Path.write_bytes

    def disk_full_on_the_second(self, data):
        writes.append(self)
        if len(writes) == 2:
            original(self, data[:10])
            raise OSError(28, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full_on_the_second)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = job(
            [IMAGES / f"{name}.jpg" for name in NAMES], tmp_path / "f.h5", detector_dir, preview=tmp_path / "p"
        )
    assert [str(w.message).count("No space left on device") for w in caught] == [1]
    assert pngs(tmp_path / "p") == ["0000-000456.png"]  # the second left nothing behind; no third was tried
    assert summary.done == 3 and len(writes) == 2
    with FeatureStore(tmp_path / "f.h5") as store:
        assert len(store) == 3


def test_preview_options_are_checked(tmp_path, detector_dir, capsys):
    assert cli(IMAGES, "--output", tmp_path / "o.h5", "--preview-count", "3", detector_dir=detector_dir) == EXIT_ERROR
    assert capsys.readouterr().err == "lxmert-extract: error: --preview-count goes with --preview DIR\n"
    with pytest.raises(SystemExit):
        cli(
            IMAGES,
            "--output",
            tmp_path / "o.h5",
            "--preview",
            tmp_path,
            "--preview-count",
            "0",
            detector_dir=detector_dir,
        )
    assert "argument --preview-count: expected an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"preview_count=-1: expected an integer >= 0 \(--preview-count\)"):
        job(IMAGES, tmp_path / "o.h5", detector_dir, preview=tmp_path, preview_count=-1)
    assert not (tmp_path / "o.h5").exists()


def test_help_describes_the_previews(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--preview DIR" in help_text and "--preview-count N" in help_text
    assert "a preview that fails warns once and the job goes on" in help_text
    assert f"(default: {PREVIEW_COUNT}; per process under torchrun)" in help_text
