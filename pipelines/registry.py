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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import lxmert.hub  # hub_reachable is looked up when called (tests stand in for the network)
from extract.checkpoints import in_hub_cache as detector_in_hub_cache
from extract.devices import resolve_device, torch_dtype
from extract.extractor import RegionFeatureExtractor
from extract.images import check_max_image_pixels
from extract.options import DEFAULT_DETECTOR, RESIZES
from lxmert import LxmertForPreTraining, LxmertForQuestionAnswering, LxmertTokenizerFast
from lxmert.hub import in_hub_cache as model_in_hub_cache

from .base import DEFAULT_BATCH_SIZE, DEFAULT_DOWNLOAD_TIMEOUT, ImageReader, check_feature_widths
from .features import FeatureExtractionPipeline
from .matching import ImageTextMatchingPipeline
from .vqa import VisualQuestionAnsweringPipeline

_UNSET = object()  # max_image_pixels not given: the extractor's own (Pillow's limit for a new one)


@dataclass(frozen=True)
class Task:
    pipeline: type
    model_class: type | None
    default_model: str | None
    options: tuple[tuple[str, Any], ...] = ()
    num_answers: int | None = None  # the answer head of the task's public checkpoints


TASKS = {
    "vqa": Task(
        VisualQuestionAnsweringPipeline,
        LxmertForQuestionAnswering,
        "unc-nlp/lxmert-vqa-uncased",
        (("score_function", "sigmoid"),),
        num_answers=3129,
    ),
    "gqa": Task(
        VisualQuestionAnsweringPipeline,
        LxmertForQuestionAnswering,
        "unc-nlp/lxmert-gqa-uncased",
        (("score_function", "softmax"),),
        num_answers=1842,
    ),
    "feature-extraction": Task(FeatureExtractionPipeline, None, None),
    "image-text-matching": Task(ImageTextMatchingPipeline, LxmertForPreTraining, "unc-nlp/lxmert-base-uncased"),
}
ALIASES = {"visual-question-answering": "vqa"}


@dataclass(frozen=True)
class HubCheckpoint:
    """A checkpoint of a pipeline that comes from the Hugging Face hub."""

    argument: str  # the pipeline() argument it is the value (or default) of: "model" or "detector"
    repo_id: str
    cached: bool  # the local cache holds every file loading reads


ROLES = {"model": "LXMERT model", "detector": "detector"}  # HubCheckpoint.argument -> words


