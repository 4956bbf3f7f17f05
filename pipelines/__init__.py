"""Pipelines: raw images (and questions) to answers, region features or match scores, in one call.

from pipelines import pipeline
vqa = pipeline("vqa", device="cuda")
vqa(image="cat.jpg", question="What color is the cat?", top_k=3)
"""

from .features import FeatureExtractionPipeline
from .matching import ImageTextMatchingPipeline
from .registry import TASKS, pipeline
from .vqa import VisualQuestionAnsweringPipeline

__all__ = [
    "TASKS",
    "FeatureExtractionPipeline",
    "ImageTextMatchingPipeline",
    "VisualQuestionAnsweringPipeline",
    "pipeline",
]
