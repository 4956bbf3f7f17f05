"""Finding a model's files: a local folder, a weights file, or a Hugging Face hub id.

Hub ids download through huggingface_hub (cached as usual). Offline, the error names the id and says
how to pass a local folder instead. `in_hub_cache` and `hub_reachable` let a caller decide before
loading, without waiting for the hub client's retries: whether a hub id's files are cached already,
and whether the hub answers at all.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import huggingface_hub
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors

from lxmert.checkpoints import (
    CONFIG_NAME,
    PYTORCH_NAME,
    SAFETENSORS_NAME,
    TF_NAME,
    build_from_checkpoint,
    read_checkpoint,
)
from lxmert.config import LxmertConfig
from lxmert.labels import fill_answer_labels
from lxmert.modeling import LxmertForPreTraining

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class ModelFiles:
    config: Path | None
    weights: Path


MODEL_HINT = (
    "to load it without the network, download it once (huggingface-cli download {id}) or pass a local "
    "folder that holds config.json and model.safetensors or pytorch_model.bin"
)
# One attempt, this many seconds, to tell whether the hub answers (the hub client itself retries a
# refused connection five times, about 23 s, printing each retry).
HUB_PROBE_TIMEOUT = 5.0


class HubRepo:
    """Files of one Hugging Face hub repository, through huggingface_hub's download cache.

    Once the hub proves unreachable (offline, HF_HUB_OFFLINE), later look-ups ask only the cache
    instead of waiting for the network once per file. Failures raise `error` naming the id and `hint`
    (where "{id}" stands for the id).
    """

    def __init__(self, repo_id: str, hub_kwargs: dict[str, Any], *, hint: str, error: type[OSError] = OSError):
        self.repo_id = repo_id
        self.kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
        self.hint = hint
        self.error = error
        self.unreachable = False

    def fail(self, problem: str) -> NoReturn:
        hint = self.hint.format(id=self.repo_id)
        raise self.error(f"{self.repo_id!r} is not a local folder and {problem}; {hint}")

    def get(self, filename: str) -> Path | None:
        """The file's local path, or None when the repository (or the cache, offline) lacks it."""
        try:
            return Path(huggingface_hub.hf_hub_download(self.repo_id, filename, **self.kwargs))
        except hub_errors.LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: test it first
            self.unreachable = True
            self.kwargs["local_files_only"] = True
            return None
        except hub_errors.EntryNotFoundError:
            return None
        except Exception as e:  # no such repository or revision, gated, invalid id, network failure ...
            self.fail(f"the Hugging Face hub did not give its files ({type(e).__name__}: {e})")

    def first(self, filenames: list[str] | tuple[str, ...]) -> Path:
        """The first of `filenames` the repository has."""
        for filename in filenames:
            path = self.get(filename)
            if path is not None:
                return path
        why = (
            "the hub is unreachable (offline, or HF_HUB_OFFLINE is set) and they are not in the local cache"
            if self.unreachable
            else "the repository has none of them"
        )
        self.fail(f"no {' or '.join(filenames)} was found for it: {why}")


def _hub_id(name_or_path: str | os.PathLike) -> str:
    """`name_or_path` as a hub id, or OSError when it can only have meant a local path."""
    name = os.fspath(name_or_path)
    if not _HUB_ID.match(name) or name.startswith((".", "~")):
        raise OSError(f"{name!r} is not an existing file or folder, nor a Hugging Face hub id")
    return name


