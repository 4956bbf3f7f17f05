"""ROI head of the VG Faster R-CNN: ROIPool on res4, res5, mean pooling, box predictor, attribute head.

This is detectron2's Res5ROIHeads with py-bottom-up-attention's changes (res5 without stride,
dilated; attribute head). Class index K (the last of K + 1) is background; attribute index A (the
last of A + 1) is "no attribute".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_pool as torchvision_roi_pool

from ..boxes import boxes_to_rois
from .backbone import build_res5
from .config import FEATURE_STRIDE, DetectorConfig
from .pooling import roi_pool


class BoxPredictor(nn.Module):
    """Class logits (K + 1), class-specific box deltas (4 K) and attribute logits (A + 1) of regions.

    The attribute head embeds the most likely class over all K + 1 logits, background included, as
    the Caffe model does; its sizes are those of the released model (embedding pooled_dim / 8,
    hidden pooled_dim / 4: 256 and 512 for 2048-d features).
    """

    def __init__(self, in_dim: int, num_classes: int, num_attributes: int | None):
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, num_classes * 4)
        self.attribute_head = num_attributes is not None
        if num_attributes is not None:
            self.cls_embedding = nn.Embedding(num_classes + 1, in_dim // 8)
            self.fc_attr = nn.Linear(in_dim + in_dim // 8, in_dim // 4)
            self.attr_score = nn.Linear(in_dim // 4, num_attributes + 1)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """pooled (R, D) -> class_logits (R, K + 1), box_deltas (R, 4 K), attribute_logits (R, A + 1)."""
        class_logits = self.cls_score(pooled)
        box_deltas = self.bbox_pred(pooled)
        if not self.attribute_head:
            return class_logits, box_deltas, None
        return class_logits, box_deltas, self.attribute_logits(pooled, class_logits.argmax(dim=1))

    def attribute_logits(self, pooled: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """pooled (R, D), classes (R,) in 0..K (K = background) -> attribute logits (R, A + 1)."""
        embedded = self.cls_embedding(classes)
        hidden = F.relu(self.fc_attr(torch.cat([pooled, embedded], dim=1)))
        return self.attr_score(hidden)


class Res5ROIHeads(nn.Module):
    """Region features and predictions for boxes on res4 features."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.pooler_resolution = config.pooler_resolution
        self.spatial_scale = 1.0 / FEATURE_STRIDE
        self.res5 = build_res5(config)
        self.rois_per_pass = 300  # regions through res5 at once (memory); results do not depend on it
        self.box_predictor = BoxPredictor(
            config.pooled_dim, config.num_classes, config.num_attributes if config.attribute_head else None
        )

    def pooled_features(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """features (N, C, H, W); boxes: N tensors (R_i, 4) in input pixels -> (sum R_i, D).

        ROIPool (torchvision's: corners rounded to the 1/16 grid, end cell included, max per bin, empty
        bins 0) to pooler_resolution^2, res5, then the mean over the spatial grid, in float32.
        res5 runs in its weights' dtype. On the CPU the pooling is extract.model.pooling's (the same values
        as torchvision's single-threaded loop, on every core, in the features' own dtype: a maximum of
        low-precision values is exact); elsewhere, or when a gradient must flow, torchvision's kernel, in float32
        (it has no bfloat16).
        """
        rois = boxes_to_rois(boxes).float()
        size = self.pooler_resolution
        res5_dtype = next(self.res5.parameters(), features).dtype
        # extract.model.pooling on the CPU when no gradient is asked for (it has no backward pass)
        ours = features.device.type == "cpu" and not (torch.is_grad_enabled() and features.requires_grad)
        if not ours:
            features = features.float()
        # res5 on 14 x 14 maps is ~90% of the detector's work and its activations are large (300 regions:
        # about 0.5 GB per 2048-channel tensor in float32): at most rois_per_pass regions at a time keeps
        # the peak memory of a batch of images at that of one image.
        pooled = []
        for chunk in rois.split(self.rois_per_pass):
            if ours:
                grid = roi_pool(features, chunk, size, self.spatial_scale, channels_last=self._res5_channels_last())
            else:
                grid = torchvision_roi_pool(features, chunk, (size, size), self.spatial_scale)
            x = self.res5(grid.to(res5_dtype))
            pooled.append(x.mean(dim=[2, 3], dtype=torch.float32))
        if not pooled:
            return features.new_zeros(0, self.box_predictor.cls_score.in_features, dtype=torch.float32)
        return torch.cat(pooled)

    def _res5_channels_last(self) -> bool:
        """Whether res5 runs channels-last (VGDetector.set_compute_dtype in low precision, or a .to(memory_format=
        ...)): its first spatial kernel says (a 1 x 1 kernel is contiguous in both layouts). The pooled grid is
        then gathered in that layout, with no transposing copy."""
        kernel = next((p for p in self.res5.parameters() if p.dim() == 4 and p.shape[-1] > 1), None)
        return (
            kernel is not None
            and not kernel.is_contiguous()
            and kernel.is_contiguous(memory_format=torch.channels_last)
        )

    def forward(
        self, features: torch.Tensor, boxes: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> pooled (R, D), class_logits (R, K + 1), box_deltas (R, 4 K), attribute_logits (R, A + 1)
        for all boxes of all images, concatenated in image order."""
        pooled = self.pooled_features(features, boxes)
        return (pooled, *self.box_predictor(pooled))
