"""Finding a model's files: a local folder, a weights file, or a Hugging Face hub id.

Only finding: `resolve_files` gives the paths of config.json and the weights, `resolve_config_file`
that of config.json alone; lxmert.config and lxmert.checkpoints read them. Hub ids download through
huggingface_hub (cached as usual). Offline, the error names the id and says how to pass a local folder
instead. `in_hub_cache` and `hub_reachable` let a caller decide before loading, without waiting for
the hub client's retries: whether a hub id's files are cached already, and whether the hub answers
at all.
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
from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
TF_NAME = "tf_model.h5"
CONFIG_NAME = "config.json"

# A Hugging Face hub id: "name" or "owner/name".
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class ModelFiles:
    """Where a model's config.json (None: there is none) and weights file are."""

    config: Path | None
    weights: Path


MODEL_HINT = (
    "to load it without the network, download it once (huggingface-cli download {id}) or pass a local "
    "folder that holds config.json and model.safetensors or pytorch_model.bin"
)
# One attempt, this many seconds, to tell whether the hub answers (the hub client itself retries a
# refused connection five times, about 23 s, printing each retry).
HUB_PROBE_TIMEOUT = 5.0


# Twin of extract.checkpoints.pretrained._HubRepo, which behaves the same (extract and lxmert may not import
# each other): change them together.
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


# Deliberately the same test as extract.checkpoints' (extract and lxmert may not import each other).
def _is_hub_id(name: str) -> bool:
    """Whether `name` can be a hub id (rather than a relative or home path: ./x, ~/x)."""
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~"))


def _hub_id(name_or_path: str | os.PathLike) -> str:
    """`name_or_path` as a hub id, or OSError when it can only have meant a local path."""
    name = os.fspath(name_or_path)
    if not _is_hub_id(name):
        raise OSError(f"{name!r} is not an existing file or folder, nor a Hugging Face hub id")
    return name


def in_hub_cache(name_or_path: str | os.PathLike, *, from_tf: bool = False, **hub_kwargs: Any) -> bool | None:
    """Whether the local huggingface_hub cache holds config.json and the weights of hub id `name_or_path`
    (looked up without the network); None when it is not a hub id (an existing local path, or a name
    that loading refuses). hub_kwargs: revision, cache_dir."""
    name = os.fspath(name_or_path)
    if Path(os.path.expanduser(name)).exists() or not _is_hub_id(name):
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


def resolve_config_file(name_or_path: str | os.PathLike, **hub_kwargs: Any) -> Path:
    """The config.json that `name_or_path` means: that file itself, the one in a folder, or a hub id's."""
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        return path
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise OSError(f"folder {path} has no config.json")
        return config_path
    return HubRepo(_hub_id(name_or_path), hub_kwargs, hint=MODEL_HINT).first([CONFIG_NAME])