def in_hub_cache(name_or_path: str | os.PathLike, *, from_tf: bool = False, **hub_kwargs: Any) -> bool | None:
    """Whether the local huggingface_hub cache holds config.json and the weights of hub id `name_or_path`
    (looked up without the network); None when it is not a hub id (an existing local path, or a name
    that loading refuses). hub_kwargs: revision, cache_dir."""
    name = os.fspath(name_or_path)
    if Path(os.path.expanduser(name)).exists() or not _HUB_ID.match(name) or name.startswith((".", "~")):
        return None
    try:
        resolve_files(name, from_tf=from_tf, hub_kwargs={**hub_kwargs, "local_files_only": True})
    except OSError:
        return False
    return True


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether the Hugging Face hub (HF_ENDPOINT, default https://huggingface.co) answers one request
    within `timeout` seconds; False at once when HF_HUB_OFFLINE is set. Any HTTP answer counts."""
    if hub_constants.HF_HUB_OFFLINE:
        return False
    try:
        request = urllib.request.Request(hub_endpoint(), method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (the hub's http(s) endpoint)
            return True
    except urllib.error.HTTPError:
        return True  # the server answered, if only with an error status
    except (OSError, http.client.HTTPException, ValueError):  # refused, no DNS, timed out, not HTTP; bad URL
        return False


def hub_endpoint() -> str:
    """The hub's address as huggingface_hub uses it (HF_ENDPOINT)."""
    return hub_constants.ENDPOINT


def resolve_files(name_or_path: str | os.PathLike, *, from_tf: bool, hub_kwargs: dict[str, Any]) -> ModelFiles:
    """Locate config.json and the weights file (safetensors first, then .bin, then TF .h5)."""
    names = [TF_NAME] if from_tf else [SAFETENSORS_NAME, PYTORCH_NAME, TF_NAME]
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        if path.name == CONFIG_NAME:
            return resolve_files(path.parent, from_tf=from_tf, hub_kwargs=hub_kwargs)
        config = path.parent / CONFIG_NAME
        return ModelFiles(config if config.is_file() else None, path)
    if path.is_dir():
        config = path / CONFIG_NAME
        for name in names:
            if (path / name).is_file():
                return ModelFiles(config if config.is_file() else None, path / name)
        present = sorted(p.name for p in path.iterdir())[:20]
        raise OSError(
            f"no LXMERT weights in folder {path}: looked for {', '.join(names)}; it holds {present or 'nothing'}"
        )
    repo = HubRepo(_hub_id(name_or_path), hub_kwargs, hint=MODEL_HINT)
    config = repo.first([CONFIG_NAME])
    return ModelFiles(config, repo.first(names))


def resolve_config(
    name_or_path: str | os.PathLike,
    *,
    overrides: dict[str, Any] | None = None,
    **hub_kwargs: Any,
) -> LxmertConfig:
    """LxmertConfig.from_pretrained: config.json of a folder, a file, or a hub id."""
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        config_path = path
    elif path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise OSError(f"folder {path} has no config.json")
    else:
        config_path = HubRepo(_hub_id(name_or_path), hub_kwargs, hint=MODEL_HINT).first([CONFIG_NAME])
    return fill_answer_labels(LxmertConfig.from_json_file(config_path, **(overrides or {})))


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}, 'auto' or a torch.dtype")
    return _DTYPES[name]


def load_pretrained(
    cls: type,
    name_or_path: str | os.PathLike,
    *,
    config: LxmertConfig | None,
    dtype: torch.dtype | str | None,
    device: torch.device | str | None,
    from_tf: bool,
    strict: bool,
    hub_kwargs: dict[str, Any],
    config_overrides: dict[str, Any],
):
    """The body of LxmertPreTrainedModel.from_pretrained."""
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
    expected = _tf_shapes(cls, config) if files.weights.suffix == ".h5" else None
    checkpoint = read_checkpoint(files.weights, expected_shapes=expected)
    if dtype == "auto":
        floating = [t.dtype for t in checkpoint.state_dict.values() if t.is_floating_point()]
        dtype = floating[0] if floating else torch.float32
    model = build_from_checkpoint(cls, config, checkpoint, strict=strict, dtype=dtype)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _tf_shapes(cls: type, config: LxmertConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor a TF checkpoint may hold for `config` (those of `cls` and of the
    pretraining heads), under LxmertForPreTraining's names."""
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        for model in (LxmertForPreTraining(config), cls(config)):
            prefix = "" if hasattr(model, model.base_model_prefix) else f"{model.base_model_prefix}."
            shapes.update({prefix + name: tuple(t.shape) for name, t in model.state_dict().items()})
    return shapes
