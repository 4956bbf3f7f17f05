"""LXMERT (Tan & Bansal, 2019): a language encoder, an object-relation (vision) encoder, and a
cross-modality encoder, with the pretraining, question-answering and visual-reasoning (NLVR2) heads.

Parameter names are exactly those of the transformers LXMERT classes (`lxmert.encoder.x_layers.0.
visual_attention.att.query.weight`, ...), so their checkpoints load unchanged. Reading order:
embeddings -> attention blocks -> layers -> encoder -> heads -> models.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lxmert.activations import ACTIVATIONS
from lxmert.checkpoints import load_model, save_model
from lxmert.config import LxmertConfig
from lxmert.errors import name_list
from lxmert.labels import load_answers, normalize_pretrain_answer
from lxmert.outputs import (
    LxmertForPreTrainingOutput,
    LxmertForQuestionAnsweringOutput,
    LxmertForVisualReasoningOutput,
    LxmertModelOutput,
)

logger = logging.getLogger("lxmert")


class Activation(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Without autograd the exact GELU can overwrite its input (a fresh Linear output): one large
        # buffer less to allocate and fault in per feed-forward block.
        if self.name == "gelu" and not torch.is_grad_enabled():
            return torch.ops.aten.gelu_(x)
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def _layer_norm(config: LxmertConfig, size: int | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(size or config.hidden_size, eps=config.layer_norm_eps)


# ---------------------------------------------------------------------------------------------------
# Embeddings


class LxmertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout -> (B, L, H)."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        # padding_idx=0 on all three tables (row 0 starts at zero and gets no gradient), as in the
        # reference implementation: checkpoints trained with it expect it.
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size, padding_idx=0)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size, padding_idx=0)
        self.LayerNorm = _layer_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, input_ids: torch.Tensor | None, token_type_ids: torch.Tensor, inputs_embeds: torch.Tensor | None
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        embeddings = inputs_embeds + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class LxmertVisualFeatureEncoder(nn.Module):
    """Region features and boxes -> (LN(fc(features)) + LN(fc(boxes))) / 2, (B, N, H)."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visn_fc = nn.Linear(config.visual_feat_dim, config.hidden_size)
        self.visn_layer_norm = _layer_norm(config)
        self.box_fc = nn.Linear(config.visual_pos_dim, config.hidden_size)
        self.box_layer_norm = _layer_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, visual_feats: torch.Tensor, visual_pos: torch.Tensor) -> torch.Tensor:
        features = self.visn_layer_norm(self.visn_fc(visual_feats))
        boxes = self.box_layer_norm(self.box_fc(visual_pos))
        return self.dropout((features + boxes) / 2)


# ---------------------------------------------------------------------------------------------------
# Attention


# Devices where an attention's packed projection runs as one product: on a GPU one kernel launch instead of
# three. Not on the CPU: there MKL's three products were 3-10% faster than the one of three times the width
# (2-core AMD EPYC, AVX2, 20 to 640 rows; docs/benchmarks.md).
PACKED_PRODUCT_DEVICES = {"cuda"}


class TokenPacking:
    """The real tokens of a padded language batch as the rows of one (T, H) matrix, T = the number of real
    tokens: the dense layers of the language stream (projections, outputs, feed-forward) then spend no work
    on padding, and attention pads its projections back to (B, L, ...) for the masked softmax. Every real
    token gets what it gets unpacked: a dense layer treats rows independently, and padded keys are masked."""

    def __init__(self, keep: torch.Tensor):  # (B, L) bool: True = a real token
        self.batch, self.length = keep.shape
        self.index = keep.reshape(-1).nonzero().squeeze(1)  # (T,) rows of the flattened (B * L) batch

    def pack(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, ...) -> (T, ...)
        return x.reshape(self.batch * self.length, *x.shape[2:]).index_select(0, self.index)

    def pad(self, x: torch.Tensor) -> torch.Tensor:  # (T, ...) -> (B, L, ...), zeros at the padding
        padded = x.new_zeros(self.batch * self.length, *x.shape[1:]).index_copy(0, self.index, x)
        return padded.view(self.batch, self.length, *x.shape[1:])


