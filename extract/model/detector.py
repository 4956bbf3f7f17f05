"""VGDetector: the Visual Genome Faster R-CNN wired from backbone, RPN, ROI head and selection rules.

    image (H, W, 3) uint8 -> preprocess -> backbone (res4) -> RPN (proposals) -> ROI head (per proposal:
    pooled feature, class logits, box deltas, attribute logits) -> a selection rule -> Regions

`forward` returns every proposal's outputs (`ImagePredictions`); `select` applies a rule; `detect`
does both. Images are never padded into a common batch (detectron2's padding changes res4 inside
each image and lets anchors in the padding compete): each image runs at its own size, and only images
of identical size share a forward pass. That pass computes what one-by-one runs compute, up to the
summation order the convolution library picks for a batch size: bit-identical on the CPU at 600 /
1000 for the real test images (tests/extract/test_detector_parity.py), a few 1e-6 in features at
other sizes (300 / 500 there) or on a GPU (cuDNN); `group_same_size=False` runs every image alone.
Module and parameter names are detectron2's (`backbone.res2.0.conv1.weight`, ...).

Precision (spec section 9): `set_compute_dtype(torch.bfloat16)` (or float16) runs the convolutions
(backbone, the RPN's 3x3 conv, res5) in that dtype, channels-last. The RPN's 1x1 logit / delta convs, ROIPool, the
mean pooling, the box and attribute heads, box decoding, NMS and every softmax stay float32, so the
region features and scores handed out are float32 whatever the compute dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..boxes import boxes_to_resized, decode_boxes
from ..options import COMPUTE_DTYPES
from ..preprocessing import PreprocessedImage
from ..selection import ImagePredictions, Regions, given_regions, select_regions
from .backbone import ResNetC4
from .config import DetectorConfig
from .roi_heads import Res5ROIHeads
from .rpn import RPN

# The dtypes of options.COMPUTE_DTYPES.
COMPUTE_TORCH_DTYPES = tuple(getattr(torch, name) for name in COMPUTE_DTYPES)


class VGDetector(nn.Module):
    """ResNet C4 Faster R-CNN with attribute head (bottom-up attention), inference only."""

    def __init__(self, config: DetectorConfig | None = None):
        super().__init__()
        self.config = config = config or DetectorConfig()
        self.backbone = ResNetC4(config)
        self.proposal_generator = RPN(config)
        self.roi_heads = Res5ROIHeads(config)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.roi_heads.box_predictor.cls_score.weight.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the convolutions run in (float32 unless `set_compute_dtype` changed it)."""
        return self.backbone.stem.conv1.weight.dtype

    def set_compute_dtype(self, dtype: torch.dtype) -> VGDetector:
        """Run the convolutions (backbone, RPN 3x3 conv, res5) in `dtype`: float32, float16 or bfloat16.

        Their weights are converted (going back to float32 does not restore the rounded bits); in float16 and
        bfloat16 they, and so the activations, are channels-last. Heads, box decoding, NMS and softmax stay
        float32 (module docstring). Returns self.
        """
        if dtype not in COMPUTE_TORCH_DTYPES:
            expected = ", ".join(map(str, COMPUTE_TORCH_DTYPES))
            raise ValueError(f"compute dtype {dtype} is not supported: expected one of {expected}")
        # Convolution weights only: the FrozenBN statistics are buffers and stay float32 (batch_norm takes
        # low-precision input with float32 statistics). Rounding running_mean and bias to bfloat16 one by
        # one loses part of their difference, which is what the layer adds (tiny fixture model, 000456:
        # res4 off by 6.9% instead of 5.9%, relative L2).
        # Low precision runs channels-last (N, H, W, C in memory; activations follow the weights): oneDNN's
        # bfloat16 / float16 kernels read that layout without reordering, and PyTorch's own fallback on CPUs
        # without such instructions ran 5x faster in it (docs/extract.md). float32 keeps the default layout,
        # whose results are detectron2's bit for bit (channels-last convolutions differ by about 3e-6).
        layout = torch.contiguous_format if dtype == torch.float32 else torch.channels_last
        for module in (self.backbone, self.proposal_generator.rpn_head.conv, self.roi_heads.res5):
            for param in module.parameters():
                data = param.data.to(dtype)
                param.data = data.contiguous(memory_format=layout) if data.dim() == 4 else data
        return self

    def forward(
        self,
        images: Sequence[PreprocessedImage],
        given_boxes: Sequence[torch.Tensor] | None = None,
        *,
        group_same_size: bool = True,
    ) -> list[ImagePredictions]:
        """Per-proposal outputs for each image.

        images: from `extract.preprocessing.preprocess`. given_boxes: optional, one (N_i, 4) tensor per
        image in ORIGINAL pixels; they replace the RPN proposals (ROI-pooled after scaling by
        W'/W, H'/H, not clipped). group_same_size: run images of identical size as one batch
        (no padding is ever added; False runs them one by one).
        """
        if given_boxes is not None and len(given_boxes) != len(images):
            raise ValueError(f"given_boxes has {len(given_boxes)} entries for {len(images)} images")
        groups: dict[object, list[int]] = {}
        for i, image in enumerate(images):
            size = tuple(image.tensor.shape[-2:])
            if size != tuple(image.resized_size):
                raise ValueError(f"image {i}: tensor is {size} but resized_size says {tuple(image.resized_size)}")
            groups.setdefault(size if group_same_size else i, []).append(i)
        results: list[ImagePredictions | None] = [None] * len(images)
        for indices in groups.values():
            group_boxes = None if given_boxes is None else [given_boxes[i] for i in indices]
            outputs = self._forward_same_size([images[i] for i in indices], group_boxes)
            for i, prediction in zip(indices, outputs, strict=True):
                results[i] = prediction
        return results

    def _forward_same_size(
        self, images: list[PreprocessedImage], given_boxes: list[torch.Tensor] | None
    ) -> list[ImagePredictions]:
        device = self.device
        batch = torch.stack([image.tensor.to(device, self.compute_dtype) for image in images])  # (n, 3, H', W')
        sizes = [tuple(image.resized_size) for image in images]
        features = self.backbone(batch)  # (n, C4, H'/16, W'/16)
        if given_boxes is None:
            proposals = self.proposal_generator(features, sizes)
            boxes = [p[0] for p in proposals]
            logits = [p[1] for p in proposals]
        else:
            boxes = [
                boxes_to_resized(_as_boxes(b, device), image.original_size, image.resized_size)
                for b, image in zip(given_boxes, images, strict=True)
            ]
            logits = [None] * len(images)
        pooled, class_logits, box_deltas, attribute_logits = self.roi_heads(features, boxes)

        counts = [len(b) for b in boxes]
        pooled, class_logits, box_deltas = (t.split(counts) for t in (pooled, class_logits, box_deltas))
        attributes = [None] * len(images) if attribute_logits is None else attribute_logits.split(counts)
        results = []
        for i, image in enumerate(images):
            # Decoded per image, as detectron2 does for a single image.
            class_boxes = decode_boxes(box_deltas[i], boxes[i], self.config.box_reg_weights)
            results.append(
                ImagePredictions(
                    original_size=tuple(image.original_size),
                    resized_size=tuple(image.resized_size),
                    proposal_boxes=boxes[i],
                    objectness_logits=logits[i],
                    pooled_features=pooled[i],
                    class_logits=class_logits[i],
                    class_probs=F.softmax(class_logits[i], dim=-1),
                    box_deltas=box_deltas[i],
                    class_boxes=class_boxes.view(counts[i], self.config.num_classes, 4),
                    attribute_logits=attributes[i],
                )
            )
        return results

    def select(
        self,
        predictions: ImagePredictions,
        rule: str = "caffe",
        num_boxes: int | tuple[int, int] = 36,
        *,
        conf_thresh: float = 0.2,
    ) -> Regions:
        """Apply a selection rule ("caffe", "maxnms", "d2"; see extract.selection) to one image.

        "d2" takes its thresholds and cap from the config (SCORE_THRESH_TEST, NMS_THRESH_TEST,
        DETECTIONS_PER_IMAGE) and ignores num_boxes; conf_thresh is the "caffe" rule's max_conf cut.
        """
        cfg = self.config
        return select_regions(
            predictions,
            rule,
            num_boxes,
            conf_thresh=conf_thresh,
            score_thresh=cfg.score_thresh_test,
            nms_thresh=cfg.nms_thresh_test,
            detections_per_image=cfg.detections_per_image,
        )

    @torch.inference_mode()
    def detect(
        self,
        images: Sequence[PreprocessedImage],
        rule: str = "caffe",
        num_boxes: int | tuple[int, int] = 36,
        *,
        given_boxes: Sequence[torch.Tensor] | None = None,
        conf_thresh: float = 0.2,
    ) -> list[Regions]:
        """Regions of each image: `rule` on its proposals, or, with given_boxes (original pixels, one
        tensor per image), exactly those boxes with their features and labels."""
        if given_boxes is not None:
            given_boxes = [_as_boxes(boxes, self.device) for boxes in given_boxes]
            predictions = self(images, given_boxes)
            return [given_regions(pred, boxes) for pred, boxes in zip(predictions, given_boxes, strict=True)]
        predictions = self(images)
        return [self.select(pred, rule, num_boxes, conf_thresh=conf_thresh) for pred in predictions]


def _as_boxes(boxes, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
