"""Image-text matching: does a sentence describe an image? LXMERT's pretraining matching head.

`LxmertForPreTraining`'s `cross_relationship_score` (B, 2) is a 2-way classifier on the pooled
output, trained with label 1 for a sentence that matches its image and 0 for a sentence of another
image. The score here is the softmax probability of index 1, "match".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lxmert import LxmertForPreTraining, LxmertTokenizerFast

from .base import DEFAULT_BATCH_SIZE, ImageReader, ImageTextPipeline, check_batch_size

MATCH = 1  # index of "the text matches the image" in cross_relationship_score


class ImageTextMatchingPipeline(ImageTextPipeline):
    """Probability that a text describes an image; inputs as the VQA pipeline's, with text= for question=."""

    text_name = "text"

    def __init__(
        self,
        model: LxmertForPreTraining,
        tokenizer: LxmertTokenizerFast,
        reader: ImageReader | None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threshold: float = 0.5,
    ):
        if not hasattr(model, "cls"):
            raise TypeError(
                f"image-text matching needs LxmertForPreTraining (its matching head), got {type(model).__name__}"
            )
        super().__init__(model, tokenizer, reader, batch_size=batch_size)
        self.threshold = threshold

    @torch.inference_mode()
    def __call__(
        self,
        image: Any = None,
        text: str | Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
        image_id: str | Sequence[str] | None = None,
        store: Any = None,
        features: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        allow_network: bool | None = None,
        regions: Any = None,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """{"score": P(match), "match": score >= threshold} per (image, text) pair; a single pair gives one dict."""
        batch_size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        sources, pairs, single = self.parse(image, text, image_id, store, features, boxes, regions)
        if not pairs:
            return []
        visual = self.visual_inputs(sources, batch_size, allow_network)
        scores = self.run_pairs(visual, pairs, batch_size, self._match_probability).tolist()
        results = [{"score": score, "match": score >= self.threshold} for score in scores]
        return results[0] if single else results

    def _match_probability(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Only the pooled output feeds the matching head: skip the LM and object heads.
        pooled = self.model.lxmert.encode(**inputs, pooled_only=True).pooled_output
        return self.model.cls.seq_relationship(pooled).float().softmax(dim=-1)[:, MATCH]
