"""From an image file to a store record: decoding in DataLoader workers (a bad image becomes an error
record, not a stopped job), regions as record arrays, and the store settings a job writes and checks on
resume (the box range, the weights hash, the metadata).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..devices import resolve_device, torch_dtype
from ..extractor import RegionFeatureExtractor, RegionFeatures
from ..image_errors import ImageLoadError
from ..images import load_image
from ..options import DEFAULT_MAX_IMAGE_PIXELS, check_rule, num_boxes_spec, parse_box_range, parse_num_boxes
from ..preprocessing import output_size
from ..store.errors import StoreError
from ..store.store import FeatureStore, StoreMetadata
from .inputs import (
    ID_FROM,
    ImageItem,
    InputError,
    UnnamedImage,
    image_input,
    is_text,
    one_line,
    shown_name,
)


class DecodedImages(torch.utils.data.Dataset):
    """Item i: (id, (H, W, 3) uint8 tensor), or (id, reason) for an image that cannot be used, so that a
    corrupt file becomes an error record instead of stopping the job.

    Sources are file paths, or rows of ``rows`` (a Dataset) whose ``column`` holds the image. Images too
    elongated for the detector's input size are refused here too (min_size / max_size).
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        *,
        min_size: int,
        max_size: int,
        rows: Any = None,
        column: str = "",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        self.items = list(items)
        self.min_size, self.max_size = min_size, max_size
        self.rows, self.column = rows, column
        self.max_image_pixels = max_image_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | str]:
        image_id, source = self.items[index]
        if isinstance(source, UnnamedImage):
            problem = "has a newline" if is_text(source) else "is not valid UTF-8"
            return image_id, (
                f"{one_line(source)}: the file name {problem}, and an image id is one line of UTF-8 text; rename "
                "the file and run the job again with --resume"
            )
        try:
            if self.rows is None:
                pixels = load_image(source, max_image_pixels=self.max_image_pixels)
            else:
                cell = image_input(self.rows[source][self.column])
                pixels = load_image(cell, max_image_pixels=self.max_image_pixels)
            output_size(*pixels.shape[:2], self.min_size, self.max_size)
        except Exception as error:  # any unusable input is the image's failure, not the job's
            reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            if self.rows is not None:
                return image_id, f"row {source}: {reason}"
            return image_id, reason if isinstance(error, ImageLoadError) else f"{shown_name(source)}: {reason}"
        return image_id, torch.from_numpy(pixels)


def keep_list(batch: list) -> list:
    return batch


def regions_to_record(image_id: str, regions: RegionFeatures) -> dict[str, Any]:
    """One image's regions as host numpy arrays under the store's record fields (`FeatureRecord`'s).
    A detector without the attribute head gets attribute ids -1 and attribute scores 0."""
    count = len(regions)
    height, width = regions.image_size
    attribute_ids, attribute_scores = regions.attribute_ids, regions.attribute_scores
    if attribute_ids is None:
        attribute_ids, attribute_scores = torch.full((count,), -1), torch.zeros(count)
    columns = {
        "features": regions.features,  # (K, D)
        "boxes": regions.boxes,  # (K, 4) original pixels
        "normalized_boxes": regions.normalized_boxes,
        "object_ids": regions.object_ids,
        "object_scores": regions.object_scores,
        "attribute_ids": attribute_ids,
        "attribute_scores": attribute_scores,
    }
    record = {name: values.cpu().numpy() for name, values in columns.items()}
    return {"id": image_id, "height": int(height), "width": int(width), **record}


def load_extractor(
    detector: str | os.PathLike, *, device: str | torch.device | None = None, dtype: str = "float32"
) -> tuple[RegionFeatureExtractor, str]:
    """The extractor (convolutions in ``dtype``; resizing on the device when that is a GPU: bit-identical
    to Pillow's, and off the main process's CPU) and the `weights_sha256` of the weights as loaded, before
    any conversion to ``dtype`` (the same weights in any checkpoint format give the same hash)."""
    try:
        compute_dtype = torch_dtype(dtype)
    except ValueError as error:
        raise InputError(str(error)) from None
    device = resolve_device(device)
    extractor = RegionFeatureExtractor.from_pretrained(
        detector, device=device, resize="exact" if device.type == "cpu" else "fast"
    )
    weights = weights_sha256(extractor.detector.state_dict())
    extractor.detector.set_compute_dtype(compute_dtype)
    return extractor, weights


