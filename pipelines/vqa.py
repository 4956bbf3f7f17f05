"""Visual question answering: image(s) + question(s) -> ranked answers, with the transformers VQA
pipeline's calling conventions.

    images -> RegionFeatureExtractor (each distinct image once, batch_size per pass) -> region
    features on the device -> LXMERT with the tokenized questions (batch_size pairs per pass) ->
    answer probabilities -> top_k

Scores are probabilities. The VQA head was fine-tuned with a binary cross-entropy per answer (its soft
VQA score), so its scores are sigmoids, one per answer, which need not sum to 1; the GQA head was
fine-tuned with a softmax cross-entropy, so its scores are a softmax over the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lxmert import LxmertForQuestionAnswering, LxmertTokenizerFast

from .base import DEFAULT_BATCH_SIZE, ImageReader, ImageTextPipeline, check_batch_size, check_top_k

SCORE_FUNCTIONS = ("sigmoid", "softmax")


class VisualQuestionAnsweringPipeline(ImageTextPipeline):
    """Answers questions about images with LXMERT on the VG Faster R-CNN's region features.

    Build it with `pipelines.pipeline("vqa")` (or "gqa"); __call__ lists the input forms.
    """

    text_name = "question"

    def __init__(
        self,
        model: LxmertForQuestionAnswering,
        tokenizer: LxmertTokenizerFast,
        reader: ImageReader | None,
        *,
        score_function: str = "sigmoid",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_question_length: int | None = None,
    ):
        config = model.config
        if config.id2label is None:
            raise ValueError(
                f"the LXMERT checkpoint has {config.num_qa_labels} answers but no answer labels (config.id2label): "
                "use a checkpoint whose config.json lists them, or set model.config.id2label"
            )
        if len(config.id2label) != config.num_qa_labels:
            raise ValueError(
                f"the LXMERT checkpoint's answer head has {config.num_qa_labels} answers but its answer list "
                f"(config.id2label) has {len(config.id2label)}: they must match"
            )
        super().__init__(model, tokenizer, reader, batch_size=batch_size, max_text_length=max_question_length)
        self.score_function = check_score_function(score_function)
        self.answers = [config.id2label[i] for i in range(config.num_qa_labels)]

    @torch.inference_mode()
    def __call__(
        self,
        image: Any = None,
        question: str | Sequence[str] | None = None,
        *,
        top_k: int = 5,
        batch_size: int | None = None,
        image_id: str | Sequence[str] | None = None,
        store: Any = None,
        features: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        allow_network: bool | None = None,
        score_function: str | None = None,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Answer questions: [{"score", "answer"}, ...] (top_k, best first) per question.

        Input forms (an image is a path, a URL when network access is allowed, bytes, a PIL image, a
        numpy (H, W, 3) RGB array or a torch tensor):
          image=img, question="..."                  -> one list of answers
          image=img, question=["...", "..."]         -> a list per question (the image is read once)
          image=[img1, img2], question="..."         -> a list per image
          image=[img1, img2], question=["..", ".."]  -> a list per (image i, question i); equal lengths
          {"image": img, "question": "..."}          -> one list; a list of such dicts -> a list per dict
          image_id="...", store=FeatureStore(...)    -> the store's features of that image (no detector)
          features=(K, D), boxes=(K, 4) in [0, 1]    -> given region features and normalized boxes
        top_k: answers per question (>= 1; more than the model has gives them all).
        batch_size: images per detector pass and (image, question) pairs per LXMERT pass.
        score_function: "sigmoid" or "softmax" for this call (default: the pipeline's, i.e. the task's).
        """
        top_k = check_top_k(top_k)
        batch_size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        function = self.score_function if score_function is None else check_score_function(score_function)
        sources, pairs, single = self.parse(image, question, image_id, store, features, boxes)
        if not pairs:
            return []
        visual = self.visual_inputs(sources, batch_size, allow_network)
        scores = self.run_pairs(visual, pairs, batch_size, lambda inputs: self._probabilities(inputs, function))
        values, indices = scores.topk(min(top_k, len(self.answers)), dim=-1)
        results = [
            [{"score": score, "answer": self.answers[i]} for score, i in zip(row_scores, row_indices, strict=True)]
            for row_scores, row_indices in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        return results[0] if single else results

    def _probabilities(self, inputs: dict[str, torch.Tensor], function: str) -> torch.Tensor:
        logits = self.model(**inputs).question_answering_score.float()
        return logits.sigmoid() if function == "sigmoid" else logits.softmax(dim=-1)


def check_score_function(score_function: Any) -> str:
    if score_function not in SCORE_FUNCTIONS:
        raise ValueError(f"score_function must be one of {', '.join(SCORE_FUNCTIONS)}, got {score_function!r}")
    return score_function
