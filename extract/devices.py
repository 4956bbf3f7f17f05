"""Devices and dtypes by name, checked: what the extractor, the job and the pipelines are given."""

from __future__ import annotations

import torch

from .options import COMPUTE_DTYPES


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch.device (None: CUDA when available, else the CPU). ValueError, naming it, for a
    device that is not a torch device or is not on this machine (CUDA without CUDA, a missing GPU index)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={str(device)!r} is not a torch device: {error}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: CUDA is not available here (torch.cuda.is_available() is False)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a compute dtype name (options.COMPUTE_DTYPES); ValueError naming the choices."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={name!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    return getattr(torch, name)
