"""Region features from the Visual Genome bottom-up-attention Faster R-CNN (ResNet-101 C4 + attributes).

    from extract import RegionFeatureExtractor
    extractor = RegionFeatureExtractor.from_pretrained("unc-nlp/frcnn-vg-finetuned", device="cuda")
    regions = extractor(["a.jpg", "b.jpg"])  # one RegionFeatures per image: 36 boxes, features, names

image -> `load_image` -> `preprocess` -> `VGDetector` (extract.model: per-proposal outputs) -> a selection
rule (extract.selection) -> `Regions` (boxes in original pixels, features, object / attribute ids and
scores); the extractor wires these, loads weights through extract.checkpoints and adds LXMERT's
normalized boxes and the class names (`RegionFeatures`). extract.store keeps the features of a collection
on disk; extract.jobs runs whole collections into a store. docs/architecture.md draws the layers.

The names below are imported from their modules on first use, so that `import extract` (and the
command line's `--help`) does not load torch until a name that needs it is asked for.
"""

import importlib

# public name -> the module (below extract) that defines it
_EXPORTS = {
    "RULES": "options",
    "CheckpointError": "checkpoints.errors",
    "Checkpoint": "checkpoints.pretrained",
    "ConfigError": "model.config_yaml",
    "DetectorConfig": "model.config",
    "DuplicateIdError": "store.errors",
    "FeatureDataset": "store.store",
    "FeatureRecord": "store.store",
    "FeatureStore": "store.store",
    "ImageLoadError": "image_errors",
    "ImageTooLargeError": "image_errors",
    "ImagePredictions": "selection",
    "InputError": "jobs.inputs",
    "JobError": "jobs.summary",
    "JobSummary": "jobs.summary",
    "PreprocessedImage": "preprocessing",
    "RegionFeatureExtractor": "extractor",
    "RegionFeatures": "extractor",
    "Regions": "selection",
    "StoreBusyError": "store.errors",
    "StoreError": "store.errors",
    "StoreMetadata": "store.store",
    "StoreWriter": "store.store",
    "TSVFormatError": "store.tsv",
    "VGDetector": "model.detector",
    "VerifyReport": "store.store",
    "add_region_features": "jobs.datasets",
    "class_names": "labels",
    "colormap": "draw",
    "draw_regions": "draw",
    "export_tsv": "store.tsv",
    "import_tsv": "store.tsv",
    "load_detector": "checkpoints.pretrained",
    "load_detectron2_checkpoint": "checkpoints.key_maps",
    "load_image": "images",
    "merge": "store.merge",
    "output_lock": "store.lock",
    "overlay_heatmap": "draw",
    "preprocess": "preprocessing",
    "read_checkpoint": "checkpoints.pretrained",
    "read_detectron2_pkl": "checkpoints.safe_pickle",
    "read_tsv": "store.tsv",
    "region_heatmap": "draw",
    "run_extraction": "jobs.run",
    "save_pretrained": "checkpoints.pretrained",
    "select_regions": "selection",
    "verify": "store.store",
    "write_tsv": "store.tsv",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