class HubUnreachableError(OSError):
    """The Hugging Face hub does not answer and the local cache lacks checkpoints the pipeline needs.

    ``missing``: those checkpoints (HubCheckpoint); ``endpoint``: the hub address that was tried.
    """

    def __init__(self, missing: list[HubCheckpoint], endpoint: str):
        self.missing, self.endpoint = list(missing), endpoint
        named = " and ".join(f"the {ROLES[c.argument]} {c.repo_id} ({c.argument}=)" for c in self.missing)
        downloads = "; ".join(f"huggingface-cli download {c.repo_id}" for c in self.missing)
        super().__init__(
            f"the Hugging Face hub ({endpoint}) is unreachable (offline, or HF_HUB_OFFLINE is set) and the local "
            f"cache lacks {named}; download {'them' if len(self.missing) > 1 else 'it'} once with network access "
            f"({downloads}), or pass local folders"
        )

    def __reduce__(self):
        return (type(self), (self.missing, self.endpoint))


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
    max_download_bytes: int | None = None,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    local_files_only: bool = False,
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
    max_download_bytes: the byte cap of a URL download (default: 4 bytes per pixel of max_image_pixels,
    about 358 MB with Pillow's limit; none when max_image_pixels is None). download_timeout: seconds
    for a whole URL download (default 60), however slowly the server sends.
    local_files_only: hub ids come from the local huggingface_hub cache only, never the network. Without it,
    when a checkpoint is a hub id the hub is probed once (lxmert.hub.hub_reachable, 5 s at most): unreachable,
    the cache serves what it holds (no retries by the hub client, which waits minutes per file) and what it
    lacks raises HubUnreachableError naming every missing checkpoint.
    options: task options, e.g. score_function="softmax" for "vqa".
    """
    name, spec = _task(task)
    device = _device(device, model, detector)
    dtype = _dtype(dtype)
    if resize is not None and resize not in RESIZES:
        raise ValueError(f"resize={resize!r}: expected one of {', '.join(RESIZES)}")
    # After the cheap checks: the probe may take seconds.
    if not local_files_only:
        checkpoints = hub_checkpoints(task, model, detector)
        if checkpoints and not lxmert.hub.hub_reachable():
            missing = [checkpoint for checkpoint in checkpoints if not checkpoint.cached]
            if missing:
                raise HubUnreachableError(missing, lxmert.hub.hub_endpoint())
            local_files_only = True
    hub = {"local_files_only": True} if local_files_only else {}
    extractor = _extractor(detector, device, dtype, resize, max_image_pixels, hub)
    reader = ImageReader(
        extractor,
        allow_network=allow_network,
        max_download_bytes=max_download_bytes,
        download_timeout=download_timeout,
    )
    batch = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if spec.model_class is None:
        if model is not None:
            raise ValueError(f"task {task!r} uses only the detector: pass detector=, not model=")
        return spec.pipeline(reader, batch_size=batch, **options)
    lxmert_model = _model(spec, model, device, dtype, hub)
    check_feature_widths(
        extractor.config,
        lxmert_model.config,
        detector_name=_described("the detector", DEFAULT_DETECTOR if detector is None else detector),
        model_name=_described("the LXMERT model", spec.default_model if model is None else model),
    )
    _warn_on_another_tasks_head(name, spec, lxmert_model.config.num_qa_labels)
    tok = _tokenizer(tokenizer, model)
    return spec.pipeline(lxmert_model, tok, reader, batch_size=batch, **{**dict(spec.options), **options})


def hub_checkpoints(
    task: str,
    model: str | os.PathLike | torch.nn.Module | None = None,
    detector: str | os.PathLike | RegionFeatureExtractor | None = None,
) -> list[HubCheckpoint]:
    """The checkpoints `pipeline(task, model, detector)` would take from the hub, and whether each is in
    the local cache already (looked up without the network); local folders and objects are left out."""
    name, spec = _task(task)
    found = []
    if spec.model_class is not None and not isinstance(model, torch.nn.Module):
        source = spec.default_model if model is None else model
        cached = model_in_hub_cache(source)
        if cached is not None:
            found.append(HubCheckpoint("model", os.fspath(source), cached))
    if not isinstance(detector, RegionFeatureExtractor):
        source = DEFAULT_DETECTOR if detector is None else detector
        cached = detector_in_hub_cache(source)
        if cached is not None:
            found.append(HubCheckpoint("detector", os.fspath(source), cached))
    return found


def _task(task: str) -> tuple[str, Task]:
    name = ALIASES.get(task, task)
    if name not in TASKS:
        known = sorted([*TASKS, *ALIASES])
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(known)}")
    return name, TASKS[name]


def _described(role: str, source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"{role} {os.fspath(source)!r}"
    return f"{role} passed in ({type(source).__name__})"


def _warn_on_another_tasks_head(name: str, spec: Task, num_answers: int) -> None:
    """Warn when the answer head has the size of another task's (a VQA checkpoint under "gqa")."""
    if spec.num_answers is None or num_answers == spec.num_answers:
        return
    for other, other_spec in TASKS.items():
        if other != name and other_spec.num_answers == num_answers:
            warnings.warn(
                f"the {name!r} task expects {name.upper()}'s answer head ({spec.num_answers} answers, as in "
                f"{spec.default_model}) but this LXMERT checkpoint has {num_answers} answers, the size of "
                f"{other.upper()}'s head ({other_spec.default_model}): its answers and scores are probably "
                f"{other.upper()}'s; use the {other!r} task for it, or a {name.upper()} checkpoint",
                stacklevel=3,
            )
            return


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return torch_dtype(str(dtype))
    except ValueError as error:
        raise ValueError(f"{error} or a torch.dtype") from None


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
    detector, device: torch.device, dtype: torch.dtype | None, resize: str | None, max_image_pixels, hub: dict
) -> RegionFeatureExtractor:
    if max_image_pixels is not _UNSET:
        check_max_image_pixels(max_image_pixels)
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
    return RegionFeatureExtractor.from_pretrained(source, device=device, dtype=dtype, resize=resize, **limit, **hub)


def _model(spec: Task, model, device: torch.device, dtype: torch.dtype | None, hub: dict) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        if not isinstance(model, spec.model_class):
            raise TypeError(f"this task needs a {spec.model_class.__name__}, got {type(model).__name__}")
        return model.to(device=device, dtype=dtype).eval()
    source = spec.default_model if model is None else model
    return spec.model_class.from_pretrained(source, device=device, dtype=dtype, **hub)


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
