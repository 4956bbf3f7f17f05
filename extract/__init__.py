"""Region features from the Visual Genome bottom-up-attention Faster R-CNN (ResNet-101 C4 + attributes).

    from extract import RegionFeatureExtractor
    extractor = RegionFeatureExtractor.from_pretrained("unc-nlp/frcnn-vg-finetuned", device="cuda")
    regions = extractor(["a.jpg", "b.jpg"])  # one RegionFeatures per image: 36 boxes, features, names

image -> `load_image` -> `preprocess` -> `VGDetector` (per-proposal outputs) -> a selection rule ->
`Regions` (boxes in original pixels, features, object / attribute ids and scores); the extractor
wires these and adds LXMERT's normalized boxes and the class names (`RegionFeatures`).
"""

import importlib

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
from .store import (
    DuplicateIdError,
    FeatureDataset,
    FeatureRecord,
    FeatureStore,
    StoreBusyError,
    StoreError,
    StoreMetadata,
    StoreWriter,
    VerifyReport,
    merge,
    output_lock,
    verify,
)
from .tsv import TSVFormatError, export_tsv, import_tsv, read_tsv, write_tsv

# The job (and the datasets helper, which uses it) are imported on first use, so that
# `python -m extract.jobs` (torchrun's form) runs the module without a copy already imported by the package.
_LAZY = {
    "InputError": "jobs",
    "JobError": "jobs",
    "JobSummary": "jobs",
    "run_extraction": "jobs",
    "add_region_features": "hf_datasets",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "RULES",
    "CheckpointError",
    "ConfigError",
    "DetectorConfig",
    "DuplicateIdError",
    "FeatureDataset",
    "FeatureRecord",
    "FeatureStore",
    "ImageLoadError",
    "ImagePredictions",
    "InputError",
    "JobError",
    "JobSummary",
    "PreprocessedImage",
    "RegionFeatureExtractor",
    "RegionFeatures",
    "Regions",
    "StoreBusyError",
    "StoreError",
    "StoreMetadata",
    "StoreWriter",
    "TSVFormatError",
    "VGDetector",
    "VerifyReport",
    "add_region_features",
    "class_names",
    "export_tsv",
    "import_tsv",
    "load_detectron2_checkpoint",
    "load_image",
    "load_pretrained",
    "merge",
    "output_lock",
    "preprocess",
    "read_detectron2_pkl",
    "read_tsv",
    "run_extraction",
    "save_pretrained",
    "select_regions",
    "verify",
    "write_tsv",
]
