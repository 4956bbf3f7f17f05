"""RegionFeatureExtractor: images in, LXMERT's region features out.

    images -> load_image (CPU, Pillow) -> preprocess (upload, resize, normalize) -> VGDetector
    (images of one size per pass, at most batch_size) -> a selection rule or given boxes -> RegionFeatures

After decoding, everything runs on the extractor's device: the uint8 image is uploaded once
(resize="exact" resizes it with Pillow before the upload, resize="fast" after it, on the device, to
the same pixels), and normalization, the network and the selection rules are tensor ops there. No
tensor comes back to the host on the way; the only waits for the device are the ones any detector
has, where a count decides a shape (how many boxes survive an NMS or a threshold).

Images are never padded into one batch (see extract.model.detector): a batch of images of different sizes
gives what each image gives alone.

Unusual images: every mode load_image converts (grayscale, 16-bit, CMYK, RGBA, ...) works. Small
images are upscaled (a 1 x 1 image becomes a uniform 600 x 600 input and still gives 36 regions);
elongated ones work as long as both resized sides keep at least one pixel (200 x 10000 becomes
20 x 1000, a res4 map 2 cells high) and raise ValueError naming the image beyond that. Unreadable
files raise ImageLoadError naming the file and its index.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .checkpoints.pretrained import load_detector, save_pretrained
from .devices import resolve_device
from .draw import draw_regions
from .image_errors import ImageLoadError
from .images import ImageInput, check_max_image_pixels, load_image
from .labels import class_names
from .model.config import DetectorConfig
from .model.detector import VGDetector
from .options import DEFAULT_MAX_IMAGE_PIXELS, RESIZES, check_rule, parse_num_boxes
from .preprocessing import output_size, preprocess
from .selection import Regions

# How many boxes a RegionFeatures shows when it draws itself (in a notebook, in a job's previews): the
# best-scoring 20 of the usual 36 leave room to read the captions.
SHOWN_BOXES = 20


@dataclass
class RegionFeatures(Regions):
    """The regions of one image (`Regions`: boxes in original pixels, features, ids, scores) with
    LXMERT's normalized boxes and the class and attribute names.

    Names are looked up when read, so extraction never copies ids to the host. They are the VG names
    for a model with the VG vocabulary's 1,600 classes / 400 attributes, else "class_<i>" /
    "attribute_<i>" (extract.labels).
    """

    object_vocabulary: tuple[str, ...] = field(default=(), repr=False)
    attribute_vocabulary: tuple[str, ...] = field(default=(), repr=False)
    # The image as the caller gave it to the extractor (a path, bytes, a PIL image, an array, a tensor):
    # a reference, never a decoded copy, so that a thousand results do not keep a thousand pictures alive.
    source: ImageInput | None = field(default=None, repr=False, compare=False)
    source_bgr: bool = field(default=False, repr=False, compare=False)  # source is a BGR array / tensor (bgr=True)

    @property
    def normalized_boxes(self) -> torch.Tensor:
        """(N, 4) x1 / W, y1 / H, x2 / W, y2 / H: LXMERT's visual_pos, in [0, 1] (boxes lie in the image)."""
        height, width = self.image_size
        boxes = self.boxes.clone()
        boxes[:, 0::2] /= width
        boxes[:, 1::2] /= height
        return boxes

    @property
    def object_names(self) -> list[str]:
        """Display name of each region's class."""
        return [self.object_vocabulary[i] for i in self.object_ids.tolist()]

    @property
    def attribute_names(self) -> list[str] | None:
        """Display name of each region's attribute; None for a model without the attribute head."""
        if self.attribute_ids is None:
            return None
        return [self.attribute_vocabulary[i] for i in self.attribute_ids.tolist()]

    def draw(self, image: ImageInput | None = None, **options) -> Image.Image:
        """A new picture of `image` (default: `source`, the image these regions came from) with the boxes
        captioned by attribute, class and object score: extract.draw.draw_regions, whose keyword options
        (captions, top, min_score, line_width, font_size, or other names) pass through.

        The source is decoded again for each picture (a path: the file as it is now, which must still have
        the size the regions were found at), in its true colours when the extractor read it as BGR."""
        if image is None:
            image = self._source_pixels()
        names = {"object_names": self.object_names, "attribute_names": self.attribute_names}
        return draw_regions(image, self.boxes, **(names | {"scores": self.object_scores} | options))

    def _repr_png_(self) -> bytes | None:
        """The `SHOWN_BOXES` best boxes drawn on the source as PNG bytes, which notebooks (IPython) show
        in place of the repr; None without a source."""
        if self.source is None:
            return None
        buffer = io.BytesIO()
        self.draw(top=SHOWN_BOXES).save(buffer, format="PNG")
        return buffer.getvalue()

    def _source_pixels(self) -> np.ndarray:
        if self.source is None:
            raise ValueError(
                "these regions have no source image (RegionFeatureExtractor sets it; regions made otherwise, or "
                "with source=None, lack it): pass the image they came from, regions.draw(image)"
            )
        pixels = load_image(self.source, bgr=self.source_bgr)
        if pixels.shape[:2] != tuple(self.image_size):
            raise ValueError(
                f"the source image is now {pixels.shape[0]}x{pixels.shape[1]} (H x W) but these regions were found "
                f"in a {self.image_size[0]}x{self.image_size[1]} image (was the file replaced?): pass the image they "
                "came from, regions.draw(image)"
            )
        return pixels

    def to(self, device: torch.device | str) -> RegionFeatures:
        """A copy with every tensor on `device` (the source image stays as it was given)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if f.name != "source" and isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


class RegionFeatureExtractor:
    """The VG bottom-up-attention Faster R-CNN as a callable: images -> one `RegionFeatures` each.

    device: where preprocessing, the network and selection run (default: where the detector is).
    dtype: the convolutions' dtype (float32, float16 or bfloat16; VGDetector.set_compute_dtype);
    features, boxes and scores are float32 either way. resize: "exact" (Pillow on the CPU, then
    upload; detectron2's call) or "fast" (upload, then the same filter on the device, bit-identical).
    min_size / max_size: shortest side / longest-side cap of the network input (default: the
    config's INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, 600 / 1000 for LXMERT's features).
    max_image_pixels: the decompression-bomb guard for files and bytes (extract.images.load_image):
    a larger image raises ImageLoadError before it is decoded; None: no limit.
    """

    def __init__(
        self,
        detector: VGDetector,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        resize: str = "exact",
        min_size: int | None = None,
        max_size: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        if resize not in RESIZES:
            raise ValueError(
                f"resize={resize!r}: expected 'exact' (Pillow on the CPU) or 'fast' (the same filter on the device)"
            )
        config = detector.config
        min_size = config.min_size_test if min_size is None else min_size
        max_size = config.max_size_test if max_size is None else max_size
        # DetectorConfig checks the sizes; the extractor's config is the detector's with its input sizes.
        self.config = dataclasses.replace(config, min_size_test=min_size, max_size_test=max_size)
        if device is not None:
            detector.to(resolve_device(device))
        if dtype is not None:
            detector.set_compute_dtype(dtype)
        self.detector = detector.eval()
        self.resize = resize
        self.max_image_pixels = check_max_image_pixels(max_image_pixels)
        self.object_vocabulary = class_names("objects", config.num_classes)
        self.attribute_vocabulary = class_names("attributes", config.num_attributes) if config.attribute_head else ()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        config: DetectorConfig | str | os.PathLike | None = None,
        resize: str = "exact",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
    ) -> RegionFeatureExtractor:
        """Load a hub name (e.g. "unc-nlp/frcnn-vg-finetuned") or a folder (config.yaml + model_final.pkl,
        config.yaml + model.safetensors, the port's config.yaml + pytorch_model.bin, ...) with
        extract.checkpoints.load_detector."""
        detector = load_detector(
            name_or_path,
            config=config,
            device=None if device is None else resolve_device(device),  # checked before loading
            dtype=dtype,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        return cls(detector, resize=resize, max_image_pixels=max_image_pixels)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the config (with this extractor's input sizes) and float32 weights to `directory`."""
        state_dict = {
            name: tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype)
            for name, tensor in self.detector.state_dict().items()
        }
        save_pretrained(self.config, state_dict, directory)

    @property
    def device(self) -> torch.device:
        return self.detector.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the convolutions run in; outputs are float32."""
        return self.detector.compute_dtype

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"{type(self).__name__}(device={self.device}, dtype={self.dtype}, resize={self.resize!r}, "
            f"min_size={cfg.min_size_test}, max_size={cfg.max_size_test}, classes={cfg.num_classes}, "
            f"attributes={cfg.num_attributes if cfg.attribute_head else None})"
        )

    @torch.inference_mode()
    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        rule: str = "caffe",
        num_boxes: int | tuple[int, int] = 36,
        given_boxes: Sequence | None = None,
        bgr: bool = False,
        batch_size: int | None = None,
        conf_thresh: float = 0.2,
    ) -> list[RegionFeatures]:
        """Region features of each image, in input order (a single image gives a list of one).

        images: paths, encoded bytes, PIL images, (H, W, 3) arrays or tensors (extract.images.load_image);
        a list or tuple is a batch. rule: "caffe" (bottom-up-attention's generate_tsv.py: what the
        public LXMERT checkpoints were trained on), "maxnms" (py-bottom-up-attention) or "d2"
        (detectron2's inference; keeps up to the config's DETECTIONS_PER_IMAGE and ignores num_boxes);
        see extract.selection. num_boxes: N, or (MIN, MAX) for an adaptive count (with conf_thresh,
        the "caffe" rule's max_conf cut). An image with fewer proposals than N gets all of them.
        given_boxes: one (N_i, 4) array or tensor per image, x1 y1 x2 y2 in original pixels, inside
        the image; they replace the rule (`rule` and `num_boxes` are ignored). bgr: arrays and
        tensors among the images are BGR (OpenCV order); files and PIL images know their mode.
        batch_size: at most this many images per forward pass (memory); results do not depend on it.

        Each result: features (N, D) float32, boxes (N, 4) in original pixels, normalized_boxes,
        object / attribute ids, scores and names, image_size (H, W); tensors on `self.device`.
        """
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        check_rule(rule)
        parse_num_boxes(num_boxes)
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size={batch_size!r}: expected None (all at once) or an integer >= 1")
        if not 0.0 <= conf_thresh <= 1.0:
            raise ValueError(f"conf_thresh={conf_thresh!r}: expected a probability in [0, 1]")
        boxes = None if given_boxes is None else _given_boxes_as_tensors(given_boxes, len(images))

        decoded = [_decode(i, image, bgr, self.max_image_pixels) for i, image in enumerate(images)]
        cfg = self.config
        resized_sizes = []
        for i, pixels in enumerate(decoded):
            height, width = pixels.shape[:2]
            try:
                resized_sizes.append(output_size(height, width, cfg.min_size_test, cfg.max_size_test))
            except ValueError as error:
                raise ValueError(f"images[{i}]: {error}") from None
            if boxes is not None:
                _check_inside(boxes[i], i, height, width)

        results: list[RegionFeatures | None] = [None] * len(images)
        for indices in _batches(resized_sizes, batch_size):
            inputs = []
            for i in indices:
                inputs.append(
                    preprocess(
                        decoded[i],
                        min_size=cfg.min_size_test,
                        max_size=cfg.max_size_test,
                        pixel_mean=cfg.pixel_mean,
                        pixel_std=cfg.pixel_std,
                        resize=self.resize,
                        device=self.device,
                    )
                )
                decoded[i] = None  # the uint8 copy is no longer needed
            regions = self.detector.detect(
                inputs,
                rule,
                num_boxes,
                given_boxes=None if boxes is None else [boxes[i] for i in indices],
                conf_thresh=conf_thresh,
            )
            for i, region in zip(indices, regions, strict=True):
                results[i] = self._with_names(region, images[i], _is_bgr(images[i], bgr))
        return results

    def _with_names(self, regions: Regions, source: ImageInput, source_bgr: bool) -> RegionFeatures:
        values = {f.name: getattr(regions, f.name) for f in dataclasses.fields(regions)}
        return RegionFeatures(
            **values,
            object_vocabulary=self.object_vocabulary,
            attribute_vocabulary=self.attribute_vocabulary,
            source=source,
            source_bgr=source_bgr,
        )


def _is_bgr(image: ImageInput, bgr: bool) -> bool:
    """Whether the extractor reads `image` as BGR: bgr=True applies to arrays and tensors only."""
    return bgr and isinstance(image, (np.ndarray, torch.Tensor))


def _decode(index: int, image: ImageInput, bgr: bool, max_image_pixels: int | None) -> np.ndarray:
    try:
        return load_image(image, bgr=_is_bgr(image, bgr), max_image_pixels=max_image_pixels)
    except ImageLoadError as error:
        # type(error): an ImageTooLargeError stays one
        raise type(error)(f"{error.source} (images[{index}])", error.reason) from error
    except TypeError as error:
        raise TypeError(f"images[{index}]: {error}") from None


def _batches(resized_sizes: list[tuple[int, int]], batch_size: int | None) -> list[list[int]]:
    """Image indices per forward pass: images of one network-input size, at most batch_size each."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(resized_sizes):
        by_size.setdefault(size, []).append(i)
    step = batch_size or len(resized_sizes)
    return [group[start : start + step] for group in by_size.values() for start in range(0, len(group), step)]


def _given_boxes_as_tensors(given_boxes: Sequence, num_images: int) -> list[torch.Tensor]:
    if not isinstance(given_boxes, (list, tuple)):
        # A single (N, 4) array would read as N images' boxes; one image's boxes go in a list of one.
        raise ValueError(
            f"given_boxes is a {type(given_boxes).__name__}: expected a list with one (N, 4) box array per image "
            "(for one image: [boxes])"
        )
    if len(given_boxes) != num_images:
        raise ValueError(
            f"given_boxes has {len(given_boxes)} entries for {num_images} image(s): expected one (N, 4) box array "
            "per image"
        )
    tensors = []
    for i, boxes in enumerate(given_boxes):
        try:
            boxes = torch.as_tensor(boxes, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"given_boxes[{i}] is not an array of numbers: {error}") from None
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"given_boxes[{i}] has shape {tuple(boxes.shape)}: expected (N, 4) boxes x1, y1, x2, y2 "
                "(one box: boxes[None])"
            )
        finite = torch.isfinite(boxes).all(dim=1)
        if not finite.all():
            j = int(torch.nonzero(~finite)[0])
            raise ValueError(f"given_boxes[{i}][{j}] = {boxes[j].tolist()} is not finite")
        tensors.append(boxes)
    return tensors


def _check_inside(boxes: torch.Tensor, index: int, height: int, width: int) -> None:
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    inside = (x1 >= 0) & (y1 >= 0) & (x1 < x2) & (y1 < y2) & (x2 <= width) & (y2 <= height)
    if not inside.all():
        j = int(torch.nonzero(~inside)[0])
        raise ValueError(
            f"given_boxes[{index}][{j}] = {boxes[j].tolist()} does not lie inside image {index} "
            f"({width} x {height} pixels): expected 0 <= x1 < x2 <= {width} and 0 <= y1 < y2 <= {height}, "
            "in original pixels"
        )
