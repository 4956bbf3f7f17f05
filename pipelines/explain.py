"""Where each question word looks: LXMERT's language-to-vision attention over the regions, per word, and
its pictures (`vqa(..., explain=True)`).

The weights are the model's own `cross_encoder_attentions`: in every cross-modality layer, each language
token's attention over the regions (a softmax: a token's weights sum to 1), averaged over the heads. A word
the tokenizer split into pieces ("giraffes" -> "gi", "##raf", "##fes") gets the mean of its pieces' rows;
[CLS] and [SEP] stay apart. `attention_layer` picks what is shown:

- an int: that cross-modality layer (negative counts from the end; the default -1 is the last layer, the
  one whose [CLS] state the answer head reads);
- "mean": the mean of every cross-modality layer's weights;
- "rollout": attention rollout (Abnar & Zuidema, 2020) carried through both streams of the cross-modality
  layers. Each token's state is tracked as a mixture of the layers' inputs (the question's tokens from the
  language encoder, the regions from the vision encoder); every attention sublayer keeps half of its input
  (the residual) and adds half of what it attends to, head-averaged: language over vision, vision over
  language, then each stream's self-attention. A word's weights are the region part of its mixture at the
  last layer's cross-attention, scaled to sum to 1.

Attention weights show where the model read, not why it answered: a high weight is neither necessary nor
sufficient for a region to change the answer, and other parts of the network (values, feed-forward layers,
the residual stream) carry as much as the weights do. Treat the pictures as a view of the computation, not
as a causal explanation.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from extract.draw import grid, overlay_heatmap, region_heatmap, stack_vertically, text_panel
from extract.images import load_image

SPECIAL_TOKENS = ("[CLS]", "[SEP]")
ATTENTION_MODES = ("mean", "rollout")
PIECE_PREFIX = "##"
# Panels of a per-word figure are this wide at most (the image is scaled down to it).
WORD_PANEL_WIDTH = 320


def check_attention_layer(attention_layer: Any, layers: int) -> int | str:
    """An int in [-layers, layers) or "mean" / "rollout"; ValueError naming the choices otherwise."""
    if isinstance(attention_layer, str) and attention_layer in ATTENTION_MODES:
        return attention_layer
    if isinstance(attention_layer, (int, np.integer)) and not isinstance(attention_layer, bool):
        if -layers <= attention_layer < layers:
            return int(attention_layer)
    raise ValueError(
        f"attention_layer={attention_layer!r}: expected a cross-modality layer (an int from {-layers} to "
        f"{layers - 1}; the model has {layers}), 'mean' or 'rollout'"
    )


def merge_word_pieces(tokens: Sequence[str]) -> list[tuple[str, list[int]]]:
    """(word, positions of its tokens) for a WordPiece token sequence: a "##" piece joins the word before it;
    [CLS] and [SEP] are words of their own."""
    words: list[tuple[str, list[int]]] = []
    for position, token in enumerate(tokens):
        joins = token.startswith(PIECE_PREFIX) and words and words[-1][0] not in SPECIAL_TOKENS
        if joins:
            word, positions = words[-1]
            words[-1] = (word + token[len(PIECE_PREFIX) :], [*positions, position])
        else:
            words.append((token, [position]))
    return words


# ---------------------------------------------------------------------------------------------------
# From the model


class AttentionRecorder:
    """Forward hooks on the cross-modality layers of an LXMERT model run with output_attentions=True: per
    layer, the probabilities of the vision-over-language cross-attention and of both self-attentions (the
    model returns only the language-over-vision ones), for rollout."""

    def __init__(self, model: torch.nn.Module):
        self.layers = list(model.lxmert.encoder.x_layers)
        self.maps: list[dict[str, torch.Tensor]] = [{} for _ in self.layers]
        self._handles: list = []

    def __enter__(self) -> AttentionRecorder:
        for index, layer in enumerate(self.layers):
            self._handles += [
                layer.visual_attention.register_forward_hook(self._cross(index)),
                layer.lang_self_att.register_forward_hook(self._keep(index, "language")),
                layer.visn_self_att.register_forward_hook(self._keep(index, "vision")),
            ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _cross(self, index: int):
        def hook(module, inputs, output):  # called language-over-vision first, then vision-over-language
            maps = self.maps[index]
            maps["vision_over_language" if "language_over_vision" in maps else "language_over_vision"] = output[1]

        return hook

    def _keep(self, index: int, name: str):
        def hook(module, inputs, output):
            self.maps[index][name] = output[1]

        return hook


def rollout(maps: list[dict[str, torch.Tensor]], row: int, tokens: int, regions: int) -> torch.Tensor:
    """(tokens, regions) rollout weights of batch row `row` (module docstring), from the recorded probabilities
    (B, heads, queries, keys) of every cross-modality layer; only the row's own tokens and regions count."""

    def mean(name: str, layer: dict, queries: int, keys: int) -> torch.Tensor:
        return layer[name][row, :, :queries, :keys].float().mean(0)

    sources = tokens + regions
    language = torch.eye(tokens, sources)  # each token: a mixture over (tokens, regions)
    vision = torch.cat([torch.zeros(regions, tokens), torch.eye(regions)], dim=1)
    for index, layer in enumerate(maps):
        device = layer["language_over_vision"].device
        language, vision = language.to(device), vision.to(device)
        crossed = 0.5 * language + 0.5 * mean("language_over_vision", layer, tokens, regions) @ vision
        if index == len(maps) - 1:
            language = crossed  # the last layer's language tokens other than [CLS] feed no output
            break
        vision = 0.5 * vision + 0.5 * mean("vision_over_language", layer, regions, tokens) @ language
        language = 0.5 * crossed + 0.5 * mean("language", layer, tokens, tokens) @ crossed
        vision = 0.5 * vision + 0.5 * mean("vision", layer, regions, regions) @ vision
    weights = language[:, tokens:]
    return weights / weights.sum(dim=1, keepdim=True)


