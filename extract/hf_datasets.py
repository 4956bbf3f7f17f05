"""Hugging Face `datasets`: images from a dataset column, and region features added to a Dataset as columns.

- `load_image_dataset(name_or_path, split)`: a Dataset from the hub or from ``save_to_disk``, as the
  extraction job (`lxmert-extract --dataset`) reads it;
- `add_region_features(dataset, extractor)`: for users who keep everything in Arrow, a batched ``map``
  that runs the extractor and adds ``features`` (K, D), ``boxes`` / ``normalized_boxes`` (K, 4) as
  Array2D columns and the ids and scores as lists; ``with_format("torch")`` gives tensors.

`datasets` is imported when one of these runs, not with this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .extractor import RegionFeatureExtractor
from .images import ImageInput, ImageLoadError, load_image
from .jobs import InputError, regions_to_record, weights_sha256
from .selection import parse_num_boxes

FEATURE_COLUMNS = (
    "features",
    "boxes",
    "normalized_boxes",
    "object_ids",
    "object_scores",
    "attribute_ids",
    "attribute_scores",
    "image_height",
    "image_width",
)


def load_image_dataset(name_or_path: str | os.PathLike, split: str | None = None) -> Any:
    """A `datasets.Dataset`: a folder written by ``save_to_disk`` (a Dataset, or a DatasetDict and its
    ``split``) or a hub dataset (``load_dataset(name, split=split)``). ``split`` may be omitted when there
    is one split."""
    import datasets

    path = Path(name_or_path).expanduser()
    if path.exists():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as error:
            raise InputError(f"{path} is not a dataset written by save_to_disk ({error})") from None
        if isinstance(loaded, datasets.Dataset) and split is not None:
            raise InputError(f"{path} holds a single dataset, not splits: drop the split ({split!r})")
    else:
        loaded = datasets.load_dataset(str(name_or_path), split=split)
    if isinstance(loaded, datasets.DatasetDict):
        splits = ", ".join(loaded)
        if split is None and len(loaded) != 1:
            raise InputError(f"{name_or_path} has the splits {splits}: choose one (--split)")
        if split is not None and split not in loaded:
            raise InputError(f"{name_or_path} has no split {split!r}; its splits: {splits}")
        loaded = loaded[split] if split is not None else next(iter(loaded.values()))
    return loaded


def check_columns(dataset: Any, **columns: str | None) -> None:
    """InputError naming the option, the missing column and the dataset's columns (None: not asked for)."""
    for option, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise InputError(
                f"the dataset has no column {column!r} ({option}); its columns: {', '.join(dataset.column_names)}"
            )


