"""Feature extraction: image(s) -> region features, boxes and labels (the detector alone)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from extract import RegionFeatures

from .base import DEFAULT_BATCH_SIZE, ImageReader, check_batch_size


class FeatureExtractionPipeline:
    """Region features of images with the VG Faster R-CNN; see extract.RegionFeatureExtractor."""

    def __init__(self, reader: ImageReader, *, batch_size: int = DEFAULT_BATCH_SIZE):
        self.reader = reader
        self.batch_size = check_batch_size(batch_size)

    @property
    def device(self) -> torch.device:
        return self.reader.extractor.device

    def __call__(
        self,
        image: Any,
        *,
        rule: str = "caffe",
        num_boxes: int | tuple[int, int] = 36,
        given_boxes: Sequence | None = None,
        batch_size: int | None = None,
        allow_network: bool | None = None,
    ) -> RegionFeatures | list[RegionFeatures]:
        """RegionFeatures of one image (features, boxes, normalized_boxes, object / attribute ids, scores
        and names, image_size), or a list of them for a list of images. rule / num_boxes / given_boxes
        as RegionFeatureExtractor's (given_boxes: one (N, 4) array per image, original pixels)."""
        batch_size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        if single and given_boxes is not None:
            given_boxes = [given_boxes]
        results = self.reader.read(
            images,
            batch_size=batch_size,
            allow_network=allow_network,
            rule=rule,
            num_boxes=num_boxes,
            given_boxes=given_boxes,
        )
        return results[0] if single else results
