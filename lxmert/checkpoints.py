"""Reading and writing LXMERT weights: safetensors, PyTorch .bin (weights only), TF .h5; key checks;
building a model from them (the body of `from_pretrained`).

Checkpoint names are those of the transformers LXMERT classes. A checkpoint of one class loads into
another: the backbone prefix `lxmert.` is added or removed, and heads the target class does not have
are left out (logged). Anything else that does not fit is reported by name and shape. The model
classes come from the caller (`cls`): this module builds models without importing lxmert.modeling.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lxmert.config import LxmertConfig, fill_answer_labels
from lxmert.errors import CheckpointError, clip_name, name_list
from lxmert.hub import PYTORCH_NAME, SAFETENSORS_NAME, resolve_files
from lxmert.tf_checkpoint import HEAD_MODULES, read_tf_checkpoint

logger = logging.getLogger("lxmert")

# A checkpoint may carry heads the target class lacks (a pretraining checkpoint loaded into
# LxmertForQuestionAnswering, an NLVR2 one's `logit_fc` into any other class): those tensors are not
# used, not an error.
HEAD_PREFIXES = tuple(f"{name}." for name in (*HEAD_MODULES, "logit_fc"))

# Old BERT-era checkpoints name LayerNorm parameters gamma / beta.
_RENAMES = [(re.compile(r"\.gamma$"), ".weight"), (re.compile(r"\.beta$"), ".bias")]
# Shape and key reports in error messages list at most this many lines.
_LISTED_LINES = 20
# The dtype names from_pretrained takes (besides "auto" and torch dtypes).
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class Checkpoint:
    """Tensors read from one file, and where each came from (for error messages)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self, name: str) -> str:
        """The checkpoint's own name for a tensor, with the file dataset it came from when that differs."""
        source = self.sources.get(name)
        return name if source is None or source == name else f"{name} (from {source})"


def _lines(lines: list[str]) -> str:
    kept = lines[:_LISTED_LINES]
    more = [f"  ... and {len(lines) - _LISTED_LINES:,} more"] if len(lines) > _LISTED_LINES else []
    return "\n".join(kept + more)


# ---------------------------------------------------------------------------------------------------
# Reading