class LxmertAttention(nn.Module):
    """Multi-head attention of `hidden` (queries) over `context` (keys and values).

    Without `output_attentions` it runs torch's fused scaled_dot_product_attention; with it, the
    explicit softmax whose probabilities are returned. Both add the same additive mask.
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        # (weight (3H, H), bias (3H,), the parameters' data pointers when packed): see pack_projections.
        self._packed: tuple[torch.Tensor, torch.Tensor, tuple[int, ...]] | None = None

    def pack_projections(self) -> None:
        """Put the query, key and value weights and biases in one (3H, H) matrix and one (3H,) vector whose rows
        the three Linear layers' parameters become views of: without gradients, a self-attention then projects
        with one matrix multiplication and a cross-attention its keys and values with one. The state-dict names
        and values stay, and training updates the three parameters as before (they are the packed rows)."""
        linears = (self.query, self.key, self.value)
        weight = torch.cat([linear.weight.detach() for linear in linears])
        bias = torch.cat([linear.bias.detach() for linear in linears])
        size = self.query.out_features
        for index, linear in enumerate(linears):
            rows = slice(index * size, (index + 1) * size)
            linear.weight = nn.Parameter(weight[rows], requires_grad=linear.weight.requires_grad)
            linear.bias = nn.Parameter(bias[rows], requires_grad=linear.bias.requires_grad)
        self._packed = (weight, bias, self._pointers())

    def _pointers(self) -> tuple[int, ...]:
        return tuple(
            p.data_ptr() for linear in (self.query, self.key, self.value) for p in (linear.weight, linear.bias)
        )

    def _apply(self, fn, recurse: bool = True):
        # .to(), .half(), .cuda() give each parameter its own new tensor: pack the new ones again.
        module = super()._apply(fn, recurse)
        if self._packed is not None:
            self.pack_projections()
        return module

    def _project(self, hidden: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query of `hidden`, key and value of `context`: with one packed matrix multiplication where it pays
        (PACKED_PRODUCT_DEVICES) and is possible (no gradient recorded, and the parameters still the packed
        rows: a load with assign=True, for one, replaces them)."""
        packed = self._packed
        if (
            packed is None
            or hidden.device.type not in PACKED_PRODUCT_DEVICES
            or torch.is_grad_enabled()
            or packed[2] != self._pointers()
        ):
            return self.query(hidden), self.key(context), self.value(context)
        weight, bias, _ = packed
        size = self.query.out_features
        if hidden is context:
            return F.linear(hidden, weight, bias).split(size, dim=-1)
        key, value = F.linear(context, weight[size:], bias[size:]).split(size, dim=-1)
        return self.query(hidden), key, value

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, head_dim)
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        hidden_packing: TokenPacking | None = None,
        context_packing: TokenPacking | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden (B, Lq, H) or, with hidden_packing, (T, H) packed rows (then so is the result); context
        (B, Lk, H) or packed with context_packing."""
        query, key, value = self._project(hidden, context)
        if hidden_packing is not None:
            query = hidden_packing.pad(query)
        if context_packing is not None:
            key, value = context_packing.pad(key), context_packing.pad(value)
        batch, length = query.shape[:2]
        query, key, value = self._heads(query), self._heads(key), self._heads(value)
        probs = None
        if output_attentions:
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            probs = scores.softmax(dim=-1)
            attended = torch.matmul(self.dropout(probs), value)
        else:
            dropout = self.dropout.p if self.training else 0.0
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(batch, length, -1)
        if hidden_packing is not None:
            attended = hidden_packing.pack(attended)
        return attended, probs


class LxmertResidualOutput(nn.Module):
    """LayerNorm(dropout(dense(x)) + residual): closes every attention and feed-forward block."""

    def __init__(self, config: LxmertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = _layer_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        # In place: the dense output is fresh, and neither dense nor dropout needs it for backward.
        return self.LayerNorm(self.dropout(self.dense(x)).add_(residual))


class LxmertSelfAttentionLayer(nn.Module):
    """Self-attention block; `queries` (default: all of `hidden`) may be a subset of the tokens, e.g. the first."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.self = LxmertAttention(config)
        self.output = LxmertResidualOutput(config, config.hidden_size)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        queries: torch.Tensor | None = None,
        packing: TokenPacking | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden (B, L, H), or (T, H) packed rows with `packing` (not together with `queries`)."""
        queries = hidden if queries is None else queries
        attended, probs = self.self(queries, hidden, mask, output_attentions, packing, packing)
        return self.output(attended, queries), probs


class LxmertCrossAttentionLayer(nn.Module):
    """Attention of one modality over the other, with the residual to the querying modality."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.att = LxmertAttention(config)
        self.output = LxmertResidualOutput(config, config.hidden_size)

    def forward(
        self,
        hidden: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
        output_attentions: bool,
        hidden_packing: TokenPacking | None = None,
        context_packing: TokenPacking | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.att(hidden, context, context_mask, output_attentions, hidden_packing, context_packing)
        return self.output(attended, hidden), probs


# ---------------------------------------------------------------------------------------------------
# Feed-forward and layers


class LxmertIntermediate(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = Activation(config.hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden))


class LxmertLayer(nn.Module):
    """A BERT layer: self-attention then feed-forward. Used by the language and the vision encoders."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.attention = LxmertSelfAttentionLayer(config)
        self.intermediate = LxmertIntermediate(config)
        self.output = LxmertResidualOutput(config, config.intermediate_size)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        output_attentions: bool = False,
        packing: TokenPacking | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(hidden, mask, output_attentions, packing=packing)
        return self.output(self.intermediate(attended), attended), probs


class LxmertXLayer(nn.Module):
    """Cross-modality layer: one shared cross-attention used in both directions, then a self-attention
    and a feed-forward block per modality."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visual_attention = LxmertCrossAttentionLayer(config)
        self.lang_self_att = LxmertSelfAttentionLayer(config)
        self.visn_self_att = LxmertSelfAttentionLayer(config)
        self.lang_inter = LxmertIntermediate(config)
        self.lang_output = LxmertResidualOutput(config, config.intermediate_size)
        self.visn_inter = LxmertIntermediate(config)
        self.visn_output = LxmertResidualOutput(config, config.intermediate_size)

    def forward(
        self,
        lang: torch.Tensor,
        lang_mask: torch.Tensor | None,
        visn: torch.Tensor,
        visn_mask: torch.Tensor | None,
        output_attentions: bool = False,
        first_token_only: bool = False,
        packing: TokenPacking | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns (language (B, L, H), vision (B, N, H), language-over-vision probabilities or None).

        `first_token_only` computes just what the pooler reads: the language stream's first token
        (B, 1, H); the vision stream is skipped and returned as None. With `packing` the language stream
        comes and goes as packed rows (T, H), except the first-token result.
        """
        # Only the language-over-vision probabilities are returned, but with output_attentions every
        # attention takes the explicit path, so that the whole forward is the reference's arithmetic.
        explicit = output_attentions
        lang_att, cross_probs = self.visual_attention(lang, visn, visn_mask, explicit, hidden_packing=packing)
        if first_token_only:
            if packing is not None:
                lang_att = packing.pad(lang_att)  # the padding stays masked out as keys
            lang_att, _ = self.lang_self_att(lang_att, lang_mask, explicit, queries=lang_att[:, :1])
            return self.lang_output(self.lang_inter(lang_att), lang_att), None, cross_probs
        visn_att, _ = self.visual_attention(visn, lang, lang_mask, explicit, context_packing=packing)
        lang_att, _ = self.lang_self_att(lang_att, lang_mask, explicit, packing=packing)
        visn_att, _ = self.visn_self_att(visn_att, visn_mask, explicit)
        lang_out = self.lang_output(self.lang_inter(lang_att), lang_att)
        visn_out = self.visn_output(self.visn_inter(visn_att), visn_att)
        return lang_out, visn_out, cross_probs


# ---------------------------------------------------------------------------------------------------
# Encoder


class LxmertEncoder(nn.Module):
    """Visual feature encoder, l_layers language layers, r_layers vision layers, x_layers cross layers."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visn_fc = LxmertVisualFeatureEncoder(config)
        # `layer` (not `l_layers`) so that BERT checkpoints' encoder.layer.* names fit the language stream.
        self.layer = nn.ModuleList(LxmertLayer(config) for _ in range(config.l_layers))
        self.x_layers = nn.ModuleList(LxmertXLayer(config) for _ in range(config.x_layers))
        self.r_layers = nn.ModuleList(LxmertLayer(config) for _ in range(config.r_layers))

    def forward(
        self,
        lang: torch.Tensor,
        lang_mask: torch.Tensor | None,
        visual_feats: torch.Tensor,
        visual_pos: torch.Tensor,
        visn_mask: torch.Tensor | None,
        output_attentions: bool = False,
        pooler_input_only: bool = False,
    ) -> dict[str, Any]:
        """Run the three encoders. Returns a dict with the hidden-state and attention tuples.

        `pooler_input_only` skips the work that cannot reach the pooled output (the last cross layer's
        vision stream and its language tokens after the first); the last language state is then
        (B, 1, H) and there is no vision output. Only valid when no hidden states are returned. On the
        CPU it also packs the language tokens of a padded batch (TokenPacking), unless attention
        probabilities are asked for (their rows at the padding would differ from the padded computation's).
        """
        visn = self.visn_fc(visual_feats, visual_pos)
        lang_states, visn_states = [], []
        lang_attentions, visn_attentions, cross_attentions = [], [], []
        packing = None
        if pooler_input_only and not output_attentions and lang.device.type == "cpu" and lang_mask is not None:
            # On a GPU the packing's index would cost a wait for the device, for little: it is not compute-bound.
            keep = lang_mask[:, 0, 0, :] == 0  # (B, L): the real tokens
            # Trailing columns of padding only are dropped (no query reads them as keys; one question alone
            # needs no more); what padding is left, in a batch, is packed away.
            length = int(keep.any(0).nonzero().max()) + 1 if bool(keep.any()) else keep.shape[1]
            lang, lang_mask, keep = lang[:, :length], lang_mask[..., :length], keep[:, :length]
            # Packed only when every row's first token, the one the pooler reads, is real (no left padding).
            if len(keep) > 1 and not bool(keep.all()) and bool(keep[:, 0].all()):
                packing = TokenPacking(keep)
                lang = packing.pack(lang)
        for layer in self.layer:
            lang, probs = layer(lang, lang_mask, output_attentions, packing)
            lang_states.append(lang)
            lang_attentions.append(probs)
        for layer in self.r_layers:
            visn, probs = layer(visn, visn_mask, output_attentions)
            visn_states.append(visn)
            visn_attentions.append(probs)
        for i, layer in enumerate(self.x_layers):
            last = i == len(self.x_layers) - 1
            lang, visn, probs = layer(
                lang,
                lang_mask,
                visn,
                visn_mask,
                output_attentions,
                first_token_only=pooler_input_only and last,
                packing=packing,
            )
            lang_states.append(lang)
            visn_states.append(visn)
            cross_attentions.append(probs)
        if packing is not None and not self.x_layers and lang_states:
            lang_states[-1] = packing.pad(lang_states[-1])  # no cross layer unpacked it: the pooler reads (B, L, H)
        return {
            "language_hidden_states": tuple(lang_states),
            "vision_hidden_states": tuple(visn_states),
            "language_attentions": tuple(lang_attentions) if output_attentions else None,
            "vision_attentions": tuple(visn_attentions) if output_attentions else None,
            "cross_encoder_attentions": tuple(cross_attentions) if output_attentions else None,
        }


# ---------------------------------------------------------------------------------------------------
# Heads


class LxmertPooler(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, language_output: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, H)
        return self.activation(self.dense(language_output[:, 0]))


class LxmertPredictionHeadTransform(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = Activation(config.hidden_act)
        self.LayerNorm = _layer_norm(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden)))


class LxmertLMPredictionHead(nn.Module):
    """Masked-LM scores: transform, then the word-embedding matrix (tied) plus a per-token bias."""

    def __init__(self, config: LxmertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.transform = LxmertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings
        self.decoder.tied_to_embeddings = True  # initialized as the embedding table, not as a Linear
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden)) + self.bias


