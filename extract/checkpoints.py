"""Detector weights in every format they come in; the key remapping tables; loading by name; saving.

Formats (`load_pretrained` decides from what is there):
- ours: `config.yaml` (detectron2 keys, `DetectorConfig.to_yaml`) + `model.safetensors`, written by
  `save_pretrained`;
- detectron2 / py-bottom-up-attention: a YAML config + `model_final.pkl` (a pickle of numpy arrays) or
  detectron2's own `.pth` (a `torch.save` of {"model": state_dict, ...});
- the transformers FRCNN port (`unc-nlp/frcnn-vg-finetuned`): `config.yaml` in its own layout
  (read by `DetectorConfig`) + `pytorch_model.bin`, which also holds the cell anchors (checked against
  the config's) and a `num_batches_tracked` per norm (dropped);
- any of these in a Hugging Face hub repository, fetched through huggingface_hub's cache.

Nothing here runs code from a file. A `.pkl` is read by `RestrictedUnpickler`, which rebuilds numpy
arrays, dtypes and plain containers and refuses every other global; `torch.save` files go through
`torch.load(weights_only=True)`; safetensors hold no code. Names are mapped to the detector's state
dict by a `KeyMap` per format (renames and ignored names, no `if` chains), then checked in one pass:
missing, unexpected and mis-shaped tensors are reported together, by name and shape. Our module
names are detectron2's, so no table renames much.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn

from .config import ConfigError, DetectorConfig
from .rpn import cell_anchors

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
    return _arrays(_read_pickle(path), path)


def _read_pickle(path: Path):
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    return restricted_load(data, source=str(path))


def _arrays(obj, path: Path) -> dict[str, np.ndarray]:
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


# ---------------------------------------------------------------------------------------------------
# Weight files of any format

CONFIG_NAME = "config.yaml"
SAFETENSORS_NAME = "model.safetensors"
# Weight files looked for in a folder or a hub repository, in this order; then a folder's only file
# with one of _WEIGHTS_SUFFIXES (in that order).
WEIGHTS_NAMES = (SAFETENSORS_NAME, "pytorch_model.bin", "model_final.pkl", "model_final.pth")
_WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pkl", ".pth", ".pt")

# What save_pretrained writes into the safetensors metadata (besides "format": "pt").
FORMAT_NAME = "extract.VGDetector"
FORMAT_VERSION = 1

# The first pickle of a torch.save file in the legacy (pre-zip) format.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_CELL_ANCHORS = re.compile(r"^proposal_generator\.anchor_generator\.cell_anchors\.(\d+)$")
# Names only the port's checkpoints have (stored cell anchors are checked whatever the format).
_PORT_ONLY = re.compile(r"(^|\.)(num_batches_tracked|gamma|beta)$")
# How far stored anchors may be from the computed ones: float32 rounding of values of a few hundred.
_ANCHOR_ATOL = 1e-3


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
    first = _read_pickle(path)
    if isinstance(first, int) and first == _TORCH_LEGACY_MAGIC:
        return _read_torch(path)
    return _arrays(first, path)


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
    from .detector import VGDetector  # detector.py imports this module

    tensors = dict(tensors)
    check_cell_anchors(tensors, config, source=source)
    with torch.device("meta"):
        model = VGDetector(config)
    return map_state_dict(tensors, model, key_map, source=source)


# ---------------------------------------------------------------------------------------------------
# Loading by name, saving


@dataclass(frozen=True)
class PretrainedCheckpoint:
    """What `read_pretrained` found: the config, the state dict in our names, and where they came from."""

    config: DetectorConfig
    state_dict: dict[str, torch.Tensor]
    format: str  # "safetensors" (ours), "detectron2" or "hf-port"
    weights: Path
    config_source: str  # the YAML read, "given", or why the default config was used


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    config: DetectorConfig | str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> tuple[DetectorConfig, dict[str, torch.Tensor]]:
    """The config and checked state dict (our names, float32, CPU) of any detector checkpoint.

    name_or_path: a folder (ours: config.yaml + model.safetensors; detectron2 / py-bottom-up-attention:
    a YAML + model_final.pkl / .pth; the transformers port: its config.yaml + pytorch_model.bin), a
    weights file (its folder's config.yaml or only *.yaml is the config), or a Hugging Face hub id
    (downloaded through the huggingface_hub cache; revision, cache_dir, local_files_only and token go
    to it). config: a DetectorConfig or a YAML (either layout) that replaces the one found; without
    either, the default config (the full VG ResNet-101 model). Raises CheckpointError when the weights
    are unreadable, unsafe or do not fit the config (every problem named), ConfigError for a bad
    YAML, OSError when the files cannot be found.
    """
    loaded = read_pretrained(
        name_or_path,
        config=config,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    return loaded.config, loaded.state_dict


def read_pretrained(
    name_or_path: str | os.PathLike,
    *,
    config: DetectorConfig | str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> PretrainedCheckpoint:
    """`load_pretrained` with the format and the files it used (for reports, e.g. the converter)."""
    hub_kwargs = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
    weights, yaml = locate_checkpoint(name_or_path, hub_kwargs, need_config=config is None)
    if isinstance(config, DetectorConfig):
        config_source = "given"
    elif config is not None:
        config_source = os.fspath(config) if _is_file(config) else "given YAML text"
        config = _read_config(config, config_source)
    elif yaml is not None:
        config_source = str(yaml)
        config = _read_config(yaml, config_source)
    else:
        config_source = "the default config (full VG ResNet-101): no YAML was given or found next to the weights"
        config = DetectorConfig()
    tensors = read_weights(weights)
    format_ = weights_format(tensors, weights)
    try:
        state_dict = fit_state_dict(tensors, config, KEY_MAPS[format_], source=str(weights))
    except CheckpointError as e:
        raise CheckpointError(f"{e}\n(config: {config_source})") from None
    return PretrainedCheckpoint(config, state_dict, format_, weights, config_source)


def save_pretrained(
    config: DetectorConfig, state_dict: Mapping[str, torch.Tensor], directory: str | os.PathLike
) -> None:
    """Write our format into `directory` (created if needed): config.yaml (detectron2 keys) and
    model.safetensors (the tensors as given, on the CPU; metadata "format": "pt" and our format name
    and version). The state dict is checked against the config first, so what is written loads."""
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state_dict.items()}
    fit_state_dict(tensors, config, SAFETENSORS_KEYS, source="the state dict to save")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "checkpoint": FORMAT_NAME, "checkpoint_version": str(FORMAT_VERSION)}
    partial = directory / f"{SAFETENSORS_NAME}.partial"
    save_file(tensors, partial, metadata=metadata)
    os.replace(partial, directory / SAFETENSORS_NAME)
    config.to_yaml(directory / CONFIG_NAME)


# ---------------------------------------------------------------------------------------------------
# Finding the files

# A Hugging Face hub id: "name" or "owner/name".
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_HINT = (
    "download it once with network access (huggingface-cli download {id}) or pass a local folder that holds "
    "config.yaml and the weights (model.safetensors, pytorch_model.bin or model_final.pkl)"
)


def locate_checkpoint(
    name_or_path: str | os.PathLike, hub_kwargs: Mapping[str, Any], *, need_config: bool = True
) -> tuple[Path, Path | None]:
    """(weights file, YAML config or None) of a folder, a file or a hub id (module docstring)."""
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return _weights_in_folder(path.parent), path
        return path, _yaml_in_folder(path.parent) if need_config else None
    if path.is_dir():
        return _weights_in_folder(path), _yaml_in_folder(path) if need_config else None
    name = os.fspath(name_or_path)
    if not _HUB_ID.match(name) or name.startswith((".", "~")):
        raise FileNotFoundError(f"{name!r} is not an existing file or folder, nor a Hugging Face hub id")
    repo = _HubRepo(name, hub_kwargs)
    config = repo.first((CONFIG_NAME,)) if need_config else None
    return repo.first(WEIGHTS_NAMES), config


def in_hub_cache(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> bool | None:
    """Whether the local huggingface_hub cache holds config.yaml and the weights of hub id `name_or_path`
    (looked up without the network); None when it is not a hub id (an existing local path, or a name
    that loading refuses). hub_kwargs: revision, cache_dir."""
    name = os.fspath(name_or_path)
    if Path(os.path.expanduser(name)).exists() or not _HUB_ID.match(name) or name.startswith((".", "~")):
        return None
    try:
        locate_checkpoint(name, {**hub_kwargs, "local_files_only": True})
    except OSError:
        return False
    return True


def _weights_in_folder(folder: Path) -> Path:
    for name in WEIGHTS_NAMES:
        if (folder / name).is_file():
            return folder / name
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for suffix in _WEIGHTS_SUFFIXES:
        found = [p for p in files if p.suffix == suffix]
        if len(found) > 1:
            raise CheckpointError(
                f"folder {folder} holds several {suffix} files ({', '.join(p.name for p in found)}): "
                "pass the one to load"
            )
        if found:
            return found[0]
    listing = ", ".join(p.name for p in files[:20]) or "nothing"
    raise FileNotFoundError(
        f"no detector weights in folder {folder}: looked for {', '.join(WEIGHTS_NAMES)} or a single "
        f"{' / '.join('*' + s for s in _WEIGHTS_SUFFIXES)} file; it holds {listing}"
    )


def _yaml_in_folder(folder: Path) -> Path | None:
    if (folder / CONFIG_NAME).is_file():
        return folder / CONFIG_NAME
    found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if len(found) > 1:
        raise CheckpointError(
            f"folder {folder} holds several YAML files ({', '.join(p.name for p in found)}) and no {CONFIG_NAME}: "
            "pass the config to use (config=...)"
        )
    return found[0] if found else None


def _read_config(source: str | os.PathLike, name: str) -> DetectorConfig:
    try:
        return DetectorConfig.from_yaml(source)
    except ConfigError as e:
        if os.fspath(source) in str(e):  # DetectorConfig.from_yaml names the files it reads
            raise
        raise ConfigError(f"{name}: {e}", key=e.key) from None


def _is_file(source: str | os.PathLike) -> bool:
    return isinstance(source, os.PathLike) or ("\n" not in source and Path(source).is_file())


class _HubRepo:
    """Files of one hub repository through huggingface_hub's cache. Once the hub proves unreachable,
    later look-ups only ask the cache."""

    def __init__(self, repo_id: str, hub_kwargs: Mapping[str, Any]):
        self.repo_id = repo_id
        self.kwargs = {key: value for key, value in hub_kwargs.items() if value is not None}
        self.unreachable = False

    def fail(self, problem: str) -> NoReturn:
        raise OSError(
            f"{self.repo_id!r} is not a local file or folder, and {problem}; {_HUB_HINT.format(id=self.repo_id)}"
        )

    def get(self, filename: str) -> Path | None:
        import huggingface_hub
        from huggingface_hub import errors

        try:
            return Path(huggingface_hub.hf_hub_download(self.repo_id, filename, **self.kwargs))
        except errors.LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: caught first
            self.unreachable = True
            self.kwargs["local_files_only"] = True
            return None
        except errors.EntryNotFoundError:
            return None
        except Exception as e:  # no such repository or revision, gated, invalid id, network failure ...
            self.fail(f"the Hugging Face hub did not give its files ({type(e).__name__}: {e})")

    def first(self, filenames: tuple[str, ...]) -> Path:
        for filename in filenames:
            path = self.get(filename)
            if path is not None:
                return path
        why = (
            "the hub is unreachable (offline, local_files_only, or HF_HUB_OFFLINE set) and the local cache "
            "does not have it"
            if self.unreachable
            else "the repository does not have it"
        )
        self.fail(f"no {' or '.join(filenames)} was found for it: {why}")
