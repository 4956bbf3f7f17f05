"""Checkpoint tensor names -> the detector's state dict, checked in one pass.

Names are mapped by a `KeyMap` per format (renames and ignored names, no `if` chains), then checked
against the state dict of `VGDetector(config)` (built on the meta device): missing, unexpected and
mis-shaped tensors are reported together, by name and shape. Our module names are detectron2's, so no
table renames much. The port's stored cell anchors are checked against the config's and dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model.config import DetectorConfig
from ..model.detector import VGDetector
from ..model.rpn import cell_anchors
from .errors import CheckpointError
from .safe_pickle import read_detectron2_pkl

_CELL_ANCHORS = re.compile(r"^proposal_generator\.anchor_generator\.cell_anchors\.(\d+)$")
# How far stored anchors may be from the computed ones: float32 rounding of values of a few hundred.
_ANCHOR_ATOL = 1e-3


@dataclass(frozen=True)
class KeyMap:
    """How a checkpoint format's tensor names become ours: regex renames (applied in order, each to
    the whole name) and names to ignore (regexes, matched against the checkpoint's name)."""

    renames: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = ()

    def apply(self, names: Iterable[str]) -> tuple[dict[str, str], list[str]]:
        """-> ({our name: checkpoint name}, [ignored checkpoint names])."""
        mapped, ignored = {}, []
        for name in names:
            if any(re.search(pattern, name) for pattern in self.ignored):
                ignored.append(name)
                continue
            ours = name
            for pattern, replacement in self.renames:
                ours = re.sub(pattern, replacement, ours)
            if ours in mapped:
                raise CheckpointError(f"checkpoint names {mapped[ours]} and {name} both map to {ours}")
            mapped[ours] = name
        return mapped, ignored


# detectron2 model files may carry GeneralizedRCNN's pixel_mean / pixel_std buffers; they are config
# values (DetectorConfig.pixel_mean / pixel_std, used by preprocessing), not weights.
DETECTRON2_KEYS = KeyMap(ignored=(r"^pixel_(mean|std)$",))

# The transformers port: legacy gamma / beta norm names (its own loader renames them too) and the
# counters of its nn.BatchNorm2d norms. Its stored cell anchors are checked (`check_cell_anchors`).
HF_PORT_KEYS = KeyMap(
    renames=((r"(^|\.)gamma$", r"\1weight"), (r"(^|\.)beta$", r"\1bias")),
    ignored=(r"(^|\.)num_batches_tracked$",),
)

# Ours (save_pretrained): exactly the detector's state dict.
SAFETENSORS_KEYS = KeyMap()

KEY_MAPS = {"safetensors": SAFETENSORS_KEYS, "detectron2": DETECTRON2_KEYS, "hf-port": HF_PORT_KEYS}

# A FrozenBN without statistics in the checkpoint normalizes with mean 0 and variance 1.
_DEFAULT_NORM_STATS = {".norm.running_mean": 0.0, ".norm.running_var": 1.0}


def map_state_dict(
    tensors: Mapping[str, np.ndarray | torch.Tensor], model: nn.Module, key_map: KeyMap, *, source: str
) -> dict[str, torch.Tensor]:
    """Rename `tensors` into `model`'s state-dict names, as the model's dtypes; check every name and
    shape. Raises one CheckpointError listing all missing, unexpected and mis-shaped tensors."""
    expected = model.state_dict()
    mapped, _ = key_map.apply(tensors)
    state, problems = {}, []
    for ours, target in expected.items():
        name = mapped.pop(ours, None)
        if name is None:
            default = next((v for suffix, v in _DEFAULT_NORM_STATS.items() if ours.endswith(suffix)), None)
            if default is not None:
                state[ours] = torch.full(tuple(target.shape), default, dtype=target.dtype)
            else:
                problems.append(f"missing tensor {ours} {tuple(target.shape)}")
            continue
        value = tensors[name]
        value = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        if tuple(value.shape) != tuple(target.shape):
            shown = name if name == ours else f"{name} (as {ours})"
            problems.append(f"tensor {shown} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}")
            continue
        state[ours] = value.to(dtype=target.dtype)
    for name in mapped.values():
        problems.append(f"unexpected tensor {name} {tuple(np.shape(tensors[name]))}")
    if problems:
        raise CheckpointError(_report(source, problems))
    return state


def _report(source: str, problems: list[str], limit: int = 10) -> str:
    # Another architecture (depth 50 weights for a depth 101 config) gives hundreds of lines: count
    # them and show the first of each kind, which is enough to see what differs.
    kinds: dict[str, list[str]] = {"mis-shaped": [], "missing": [], "unexpected": []}
    for problem in problems:
        kinds["mis-shaped" if problem.startswith("tensor ") else problem.split(" ", 1)[0]].append(problem)
    counts = ", ".join(f"{len(group)} {kind}" for kind, group in kinds.items() if group)
    lines = [f"{source} does not fit the model ({counts} tensors):"]
    for group in kinds.values():
        lines.extend(group[:limit])
        if len(group) > limit:
            lines.append(f"... and {len(group) - limit} more like that")
    return "\n  ".join(lines)


def load_detectron2_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a detectron2 / py-bottom-up-attention `.pkl` into `model` (names as in detectron2)."""
    arrays = read_detectron2_pkl(path)
    state = map_state_dict(arrays, model, DETECTRON2_KEYS, source=str(path))
    model.load_state_dict(state, strict=True)


def check_cell_anchors(tensors: dict[str, Any], config: DetectorConfig, *, source: str) -> None:
    """Remove the stored cell anchors (the port's checkpoint holds them) from `tensors`, after checking
    that they are the anchors `config` computes. The port uses its stored anchors, so a checkpoint
    whose anchors differ needs another config (ANCHOR_GENERATOR sizes / aspect ratios)."""
    expected = cell_anchors(config.anchor_sizes, config.anchor_aspect_ratios).double()
    for name in [name for name in tensors if _CELL_ANCHORS.match(name)]:
        stored = torch.as_tensor(tensors.pop(name)).double()
        if _CELL_ANCHORS.match(name).group(1) != "0":
            raise CheckpointError(f"{source}: {name}: a C4 model has one feature level, so one set of anchors")
        if stored.shape != expected.shape:
            raise CheckpointError(
                f"{source}: {name} holds {tuple(stored.shape)} cell anchors; the config gives {tuple(expected.shape)} "
                f"(anchor sizes {config.anchor_sizes} x aspect ratios {config.anchor_aspect_ratios})"
            )
        difference = (stored - expected).abs().max().item()
        if not difference <= _ANCHOR_ATOL:
            raise CheckpointError(
                f"{source}: {name} holds other cell anchors than the config computes (largest difference "
                f"{difference:.4g} pixels; anchor sizes {config.anchor_sizes}, aspect ratios "
                f"{config.anchor_aspect_ratios}, offset {config.anchor_offset}). The port uses the stored "
                "ones, so this config does not describe the checkpoint: fix its anchor generator settings"
            )


def fit_state_dict(
    tensors: Mapping[str, np.ndarray | torch.Tensor], config: DetectorConfig, key_map: KeyMap, *, source: str
) -> dict[str, torch.Tensor]:
    """`tensors` (a format's names, see `key_map`) as the state dict of `VGDetector(config)`, float32
    on the CPU; stored cell anchors are checked and dropped. One CheckpointError lists every missing,
    unexpected and mis-shaped tensor. The model is built on the meta device: no memory, no init."""
    tensors = dict(tensors)
    check_cell_anchors(tensors, config, source=source)
    with torch.device("meta"):
        model = VGDetector(config)
    return map_state_dict(tensors, model, key_map, source=source)
