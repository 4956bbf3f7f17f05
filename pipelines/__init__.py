"""Pipelines: raw images (and questions) to answers, region features or match scores, in one call.

from pipelines import pipeline
vqa = pipeline("vqa", device="cuda")
vqa(image="cat.jpg", question="What color is the cat?", top_k=3)

The names below are imported on first use, not with the package: `lxmert ask --help` (pipelines.cli)
must not wait seconds for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .features import FeatureExtractionPipeline
    from .matching import ImageTextMatchingPipeline
    from .registry import TASKS, HubUnreachableError, pipeline
    from .vqa import VisualQuestionAnsweringPipeline

# public name -> the submodule that defines it
_EXPORTS = {
    "TASKS": "registry",
    "HubUnreachableError": "registry",
    "FeatureExtractionPipeline": "features",
    "ImageTextMatchingPipeline": "matching",
    "VisualQuestionAnsweringPipeline": "vqa",
    "pipeline": "registry",
}

__all__ = [
    "TASKS",
    "HubUnreachableError",
    "FeatureExtractionPipeline",
    "ImageTextMatchingPipeline",
    "VisualQuestionAnsweringPipeline",
    "pipeline",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