def undecoded(dataset: Any, column: str) -> Any:
    """The dataset with an Image ``column`` left encoded ({"bytes", "path"} cells): decoding is load_image's
    job (in the job's worker processes)."""
    import datasets

    if isinstance(dataset.features[column], datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def image_input(value: Any) -> ImageInput:
    """A dataset cell as what load_image takes: an Image cell ({"bytes", "path"} undecoded, a PIL image
    decoded), a path, encoded bytes, or pixels (an array, or nested lists)."""
    if value is None:
        raise ImageLoadError("<dataset cell>", "the cell is empty (None)")
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise ImageLoadError("<dataset cell>", f"an image cell with neither bytes nor a path ({sorted(value)})")
    if isinstance(value, list):
        return np.asarray(value, dtype=np.uint8)
    return value


def add_region_features(
    dataset: Any,
    extractor: RegionFeatureExtractor | str | os.PathLike,
    *,
    image_column: str = "image",
    rule: str = "caffe",
    num_boxes: int | tuple[int, int] = 36,
    batch_size: int = 8,
    feature_dtype: str = "float32",
) -> Any:
    """The dataset with each row's region features added as columns (a batched ``Dataset.map``).

    extractor: a RegionFeatureExtractor, or a hub id / folder to load one from. image_column: images as
    an Image feature, paths, encoded bytes or pixel arrays. Added columns (K = num_boxes for a fixed
    count, variable for (MIN, MAX) or rule "d2"; D = the feature width): ``features`` Array2D (K, D) in
    ``feature_dtype``, ``boxes`` and ``normalized_boxes`` Array2D (K, 4) float32 (original pixels; x / W,
    y / H), ``object_ids`` / ``attribute_ids`` lists of int64 (-1 without the attribute head),
    ``object_scores`` / ``attribute_scores`` lists of float32, ``image_height`` / ``image_width`` int32.

    The result is cached like any ``map`` (under a fingerprint of the dataset, the settings and the
    detector's weights). An unreadable image raises ImageLoadError naming its row (filter such rows out
    first, or use the extraction job, which records them and goes on).
    """
    import datasets

    if isinstance(extractor, (str, os.PathLike)):
        extractor = RegionFeatureExtractor.from_pretrained(extractor)
    check_columns(dataset, image_column=image_column)
    taken = [name for name in FEATURE_COLUMNS if name in dataset.column_names]
    if taken:
        raise InputError(
            f"the dataset already has the column(s) {', '.join(taken)}, which region features would replace; "
            "rename or remove them first (dataset.rename_column / remove_columns)"
        )
    if feature_dtype not in ("float16", "float32"):
        raise ValueError(f"feature_dtype={feature_dtype!r}: expected float16 or float32")
    low, high = parse_num_boxes(num_boxes)
    count = low if low == high and rule != "d2" else None  # None: a variable first dimension
    dim = extractor.detector.roi_heads.box_predictor.cls_score.in_features
    length = -1 if count is None else count
    features = dataset.features.copy()
    features.update(
        {
            "features": datasets.Array2D((count, dim), feature_dtype),
            "boxes": datasets.Array2D((count, 4), "float32"),
            "normalized_boxes": datasets.Array2D((count, 4), "float32"),
            "object_ids": datasets.List(datasets.Value("int64"), length=length),
            "object_scores": datasets.List(datasets.Value("float32"), length=length),
            "attribute_ids": datasets.List(datasets.Value("int64"), length=length),
            "attribute_scores": datasets.List(datasets.Value("float32"), length=length),
            "image_height": datasets.Value("int32"),
            "image_width": datasets.Value("int32"),
        }
    )

    def add(batch: dict[str, list], rows: list[int]) -> dict[str, list]:
        images = []
        for row, value in zip(rows, batch[image_column], strict=True):
            try:
                images.append(load_image(image_input(value), max_image_pixels=extractor.max_image_pixels))
            except ImageLoadError as error:
                raise ImageLoadError(f"{error.source} (row {row})", error.reason) from None
        regions = extractor(images, rule=rule, num_boxes=num_boxes, batch_size=batch_size)
        columns: dict[str, list] = {name: [] for name in FEATURE_COLUMNS}
        for row, region in zip(rows, regions, strict=True):
            if count is not None and len(region) != count:
                raise ValueError(
                    f"row {row}: the {rule} rule gave {len(region)} regions, not {count} (the image has too few "
                    "proposals); pass num_boxes=(MIN, MAX) for a variable count"
                )
            record = regions_to_record(str(row), region)
            record["features"] = record["features"].astype(feature_dtype)
            record["image_height"], record["image_width"] = record.pop("height"), record.pop("width")
            for name in FEATURE_COLUMNS:
                columns[name].append(record[name])
        return columns

    settings = [dataset._fingerprint, image_column, rule, [low, high], feature_dtype, repr(extractor)]
    fingerprint = hashlib.sha256(json.dumps(settings).encode() + _weights_digest(extractor)).hexdigest()[:16]
    return dataset.map(
        add,
        with_indices=True,
        batched=True,
        batch_size=batch_size,
        features=features,
        new_fingerprint=fingerprint,
        desc="region features",
    )


def _weights_digest(extractor: RegionFeatureExtractor) -> bytes:
    config = json.dumps(extractor.config.__dict__, sort_keys=True, default=str)
    return hashlib.sha256(config.encode() + weights_sha256(extractor.detector.state_dict()).encode()).digest()