def read_checkpoint(
    path: str | os.PathLike, *, expected_shapes: dict[str, tuple[int, ...]] | None = None
) -> Checkpoint:
    """Read a .safetensors, a PyTorch .bin/.pt/.pth (weights_only) or a TF .h5 file; never runs code.

    expected_shapes (TF .h5 only, see read_tf_checkpoint): each dataset's shape is checked before it is read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty")
    if path.suffix == ".h5":
        tf = read_tf_checkpoint(path, expected_shapes)
        return Checkpoint(path, tf.state_dict, tf.sources)
    if path.suffix == ".safetensors":
        state_dict = _read_safetensors(path)
    else:
        state_dict = _read_torch(path)
    return Checkpoint(path, state_dict)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise CheckpointError(f"{path} is not a readable safetensors file: {str(e)[:300]}") from e


# extract.checkpoints.formats reads detector torch.save files the same way (the packages may not import each
# other).
def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors; it was not loaded, because unpickling them "
            f"could run code ({str(e).splitlines()[-1] if str(e) else e})"
        ) from e
    except Exception as e:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {type(e).__name__}: {str(e)[:300]}") from e
    # Some training scripts wrap the weights: {"state_dict": {...}} or {"model": {...}}.
    if isinstance(loaded, dict) and len(loaded) == 1 and next(iter(loaded)) in ("state_dict", "model"):
        loaded = next(iter(loaded.values()))
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors")
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path} holds entries that are not tensors: {name_list([str(k) for k in not_tensors])}")
    return dict(loaded)


# ---------------------------------------------------------------------------------------------------
# Fitting a checkpoint to a model


@dataclass
class KeyReport:
    """How a checkpoint's tensors line up with a model's parameters (after renames and prefixes)."""

    state_dict: dict[str, torch.Tensor]  # model name -> tensor
    origin: dict[str, str]  # model name -> the checkpoint's name
    missing: list[str]
    unexpected: list[str]  # checkpoint names
    mismatched: list[str]  # model names
    unused_heads: list[str]  # checkpoint names


def match_keys(model: nn.Module, checkpoint: Checkpoint) -> KeyReport:
    """Rename the checkpoint's tensors to the model's names and sort out what fits."""
    expected = {name: p.shape for name, p in model.state_dict().items() if name not in model.tied_weights}
    has_backbone_attr = hasattr(model, model.base_model_prefix)
    prefix = model.base_model_prefix + "."

    ckpt_has_prefix = any(name.startswith(prefix) for name in checkpoint.state_dict)

    state_dict: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unused_heads: list[str] = []
    unexpected: list[str] = []
    for name, tensor in checkpoint.state_dict.items():
        target = name
        for pattern, replacement in _RENAMES:
            target = pattern.sub(replacement, target)
        if has_backbone_attr and not ckpt_has_prefix and not target.startswith(HEAD_PREFIXES):
            target = prefix + target  # backbone-only checkpoint into a model with heads
        elif not has_backbone_attr and ckpt_has_prefix:
            if not target.startswith(prefix):
                unused_heads.append(name)  # heads of a bigger model
                continue
            target = target[len(prefix) :]
        if target in expected:
            state_dict[target] = tensor
            origin[target] = name
        elif target in model.tied_weights:
            continue  # e.g. the MLM decoder, tied to the word embeddings
        elif target.startswith(HEAD_PREFIXES):
            unused_heads.append(name)
        else:
            unexpected.append(name)
    mismatched = [name for name, tensor in state_dict.items() if tuple(tensor.shape) != tuple(expected[name])]
    missing = [name for name in expected if name not in state_dict]
    return KeyReport(state_dict, origin, missing, unexpected, mismatched, unused_heads)


def check_report(model: nn.Module, checkpoint: Checkpoint, report: KeyReport, *, strict: bool) -> None:
    """Raise CheckpointError for what cannot be loaded; warn for what strict=False lets through."""
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    original = checkpoint.state_dict
    problems = []
    if report.mismatched:
        problems.append(
            "tensors of the wrong shape:\n"
            + _lines(
                [
                    f"  {clip_name(checkpoint.describe(report.origin[n]))}: checkpoint "
                    f"{tuple(report.state_dict[n].shape)}, model {expected[n]}"
                    for n in report.mismatched
                ]
            )
        )
    if report.missing and strict:
        problems.append(
            "missing tensors:\n"
            + _lines([f"  {n} {expected[n]}" for n in report.missing])
            + "\n  (pass strict=False to initialize them randomly, e.g. to fine-tune a new head)"
        )
    if report.unexpected and strict:
        problems.append(
            "unexpected tensors (not part of an LXMERT model):\n"
            + _lines([f"  {clip_name(checkpoint.describe(n))} {tuple(original[n].shape)}" for n in report.unexpected])
        )
    if problems:
        raise CheckpointError(f"{checkpoint.path} does not fit {type(model).__name__}: " + "\n".join(problems))
    if report.missing:
        warnings.warn(
            f"{type(model).__name__}: {len(report.missing)} tensors are not in {checkpoint.path} and were "
            f"initialized randomly: {', '.join(report.missing[:8])}{' ...' if len(report.missing) > 8 else ''}",
            stacklevel=4,
        )
    if report.unexpected:
        warnings.warn(
            f"{checkpoint.path}: ignored tensors that are not part of an LXMERT model: {name_list(report.unexpected)}",
            stacklevel=4,
        )
    if report.unused_heads:
        logger.info(
            "%s: %d tensors of heads that %s does not have were not used",
            checkpoint.path,
            len(report.unused_heads),
            type(model).__name__,
        )


_LAYER_NAME = re.compile(r"(?:^|\.)encoder\.(layer|x_layers|r_layers)\.(\d+)\.")
_LAYER_COUNTS = {"layer": "l_layers", "x_layers": "x_layers", "r_layers": "r_layers"}


def check_sizes(config: LxmertConfig, checkpoint: Checkpoint, *, strict: bool) -> None:
    """Refuse a config whose width or (with strict) layer counts the checkpoint does not have, before a model
    is built: a hostile or mistaken config.json (thousands of layers, a huge width) would otherwise cost
    minutes and gigabytes of module construction before the tensor check fails the same way."""
    problems = []
    for name, tensor in checkpoint.state_dict.items():
        if name.endswith("embeddings.word_embeddings.weight") and tensor.ndim == 2:
            if tensor.shape[1] != config.hidden_size:
                problems.append(f"hidden_size {config.hidden_size}, but its word embeddings are {tensor.shape[1]} wide")
            break
    if strict:
        found: dict[str, int] = {}
        for name in checkpoint.state_dict:
            if match := _LAYER_NAME.search(name):
                found[match[1]] = max(found.get(match[1], 0), int(match[2]) + 1)
        for group, count in found.items():
            wanted = getattr(config, _LAYER_COUNTS[group])
            if wanted != count:
                problems.append(f"{_LAYER_COUNTS[group]}={wanted}, but it holds {count} such layers")
    if problems:
        raise CheckpointError(
            f"{checkpoint.path} does not fit its config: the config says {'; '.join(problems)}; use the config.json "
            "that came with the checkpoint (or pass strict=False to initialize missing layers randomly)"
        )


def build_from_checkpoint(
    cls: type[nn.Module], config: LxmertConfig, checkpoint: Checkpoint, *, strict: bool, dtype: torch.dtype | None
) -> nn.Module:
    """Construct `cls(config)` holding the checkpoint's tensors.

    When every tensor is present the model is built on the meta device and takes the checkpoint's
    tensors as they are (no random initialization, no second copy in memory).
    """
    check_sizes(config, checkpoint, strict=strict)
    with torch.device("meta"):
        skeleton = cls(config)
    report = match_keys(skeleton, checkpoint)
    check_report(skeleton, checkpoint, report, strict=strict)
    if report.missing:
        model = cls(config)  # initialized on the CPU; the checkpoint overwrites what it has
        model.load_state_dict(report.state_dict, strict=False)
    else:
        model = skeleton
        model.load_state_dict(report.state_dict, strict=False, assign=True)
    model.tie_weights()
    if dtype is None:
        dtype = torch.float32
    return model.to(dtype)  # also packs each attention's projections again (LxmertAttention._apply)


# ---------------------------------------------------------------------------------------------------
# Loading a model (from_pretrained)


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}, 'auto' or a torch.dtype")
    return _DTYPES[name]


def load_model(
    cls: type[nn.Module],
    name_or_path: str | os.PathLike,
    *,
    pretraining_cls: type[nn.Module],
    config: LxmertConfig | None,
    dtype: torch.dtype | str | None,
    device: torch.device | str | None,
    from_tf: bool,
    strict: bool,
    hub_kwargs: dict[str, Any],
    config_overrides: dict[str, Any],
) -> nn.Module:
    """The body of LxmertPreTrainedModel.from_pretrained: a `cls` model (in eval mode) with the weights of
    `name_or_path`. pretraining_cls: the class with every head (LxmertForPreTraining), whose names TF
    checkpoints use."""
    dtype = parse_dtype(dtype)
    files = resolve_files(name_or_path, from_tf=from_tf, hub_kwargs=hub_kwargs)
    if config is None:
        if files.config is None:
            raise OSError(
                f"no config.json next to {files.weights}: put the model's config.json there or pass config=..."
            )
        config = fill_answer_labels(LxmertConfig.from_json_file(files.config, **config_overrides))
    elif config_overrides:
        config = LxmertConfig.from_dict({**config.to_dict(), **config_overrides})
    # A TF file is checked against the config's shapes before its datasets are read: an h5 file of a
    # few hundred KB may declare datasets of gigabytes.
    expected = _tf_shapes(cls, pretraining_cls, config) if files.weights.suffix == ".h5" else None
    checkpoint = read_checkpoint(files.weights, expected_shapes=expected)
    if dtype == "auto":
        floating = [t.dtype for t in checkpoint.state_dict.values() if t.is_floating_point()]
        dtype = floating[0] if floating else torch.float32
    model = build_from_checkpoint(cls, config, checkpoint, strict=strict, dtype=dtype)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _tf_shapes(
    cls: type[nn.Module], pretraining_cls: type[nn.Module], config: LxmertConfig
) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor a TF checkpoint may hold for `config` (those of `cls` and of the
    pretraining heads), under pretraining_cls's names."""
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        for model in (pretraining_cls(config), cls(config)):
            prefix = "" if hasattr(model, model.base_model_prefix) else f"{model.base_model_prefix}."
            shapes.update({prefix + name: tuple(t.shape) for name, t in model.state_dict().items()})
    return shapes


# ---------------------------------------------------------------------------------------------------
# Writing


def save_model(model: nn.Module, directory: str | os.PathLike, *, safe_serialization: bool = True) -> None:
    """Write config.json (with `architectures`) and model.safetensors or pytorch_model.bin."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save into {directory}: it is a file")
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.architectures = [type(model).__name__]
    config.save_pretrained(directory)
    # Copies of the tensors that are rows of a larger one (the packed attention projections): safetensors
    # refuses tensors sharing memory, and torch.save would write the whole shared storage.
    state_dict = {name: _own_tensor(t.detach()) for name, t in model.state_dict().items()}
    if safe_serialization:
        from safetensors.torch import save_file

        # safetensors refuses tensors that share memory: the tied decoder is restored on load.
        for name in model.tied_weights:
            state_dict.pop(name, None)
        save_file(state_dict, directory / SAFETENSORS_NAME, metadata={"format": "pt"})
    else:
        torch.save(state_dict, directory / PYTORCH_NAME)


def _own_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, or a copy of it when it is a view of part of a larger storage."""
    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    return tensor.contiguous() if whole else tensor.clone()
