"""Region features from the Visual Genome bottom-up-attention Faster R-CNN (ResNet-101 C4 + attributes).

image -> `load_image` -> `preprocess` -> `VGDetector` (per-proposal outputs) -> a selection rule ->
`Regions` (boxes in original pixels, features, object / attribute ids and scores).
"""

from .checkpoints import CheckpointError, load_detectron2_checkpoint, read_detectron2_pkl
from .config import ConfigError, DetectorConfig
from .detector import VGDetector
from .images import ImageLoadError, load_image
from .preprocess import PreprocessedImage, preprocess
from .selection import RULES, ImagePredictions, Regions, select_regions

__all__ = [
    "RULES",
    "CheckpointError",
    "ConfigError",
    "DetectorConfig",
    "ImageLoadError",
    "ImagePredictions",
    "PreprocessedImage",
    "Regions",
    "VGDetector",
    "load_detectron2_checkpoint",
    "load_image",
    "preprocess",
    "read_detectron2_pkl",
    "select_regions",
]
