"""What the pipelines share: reading images (each distinct image once, URLs only when allowed), the
transformers-style input forms of (image, text) pairs, and batching pairs through LXMERT with the
region features kept on the device from the detector to the model."""

from __future__ import annotations

import http.client
import math
import numbers
import os
import threading
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from extract import FeatureStore, RegionFeatureExtractor, RegionFeatures
from extract.store.store import display_names
from lxmert import LxmertPreTrainedModel, LxmertTokenizerFast

URL_PREFIXES = ("http://", "https://")
DEFAULT_BATCH_SIZE = 8
# A whole URL download, however the server paces its bytes (a per-read timeout alone lets a server
# that sends a byte every few seconds hold the caller for hours).
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
# The default byte cap of a URL download is this many bytes per pixel of the image pixel limit: an
# image file is rarely larger than its raw 8-bit RGBA pixels (compression only shrinks them), so with
# Pillow's limit of 89,478,485 pixels a download stops at about 358 MB instead of filling the memory.
DOWNLOAD_BYTES_PER_PIXEL = 4
# Normalized boxes are coordinates divided by the image size; LXMERT's own data loaders accept them
# up to 1e-5 outside [0, 1] (float rounding at the image border).
BOX_TOLERANCE = 1e-5
_DOWNLOAD_CHUNK = 1 << 16
_SHOWN_CHARS = 200  # of a URL or a text quoted in an error message


class DownloadError(OSError):
    """A URL could not be downloaded, or was refused for its size or for taking too long."""


def is_url(image: Any) -> bool:
    return isinstance(image, str) and image[:8].lower().startswith(URL_PREFIXES)


