"""Region features from the Visual Genome bottom-up-attention Faster R-CNN (ResNet-101 C4 + attributes).

    from extract import RegionFeatureExtractor
    extractor = RegionFeatureExtractor.from_pretrained("unc-nlp/frcnn-vg-finetuned", device="cuda")
    regions = extractor(["a.jpg", "b.jpg"])  # one RegionFeatures per image: 36 boxes, features, names

image -> `load_image` -> `preprocess` -> `VGDetector` (per-proposal outputs) -> a selection rule ->
`Regions` (boxes in original pixels, features, object / attribute ids and scores); the extractor
wires these and adds LXMERT's normalized boxes and the class names (`RegionFeatures`).
"""

from .checkpoints import (
    CheckpointError,
    load_detectron2_checkpoint,
    load_pretrained,
    read_detectron2_pkl,
    save_pretrained,
)
from .config import ConfigError, DetectorConfig
from .detector import VGDetector
from .extractor import RegionFeatureExtractor, RegionFeatures
from .images import ImageLoadError, load_image
from .labels import class_names
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
    "RegionFeatureExtractor",
    "RegionFeatures",
    "Regions",
    "VGDetector",
    "class_names",
    "load_detectron2_checkpoint",
    "load_image",
    "load_pretrained",
    "preprocess",
    "read_detectron2_pkl",
    "save_pretrained",
    "select_regions",
]