def token_weights(
    cross_attentions: Sequence[torch.Tensor],
    recorded: list[dict[str, torch.Tensor]] | None,
    attention_layer: int | str,
    row: int,
    tokens: int,
    regions: int,
) -> torch.Tensor:
    """(tokens, regions) float32 weights of batch row `row` for `attention_layer` (module docstring), from the
    model's cross_encoder_attentions (per layer (B, heads, L, K))."""
    if attention_layer == "rollout":
        return rollout(recorded, row, tokens, regions)
    chosen = cross_attentions if attention_layer == "mean" else [cross_attentions[attention_layer]]
    return torch.stack([layer[row, :, :tokens, :regions].float().mean(0) for layer in chosen]).mean(0)


# ---------------------------------------------------------------------------------------------------
# The result


@dataclass
class Explanation:
    """One question's answers and where its words looked (`vqa(image=..., question=..., explain=True)`).

    answers: [{"score", "answer"}, ...] best first, as without explain. words: the question's words as the
    model read them (lower-cased, word pieces merged), with "[CLS]" first and "[SEP]" last. weights
    (len(words), K): per word, a weight per region (each row sums to 1). boxes (K, 4): the regions in
    original-image pixels, or None when only normalized boxes were given (features=); normalized_boxes (K, 4)
    in [0, 1]. image: the image the regions came from (what was passed in), if any. region_names: "attribute
    object" per region when the detector or the store named them.
    """

    question: str
    answers: list[dict[str, Any]]
    words: list[str]
    weights: torch.Tensor
    tokens: list[str]
    token_weights: torch.Tensor  # (len(tokens), K): per word piece, before merging
    normalized_boxes: torch.Tensor
    boxes: torch.Tensor | None = None
    image: Any = field(default=None, repr=False)
    region_names: list[str] | None = None
    attention_layer: int | str = -1

    @property
    def attention(self) -> list[dict[str, Any]]:
        """[{"word", "weights": [one per region]}, ...], in question order, [CLS] first and [SEP] last."""
        return [{"word": word, "weights": row} for word, row in zip(self.words, self.weights.tolist(), strict=True)]

    @property
    def question_weights(self) -> torch.Tensor:
        """(K,) the mean of the question words' weights ([CLS] and [SEP] left out): the whole question's map."""
        kept = [i for i, word in enumerate(self.words) if word not in SPECIAL_TOKENS]
        return self.weights[kept].mean(0) if kept else self.weights.mean(0)

    def top_regions(self, count: int = 5) -> list[dict[str, Any]]:
        """The regions the whole question looked at most: [{"region", "weight", "name"?}, ...]."""
        weights = self.question_weights
        order = torch.argsort(weights, descending=True, stable=True)[:count].tolist()
        return [
            {"region": i, "weight": float(weights[i])} | ({"name": self.region_names[i]} if self.region_names else {})
            for i in order
        ]

    def draw(
        self, image: Any = None, *, per_word: bool = False, top_answers: int = 3, alpha: float = 0.6
    ) -> Image.Image:
        """A figure: the question and the top answers with their scores over the image with the heat map of the
        whole question (per_word=True: a panel per word, [CLS] and [SEP] included). image: default the one
        the regions came from; needed for features from a store or given features."""
        pixels = self._pixels(image)
        height, width = pixels.shape[:2]
        boxes = self._pixel_boxes(height, width)
        answers = "   ".join(f"{answer['answer']} {answer['score']:.2f}" for answer in self.answers[:top_answers])
        header = text_panel([f"Q: {self.question}", f"A: {answers}"], max(width, WORD_PANEL_WIDTH))
        if not per_word:
            heat = region_heatmap(boxes, self.question_weights, (height, width))
            return stack_vertically([header, overlay_heatmap(pixels, heat, alpha=alpha)])
        scale = min(1.0, WORD_PANEL_WIDTH / width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        panels = []
        for word, weights in zip(self.words, self.weights, strict=True):
            heat = region_heatmap(boxes * scale, weights, (size[1], size[0]))
            panels.append(stack_vertically([text_panel([word], size[0]), overlay_heatmap(small, heat, alpha=alpha)]))
        return stack_vertically([header, grid(panels, columns=4)], spacing=4)

    def _repr_png_(self) -> bytes | None:
        if self.image is None:
            return None
        buffer = io.BytesIO()
        self.draw().save(buffer, format="PNG")
        return buffer.getvalue()

    def _pixels(self, image: Any) -> np.ndarray:
        image = self.image if image is None else image
        if image is None:
            raise ValueError(
                "this explanation has no image (its features came from a store or were given): pass the image, "
                "explanation.draw(image)"
            )
        return load_image(image)

    def _pixel_boxes(self, height: int, width: int) -> np.ndarray:
        if self.boxes is not None:
            return self.boxes.detach().cpu().double().numpy()
        scale = np.array([width, height, width, height], dtype=np.float64)
        return self.normalized_boxes.detach().cpu().double().numpy() * scale
