"""Detector checkpoints by name: a folder, a weights file or a Hugging Face hub id -> the config and the
checked state dict (`read_checkpoint`), or a loaded `VGDetector` (`load_detector`); and our format written
(`save_pretrained`).

What a folder or hub repository holds decides the format (see `formats`); hub files come through
huggingface_hub's cache. Nothing here runs code from a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from ..model.config import ConfigError, DetectorConfig
from ..model.detector import VGDetector
from ..model.rpn import cell_anchors
from .errors import CheckpointError
from .formats import (
    FORMAT_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAMES,
    WEIGHTS_SUFFIXES,
    read_weights,
    weights_format,
)
from .key_maps import KEY_MAPS, SAFETENSORS_KEYS, fit_state_dict
from .names import CONFIG_NAME, SAFETENSORS_NAME


@dataclass(frozen=True)
class Checkpoint:
    """What `read_checkpoint` found: the config, the state dict in our names, and where they came from."""

    config: DetectorConfig
    state_dict: dict[str, torch.Tensor]
    format: str  # "safetensors" (ours), "detectron2" or "hf-port"
    weights: Path
    config_source: str  # the YAML read, "given", or why the default config was used


def read_checkpoint(
    name_or_path: str | os.PathLike,
    *,
    config: DetectorConfig | str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Checkpoint:
    """The config and checked state dict (our names, float32, CPU) of any detector checkpoint, with the
    format and the files they came from.

    name_or_path: a folder (ours: config.yaml + model.safetensors; detectron2 / py-bottom-up-attention:
    a YAML + model_final.pkl / .pth; the transformers port: its config.yaml + pytorch_model.bin), a
    weights file (its folder's config.yaml or only *.yaml is the config), or a Hugging Face hub id
    (downloaded through the huggingface_hub cache; revision, cache_dir, local_files_only and token go
    to it). config: a DetectorConfig or a YAML (either layout) that replaces the one found; without
    either, the default config (the full VG ResNet-101 model). Raises CheckpointError when the weights
    are unreadable, unsafe or do not fit the config (every problem named), ConfigError for a bad
    YAML, OSError when the files cannot be found.
    """
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
    return Checkpoint(config, state_dict, format_, weights, config_source)


def load_detector(
    name_or_path: str | os.PathLike,
    *,
    config: DetectorConfig | str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **hub: Any,
) -> VGDetector:
    """A `VGDetector` with the weights of any checkpoint `read_checkpoint` reads (hub: its revision,
    cache_dir, local_files_only, token), on `device` (default CPU), convolutions in `dtype` (default
    float32; see `VGDetector.set_compute_dtype`).

    The modules are built on the meta device and take the loaded tensors as they are
    (`load_state_dict(assign=True)`), so the weights are never randomly initialized first.
    """
    checkpoint = read_checkpoint(name_or_path, config=config, **hub)
    config = checkpoint.config
    with torch.device("meta"):
        model = VGDetector(config)
    model.load_state_dict(checkpoint.state_dict, strict=True, assign=True)
    # Non-persistent buffers are not in checkpoints: compute them.
    model.proposal_generator.cell_anchors = cell_anchors(config.anchor_sizes, config.anchor_aspect_ratios)
    still_meta = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if still_meta:
        raise RuntimeError(f"load_detector left tensors unset: {', '.join(still_meta)}")
    model.to(device)
    if dtype is not None:
        model.set_compute_dtype(dtype)
    return model


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

# A Hugging Face hub id: "name" or "owner/name". The hub-id test and _HubRepo have twins in lxmert.hub that
# behave the same (extract and lxmert may not import each other): change them together.
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
    for suffix in WEIGHTS_SUFFIXES:
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
        f"{' / '.join('*' + s for s in WEIGHTS_SUFFIXES)} file; it holds {listing}"
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
