"""The transformers FRCNN port's preprocessing and box selection, called directly: no selection rule name or
flag of the extractor, the job or the pipelines selects them.

transformers' research demo (examples/research_projects/lxmert: processing_image.py, modeling_frcnn.py;
checkpoint `unc-nlp/frcnn-vg-finetuned`) runs the same network as detectron2 but feeds it and reads
it differently. `port_preprocess` and `select_port` do what it does, so that features made with the
port can be reproduced (tests/extract/test_port_rule.py compares with the port's own outputs). Both
differ from how the network was trained and from how LXMERT's features were made (docs/spec/frcnn.md
section 8): use `extract.preprocessing.preprocess` and the "caffe" rule unless you need the port's numbers.

Preprocessing, as the port treats a local image file:
- channels: the port decodes with OpenCV and converts to RGB, and flips back to BGR only when
  INPUT.FORMAT is "RGB" (where it then crashes). With its working setting "BGR" the network gets RGB
  pixels minus the BGR pixel mean (transformers#19601). "RGB" is reproduced as the port means it:
  BGR pixels. (The port reads URLs with Pillow and swaps those to BGR: not reproduced.)
- resize: detectron2's output size, but applied to the float image with interpolate(bilinear,
  align_corners=False): no antialiasing, no rounding, no clamping to 0..255.
- normalize: (x - PIXEL_MEAN) / PIXEL_STD. One image at a time: the port pads a batch with PAD_VALUE,
  which changes features, as detectron2's padding does; we never pad.

Selection (the port's ROIOutputs.inference + do_nms), per image: the regressed box of each proposal's
best foreground class, clipped to the resized image; one class-agnostic NMS per threshold of
HF_PORT.NMS_THRESH_TEST in order, keeping the first MAX_DETECTIONS survivors, until at least
MIN_DETECTIONS survive; boxes scaled back by original / resized size per axis (float32, as the port
computes it) WITHOUT clipping; no score threshold. When no threshold keeps enough boxes the port
crashes or reuses another image's boxes: we raise ValueError. Attribute scores are the softmax over
the real attributes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from .boxes import clip_boxes
from .model.config import DetectorConfig
from .preprocessing import PreprocessedImage, output_size
from .selection import ImagePredictions, Regions, attributes_fork

RULE = "hf-port"  # the name its Regions carry

# The port's settings when a config has none of its own (those of the published demo).
PORT_NMS_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PORT_MIN_DETECTIONS = 10
PORT_MAX_DETECTIONS = 36


def port_preprocess(
    image_rgb: np.ndarray, config: DetectorConfig, *, device: torch.device | str | None = None
) -> PreprocessedImage:
    """An (H, W, 3) uint8 RGB array (`load_image`'s output) as the port feeds it to the network.

    The tensor is (3, H', W') float32 in the port's channel order: RGB for its INPUT.FORMAT "BGR"
    (`config.port_input_format`, "BGR" when unset), BGR for "RGB"; see the module docstring.
    """
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"port_preprocess expects an (H, W, 3) uint8 RGB array, got {image_rgb.shape} {image_rgb.dtype}; "
            "extract.images.load_image converts any image input to one"
        )
    height, width = image_rgb.shape[:2]
    resized_size = output_size(height, width, config.min_size_test, config.max_size_test)
    pixels = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(device)
    if config.port_input_format == "RGB":
        pixels = pixels.flip(-1)
    image = pixels.permute(2, 0, 1)[None].to(torch.float32)  # (1, 3, H, W)
    image = F.interpolate(image, size=resized_size, mode="bilinear", align_corners=False)[0]
    mean = torch.tensor(config.pixel_mean, dtype=torch.float32, device=image.device).view(3, 1, 1)
    std = torch.tensor(config.pixel_std, dtype=torch.float32, device=image.device).view(3, 1, 1)
    tensor = ((image - mean) / std).contiguous()
    return PreprocessedImage(tensor=tensor, original_size=(height, width), resized_size=resized_size)


def port_keep(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    thresholds: tuple[float, ...],
    min_detections: int,
    max_detections: int,
) -> tuple[torch.Tensor, float]:
    """The port's do_nms on (R, 4) boxes and (R,) scores: the first threshold whose class-agnostic NMS
    (torchvision: IoU > threshold suppressed), cut to max_detections, keeps >= min_detections.

    -> (kept indices by descending score, threshold). ValueError when no threshold qualifies.
    """
    counts = []
    for thresh in thresholds:
        keep = nms(boxes, scores, thresh)[:max_detections]
        if len(keep) >= min_detections:
            return keep, thresh
        counts.append(len(keep))
    raise ValueError(
        f"no NMS threshold of {tuple(thresholds)} keeps {min_detections} boxes (min_detections) out of "
        f"{len(boxes)} proposals: they keep {counts}. The port would crash here, or reuse the previous "
        "image's boxes; lower HF_PORT.MIN_DETECTIONS or use another selection rule"
    )


def select_port(predictions: ImagePredictions, config: DetectorConfig) -> Regions:
    """The port's box selection (module docstring) on one image's predictions.

    Thresholds and counts come from the config's HF_PORT settings (the demo's 0.3 ... 0.9, 10 and
    36 where unset). Boxes are in original pixels and may extend past the image (not clipped).
    """
    pred = predictions
    thresholds = config.port_nms_thresholds or PORT_NMS_THRESHOLDS
    min_detections = config.port_min_detections or PORT_MIN_DETECTIONS
    max_detections = config.port_max_detections or PORT_MAX_DETECTIONS
    scores, classes = pred.class_probs[:, :-1].max(dim=1)
    rows = torch.arange(len(scores), device=scores.device)
    boxes = clip_boxes(pred.class_boxes[rows, classes], pred.resized_size)
    index, thresh = port_keep(boxes, scores, thresholds, min_detections, max_detections)
    # scales_yx = original / resized size: a float32 division of the integer sizes, as the port does it.
    scale_y, scale_x = (torch.tensor(pred.original_size) / torch.tensor(pred.resized_size)).tolist()
    scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=torch.float32, device=boxes.device)
    attribute_ids = attribute_scores = None
    if pred.attribute_logits is not None:
        attribute_ids, attribute_scores = attributes_fork(pred.attribute_logits[index])
    return Regions(
        rule=RULE,
        image_size=tuple(pred.original_size),
        boxes=boxes[index] * scale,
        features=pred.pooled_features[index],
        object_ids=classes[index],
        object_scores=scores[index],
        attribute_ids=attribute_ids,
        attribute_scores=attribute_scores,
        proposal_index=index,
        nms_thresh=thresh,
    )
