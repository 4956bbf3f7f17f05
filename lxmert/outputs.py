"""Output containers of the LXMERT models: attribute access, indexing, and tuples for `return_dict=False`.

Fields set to None (not requested) are left out of indexing and tuples, as in transformers, so
`out[0]` is the first thing the model actually returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

Tensors = tuple[torch.Tensor, ...]


@dataclass
class ModelOutput:
    """A dataclass that also reads like a tuple (by position) and like a dict (by field name)."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.keys())

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return list(self.to_tuple())

    def items(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no output {key!r}; it holds {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class LxmertModelOutput(ModelOutput):
    """Outputs of LxmertModel.

    language_output (B, L, H) and vision_output (B, N, H): last layer of each stream.
    pooled_output (B, H): tanh(dense(language_output[:, 0])).
    language_hidden_states: output of every language layer, then of every cross-modality layer
        (l_layers + x_layers tensors of (B, L, H)); the embeddings are not included.
    vision_hidden_states: output of every relation (vision) layer, then of every cross-modality layer
        (r_layers + x_layers tensors of (B, N, H)).
    language_attentions / vision_attentions: self-attention probabilities of each single-modality
        layer, (B, heads, L, L) / (B, heads, N, N).
    cross_encoder_attentions: per cross-modality layer, the language-over-vision probabilities
        (B, heads, L, N) only.
    """

    language_output: torch.Tensor | None = None
    vision_output: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    language_hidden_states: Tensors | None = None
    vision_hidden_states: Tensors | None = None
    language_attentions: Tensors | None = None
    vision_attentions: Tensors | None = None
    cross_encoder_attentions: Tensors | None = None


@dataclass
class LxmertForPreTrainingOutput(ModelOutput):
    """Outputs of LxmertForPreTraining.

    loss: sum of the enabled pretraining losses (only when labels were given).
    prediction_logits (B, L, vocab): masked-LM scores.
    cross_relationship_score (B, 2): image-text matching logits; index 1 means "the text matches".
    question_answering_score (B, num_qa_labels): answer logits (None when config.task_qa is off).
    The hidden states and attentions are those of LxmertModelOutput.
    """

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    cross_relationship_score: torch.Tensor | None = None
    question_answering_score: torch.Tensor | None = None
    language_hidden_states: Tensors | None = None
    vision_hidden_states: Tensors | None = None
    language_attentions: Tensors | None = None
    vision_attentions: Tensors | None = None
    cross_encoder_attentions: Tensors | None = None


@dataclass
class LxmertForQuestionAnsweringOutput(ModelOutput):
    """Outputs of LxmertForQuestionAnswering.

    loss: answer loss (only when labels were given).
    question_answering_score (B, num_qa_labels): answer logits.
    The hidden states and attentions are those of LxmertModelOutput.
    """

    loss: torch.Tensor | None = None
    question_answering_score: torch.Tensor | None = None
    language_hidden_states: Tensors | None = None
    vision_hidden_states: Tensors | None = None
    language_attentions: Tensors | None = None
    vision_attentions: Tensors | None = None
    cross_encoder_attentions: Tensors | None = None


@dataclass
class LxmertForVisualReasoningOutput(ModelOutput):
    """Outputs of LxmertForVisualReasoning.

    loss: cross-entropy of the logits (only when labels were given).
    logits (B, 2): index 1 means "the statement is true of the image pair".
    The hidden states and attentions are those of LxmertModelOutput for the 2B encoder rows, in pairs:
    row 2b + i is example b with image i.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    language_hidden_states: Tensors | None = None
    vision_hidden_states: Tensors | None = None
    language_attentions: Tensors | None = None
    vision_attentions: Tensors | None = None
    cross_encoder_attentions: Tensors | None = None
