"""Region features by image id for training and evaluation: one or more feature stores read as one.

`RegionFeatures` opens each store once to learn its ids, box count and feature size (stores that disagree
on either are refused, naming both), then reads records lazily in whichever process asks (DataLoader
workers included: no HDF5 handle crosses a fork). Records come back padded to the stores' largest box
count with a mask, float16 stores widened to float32, boxes as LXMERT's normalized boxes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from extract.options import parse_box_range
from extract.store import FeatureStore


class FeatureLookupError(ValueError):
    """Feature stores that cannot serve a run together (sizes that differ), or an image id none holds."""


@dataclass(frozen=True)
class ImageFeatures:
    """One image's regions as a model reads them, padded to `max_boxes` rows."""

    features: torch.Tensor  # (K, D) float32
    boxes: torch.Tensor  # (K, 4) float32, x1 / W, y1 / H, x2 / W, y2 / H
    mask: torch.Tensor  # (K,) int64, 1 = a real box


class RegionFeatures:
    """Image id -> `ImageFeatures`, from the stores at `paths` (an id in several stores is read from the first).

    `feature_dim` and `max_boxes` are the stores' (all equal); `duplicates` counts ids found in more than one.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise FeatureLookupError("no feature store given (--features STORE...)")
        self.paths = [Path(path) for path in paths]
        self._store_of: dict[str, int] = {}
        self.duplicates = 0
        sizes = []
        for index, path in enumerate(self.paths):
            if not path.exists():
                raise FeatureLookupError(f"feature store {path} does not exist")
            with FeatureStore(path) as store:
                sizes.append((store.metadata.feature_dim, parse_box_range(store.metadata.num_boxes)[1]))
                for image_id in store.ids():
                    if self._store_of.setdefault(image_id, index) != index:
                        self.duplicates += 1
        (self.feature_dim, self.max_boxes), first = sizes[0], self.paths[0]
        for path, (dim, boxes) in zip(self.paths[1:], sizes[1:], strict=True):
            if dim != self.feature_dim:
                raise FeatureLookupError(
                    f"feature stores {first} and {path} hold features of different sizes ({self.feature_dim} and "
                    f"{dim}): a model reads one size; extract them with the same detector"
                )
            if boxes != self.max_boxes:
                raise FeatureLookupError(
                    f"feature stores {first} and {path} hold up to {self.max_boxes} and {boxes} boxes per image: "
                    "give stores made with the same --num-boxes"
                )
        self._stores: dict[int, FeatureStore] = {}
        self._pid: int | None = None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._store_of

    def __len__(self) -> int:
        return len(self._store_of)

    def __getitem__(self, image_id: str) -> ImageFeatures:
        index = self._store_of.get(image_id)
        if index is None:
            raise FeatureLookupError(f"image {image_id!r} is in none of the feature stores ({self._named_stores()})")
        if self._pid != os.getpid():  # a new process (a DataLoader worker): open the stores anew
            self._stores, self._pid = {}, os.getpid()
        store = self._stores.get(index)
        if store is None:
            store = self._stores[index] = FeatureStore(self.paths[index])
        record = store[image_id]
        count = record.num_boxes
        features = torch.zeros((self.max_boxes, self.feature_dim))
        features[:count] = torch.from_numpy(record.features)  # float16 widened by torch: 9x numpy's speed
        boxes = torch.zeros((self.max_boxes, 4))
        boxes[:count] = torch.from_numpy(record.normalized_boxes)
        mask = (torch.arange(self.max_boxes) < count).long()
        return ImageFeatures(features, boxes, mask)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores = {}

    def _named_stores(self) -> str:
        return ", ".join(str(path) for path in self.paths[:3]) + (" ..." if len(self.paths) > 3 else "")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stores": {}, "_pid": None}

    def __repr__(self) -> str:
        return (
            f"RegionFeatures({len(self)} images in {len(self.paths)} store(s), {self.max_boxes} boxes x "
            f"{self.feature_dim} features)"
        )