class LxmertPreTrainingHeads(nn.Module):
    def __init__(self, config: LxmertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.predictions = LxmertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, language_output: torch.Tensor, pooled_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictions(language_output), self.seq_relationship(pooled_output)


def visual_losses(config: LxmertConfig) -> dict[str, int]:
    """The enabled visual pretraining targets and their output sizes, in the reference's order."""
    losses = {}
    if config.visual_obj_loss:
        losses["obj"] = config.num_object_labels
    if config.visual_attr_loss:
        losses["attr"] = config.num_attr_labels
    if config.visual_feat_loss:
        losses["feat"] = config.visual_feat_dim
    return losses


class LxmertVisualObjHead(nn.Module):
    """Per-box predictions of the masked-object tasks: object class, attribute, and the 2048-d feature."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.transform = LxmertPredictionHeadTransform(config)
        self.decoder_dict = nn.ModuleDict(
            {name: nn.Linear(config.hidden_size, size) for name, size in visual_losses(config).items()}
        )

    def forward(self, vision_output: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.transform(vision_output)
        return {name: decoder(hidden) for name, decoder in self.decoder_dict.items()}


def _logit_fc(config: LxmertConfig, in_features: int, num_labels: int) -> nn.Sequential:
    """LXMERT's classifier: Linear(in, 2H) -> GELU -> LayerNorm(2H) -> Linear(2H, num_labels). Its
    activation is always exact GELU, whatever config.hidden_act says, as in the original heads."""
    width = config.hidden_size * 2
    return nn.Sequential(
        nn.Linear(in_features, width),
        Activation("gelu"),
        _layer_norm(config, width),
        nn.Linear(width, num_labels),
    )


class LxmertVisualAnswerHead(nn.Module):
    """pooled (B, H) -> answer logits (B, num_labels)."""

    def __init__(self, config: LxmertConfig, num_labels: int):
        super().__init__()
        self.logit_fc = _logit_fc(config, config.hidden_size, num_labels)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.logit_fc(pooled_output)


# ---------------------------------------------------------------------------------------------------
# Models


class LxmertPreTrainedModel(nn.Module):
    """Weight initialization and the from_pretrained / save_pretrained contract."""

    base_model_prefix = "lxmert"
    # State-dict names that share storage with another parameter (not stored in safetensors files).
    tied_weights = ()

    def __init__(self, config: LxmertConfig):
        super().__init__()
        if not isinstance(config, LxmertConfig):
            raise TypeError(f"{type(self).__name__} needs an LxmertConfig, got {type(config).__name__}")
        self.config = config

    def post_init(self) -> None:
        self.apply(self._init_weights)
        self.tie_weights()
        self.pack_projections()

    def pack_projections(self) -> None:
        """Pack every attention's query, key and value projections (LxmertAttention.pack_projections); done
        at construction, and again by every load and device or dtype change."""
        for module in self.modules():
            if isinstance(module, LxmertAttention):
                module.pack_projections()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if getattr(module, "tied_to_embeddings", False):
            return
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, LxmertLMPredictionHead):
            nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Re-point tied parameters at their source (after loading replaced the source)."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        config: LxmertConfig | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        from_tf: bool = False,
        strict: bool = True,
        answers: Sequence[str] | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        **config_overrides: Any,
    ):
        """Load a model from a local folder (or weights file) or a hub id.

        Reads config.json and model.safetensors (else pytorch_model.bin with weights_only=True, else a
        TensorFlow tf_model.h5, read with h5py; `from_tf=True` asks for the latter). Any tensor that is
        missing, unexpected or of the wrong shape raises CheckpointError with names and shapes;
        `strict=False` initializes missing head tensors randomly instead (to fine-tune a new head).
        `dtype` ("float32", "bfloat16", a torch.dtype, or "auto" for the checkpoint's) and `device`
        place the result. `config_overrides` change config fields (e.g. output_attentions=True).
        `answers` (classes with an answer head): after loading, `remap_answer_head(answers)` gives the
        head one row per answer, carried over by answer string from the checkpoint's head (e.g. from
        the 9,500 pretraining answers of unc-nlp/lxmert-base-uncased to the VQA list).
        """
        if answers is not None and not hasattr(cls, "remap_answer_head"):
            raise TypeError(
                f"answers= re-maps an answer head, and {cls.__name__} has none "
                "(LxmertForQuestionAnswering and LxmertForPreTraining have one)"
            )
        model = load_model(
            cls,
            name_or_path,
            pretraining_cls=LxmertForPreTraining,
            config=config,
            dtype=dtype,
            device=device,
            from_tf=from_tf,
            strict=strict,
            hub_kwargs={
                "revision": revision,
                "cache_dir": cache_dir,
                "local_files_only": local_files_only,
                "token": token,
            },
            config_overrides=config_overrides,
        )
        if answers is not None:
            model.remap_answer_head(answers)
        return model

    def save_pretrained(self, directory: str | os.PathLike, *, safe_serialization: bool = True) -> None:
        """Write config.json and model.safetensors (or pytorch_model.bin) in the transformers layout."""
        save_model(self, directory, safe_serialization=safe_serialization)


class LxmertModel(LxmertPreTrainedModel):
    """The LXMERT backbone: text + region features -> language, vision and pooled outputs."""

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.embeddings = LxmertEmbeddings(config)
        self.encoder = LxmertEncoder(config)
        self.pooler = LxmertPooler(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.embeddings.word_embeddings = embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> LxmertModelOutput | tuple:
        """input_ids (B, L) or inputs_embeds (B, L, H); visual_feats (B, N, visual_feat_dim); visual_pos
        (B, N, visual_pos_dim), boxes normalized to [0, 1]; masks (B, L) / (B, N) with 1 = attend."""
        output = self.encode(
            input_ids,
            visual_feats,
            visual_pos,
            attention_mask,
            visual_attention_mask,
            token_type_ids,
            inputs_embeds,
            output_attentions=self._flag(output_attentions, "output_attentions"),
            output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"),
        )
        return output if self._flag(return_dict, "return_dict") else output.to_tuple()

    def _flag(self, value: bool | None, name: str) -> bool:
        return getattr(self.config, name) if value is None else bool(value)

    def encode(
        self,
        input_ids: torch.Tensor | None,
        visual_feats: torch.Tensor | None,
        visual_pos: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        pooled_only: bool = False,
    ) -> LxmertModelOutput:
        """forward() with resolved flags; `pooled_only` (no hidden states) skips what the pooler cannot see
        and leaves language_output and vision_output unset."""
        check_inputs(
            self.config, input_ids, inputs_embeds, visual_feats, visual_pos, attention_mask, visual_attention_mask
        )
        batch, length = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        device = visual_feats.device
        if token_type_ids is None:
            token_type_ids = torch.zeros(batch, length, dtype=torch.long, device=device)
        embeddings = self.embeddings(input_ids, token_type_ids, inputs_embeds)
        dtype = embeddings.dtype
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, device=device)
        lang_mask = _additive_mask(attention_mask, dtype)
        visn_mask = None if visual_attention_mask is None else _additive_mask(visual_attention_mask, dtype)
        pooled_only = pooled_only and not output_hidden_states
        encoded = self.encoder(
            embeddings,
            lang_mask,
            visual_feats.to(dtype),
            visual_pos.to(dtype),
            visn_mask,
            output_attentions,
            pooler_input_only=pooled_only,
        )
        language_output = encoded["language_hidden_states"][-1]
        return LxmertModelOutput(
            language_output=None if pooled_only else language_output,
            vision_output=None if pooled_only else encoded["vision_hidden_states"][-1],
            pooled_output=self.pooler(language_output),
            language_hidden_states=encoded["language_hidden_states"] if output_hidden_states else None,
            vision_hidden_states=encoded["vision_hidden_states"] if output_hidden_states else None,
            language_attentions=encoded["language_attentions"],
            vision_attentions=encoded["vision_attentions"],
            cross_encoder_attentions=encoded["cross_encoder_attentions"],
        )


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) with 1 = attend -> (B, 1, 1, L) with 0 = attend and the dtype's minimum = masked."""
    mask = mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def check_inputs(
    config: LxmertConfig,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    visual_feats: torch.Tensor | None,
    visual_pos: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    visual_attention_mask: torch.Tensor | None,
) -> None:
    """Raise ValueError naming the problem with the model inputs; warn when boxes are not normalized."""
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("pass either input_ids or inputs_embeds, not both")
    if input_ids is None and inputs_embeds is None:
        raise ValueError("pass input_ids (B, L) or inputs_embeds (B, L, hidden_size): got neither")
    if visual_feats is None or visual_pos is None:
        if visual_feats is None and visual_pos is None:
            missing, got = "visual_feats and visual_pos are", ""
        else:
            missing = "visual_feats is" if visual_feats is None else "visual_pos is"
            got = " (got only visual_pos)" if visual_feats is None else " (got only visual_feats)"
        raise ValueError(
            f"{missing} missing: LXMERT needs both visual_feats (B, N, {config.visual_feat_dim}) and "
            f"visual_pos (B, N, {config.visual_pos_dim}){got}"
        )
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        text_shape = tuple(input_ids.shape)
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be (batch, length, {config.hidden_size}), got shape {tuple(inputs_embeds.shape)}"
            )
        text_shape = tuple(inputs_embeds.shape[:2])
    if visual_feats.dim() != 3 or visual_feats.shape[-1] != config.visual_feat_dim:
        raise ValueError(
            f"visual_feats must be (batch, boxes, {config.visual_feat_dim}), got shape {tuple(visual_feats.shape)}"
        )
    if visual_pos.dim() != 3 or visual_pos.shape[-1] != config.visual_pos_dim:
        raise ValueError(
            f"visual_pos must be (batch, boxes, {config.visual_pos_dim}), got shape {tuple(visual_pos.shape)}"
        )
    if visual_pos.shape[:2] != visual_feats.shape[:2]:
        raise ValueError(
            f"visual_pos has {visual_pos.shape[1]} boxes for {visual_pos.shape[0]} images but visual_feats has "
            f"{visual_feats.shape[1]} for {visual_feats.shape[0]} (shapes {tuple(visual_pos.shape)} vs "
            f"{tuple(visual_feats.shape)})"
        )
    if visual_feats.shape[0] != text_shape[0]:
        raise ValueError(
            f"the text batch has {text_shape[0]} rows but visual_feats has {visual_feats.shape[0]} "
            f"(shapes {text_shape} vs {tuple(visual_feats.shape)})"
        )
    if text_shape[1] > config.max_position_embeddings:
        raise ValueError(
            f"the text has {text_shape[1]} tokens but the model has only {config.max_position_embeddings} "
            "position embeddings (config.max_position_embeddings): truncate it, e.g. tokenizer(..., truncation=True)"
        )
    if attention_mask is not None and tuple(attention_mask.shape) != text_shape:
        raise ValueError(f"attention_mask must have the text's shape {text_shape}, got {tuple(attention_mask.shape)}")
    if visual_attention_mask is not None and tuple(visual_attention_mask.shape) != tuple(visual_feats.shape[:2]):
        raise ValueError(
            f"visual_attention_mask must be (batch, boxes) = {tuple(visual_feats.shape[:2])}, "
            f"got {tuple(visual_attention_mask.shape)}"
        )
    # One host sync for the value checks.
    checks = [visual_pos.amin() < -1e-5, visual_pos.amax() > 1 + 1e-5]
    if input_ids is not None:
        checks += [input_ids.amin() < 0, input_ids.amax() >= config.vocab_size]
    flags = torch.stack(checks).tolist()
    if len(flags) == 4 and (flags[2] or flags[3]):
        raise ValueError(
            f"input_ids holds ids outside the vocabulary [0, {config.vocab_size}): min {int(input_ids.min())}, "
            f"max {int(input_ids.max())}"
        )
    if flags[0] or flags[1]:
        warnings.warn(
            f"visual_pos lies outside [0, 1] (min {float(visual_pos.min()):.4g}, max {float(visual_pos.max()):.4g}): "
            "the pretrained LXMERT models expect boxes divided by the image width and height",
            stacklevel=4,
        )


