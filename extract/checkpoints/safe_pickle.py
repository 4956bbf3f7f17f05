"""Reading detectron2 / py-bottom-up-attention `.pkl` files without running code from them.

A `.pkl` is read by `RestrictedUnpickler`, which rebuilds numpy arrays, dtypes and plain containers and
refuses every other global (CheckpointError naming it), so a hostile file cannot run code.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import CheckpointError

try:  # numpy >= 2 keeps the implementation in numpy._core; numpy.core is a deprecated alias
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


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
    return pickled_arrays(read_pickle(path), path)


def read_pickle(path: Path):
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    return restricted_load(data, source=str(path))


def pickled_arrays(obj, path: Path) -> dict[str, np.ndarray]:
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