def weights_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: each tensor's name, dtype, shape and bytes, in name order. Unlike the hash of
    a file, it does not depend on the checkpoint format the weights came in (.pkl, .safetensors, .bin)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        values = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{str(values.dtype).removeprefix('torch.')}\0{tuple(values.shape)}\0".encode())
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes: how stores of earlier versions named their detector weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def box_setting(num_boxes: int | str | tuple[int, int] | None, rule: str, detections_per_image: int) -> tuple[str, Any]:
    """(the store's num_boxes spec, the extractor's num_boxes) for a job's num_boxes and rule.

    "d2" takes no num_boxes: it keeps up to the config's detections_per_image, so its store takes
    "1-<detections_per_image>" (an image with no detection becomes an error record).
    """
    try:
        check_rule(rule)
    except ValueError as error:
        raise InputError(str(error)) from None
    if rule == "d2":
        if num_boxes is not None:
            raise InputError(
                f"the d2 rule keeps up to the config's detections_per_image ({detections_per_image}) boxes and "
                "takes no --num-boxes (num_boxes)"
            )
        return f"1-{detections_per_image}", 36
    num_boxes = 36 if num_boxes is None else num_boxes
    try:
        low, high = parse_box_range(num_boxes) if isinstance(num_boxes, str) else parse_num_boxes(num_boxes)
    except ValueError as error:
        raise InputError(str(error)) from None
    return num_boxes_spec(low, high), low if low == high else (low, high)


def job_metadata(
    extractor: RegionFeatureExtractor, spec: str, rule: str, checkpoint_sha256: str, *, id_scheme: str = "unknown"
) -> StoreMetadata:
    """StoreMetadata of a job: its num_boxes spec and rule, the detector's config (with the input sizes the
    extractor runs at) plus its compute dtype, the weights' hash, the feature width, how ids were made."""
    config = {**dataclasses.asdict(extractor.config), "compute_dtype": str(extractor.dtype).removeprefix("torch.")}
    feature_dim = extractor.detector.roi_heads.box_predictor.cls_score.in_features
    return StoreMetadata(
        num_boxes=spec,
        rule=rule,
        detector_config=config,
        checkpoint_sha256=checkpoint_sha256,
        feature_dim=feature_dim,
        id_scheme=id_scheme,
    )


def check_resumable(path: Path, metadata: StoreMetadata, feature_dtype: str) -> None:
    """StoreError naming each setting (each detector config key) in which the store at ``path`` differs."""
    with FeatureStore(path) as store:
        theirs = store.metadata.settings(store.feature_dtype)
    ours = metadata.settings(feature_dtype)
    changes = []
    for key, value in ours.items():
        if key == "detector_config":
            keys = sorted(set(value) | set(theirs[key]))
            changes += [
                f"detector_config.{k}: store {theirs[key].get(k)!r}, this job {value.get(k)!r}"
                for k in keys
                if theirs[key].get(k) != value.get(k)
            ]
        elif key == "id_scheme":
            if "unknown" not in (value, theirs[key]) and value != theirs[key]:
                changes.append(
                    f"ids: the store's are {_id_scheme_text(theirs[key])}, this job's {_id_scheme_text(value)}"
                )
        elif theirs[key] != value:
            changes.append(f"{key}: store {theirs[key]!r}, this job {value!r}")
    if changes:
        raise StoreError(
            f"cannot resume {path}: it was made with other settings ({'; '.join(changes)}); run with the store's "
            "settings, write to another output, or replace it with --overwrite (overwrite=True)"
        )


def _id_scheme_text(id_scheme: str) -> str:
    if id_scheme in ID_FROM:
        return f"file {id_scheme}s (--id-from {id_scheme})"
    if id_scheme == "dataset-row":
        return "dataset row indices (no --id-column)"
    if id_scheme.startswith("dataset-column:"):
        return f"the dataset column {id_scheme.partition(':')[2]!r} (--id-column)"
    return repr(id_scheme)
