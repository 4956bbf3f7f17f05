"""Detector checkpoints: the restricted unpickler for detectron2 `.pkl` files, the weight formats, the
tensor-name maps and checks, reading and writing by name or hub id, and the `lxmert-convert-detector`
command. It builds on extract.model (a checkpoint is checked against the network it loads into); the
extractor loads through it and the jobs use it to name the weights they ran; the store knows nothing of it.
"""

import importlib

# public name -> the module (below extract.checkpoints) that defines it, imported on first use: the
# lxmert-convert-detector command (this package's convert module) answers --help without torch.
_EXPORTS = {
    "Checkpoint": "pretrained",
    "CheckpointError": "errors",
    "in_hub_cache": "pretrained",
    "load_detector": "pretrained",
    "load_detectron2_checkpoint": "key_maps",
    "locate_checkpoint": "pretrained",
    "read_checkpoint": "pretrained",
    "read_detectron2_pkl": "safe_pickle",
    "read_weights": "formats",
    "save_pretrained": "pretrained",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'extract.checkpoints' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