def shown(text: str, limit: int = _SHOWN_CHARS) -> str:
    """`text` quoted for an error message, cut to `limit` characters."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


def download_limit(max_image_pixels: int | None) -> int | None:
    """The default byte cap of URL downloads for images of at most `max_image_pixels` pixels (None: none)."""
    return None if max_image_pixels is None else DOWNLOAD_BYTES_PER_PIXEL * max_image_pixels


def fetch_url(
    url: str, *, allow_network: bool, max_bytes: int | None = None, timeout: float = DEFAULT_DOWNLOAD_TIMEOUT
) -> bytes:
    """The bytes at `url`; refused unless the caller allowed network access.

    max_bytes: refuse a body larger than this (None: no cap); a Content-Length over it is refused before
    the body is read. timeout: seconds for the whole download, connection included, however slowly the
    server sends. Failures raise DownloadError (an OSError) naming the URL and the limit.
    """
    if not allow_network:
        raise ValueError(
            f"image {shown(url)} is a URL and this pipeline does not use the network; download it first, or "
            "pass allow_network=True (to pipeline(...) or to the call)"
        )
    # The download runs in a worker thread so that the deadline holds for the caller: socket timeouts
    # bound each read, not their sum. A worker past the deadline stops once its current read returns.
    outcome: list[bytes | Exception] = []
    cancelled = threading.Event()

    def download() -> None:
        try:
            outcome.append(_download(url, max_bytes, timeout, cancelled))
        except Exception as error:  # handed to the caller's thread below
            outcome.append(error)

    worker = threading.Thread(target=download, name="lxmert-fetch-url", daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    finally:
        cancelled.set()
    if not outcome:
        raise DownloadError(
            f"could not download image {shown(url)}: not complete after {timeout:g} s (the download deadline, "
            "download_timeout)"
        )
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def _download(url: str, max_bytes: int | None, timeout: float, cancelled: threading.Event) -> bytes:
    too_large = f"it is larger than the download limit of {max_bytes:,} bytes (max_download_bytes)" if max_bytes else ""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) only)
            declared = response.headers.get("Content-Length", "").strip()
            if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(
                    f"could not download image {shown(url)}: {too_large}: its Content-Length is {int(declared):,}"
                )
            parts, size = [], 0
            while not cancelled.is_set():
                part = response.read1(_DOWNLOAD_CHUNK)  # returns what one read gives: a trickle does not block it
                if not part:
                    if declared.isdigit() and size < int(declared):  # read1 does not raise IncompleteRead
                        raise DownloadError(
                            f"could not download image {shown(url)}: the connection closed after {size:,} of "
                            f"its {int(declared):,} bytes"
                        )
                    return b"".join(parts)
                size += len(part)
                if max_bytes is not None and size > max_bytes:
                    raise DownloadError(f"could not download image {shown(url)}: {too_large}; stopped reading")
                parts.append(part)
            raise DownloadError(f"could not download image {shown(url)}: cancelled at the deadline")
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException) as error:  # HTTPException: e.g. a body cut short (IncompleteRead)
        raise DownloadError(f"could not download image {shown(url)}: {type(error).__name__}: {error}") from error


def check_top_k(top_k: Any) -> int:
    """top_k as an int (numpy integers too); bools, floats and values below 1 are refused."""
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    return int(top_k)


def open_store(store: Any) -> Any:
    """A FeatureStore for store=: a FeatureStore (or anything indexable by image id) as it is, or the path
    of a store file, opened read-only."""
    if isinstance(store, (str, os.PathLike)):
        return FeatureStore(store)
    if not hasattr(store, "__getitem__"):
        raise TypeError(f"store= must be a FeatureStore or the path of one, got {type(store).__name__}")
    return store


def check_batch_size(batch_size: Any) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


def chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]


class ImageReader:
    """Region features of images through a RegionFeatureExtractor; URLs downloaded when allowed.

    max_download_bytes: the byte cap of a URL download (default: DOWNLOAD_BYTES_PER_PIXEL bytes per pixel
    of the extractor's max_image_pixels; no cap when that is None). download_timeout: seconds for a
    whole download.
    """

    def __init__(
        self,
        extractor: RegionFeatureExtractor,
        *,
        allow_network: bool = False,
        max_download_bytes: int | None = None,
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    ):
        if max_download_bytes is not None and (
            isinstance(max_download_bytes, bool) or not isinstance(max_download_bytes, int) or max_download_bytes < 1
        ):
            raise ValueError(
                f"max_download_bytes={max_download_bytes!r}: expected an integer >= 1, or None (the default: "
                f"{DOWNLOAD_BYTES_PER_PIXEL} bytes per pixel of max_image_pixels)"
            )
        if (
            isinstance(download_timeout, bool)
            or not isinstance(download_timeout, numbers.Real)
            or not 0 < download_timeout < math.inf
        ):
            raise ValueError(f"download_timeout={download_timeout!r}: expected a number of seconds > 0")
        self.extractor = extractor
        self.allow_network = allow_network
        self.max_download_bytes = max_download_bytes
        self.download_timeout = float(download_timeout)

    def fetch(self, url: str, *, allow_network: bool | None = None) -> bytes:
        """The bytes at `url`, within this reader's download cap and deadline."""
        limit = self.max_download_bytes
        if limit is None:
            limit = download_limit(self.extractor.max_image_pixels)
        allowed = self.allow_network if allow_network is None else allow_network
        return fetch_url(url, allow_network=allowed, max_bytes=limit, timeout=self.download_timeout)

    def read(
        self, images: Sequence[Any], *, batch_size: int, allow_network: bool | None = None, **selection: Any
    ) -> list[RegionFeatures]:
        """One RegionFeatures per image, in order, `batch_size` images per detector pass; `selection`
        goes to the extractor (rule, num_boxes, given_boxes)."""
        sources = [self.fetch(image, allow_network=allow_network) if is_url(image) else image for image in images]
        given = selection.pop("given_boxes", None)
        results = []
        for start in range(0, len(sources), batch_size):
            batch = list(sources[start : start + batch_size])
            boxes = None if given is None else list(given[start : start + batch_size])
            results.extend(self.extractor(batch, batch_size=batch_size, given_boxes=boxes, **selection))
        return results


@dataclass
class VisualInputs:
    """One image's region features as LXMERT reads them, on the pipeline's device, and what an explanation
    draws them with: the boxes in original pixels, the image and the regions' names, where known."""

    features: torch.Tensor  # (K, D)
    normalized_boxes: torch.Tensor  # (K, 4) in [0, 1]
    boxes: torch.Tensor | None = None  # (K, 4) in original-image pixels
    image: Any = None  # the image as it was given (for drawing)
    names: list[str] | None = None  # "attribute object" per region


def stack_visual_inputs(items: Sequence[VisualInputs]) -> dict[str, torch.Tensor]:
    """LXMERT's visual_feats (B, K, D), visual_pos (B, K, 4) and, when the box counts differ,
    visual_attention_mask (B, K) with 0 on the padding."""
    counts = [len(item.features) for item in items]
    most = max(counts)
    if min(counts) == most:
        return {
            "visual_feats": torch.stack([item.features for item in items]),
            "visual_pos": torch.stack([item.normalized_boxes for item in items]),
        }
    first = items[0].features
    feats = first.new_zeros(len(items), most, first.shape[1])
    pos = first.new_zeros(len(items), most, 4)
    mask = first.new_zeros(len(items), most)
    for row, (item, count) in enumerate(zip(items, counts, strict=True)):
        feats[row, :count] = item.features
        pos[row, :count] = item.normalized_boxes
        mask[row, :count] = 1
    return {"visual_feats": feats, "visual_pos": pos, "visual_attention_mask": mask}


@dataclass
class Pair:
    source: int  # index into the distinct visual sources
    text: str


class ImageTextPipeline:
    """Base of the pipelines that run LXMERT on (image, text) pairs.

    Visual sources are images (through the detector), precomputed features of a FeatureStore
    (`image_id=` + `store=`), or given `features=` + normalized `boxes=`. Subclasses turn a batch of
    model inputs into scores (`_score_batch`) and scores into results.
    """

    text_name = "text"  # the keyword of the texts in __call__, for error messages

    def __init__(
        self,
        model: LxmertPreTrainedModel,
        tokenizer: LxmertTokenizerFast,
        reader: ImageReader | None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_text_length: int | None = None,
    ):
        config = model.config
        if reader is not None:
            check_feature_widths(reader.extractor.config, config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.reader = reader
        self.batch_size = check_batch_size(batch_size)
        self.max_text_length = max_text_length or min(
            tokenizer.model_max_length or config.max_position_embeddings, config.max_position_embeddings
        )

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- inputs ----------------------------------------------------------------------------------

    def parse(
        self, image, texts, image_id, store, features, boxes, regions=None
    ) -> tuple[list[tuple[str, Any]], list[Pair], bool]:
        """The distinct visual sources (kind, value), the (source, text) pairs, and whether the input was
        a single pair (the result is then not wrapped in a list)."""
        given = [
            name
            for name, value in (("image", image), ("image_id", image_id), ("features", features), ("regions", regions))
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "pass exactly one of image=, image_id= (with store=), features= (with boxes=) or regions=; got "
                + (", ".join(given) if given else "none")
            )
        if regions is not None:
            batch = isinstance(regions, (list, tuple))
            return self._broadcast([("regions", item) for item in (regions if batch else [regions])], batch, texts)
        if image_id is not None:
            if store is None:
                raise ValueError("image_id= needs store=, the FeatureStore that holds the image's features")
            store = open_store(store)
            ids, id_batch = ([image_id], False) if isinstance(image_id, str) else (list(image_id), True)
            return self._broadcast([("store", (store, i)) for i in ids], id_batch, texts)
        if features is not None:
            if boxes is None:
                raise ValueError("features= needs boxes=, the (K, 4) normalized boxes of those regions")
            return self._broadcast([("features", (features, boxes))], False, texts)
        if isinstance(image, (list, tuple)) and not image:
            return [], [], False  # an empty batch: no results
        if isinstance(image, dict) or (
            isinstance(image, (list, tuple)) and all(isinstance(item, dict) for item in image)
        ):
            if texts is not None:
                raise ValueError(f"pass the {self.text_name}s inside the dicts, not as {self.text_name}=")
            items = [image] if isinstance(image, dict) else image
            for i, item in enumerate(items):
                missing = {"image", self.text_name} - set(item)
                if missing:
                    raise ValueError(
                        f"input {i} lacks {sorted(missing)}: each dict needs 'image' and '{self.text_name}'"
                    )
            sources, index = _distinct([("image", item["image"]) for item in items])
            pairs = [Pair(index[i], self._check_text(item[self.text_name], i)) for i, item in enumerate(items)]
            return sources, pairs, isinstance(image, dict)
        image_batch = isinstance(image, (list, tuple))
        return self._broadcast([("image", x) for x in (image if image_batch else [image])], image_batch, texts)

    def _broadcast(self, sources: list, source_batch: bool, texts) -> tuple[list, list[Pair], bool]:
        name = self.text_name
        if texts is None:
            raise ValueError(f"{name}= is missing: pass a {name} or a list of them")
        text_batch = isinstance(texts, (list, tuple))
        texts = list(texts) if text_batch else [texts]
        if not texts or not sources:
            return [], [], False  # an empty batch: no results
        texts = [self._check_text(text, i) for i, text in enumerate(texts)]
        distinct, index = _distinct(sources)
        if source_batch and text_batch:
            if len(sources) != len(texts):
                raise ValueError(
                    f"{len(sources)} images and {len(texts)} {name}s: with a list of each, image i goes with "
                    f"{name} i, so the lists must have the same length (pass one image or one {name} to "
                    f"broadcast it, or a list of {{'image', '{name}'}} dicts)"
                )
            pairs = [Pair(index[i], text) for i, text in enumerate(texts)]
        elif source_batch:
            pairs = [Pair(index[i], texts[0]) for i in range(len(sources))]
        else:
            pairs = [Pair(index[0], text) for text in texts]
        return distinct, pairs, not (source_batch or text_batch)

    def _check_text(self, text: Any, index: int) -> str:
        if not isinstance(text, str):
            raise TypeError(f"{self.text_name} {index} is a {type(text).__name__}, not a str")
        if not text.strip():
            raise ValueError(f"{self.text_name} {index} is empty")
        # The tokenizer drops control and zero-width characters: such a text reaches LXMERT as
        # [CLS] [SEP], which still gets confident-looking answers.
        if not self.tokenizer.tokenize(text):
            raise ValueError(
                f"{self.text_name} {index} ({shown(text, 40)}) has no words: only control, zero-width or other "
                "invisible characters, which the tokenizer drops"
            )
        return text

    def visual_inputs(self, sources, batch_size: int, allow_network: bool | None) -> list[VisualInputs]:
        """LXMERT's visual inputs of each distinct source, on the device; images go through the
        detector together, `batch_size` per pass."""
        device, visual = self.device, [None] * len(sources)
        images = [(i, value) for i, (kind, value) in enumerate(sources) if kind == "image"]
        if images:
            if self.reader is None:
                raise ValueError("this pipeline has no detector: pass image_id= with store=, or features= and boxes=")
            read = self.reader.read([value for _, value in images], batch_size=batch_size, allow_network=allow_network)
            for (i, _), regions in zip(images, read, strict=True):
                visual[i] = VisualInputs(
                    regions.features, regions.normalized_boxes, regions.boxes, regions.source, region_names(regions)
                )
        for i, (kind, value) in enumerate(sources):
            if kind == "store":
                store, image_id = value
                record = store[image_id]
                where = f"of image {shown(str(image_id), 80)} in the store"
                visual[i] = checked_visual_inputs(
                    record.features,
                    record.normalized_boxes,
                    device,
                    self.model.config.visual_feat_dim,
                    features_name=f"the features {where}",
                    boxes_name=f"the normalized_boxes {where}",
                )
                visual[i].boxes = torch.as_tensor(record.boxes)
            elif kind == "features":
                visual[i] = checked_visual_inputs(*value, device, self.model.config.visual_feat_dim)
            elif kind == "regions":
                visual[i] = self._regions_input(value, i)
        return visual

    def _regions_input(self, regions: Any, index: int) -> VisualInputs:
        """A RegionFeatures (from the detector, e.g. kept by a cache) or a FeatureRecord (from a store) as
        LXMERT's visual inputs, with its boxes, image and names for explanations."""
        if not hasattr(regions, "features") or not hasattr(regions, "normalized_boxes"):
            raise TypeError(
                f"regions[{index}] is a {type(regions).__name__}: expected a RegionFeatures (from the detector) or "
                "a FeatureRecord (from a FeatureStore)"
            )
        visual = checked_visual_inputs(
            regions.features,
            regions.normalized_boxes,
            self.device,
            self.model.config.visual_feat_dim,
            features_name=f"the features of regions[{index}]",
            boxes_name=f"the normalized_boxes of regions[{index}]",
        )
        visual.boxes = torch.as_tensor(regions.boxes)
        if isinstance(regions, RegionFeatures):
            visual.image, visual.names = regions.source, region_names(regions)
        return visual

    # -- model -----------------------------------------------------------------------------------

    def run_pairs(
        self, visual: list[VisualInputs], pairs: list[Pair], batch_size: int, score: Callable[[dict], torch.Tensor]
    ) -> torch.Tensor:
        """`score(model inputs)` for every pair, `batch_size` pairs per pass, concatenated."""
        rows = []
        for batch in chunks(pairs, batch_size):  # a loop, not a comprehension: the warnings' stack depth
            rows.append(score(self.model_inputs(visual, batch)))
        return torch.cat(rows)

    def model_inputs(self, visual: list[VisualInputs], batch: Sequence[Pair]) -> dict[str, torch.Tensor]:
        """LXMERT's inputs for a batch of pairs, on the device: the tokenized texts (padded on the right) and the
        stacked region features."""
        texts = [pair.text for pair in batch]
        self._warn_truncated(texts)
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        inputs = {key: value.to(self.device) for key, value in encoded.items()}
        inputs.update(stack_visual_inputs([visual[pair.source] for pair in batch]))
        return inputs

    def _warn_truncated(self, texts: list[str]) -> None:
        special = self.tokenizer.num_special_tokens_to_add()
        for text in texts:
            # Every token covers at least one character: short texts cannot have been cut.
            if len(text) + special <= self.max_text_length:
                continue
            # tokenize(), not encode(): encoding past the tokenizer's own limit logs its "indexing errors,
            # pass truncation=True" warning, which is not true here (the batch is truncated).
            length = len(self.tokenizer.tokenize(text)) + special
            if length > self.max_text_length:
                warnings.warn(
                    f"{self.text_name} {text[:40]!r}... has {length} tokens; it was cut to {self.max_text_length}",
                    stacklevel=6,  # the caller of the pipeline: past model_inputs, run_pairs, __call__, inference_mode
                )


def region_dicts(regions: Any, indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The regions of a RegionFeatures (the detector's names) or a FeatureRecord (names of the store's ids,
    extract.store.display_names) as JSON-ready dicts {"box", "object", "object_score", "attribute",
    "attribute_score"}, all of them or those of `indices`; the attribute and its score are None without an
    attribute head. What `lxmert regions --json` prints and the service answers."""
    if isinstance(regions, RegionFeatures):
        objects, attributes = regions.object_names, regions.attribute_names
    else:
        objects = display_names("objects", regions.object_ids)
        attributes = display_names("attributes", regions.attribute_ids)
    count = len(objects)
    attributes = attributes or [None] * count
    attribute_scores = regions.attribute_scores
    attribute_scores = [None] * count if attribute_scores is None else _host_list(attribute_scores)
    boxes, object_scores = _host_list(regions.boxes), _host_list(regions.object_scores)
    return [
        {
            "box": boxes[i],
            "object": objects[i],
            "object_score": object_scores[i],
            "attribute": attributes[i],
            "attribute_score": None if attributes[i] is None else attribute_scores[i],
        }
        for i in (range(count) if indices is None else indices)
    ]


def _host_list(values: Any) -> list:
    """A tensor (on any device) or an array as nested Python lists."""
    return values.tolist() if not hasattr(values, "cpu") else values.detach().cpu().tolist()


def region_names(regions: RegionFeatures) -> list[str]:
    """ "attribute object" per region ("object" without an attribute head)."""
    attributes = regions.attribute_names or [None] * len(regions)
    return [
        " ".join(filter(None, (attribute, name)))
        for attribute, name in zip(attributes, regions.object_names, strict=True)
    ]


def _distinct(sources: list[tuple[str, Any]]) -> tuple[list[tuple[str, Any]], list[int]]:
    """The sources without repeats (same path, same object, same store id), and each input's position."""
    distinct: list[tuple[str, Any]] = []
    seen: dict[Any, int] = {}
    index = []
    for kind, value in sources:
        if kind == "store":
            key = (kind, id(value[0]), value[1])
        elif isinstance(value, (str, os.PathLike)):
            key = (kind, os.fspath(value))
        else:
            key = (kind, id(value))
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append((kind, value))
        index.append(seen[key])
    return distinct, index


def check_feature_widths(
    detector_config: Any,
    lxmert_config: Any,
    *,
    detector_name: str = "the detector",
    model_name: str = "the LXMERT model",
) -> None:
    """ValueError unless the detector's region features are as wide as LXMERT's visual input."""
    width, wanted = detector_config.pooled_dim, lxmert_config.visual_feat_dim
    if width == wanted:
        return
    channels = getattr(detector_config, "res2_out_channels", "RES2_OUT_CHANNELS")
    raise ValueError(
        f"{detector_name} gives {width}-d region features (the channels of its res5 stage: 8 x "
        f"MODEL.RESNETS.RES2_OUT_CHANNELS = 8 x {channels} in its config.yaml) but "
        f"{model_name} reads {wanted}-d features (visual_feat_dim in its config.json); the two must be equal: "
        f"use a detector whose region features are {wanted}-d (the VG Faster R-CNN unc-nlp/frcnn-vg-finetuned "
        f"gives 2048-d ones), or an LXMERT checkpoint trained on {width}-d features (visual_feat_dim={width})"
    )


def checked_visual_inputs(
    features: Any,
    boxes: Any,
    device: torch.device,
    feature_dim: int,
    *,
    features_name: str = "features=",
    boxes_name: str = "boxes=",
) -> VisualInputs:
    """Region features (K, feature_dim) and normalized boxes (K, 4) as LXMERT's visual inputs on `device`;
    ValueError naming the input for a wrong shape, no regions, NaN or infinite values, or boxes outside
    [0, 1]."""
    features = _float_tensor(features, features_name, device)
    boxes = _float_tensor(boxes, boxes_name, device)
    if features.ndim != 2 or features.shape[1] != feature_dim:
        raise ValueError(
            f"{features_name} must be (K, {feature_dim}) region features, got shape {tuple(features.shape)}"
        )
    count = features.shape[0]
    if count == 0:
        raise ValueError(f"{features_name} has no regions (shape {tuple(features.shape)}): LXMERT needs at least one")
    if boxes.shape != (count, 4):
        raise ValueError(
            f"{boxes_name} must be ({count}, 4) normalized boxes for the {count} regions, "
            f"got shape {tuple(boxes.shape)}"
        )
    for tensor, name in ((features, features_name), (boxes, boxes_name)):
        bad = ~torch.isfinite(tensor)
        if bad.any():
            region = int(bad.any(dim=1).nonzero()[0, 0])
            raise ValueError(
                f"{name} holds {int(bad.sum()):,} NaN or infinite values (the first in region {region}): "
                "they would give NaN scores"
            )
    outside = (boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE)
    if outside.any():
        region = int(outside.any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{boxes_name} must be normalized boxes (x1, y1, x2, y2 divided by the image width and height, in "
            f"[0, 1]), but region {region} is {[round(v, 4) for v in boxes[region].tolist()]}"
        )
    return VisualInputs(features, boxes)


def _float_tensor(value: Any, name: str, device: torch.device) -> torch.Tensor:
    if getattr(getattr(value, "flags", None), "writeable", True) is False:
        value = value.copy()  # a read-only numpy array (e.g. decoded from bytes): torch warns on sharing it
    try:
        return torch.as_tensor(value, device=device).float()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"{name} must be a tensor or an array of numbers, got a {type(value).__name__} ({str(error)[:200]})"
        ) from None
