"""Reading detector weights: detectron2 / py-bottom-up-attention `.pkl` files; key remapping tables.

A `.pkl` is a pickle, and unpickling can run code, so it is read by `RestrictedUnpickler`, which
rebuilds numpy arrays, dtypes and plain containers and refuses every other global. Names are mapped
to the detector's state dict by a `KeyMap` (renames and ignored names, no `if` chains), then checked
in one pass: missing, unexpected and mis-shaped tensors are reported together, by name and shape.

Our module names are detectron2's, so `DETECTRON2_KEYS` renames nothing. Other formats (the
transformers demo port's pytorch_model.bin, our safetensors) get their own KeyMap.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

try:  # numpy >= 2 keeps the implementation in numpy._core; numpy.core is a deprecated alias
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or unsafe, or its tensors do not fit the model (names say which)."""


# ---------------------------------------------------------------------------------------------------
# Restricted unpickling


def _safe_dtype(spec, align=False, copy=True):
    # Plain numbers only: no objects, no structured or void types (their pickled state could flag
    # object fields). Always a copy, so the stream's BUILD state cannot alter numpy's shared dtypes.
    dtype = np.dtype(spec, align, True) if isinstance(spec, str) else None
    if dtype is None or dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise CheckpointError(
            f"refusing a numpy dtype {spec!r}: checkpoints hold plain numbers (no Python objects or records)"
        )
    return dtype


class _NdarrayToken:
    """Stands for numpy.ndarray in a pickle: usable only as _reconstruct's array type, so the stream
    cannot call the ndarray constructor itself (which builds arrays over raw buffers)."""


def _safe_reconstruct(subtype, shape, typecode):
    if subtype is not _NdarrayToken:
        raise CheckpointError(f"refusing to rebuild an array of type {subtype!r}: only numpy.ndarray")
    return _multiarray._reconstruct(np.ndarray, shape, typecode)


def _safe_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise CheckpointError(f"refusing a numpy scalar of dtype {dtype!r}")
    return _multiarray.scalar(dtype, *args)


def _safe_frombuffer(buffer, dtype, shape, order):
    # Pickle protocol 5 stores array data as a buffer rebuilt by numpy's _frombuffer.
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise CheckpointError(f"refusing an array buffer of dtype {dtype!r}")
    return _numeric._frombuffer(buffer, dtype, shape, order)


def _latin1_encode(text, encoding="utf-8", *args):
    # Python 3 pickles (protocol < 3) store bytes as _codecs.encode(str, "latin1"); nothing else is needed.
    if encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


# (module, name) as written in the pickle -> what it is allowed to build.
_SAFE_GLOBALS = {
    **{
        (module, name): obj
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name, obj in (("_reconstruct", _safe_reconstruct), ("scalar", _safe_scalar))
    },
    **{(module, "_frombuffer"): _safe_frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): _safe_dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): _latin1_encode,
}
# Python 2 module names.
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that can only build numpy arrays, dtypes, numpy scalars and plain containers."""

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        module = _MODULE_ALIASES.get(module, module)
        obj = _SAFE_GLOBALS.get((module, name))
        if obj is None:
            raise CheckpointError(
                f"{self.source}: refusing to load global {module}.{name}: a detectron2 checkpoint holds only "
                "numpy arrays, and unpickling this object could run code. Only load files you trust by "
                "other means, and convert them to safetensors."
            )
        return obj

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.source}: refusing a persistent id {pid!r} (a torch.save file, not a .pkl)")


def restricted_load(data: bytes, source: str = "<pickle>"):
    """Unpickle `data` with RestrictedUnpickler; CheckpointError if it is not an allowed pickle."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except CheckpointError as e:
        if str(e).startswith(source):
            raise
        raise CheckpointError(f"{source}: {e}") from None
    except Exception as e:
        raise CheckpointError(f"{source} is not a readable pickle ({type(e).__name__}: {e})") from None


def read_detectron2_pkl(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a detectron2 / py-bottom-up-attention `.pkl`: {"model": {name: array}, ...} or a
    flat {name: array}. Never runs code from the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    obj = restricted_load(data, source=str(path))
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of arrays")
    arrays = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a numpy array "
                '(expected {"model": {name: array}} or {name: array})'
            )
        if value.dtype.kind not in "fiub":
            raise CheckpointError(f"{path}: {name} has dtype {value.dtype}, not a numeric array")
        arrays[name] = value
    return arrays


# ---------------------------------------------------------------------------------------------------
# Name mapping and checking


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
                state[ours] = torch.full_like(target, default)
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
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))
    return state


def load_detectron2_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a detectron2 / py-bottom-up-attention `.pkl` into `model` (names as in detectron2)."""
    arrays = read_detectron2_pkl(path)
    state = map_state_dict(arrays, model, DETECTRON2_KEYS, source=str(path))
    model.load_state_dict(state, strict=True)
