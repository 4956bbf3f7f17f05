"""`datasets` support: add_region_features on small local Datasets of the test images (an Image column, a
path column), and the extraction job reading a dataset saved with save_to_disk.

The detector is the tiny fixture in the cheaper setting of test_jobs.py. Features are compared with the
extractor run on the same images; a batch of same-size images differs from one-by-one runs by a few
1e-6 at this size (extract.model.detector), hence the tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")

from helpers import FIXTURES  # noqa: E402

from extract.extractor import RegionFeatureExtractor  # noqa: E402
from extract.image_errors import ImageLoadError  # noqa: E402
from extract.jobs.cli import EXIT_ERROR, EXIT_IMAGES_FAILED, main  # noqa: E402
from extract.jobs.datasets import add_region_features  # noqa: E402
from extract.jobs.inputs import InputError, load_dataset_split  # noqa: E402
from extract.jobs.run import run_extraction  # noqa: E402
from extract.store import FeatureStore  # noqa: E402

PATHS = [FIXTURES / "images" / f"{name}.jpg" for name in ("000456", "000542", "input")]
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def extractor(detector_dir) -> RegionFeatureExtractor:
    return RegionFeatureExtractor.from_pretrained(detector_dir)


@pytest.fixture(scope="module")
def expected(extractor) -> list:
    return [extractor(path)[0] for path in PATHS]


def image_dataset():
    data = {"image": [str(p) for p in PATHS], "question": ["what?", "who?", "where?"]}
    return datasets.Dataset.from_dict(data).cast_column("image", datasets.Image())


def test_features_as_array2d_columns_readable_as_torch(extractor, expected):
    with_features = add_region_features(image_dataset(), extractor, batch_size=2)
    features = with_features.features
    assert features["features"] == datasets.Array2D((36, 256), "float32")
    assert features["boxes"] == datasets.Array2D((36, 4), "float32")
    assert features["object_ids"] == datasets.List(datasets.Value("int64"), length=36)
    assert with_features.column_names[:2] == ["image", "question"]

    torch_rows = with_features.with_format("torch", columns=["features", "normalized_boxes", "object_ids"])
    batch = torch_rows[:3]
    assert batch["features"].shape == (3, 36, 256) and batch["features"].dtype == torch.float32
    assert batch["normalized_boxes"].shape == (3, 36, 4) and batch["object_ids"].dtype == torch.int64
    for row, regions in enumerate(expected):
        np.testing.assert_allclose(batch["features"][row].numpy(), regions.features.numpy(), **TOLERANCE)
        np.testing.assert_allclose(
            batch["normalized_boxes"][row].numpy(), regions.normalized_boxes.numpy(), **TOLERANCE
        )
        assert batch["object_ids"][row].tolist() == regions.object_ids.tolist()
        assert (with_features[row]["image_height"], with_features[row]["image_width"]) == regions.image_size


def test_path_column_with_a_variable_box_count_in_float16(extractor):
    dataset = datasets.Dataset.from_dict({"path": [str(p) for p in PATHS[:2]]})
    with_features = add_region_features(
        dataset, extractor, image_column="path", num_boxes=(10, 100), feature_dtype="float16"
    )
    assert with_features.features["features"] == datasets.Array2D((None, 256), "float16")
    direct = extractor([str(p) for p in PATHS[:2]], num_boxes=(10, 100))
    storage = with_features.data.table.column("features").type.storage_type
    assert str(storage) == "list<item: list<item: halffloat>>"  # datasets' formats give float32 unless asked
    stored = with_features.with_format("numpy", dtype=np.float16)
    as_torch = with_features.with_format("torch")
    for row, regions in enumerate(direct):
        features = stored[row]["features"]
        assert features.shape == (len(regions), 256) and features.dtype == np.float16
        np.testing.assert_allclose(features.astype(np.float32), regions.features.numpy(), rtol=1e-3, atol=1e-4)
        assert as_torch[row]["features"].shape == (len(regions), 256)


def test_bad_columns_and_unreadable_rows(extractor):
    dataset = image_dataset()
    with pytest.raises(InputError, match=r"no column 'img' \(image_column\); its columns: image, question"):
        add_region_features(dataset, extractor, image_column="img")
    with pytest.raises(InputError, match="already has the column.*features"):
        add_region_features(dataset.add_column("features", [0, 1, 2]), extractor)
    broken = datasets.Dataset.from_dict({"path": [str(PATHS[0]), "/no/such.jpg"]})
    with pytest.raises(ImageLoadError, match=r"/no/such.jpg.*row 1.*file not found"):
        add_region_features(broken, extractor, image_column="path")


# ---------------------------------------------------------------------------------------------------
# The job reading a dataset


@pytest.fixture
def vqa_dataset(tmp_path) -> Path:
    """A DatasetDict on disk like a VQA set: one row per question, several rows per image, image ids in a
    column; the validation split has a row whose image bytes are corrupt."""
    images = [{"bytes": p.read_bytes(), "path": None} for p in PATHS]
    validation = {
        "image": [images[0], images[0], images[1], images[2], {"bytes": b"not an image", "path": None}],
        "image_id": [456, 456, 542, 1, 99],
        "question": ["a?", "b?", "c?", "d?", "e?"],
    }
    features = datasets.Features(
        {"image": datasets.Image(), "image_id": datasets.Value("int64"), "question": datasets.Value("string")}
    )
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({key: values[:1] for key, values in validation.items()}, features),
            "validation": datasets.Dataset.from_dict(validation, features),
        }
    )
    splits.save_to_disk(tmp_path / "vqa")
    return tmp_path / "vqa"


def test_job_on_a_saved_dataset_with_an_id_column(vqa_dataset, tmp_path, detector_dir, expected, capsys):
    output = tmp_path / "val.h5"
    args = ["--dataset", vqa_dataset, "--split", "validation", "--image-column", "image", "--id-column", "image_id"]
    args += ["--output", output, "--detector", detector_dir, "--device", "cpu", "--num-workers", "1", "--quiet"]
    assert main(list(map(str, args))) == EXIT_IMAGES_FAILED
    out = capsys.readouterr().out
    assert "3 done, 0 skipped (already in the store), 1 failed" in out
    assert "1 dataset rows share an earlier row's id" in out
    with FeatureStore(output) as store:
        assert store.ids() == ["456", "542", "1"]
        errors = store.errors()
        assert list(errors) == ["99"] and errors["99"].startswith("row 4: cannot load image")
        for image_id, regions in zip(["456", "542", "1"], expected, strict=True):
            np.testing.assert_allclose(store[image_id].features, regions.features.numpy(), **TOLERANCE)


def test_row_indices_are_the_default_ids(vqa_dataset, tmp_path, detector_dir):
    dataset = load_dataset_split(vqa_dataset, "train")
    summary = run_extraction(
        dataset, tmp_path / "t.h5", detector=detector_dir, device="cpu", num_workers=0, progress=False
    )
    assert summary.done == 1 and FeatureStore(tmp_path / "t.h5").ids() == ["0"]


def test_bad_dataset_arguments(vqa_dataset, tmp_path, detector_dir, capsys):
    def run(*args):
        base = ["--output", str(tmp_path / "o.h5"), "--detector", str(detector_dir), "--device", "cpu"]
        return main(["--dataset", str(vqa_dataset), *args, *base])

    assert run("--split", "validation", "--image-column", "img") == EXIT_ERROR
    assert "no column 'img' (image_column); its columns: image, image_id, question" in capsys.readouterr().err
    assert run("--split", "validation", "--id-column", "qid") == EXIT_ERROR
    assert "no column 'qid' (id_column)" in capsys.readouterr().err
    assert run() == EXIT_ERROR
    assert "has the splits train, validation: choose one (--split)" in capsys.readouterr().err
    assert run("--split", "test") == EXIT_ERROR
    assert "no split 'test'; its splits: train, validation" in capsys.readouterr().err
    with pytest.raises(InputError, match="pass one split of the DatasetDict"):
        run_extraction(datasets.load_from_disk(str(vqa_dataset)), tmp_path / "o.h5", detector=detector_dir)
