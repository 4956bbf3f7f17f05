"""Detector checkpoints: the restricted unpickler for detectron2 `.pkl` files, the weight formats, the
tensor-name maps and checks, reading and writing by name or hub id, and the `lxmert-convert-detector`
command. It builds on extract.model (a checkpoint is checked against the network it loads into); the
extractor loads through it and the jobs use it to name the weights they ran; the store knows nothing of it.
"""

from .errors import CheckpointError
from .formats import read_weights
from .key_maps import load_detectron2_checkpoint
from .pretrained import Checkpoint, in_hub_cache, load_detector, locate_checkpoint, read_checkpoint, save_pretrained
from .safe_pickle import read_detectron2_pkl

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "in_hub_cache",
    "load_detector",
    "load_detectron2_checkpoint",
    "locate_checkpoint",
    "read_checkpoint",
    "read_detectron2_pkl",
    "read_weights",
    "save_pretrained",
]
