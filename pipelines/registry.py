"""pipeline(task, ...): the task registry and factory.

Tasks, with their default checkpoints (hub ids; any local folder works too):

- "vqa" (alias "visual-question-answering"): unc-nlp/lxmert-vqa-uncased + unc-nlp/frcnn-vg-finetuned;
  answers with sigmoid scores.
- "gqa": unc-nlp/lxmert-gqa-uncased + the same detector; answers with softmax scores.
- "feature-extraction": the detector alone; RegionFeatures.
- "image-text-matching": unc-nlp/lxmert-base-uncased (LxmertForPreTraining) + the detector;
  the probability that a text describes an image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from extract import RegionFeatureExtractor
from extract.extractor import RESIZES, resolve_device
from lxmert import LxmertForPreTraining, LxmertForQuestionAnswering, LxmertTokenizerFast

from .base import DEFAULT_BATCH_SIZE, ImageReader
from .features import FeatureExtractionPipeline
from .matching import ImageTextMatchingPipeline
from .vqa import VisualQuestionAnsweringPipeline

DEFAULT_DETECTOR = "unc-nlp/frcnn-vg-finetuned"
_UNSET = object()  # max_image_pixels not given: the extractor's own (Pillow's limit for a new one)


@dataclass(frozen=True)
class Task:
    pipeline: type
    model_class: type | None
    default_model: str | None
    options: tuple[tuple[str, Any], ...] = ()


TASKS = {
    "vqa": Task(
        VisualQuestionAnsweringPipeline,
        LxmertForQuestionAnswering,
        "unc-nlp/lxmert-vqa-uncased",
        (("score_function", "sigmoid"),),
    ),
    "gqa": Task(
        VisualQuestionAnsweringPipeline,
        LxmertForQuestionAnswering,
        "unc-nlp/lxmert-gqa-uncased",
        (("score_function", "softmax"),),
    ),
    "feature-extraction": Task(FeatureExtractionPipeline, None, None),
    "image-text-matching": Task(ImageTextMatchingPipeline, LxmertForPreTraining, "unc-nlp/lxmert-base-uncased"),
}
ALIASES = {"visual-question-answering": "vqa"}


def pipeline(
    task: str,
    model: str | os.PathLike | torch.nn.Module | None = None,
    detector: str | os.PathLike | RegionFeatureExtractor | None = None,
    tokenizer: str | os.PathLike | LxmertTokenizerFast | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    batch_size: int | None = None,
    *,
    allow_network: bool = False,
    resize: str | None = None,
    max_image_pixels: int | None | object = _UNSET,
    **options: Any,
):
    """Build the pipeline of `task` (see the table in this module's docstring).

    model / detector: a hub id or a local folder (LXMERT: config.json + weights; detector: any format
    extract.checkpoints reads), or an already loaded model / RegionFeatureExtractor. tokenizer: a folder
    or hub id; default: the model folder's tokenizer if it has one, else the bundled bert-base-uncased
    vocabulary. device: where everything runs ("cuda", "cpu", ...; default: the device of a model or
    detector object passed in, else CUDA when available); objects passed in are moved there. dtype: of
    LXMERT's weights and of the detector's convolutions (default float32). batch_size: images per
    detector pass and (image, text) pairs per LXMERT pass. allow_network: let images be URLs. resize:
    "exact" (Pillow on the CPU) or "fast" (the same pixels, computed on the device); default "fast" on a
    GPU, "exact" on the CPU (a detector object passed in keeps its own unless resize= is given).
    max_image_pixels: the decompression-bomb guard of image files and bytes (default: Pillow's limit;
    None: no limit; a detector object passed in keeps its own unless this is given).
    options: task options, e.g. score_function="softmax" for "vqa".
    """
    name = ALIASES.get(task, task)
    if name not in TASKS:
        known = sorted([*TASKS, *ALIASES])
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(known)}")
    spec = TASKS[name]
    device = _device(device, model, detector)
    dtype = _dtype(dtype)
    if resize is not None and resize not in RESIZES:
        raise ValueError(f"resize={resize!r}: expected one of {', '.join(RESIZES)}")
    extractor = _extractor(detector, device, dtype, resize, max_image_pixels)
    reader = ImageReader(extractor, allow_network=allow_network)
    batch = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if spec.model_class is None:
        if model is not None:
            raise ValueError(f"task {task!r} uses only the detector: pass detector=, not model=")
        return spec.pipeline(reader, batch_size=batch, **options)
    lxmert_model = _model(spec, model, device, dtype)
    tok = _tokenizer(tokenizer, model)
    return spec.pipeline(lxmert_model, tok, reader, batch_size=batch, **{**dict(spec.options), **options})


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if str(dtype) not in names:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(names)} or a torch.dtype")
    return names[str(dtype)]


def _device(device: torch.device | str | None, model, detector) -> torch.device:
    """The device asked for; else that of a model or extractor object passed in; else CUDA when available."""
    if device is None:
        if isinstance(model, torch.nn.Module):
            return _parameter_device(model)
        if isinstance(detector, RegionFeatureExtractor):
            return detector.device
    return resolve_device(device)


def _parameter_device(module: torch.nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def _extractor(
    detector, device: torch.device, dtype: torch.dtype | None, resize: str | None, max_image_pixels
) -> RegionFeatureExtractor:
    if max_image_pixels is not _UNSET and max_image_pixels is not None:
        if isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or max_image_pixels < 1:
            raise ValueError(f"max_image_pixels={max_image_pixels!r}: expected None (no limit) or an integer >= 1")
    if isinstance(detector, RegionFeatureExtractor):
        # Moved like a model passed in: the chain runs on one device.
        detector.detector.to(device)
        if dtype is not None:
            detector.detector.set_compute_dtype(dtype)
        if resize is not None:
            detector.resize = resize
        if max_image_pixels is not _UNSET:
            detector.max_image_pixels = max_image_pixels
        return detector
    source = DEFAULT_DETECTOR if detector is None else detector
    if resize is None:
        resize = "fast" if device.type == "cuda" else "exact"
    limit = {} if max_image_pixels is _UNSET else {"max_image_pixels": max_image_pixels}
    return RegionFeatureExtractor.from_pretrained(source, device=device, dtype=dtype, resize=resize, **limit)


def _model(spec: Task, model, device: torch.device, dtype: torch.dtype | None) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        if not isinstance(model, spec.model_class):
            raise TypeError(f"this task needs a {spec.model_class.__name__}, got {type(model).__name__}")
        return model.to(device=device, dtype=dtype).eval()
    source = spec.default_model if model is None else model
    return spec.model_class.from_pretrained(source, device=device, dtype=dtype)


def _tokenizer(tokenizer, model) -> LxmertTokenizerFast:
    if isinstance(tokenizer, LxmertTokenizerFast):
        return tokenizer
    if tokenizer is not None:
        return LxmertTokenizerFast.from_pretrained(tokenizer)
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        folder = Path(model)
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
            return LxmertTokenizerFast.from_pretrained(folder)
    # The public LXMERT checkpoints all use bert-base-uncased's vocabulary, which ships with lxmert.
    return LxmertTokenizerFast()
