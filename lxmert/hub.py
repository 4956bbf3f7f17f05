"""Finding a model's files: a local folder, a weights file, or a Hugging Face hub id.

Hub ids download through huggingface_hub (cached as usual). Offline, the error names the id and says
how to pass a local folder instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class ModelFiles:
    config: Path | None
    weights: Path


def _local_folder_hint(name: str) -> str:
    return (
        f"to load {name!r} without the network, download it once (huggingface-cli download {name}) "
        "or pass a local folder that holds config.json and model.safetensors or pytorch_model.bin"
    )


def hub_file(repo_id: str, filename: str, hub_kwargs: dict[str, Any]) -> Path | None:
    """Download (or find in the cache) one file of a hub repository; None if the repo has no such file."""
    import huggingface_hub
    from huggingface_hub import errors

    kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, **kwargs))
    except errors.LocalEntryNotFoundError as e:  # offline and not cached (check before EntryNotFoundError)
        raise OSError(
            f"cannot fetch {filename} of {repo_id!r} from the Hugging Face hub (offline, or the hub is not "
            f"reachable, and it is not in the local cache); {_local_folder_hint(repo_id)}"
        ) from e
    except errors.RepositoryNotFoundError as e:
        raise OSError(
            f"{repo_id!r} is neither a local folder nor a model on the Hugging Face hub (a private or gated "
            "model needs token=...)"
        ) from e
    except errors.RevisionNotFoundError as e:
        raise OSError(f"{repo_id!r} has no revision {hub_kwargs.get('revision')!r} on the hub") from e
    except errors.EntryNotFoundError:
        return None
    except errors.HfHubHTTPError as e:
        raise OSError(f"cannot fetch {filename} of {repo_id!r} from the hub: {e}; {_local_folder_hint(repo_id)}") from e


def _looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~")) and name.count("/") <= 1


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
    name = os.fspath(name_or_path)
    if not _looks_like_hub_id(name):
        raise OSError(f"{name!r} is not an existing file or folder, nor a Hugging Face hub id")
    config = hub_file(name, CONFIG_NAME, hub_kwargs)
    if config is None:
        raise OSError(f"the hub repository {name!r} has no config.json: it is not a transformers-style model")
    for filename in names:
        weights = hub_file(name, filename, hub_kwargs)
        if weights is not None:
            return ModelFiles(config, weights)
    raise OSError(f"the hub repository {name!r} has none of {', '.join(names)}")


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
    elif _looks_like_hub_id(os.fspath(name_or_path)):
        config_path = hub_file(os.fspath(name_or_path), CONFIG_NAME, hub_kwargs)
        if config_path is None:
            raise OSError(f"the hub repository {os.fspath(name_or_path)!r} has no config.json")
    else:
        raise OSError(f"{os.fspath(name_or_path)!r} is not an existing file or folder, nor a Hugging Face hub id")
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
    checkpoint = read_checkpoint(files.weights)
    if dtype == "auto":
        floating = [t.dtype for t in checkpoint.state_dict.values() if t.is_floating_point()]
        dtype = floating[0] if floating else torch.float32
    model = build_from_checkpoint(cls, config, checkpoint, strict=strict, dtype=dtype)
    model.eval()
    if device is not None:
        model.to(device)
    return model
