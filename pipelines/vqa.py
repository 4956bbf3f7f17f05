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
from contextlib import nullcontext
from typing import Any

import torch

from lxmert import LxmertForQuestionAnswering, LxmertTokenizerFast

from .base import (
    DEFAULT_BATCH_SIZE,
    ImageReader,
    ImageTextPipeline,
    Pair,
    VisualInputs,
    check_batch_size,
    check_top_k,
    chunks,
)
from .explain import AttentionRecorder, Explanation, check_attention_layer, merge_word_pieces, token_weights

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
        regions: Any = None,
        score_function: str | None = None,
        explain: bool = False,
        attention_layer: int | str = -1,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]] | Explanation | list[Explanation]:
        """Answer questions: [{"score", "answer"}, ...] (top_k, best first) per question; with explain=True an
        Explanation per question instead (pipelines.explain: the answers, and per word of the question a weight
        per region, which `.draw()` pictures).

        Input forms (an image is a path, a URL when network access is allowed, bytes, a PIL image, a
        numpy (H, W, 3) RGB array or a torch tensor):
          image=img, question="..."                  -> one list of answers
          image=img, question=["...", "..."]         -> a list per question (the image is read once)
          image=[img1, img2], question="..."         -> a list per image
          image=[img1, img2], question=["..", ".."]  -> a list per (image i, question i); equal lengths
          {"image": img, "question": "..."}          -> one list; a list of such dicts -> a list per dict
          image_id="...", store=FeatureStore(...)    -> the store's features of that image (no detector)
          features=(K, D), boxes=(K, 4) in [0, 1]    -> given region features and normalized boxes
          regions=r or [r1, r2] (RegionFeatures from the detector, or FeatureRecords of a store)
                                                     -> those regions (no detector); a list pairs as images do
        top_k: answers per question (>= 1; more than the model has gives them all).
        batch_size: images per detector pass and (image, question) pairs per LXMERT pass.
        score_function: "sigmoid" or "softmax" for this call (default: the pipeline's, i.e. the task's).
        explain: return Explanations. attention_layer: which attention they hold: a cross-modality layer (an
        int, default -1: the last), "mean" (of all layers) or "rollout" (pipelines.explain).
        """
        top_k = check_top_k(top_k)
        batch_size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        function = self.score_function if score_function is None else check_score_function(score_function)
        if explain:
            attention_layer = check_attention_layer(attention_layer, self.model.config.x_layers)
        sources, pairs, single = self.parse(image, question, image_id, store, features, boxes, regions)
        if not pairs:
            return []
        visual = self.visual_inputs(sources, batch_size, allow_network)
        if explain:
            results = self._explain(visual, pairs, batch_size, function, top_k, attention_layer)
            return results[0] if single else results
        scores = self.run_pairs(visual, pairs, batch_size, lambda inputs: self._probabilities(inputs, function))
        results = self._top_answers(scores, top_k)
        return results[0] if single else results

    def _probabilities(self, inputs: dict[str, torch.Tensor], function: str) -> torch.Tensor:
        return self._scores(self.model(**inputs).question_answering_score, function)

    @staticmethod
    def _scores(logits: torch.Tensor, function: str) -> torch.Tensor:
        logits = logits.float()
        return logits.sigmoid() if function == "sigmoid" else logits.softmax(dim=-1)

    def _top_answers(self, scores: torch.Tensor, top_k: int) -> list[list[dict[str, Any]]]:
        values, indices = scores.topk(min(top_k, len(self.answers)), dim=-1)
        return [
            [{"score": score, "answer": self.answers[i]} for score, i in zip(row_scores, row_indices, strict=True)]
            for row_scores, row_indices in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def _explain(
        self,
        visual: list[VisualInputs],
        pairs: list[Pair],
        batch_size: int,
        function: str,
        top_k: int,
        attention_layer: int | str,
    ) -> list[Explanation]:
        """Answers and attention of every pair: one forward pass per batch with the attention probabilities
        (the explicit attention arithmetic: the scores agree with explain=False's to float rounding)."""
        explanations = []
        for batch in chunks(pairs, batch_size):
            inputs = self.model_inputs(visual, batch)
            recorder = AttentionRecorder(self.model)
            with recorder if attention_layer == "rollout" else nullcontext():
                output = self.model(**inputs, output_attentions=True, return_dict=True)
            answers = self._top_answers(self._scores(output.question_answering_score, function), top_k)
            for row, pair in enumerate(batch):
                regions = visual[pair.source]
                length = int(inputs["attention_mask"][row].sum())  # the question's tokens, padded on the right
                tokens = self.tokenizer.convert_ids_to_tokens(inputs["input_ids"][row, :length].tolist())
                per_token = token_weights(
                    output.cross_encoder_attentions, recorder.maps, attention_layer, row, length, len(regions.features)
                ).cpu()
                words = merge_word_pieces(tokens)
                explanations.append(
                    Explanation(
                        question=pair.text,
                        answers=answers[row],
                        words=[word for word, _ in words],
                        weights=torch.stack([per_token[positions].mean(0) for _, positions in words]),
                        tokens=tokens,
                        token_weights=per_token,
                        normalized_boxes=regions.normalized_boxes.cpu(),
                        boxes=None if regions.boxes is None else regions.boxes.cpu(),
                        image=regions.image,
                        region_names=regions.names,
                        attention_layer=attention_layer,
                    )
                )
        return explanations


def check_score_function(score_function: Any) -> str:
    if score_function not in SCORE_FUNCTIONS:
        raise ValueError(f"score_function must be one of {', '.join(SCORE_FUNCTIONS)}, got {score_function!r}")
    return score_function