def answer_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hard labels (B,) of answer ids -> cross-entropy (the reference; -100 is ignored).
    Soft targets (B, num_answers) of scores in [0, 1] -> binary cross-entropy summed over answers and
    averaged over the batch, as LXMERT was fine-tuned on VQA (BCE mean times the number of answers)."""
    num_answers = scores.shape[-1]
    if labels.is_floating_point():
        if tuple(labels.shape) != tuple(scores.shape):
            raise ValueError(
                f"soft answer targets must have the scores' shape {tuple(scores.shape)}, got {tuple(labels.shape)}"
            )
        return F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype)) * num_answers
    if labels.numel() != scores.shape[0]:
        raise ValueError(
            f"answer labels must be one id per example ({scores.shape[0]}) or float scores of shape "
            f"{tuple(scores.shape)}, got shape {tuple(labels.shape)}"
        )
    return F.cross_entropy(scores.view(-1, num_answers), labels.reshape(-1))


class LxmertForQuestionAnswering(LxmertPreTrainedModel):
    """LXMERT with the answer head on the pooled output (VQA, GQA)."""

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.answer_head = LxmertVisualAnswerHead(config, config.num_qa_labels)
        self.post_init()

    def get_qa_logit_layer(self) -> nn.Linear:
        return self.answer_head.logit_fc[-1]

    def resize_num_qa_labels(self, num_labels: int, labels: list[str] | None = None) -> nn.Linear:
        """Change the number of answers: kept rows are copied, new rows freshly initialized.
        `labels` (one per answer) replaces config.id2label; without it the old labels are cut to size,
        or dropped when the head grows."""
        return _resize_answer_head(self, self.answer_head, num_labels, labels)

    def remap_answer_head(self, answers: Sequence[str], source_answers: Sequence[str] | None = None) -> int:
        """Give the answer head one row per answer of `answers`, carried over by answer string.

        Each answer, normalized as lxmert.labels.normalize_pretrain_answer says, that is one of the
        head's current answers gets that answer's last-layer row and bias; the others start at zero.
        The layers before the last are kept. `source_answers` names the current rows; by default
        config.id2label, else, for a head of 9,500 rows, LXMERT's pretraining answers. config.id2label
        and num_qa_labels become the new list. Returns how many answers were carried over.
        """
        return _remap_answer_head(self, self.answer_head, answers, source_answers)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> LxmertForQuestionAnsweringOutput | tuple:
        """Inputs as LxmertModel.forward; labels: answer ids (B,) or soft scores (B, num_qa_labels)."""
        output_hidden_states = self.lxmert._flag(output_hidden_states, "output_hidden_states")
        encoded = self.lxmert.encode(
            input_ids,
            visual_feats,
            visual_pos,
            attention_mask,
            visual_attention_mask,
            token_type_ids,
            inputs_embeds,
            output_attentions=self.lxmert._flag(output_attentions, "output_attentions"),
            output_hidden_states=output_hidden_states,
            pooled_only=True,
        )
        scores = self.answer_head(encoded.pooled_output)
        output = LxmertForQuestionAnsweringOutput(
            loss=None if labels is None else answer_loss(scores, labels),
            question_answering_score=scores,
            language_hidden_states=encoded.language_hidden_states,
            vision_hidden_states=encoded.vision_hidden_states,
            language_attentions=encoded.language_attentions,
            vision_attentions=encoded.vision_attentions,
            cross_encoder_attentions=encoded.cross_encoder_attentions,
        )
        return output if self.lxmert._flag(return_dict, "return_dict") else output.to_tuple()


class LxmertForVisualReasoning(LxmertPreTrainedModel):
    """LXMERT for NLVR2: is one statement true of a pair of images?

    The statement is encoded with each image (2B encoder rows); the two pooled outputs, image 0 then
    image 1, are concatenated (B, 2H) and classified by `logit_fc`: Linear(2H, 2H) -> GELU ->
    LayerNorm(2H) -> Linear(2H, 2). The number of labels is always 2: no config field is involved.
    """

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.logit_fc = _logit_fc(config, config.hidden_size * 2, 2)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> LxmertForVisualReasoningOutput | tuple:
        """The statement: input_ids (B, L) or inputs_embeds (B, L, H), attention_mask and token_type_ids
        (B, L). The images: visual_feats (B, 2, N, visual_feat_dim), visual_pos (B, 2, N, visual_pos_dim),
        visual_attention_mask (B, 2, N). labels (B,): 1 = the statement is true, 0 = false."""
        _check_image_pairs(self.config, input_ids, inputs_embeds, visual_feats, visual_pos, visual_attention_mask)
        output_hidden_states = self.lxmert._flag(output_hidden_states, "output_hidden_states")
        encoded = self.lxmert.encode(
            _per_image(input_ids),
            visual_feats.flatten(0, 1),  # (2B, N, visual_feat_dim): example 0 image 0, example 0 image 1, ...
            visual_pos.flatten(0, 1),
            _per_image(attention_mask),
            None if visual_attention_mask is None else visual_attention_mask.flatten(0, 1),
            _per_image(token_type_ids),
            _per_image(inputs_embeds),
            output_attentions=self.lxmert._flag(output_attentions, "output_attentions"),
            output_hidden_states=output_hidden_states,
            pooled_only=True,
        )
        pooled_pairs = encoded.pooled_output.view(-1, 2 * self.config.hidden_size)  # (B, 2H)
        logits = self.logit_fc(pooled_pairs)
        output = LxmertForVisualReasoningOutput(
            loss=None if labels is None else _pair_loss(logits, labels),
            logits=logits,
            language_hidden_states=encoded.language_hidden_states,
            vision_hidden_states=encoded.vision_hidden_states,
            language_attentions=encoded.language_attentions,
            vision_attentions=encoded.vision_attentions,
            cross_encoder_attentions=encoded.cross_encoder_attentions,
        )
        return output if self.lxmert._flag(return_dict, "return_dict") else output.to_tuple()


def _per_image(text: torch.Tensor | None) -> torch.Tensor | None:
    """(B, ...) -> (2B, ...), each row twice: the statement goes with both images of its pair."""
    return None if text is None else text.repeat_interleave(2, dim=0)


def _check_image_pairs(
    config: LxmertConfig,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    visual_feats: torch.Tensor | None,
    visual_pos: torch.Tensor | None,
    visual_attention_mask: torch.Tensor | None,
) -> None:
    """The pair layout; check_inputs checks the rest once the pairs are flattened."""
    for name, tensor, width in (
        ("visual_feats", visual_feats, config.visual_feat_dim),
        ("visual_pos", visual_pos, config.visual_pos_dim),
    ):
        if tensor is None:
            raise ValueError(
                f"{name} is missing: LxmertForVisualReasoning needs visual_feats (B, 2, N, {config.visual_feat_dim}) "
                f"and visual_pos (B, 2, N, {config.visual_pos_dim})"
            )
        if tensor.dim() != 4 or tensor.shape[1] != 2:
            raise ValueError(
                f"{name} must be (batch, 2 images, boxes, {width}), one pair of images per statement; "
                f"got shape {tuple(tensor.shape)}"
            )
    if visual_pos.shape[:3] != visual_feats.shape[:3]:
        raise ValueError(
            f"visual_pos and visual_feats must agree on (batch, 2, boxes): shapes {tuple(visual_pos.shape)} vs "
            f"{tuple(visual_feats.shape)}"
        )
    if visual_attention_mask is not None and tuple(visual_attention_mask.shape) != tuple(visual_feats.shape[:3]):
        raise ValueError(
            f"visual_attention_mask must be (batch, 2, boxes) = {tuple(visual_feats.shape[:3])}, "
            f"got {tuple(visual_attention_mask.shape)}"
        )
    text = input_ids if input_ids is not None else inputs_embeds
    if text is not None and text.dim() >= 1 and text.shape[0] != visual_feats.shape[0]:
        raise ValueError(
            f"{text.shape[0]} statements but {visual_feats.shape[0]} image pairs (shapes {tuple(text.shape)} vs "
            f"{tuple(visual_feats.shape)})"
        )


def _pair_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.is_floating_point() or labels.numel() != logits.shape[0]:
        raise ValueError(
            f"labels must be one class id per statement ({logits.shape[0]}, 1 = true), got a {labels.dtype} "
            f"tensor of shape {tuple(labels.shape)}"
        )
    return F.cross_entropy(logits, labels.reshape(-1))


class LxmertForPreTraining(LxmertPreTrainedModel):
    """LXMERT with every pretraining head: masked LM, image-text matching, masked objects, QA."""

    tied_weights = ("cls.predictions.decoder.weight",)

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.cls = LxmertPreTrainingHeads(config, self.lxmert.embeddings.word_embeddings.weight)
        if config.task_obj_predict:
            self.obj_predict_head = LxmertVisualObjHead(config)
        if config.task_qa:
            self.answer_head = LxmertVisualAnswerHead(config, config.num_qa_labels)
        self.post_init()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.lxmert.embeddings.word_embeddings.weight

    def get_qa_logit_layer(self) -> nn.Linear | None:
        return self.answer_head.logit_fc[-1] if self.config.task_qa else None

    def resize_num_qa_labels(self, num_labels: int, labels: list[str] | None = None) -> nn.Linear:
        """As LxmertForQuestionAnswering.resize_num_qa_labels."""
        self._check_answer_head()
        return _resize_answer_head(self, self.answer_head, num_labels, labels)

    def remap_answer_head(self, answers: Sequence[str], source_answers: Sequence[str] | None = None) -> int:
        """As LxmertForQuestionAnswering.remap_answer_head."""
        self._check_answer_head()
        return _remap_answer_head(self, self.answer_head, answers, source_answers)

    def _check_answer_head(self) -> None:
        if not self.config.task_qa:
            raise ValueError("this LxmertForPreTraining has no answer head (config.task_qa is False)")

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        visual_feats: torch.Tensor | None = None,
        visual_pos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        obj_labels: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        matched_label: torch.Tensor | None = None,
        ans: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> LxmertForPreTrainingOutput | tuple:
        """Inputs as LxmertModel.forward, plus the targets of each enabled task:
        labels (B, L) masked-LM token ids, -100 = not predicted; matched_label (B,) 1 = the text matches
        the image; obj_labels {"obj": (ids (B, N), weights (B, N)), "attr": (ids, weights), "feat":
        (features (B, N, visual_feat_dim), weights (B, N))}, weights usually 1 for masked boxes and 0
        elsewhere; ans (B,) answer ids or (B, num_qa_labels) soft scores."""
        encoded = self.lxmert.encode(
            input_ids,
            visual_feats,
            visual_pos,
            attention_mask,
            visual_attention_mask,
            token_type_ids,
            inputs_embeds,
            output_attentions=self.lxmert._flag(output_attentions, "output_attentions"),
            output_hidden_states=self.lxmert._flag(output_hidden_states, "output_hidden_states"),
        )
        lm_scores, match_scores = self.cls(encoded.language_output, encoded.pooled_output)
        answer_scores = self.answer_head(encoded.pooled_output) if self.config.task_qa else None

        loss = None
        if any(target is not None for target in (labels, matched_label, obj_labels, ans)):
            loss = torch.zeros((), device=match_scores.device, dtype=match_scores.dtype)
        if labels is not None and self.config.task_mask_lm:
            loss = loss + F.cross_entropy(lm_scores.view(-1, self.config.vocab_size), labels.reshape(-1))
        if matched_label is not None and self.config.task_matched:
            loss = loss + F.cross_entropy(match_scores.view(-1, 2), matched_label.reshape(-1))
        if obj_labels is not None and self.config.task_obj_predict:
            loss = loss + self._visual_loss(encoded.vision_output, obj_labels)
        if ans is not None and self.config.task_qa:
            loss = loss + answer_loss(answer_scores, ans)

        output = LxmertForPreTrainingOutput(
            loss=loss,
            prediction_logits=lm_scores,
            cross_relationship_score=match_scores,
            question_answering_score=answer_scores,
            language_hidden_states=encoded.language_hidden_states,
            vision_hidden_states=encoded.vision_hidden_states,
            language_attentions=encoded.language_attentions,
            vision_attentions=encoded.vision_attentions,
            cross_encoder_attentions=encoded.cross_encoder_attentions,
        )
        return output if self.lxmert._flag(return_dict, "return_dict") else output.to_tuple()

    def _visual_loss(self, vision_output: torch.Tensor, obj_labels: dict) -> torch.Tensor:
        """Per enabled target: per-box loss (cross-entropy, or smooth-L1 averaged over the feature), times
        the box weight, averaged over all boxes, times config.visual_loss_normalizer; summed."""
        predictions = self.obj_predict_head(vision_output)
        missing = [name for name in predictions if name not in obj_labels]
        if missing:
            raise ValueError(
                f"obj_labels lacks {missing}: the enabled visual losses need {list(predictions)} "
                "(turn one off with config.visual_obj_loss / visual_attr_loss / visual_feat_loss)"
            )
        total = torch.zeros((), device=vision_output.device, dtype=vision_output.dtype)
        for name, scores in predictions.items():
            target, weight = obj_labels[name]
            if name == "feat":
                per_box = F.smooth_l1_loss(
                    scores.view(-1, scores.shape[-1]), target.reshape(-1, scores.shape[-1]), reduction="none"
                ).mean(1)
            else:
                per_box = F.cross_entropy(scores.view(-1, scores.shape[-1]), target.reshape(-1), reduction="none")
            total = total + (per_box * weight.reshape(-1)).mean() * self.config.visual_loss_normalizer
        return total


def _resize_answer_head(
    model: LxmertPreTrainedModel, head: LxmertVisualAnswerHead, num_labels: int, labels: list[str] | None
) -> nn.Linear:
    if not isinstance(num_labels, int) or num_labels <= 0:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    if labels is not None and len(labels) != num_labels:
        raise ValueError(f"got {len(labels)} labels for {num_labels} answers")
    old = head.logit_fc[-1]
    if old.out_features != num_labels:
        new = nn.Linear(old.in_features, num_labels, device=old.weight.device, dtype=old.weight.dtype)
        model._init_weights(new)
        keep = min(old.out_features, num_labels)
        with torch.no_grad():
            new.weight[:keep] = old.weight[:keep]
            new.bias[:keep] = old.bias[:keep]
        head.logit_fc[-1] = new
    config = model.config
    config.num_qa_labels = num_labels
    if labels is not None:
        config.id2label = dict(enumerate(labels))
    elif config.id2label is not None:
        config.id2label = {i: a for i, a in config.id2label.items() if i < num_labels}
        if len(config.id2label) != num_labels:
            config.id2label = None
    return head.logit_fc[-1]


def _remap_answer_head(
    model: LxmertPreTrainedModel,
    head: LxmertVisualAnswerHead,
    answers: Sequence[str],
    source_answers: Sequence[str] | None,
) -> int:
    if isinstance(answers, str):
        raise TypeError(
            f"answers must be a list of answers, got the string {answers!r} (a shipped list: load_answers({answers!r}))"
        )
    answers = list(answers)
    if not answers:
        raise ValueError("answers is empty: the new answer head needs at least one answer")
    repeated = [answer for answer, count in Counter(answers).items() if count > 1]
    if repeated:
        raise ValueError(f"answers repeats {name_list(repeated)}: each answer needs a row of its own")
    old = head.logit_fc[-1]
    source = _source_answers(model.config, old.out_features, source_answers)
    row_of: dict[str, int] = {}
    for row, answer in enumerate(source):
        row_of.setdefault(answer, row)
    rows = torch.tensor([row_of.get(normalize_pretrain_answer(a), -1) for a in answers], device=old.weight.device)
    found = rows >= 0
    with torch.no_grad():
        weight = old.weight.new_zeros(len(answers), old.in_features)
        bias = old.bias.new_zeros(len(answers))
        weight[found] = old.weight[rows[found]]
        bias[found] = old.bias[rows[found]]
    new = _resize_answer_head(model, head, len(answers), answers)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    carried = int(found.sum())
    logger.info(
        "answer head re-mapped to %d answers: %d carried over from its %d, %d start at zero",
        len(answers),
        carried,
        len(source),
        len(answers) - carried,
    )
    return carried


def _source_answers(config: LxmertConfig, rows: int, source_answers: Sequence[str] | None) -> list[str]:
    """The answer of each row of the current head."""
    if source_answers is not None:
        source = list(source_answers)
        if len(source) != rows:
            raise ValueError(f"source_answers has {len(source)} answers but the answer head has {rows} rows")
        return source
    if config.id2label is not None:
        if len(config.id2label) != rows:
            raise ValueError(
                f"config.id2label has {len(config.id2label)} labels but the answer head has {rows} rows: "
                "pass source_answers, one answer per row"
            )
        return [config.id2label[i] for i in range(rows)]
    pretrain = load_answers("pretrain")
    if rows == len(pretrain):
        return pretrain
    raise ValueError(
        f"the answer head has {rows} rows and config.id2label is not set, so their answers are unknown: pass "
        f"source_answers, one answer per row (only a head of {len(pretrain):,} rows is taken to be LXMERT's "
        "pretraining answers)"
    )
