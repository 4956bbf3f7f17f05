"""Weight files of every format the detector comes in, read without running code from them.

- ours: `config.yaml` (detectron2 keys, `DetectorConfig.to_yaml`) + `model.safetensors`, written by
  `save_pretrained` (safetensors hold no code);
- detectron2 / py-bottom-up-attention: a YAML config + `model_final.pkl` (a pickle of numpy arrays, read
  by the restricted unpickler of `safe_pickle`) or detectron2's own `.pth` (a `torch.save` of
  {"model": state_dict, ...}, read with `torch.load(weights_only=True)`);
- the transformers FRCNN port (`unc-nlp/frcnn-vg-finetuned`): `config.yaml` in its own layout + a
  `pytorch_model.bin` that also holds the cell anchors and a `num_batches_tracked` per norm.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError
from .names import SAFETENSORS_NAME
from .safe_pickle import pickled_arrays, read_pickle

# Weight files looked for in a folder or a hub repository, in this order; then a folder's only file
# with one of WEIGHTS_SUFFIXES (in that order).
WEIGHTS_NAMES = (SAFETENSORS_NAME, "pytorch_model.bin", "model_final.pkl", "model_final.pth")
WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pkl", ".pth", ".pt")

# What save_pretrained writes into the safetensors metadata (besides "format": "pt").
FORMAT_NAME = "extract.VGDetector"
FORMAT_VERSION = 1

# The first pickle of a torch.save file in the legacy (pre-zip) format.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# Names only the port's checkpoints have (stored cell anchors are checked whatever the format).
_PORT_ONLY = re.compile(r"(^|\.)(num_batches_tracked|gamma|beta)$")


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray | torch.Tensor]:
    """Every tensor of a weights file, never running code from it: safetensors (by suffix), a
    torch.save file (zip or legacy; `torch.load(weights_only=True)`) or a detectron2 pickle (the
    restricted unpickler), the last two told apart by content. {"model": {...}} wrappers are opened."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    if not head:
        raise CheckpointError(f"checkpoint file {path} is empty")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if head == b"PK\x03\x04" or zipfile.is_zipfile(path):
        return _read_torch(path)
    first = read_pickle(path)
    if isinstance(first, int) and first == _TORCH_LEGACY_MAGIC:
        return _read_torch(path)
    return pickled_arrays(first, path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except Exception as e:  # safetensors has its own error type for every malformed file
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    version = metadata.get("checkpoint_version", "")
    if metadata.get("checkpoint") == FORMAT_NAME and (not version.isdigit() or int(version) > FORMAT_VERSION):
        raise CheckpointError(
            f"{path} was written in {FORMAT_NAME} checkpoint format version {version!r}; this version of "
            f"extract reads version {FORMAT_VERSION}: upgrade it"
        )
    return tensors


# lxmert.checkpoints reads LXMERT's torch.save files the same way (the packages may not import each other).
def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refusing to load it: besides tensors it holds Python objects whose unpickling could "
            f"run code ({_weights_only_reason(e)}). Only load files you trust by other means, and convert "
            "them to safetensors."
        ) from None
    except Exception as e:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]  # detectron2's Checkpointer: {"model": ..., "optimizer": ..., "iteration": ...}
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors")
    not_tensors = [name for name, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors or not all(isinstance(name, str) for name in loaded):
        raise CheckpointError(
            f"{path}: entries {not_tensors[:5]} are not tensors "
            "(expected {name: tensor} or {'model': {name: tensor}})"
        )
    return dict(loaded)


def _weights_only_reason(error: Exception) -> str:
    # torch's message wraps one useful line ("Unsupported global: ...") in advice about weights_only=False.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running")
    useful = [line for line in lines if not line.startswith(boilerplate) and "weights_only" not in line]
    return " ".join(useful) or type(error).__name__


def weights_format(tensors: Mapping[str, Any], path: str | os.PathLike) -> str:
    """The format of a weights file's tensors: "hf-port" when they carry the port's norm counters or
    gamma / beta names, else "safetensors" (ours) for a .safetensors file and "detectron2" otherwise."""
    if any(_PORT_ONLY.search(name) for name in tensors):
        return "hf-port"
    return "safetensors" if Path(path).suffix == ".safetensors" else "detectron2"
