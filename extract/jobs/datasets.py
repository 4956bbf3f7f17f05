"""Region features added to a Hugging Face `datasets` Dataset as columns (reading a dataset's images for a
job is extract.jobs.inputs' `load_dataset_split` / `dataset_images`).

`add_region_features(dataset, extractor)`: for users who keep everything in Arrow, a batched ``map`` that
runs the extractor and adds ``features`` (K, D), ``boxes`` / ``normalized_boxes`` (K, 4) as Array2D columns
and the ids and scores as lists; ``with_format("torch")`` gives tensors. `datasets` is imported when it
runs, not with this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ..extractor import RegionFeatureExtractor
from ..image_errors import ImageLoadError
from ..images import load_image
from ..options import (
    parse_num_boxes,
)
from ..store.store import BOX_COLUMNS
from .inputs import (
    InputError,
    check_columns,
    image_input,
)
from .records import (
    regions_to_record,
    weights_sha256,
)

# The columns add_region_features adds: a store record's per-box fields, then the image size.
FEATURE_COLUMNS = (*BOX_COLUMNS, "image_height", "image_width")


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
