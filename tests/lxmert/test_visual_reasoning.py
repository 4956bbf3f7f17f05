"""LxmertForVisualReasoning (NLVR2): one statement, two images, two logits.

Reference: transformers' PyTorch `LxmertModel` holding our encoder's weights, run once per image, its two
pooled outputs concatenated and the head applied by hand with torch ops (the head of the original LXMERT
NLVR2 model: Linear(2H, 2H), exact GELU, LayerNorm eps 1e-12, Linear(2H, 2)). Tolerance 1e-5 absolute in
float32 on CPU, as the other parity tests.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import transformers

from lxmert import (
    CheckpointError,
    LxmertConfig,
    LxmertForQuestionAnswering,
    LxmertForVisualReasoning,
    LxmertForVisualReasoningOutput,
    LxmertModel,
)

ATOL = 1e-5
HEAD_SHAPES = {
    "logit_fc.0.weight": (64, 64),
    "logit_fc.0.bias": (64,),
    "logit_fc.2.weight": (64,),
    "logit_fc.2.bias": (64,),
    "logit_fc.3.weight": (2, 64),
    "logit_fc.3.bias": (2,),
}


@pytest.fixture
def model(tools):
    torch.manual_seed(0)
    return tools.perturb(LxmertForVisualReasoning(LxmertConfig(**tools.TINY)), seed=3).eval()


def pair_inputs(tools, *, batch: int = 3, padding: bool = True) -> dict[str, torch.Tensor]:
    """One statement per example, two images with different boxes and box padding."""
    first = tools.make_inputs(99, 24, batch=batch, text_padding=padding, box_padding=padding, seed=1)
    second = tools.make_inputs(99, 24, batch=batch, text_padding=padding, box_padding=padding, seed=2)
    inputs = {name: first[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
    for name in ("visual_feats", "visual_pos", "visual_attention_mask"):
        if name in first:
            inputs[name] = torch.stack([first[name], second[name].flip(0)], dim=1)  # (B, 2, ...)
    return inputs


def reference_logits(model: LxmertForVisualReasoning, inputs: dict, tools) -> tuple[torch.Tensor, list]:
    reference = transformers.LxmertModel(transformers.LxmertConfig(**tools.TINY)).eval()
    reference.load_state_dict(model.lxmert.state_dict())
    text = {name: inputs[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in inputs}
    per_image = []
    for image in range(2):
        visual = {
            name: inputs[name][:, image]
            for name in ("visual_feats", "visual_pos", "visual_attention_mask")
            if name in inputs
        }
        with torch.no_grad():
            per_image.append(reference(**text, **visual, output_hidden_states=True))
    x = torch.cat([per_image[0].pooled_output, per_image[1].pooled_output], dim=-1)  # (B, 2H)
    head = dict(model.logit_fc.named_parameters())
    with torch.no_grad():
        x = x @ head["0.weight"].T + head["0.bias"]
        x = 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
        x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-12)
        x = x * head["2.weight"] + head["2.bias"]
        logits = x @ head["3.weight"].T + head["3.bias"]
    return logits, per_image


@pytest.mark.parametrize("padding", [False, True], ids=["no-masks", "padding-masks"])
def test_logits_match_transformers_encoder_run_per_image(model, tools, padding):
    inputs = pair_inputs(tools, padding=padding)
    if not padding:
        del inputs["attention_mask"]  # no masks at all: the defaults
        assert "visual_attention_mask" not in inputs
    expected, per_image = reference_logits(model, inputs, tools)
    for flags in ({}, {"output_attentions": True}):  # fused and explicit attention
        with torch.no_grad():
            out = model(**inputs, **flags)
        assert out.logits.shape == (3, 2)
        assert (out.logits - expected).abs().max().item() <= ATOL, flags
    # Hidden states come in pairs: row 2b + i is example b with image i.
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert (out.logits - expected).abs().max().item() <= ATOL
    for image in range(2):
        for stream in ("language_hidden_states", "vision_hidden_states"):
            for ours, theirs in zip(getattr(out, stream), getattr(per_image[image], stream), strict=True):
                assert (ours[image::2] - theirs).abs().max().item() <= ATOL, stream


def test_the_two_images_are_not_interchangeable(model, tools):
    inputs = pair_inputs(tools)
    swapped = {**inputs, **{k: inputs[k].flip(1) for k in ("visual_feats", "visual_pos", "visual_attention_mask")}}
    with torch.no_grad():
        logits, swapped_logits = model(**inputs).logits, model(**swapped).logits
    assert not torch.allclose(logits, swapped_logits, atol=1e-3)


def test_loss_is_cross_entropy_and_trains(model, tools):
    inputs = pair_inputs(tools)
    labels = torch.tensor([1, 0, 1])
    model.train()
    torch.manual_seed(0)
    out = model(**inputs, labels=labels)
    torch.manual_seed(0)
    again = model(**inputs)
    assert torch.equal(out.loss, F.cross_entropy(again.logits, labels))
    expected = -F.log_softmax(again.logits.double(), -1)[torch.arange(3), labels].mean()
    assert abs(out.loss.item() - expected.item()) < 1e-6
    out.loss.backward()
    assert model.logit_fc[0].weight.grad.abs().sum() > 0
    assert model.lxmert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_output_fields_and_tuples(model, tools):
    inputs = pair_inputs(tools)
    with torch.no_grad():
        out = model(**inputs, labels=torch.tensor([0, 1, 1]), output_attentions=True, output_hidden_states=True)
        plain = model(**inputs, return_dict=False)
    assert isinstance(out, LxmertForVisualReasoningOutput)
    assert out.keys() == [
        "loss",
        "logits",
        "language_hidden_states",
        "vision_hidden_states",
        "language_attentions",
        "vision_attentions",
        "cross_encoder_attentions",
    ]
    assert [h.shape for h in out.language_hidden_states] == [(6, 7, 32)] * 4
    assert [h.shape for h in out.vision_hidden_states] == [(6, 5, 32)] * 3
    assert [a.shape for a in out.cross_encoder_attentions] == [(6, 4, 7, 5)] * 2
    assert isinstance(plain, tuple) and len(plain) == 1 and torch.allclose(plain[0], out.logits, atol=ATOL)


def test_state_dict_names_and_initialization(tools):
    config = LxmertConfig(**tools.TINY)
    model = LxmertForVisualReasoning(config)
    state = model.state_dict()
    head = {name: tuple(t.shape) for name, t in state.items() if not name.startswith("lxmert.")}
    assert head == HEAD_SHAPES
    qa_encoder = {n for n in LxmertForQuestionAnswering(config).state_dict() if n.startswith("lxmert.")}
    assert {n for n in state if n.startswith("lxmert.")} == qa_encoder
    assert isinstance(model.logit_fc[1].fn, type(F.gelu)) and model.logit_fc[1].name == "gelu"
    assert model.logit_fc[2].eps == 1e-12
    # _init_weights: normal(0, initializer_range) weights, zero biases, LayerNorm (1, 0)
    assert torch.equal(state["logit_fc.2.weight"], torch.ones(64))
    for name in ("logit_fc.0.bias", "logit_fc.2.bias", "logit_fc.3.bias"):
        assert torch.equal(state[name], torch.zeros_like(state[name]))
    assert abs(state["logit_fc.0.weight"].std().item() - 0.02) < 0.002


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_save_and_load_round_trip(model, tools, tmp_path, safe):
    model.save_pretrained(tmp_path, safe_serialization=safe)
    loaded = LxmertForVisualReasoning.from_pretrained(tmp_path)
    assert loaded.config.architectures == ["LxmertForVisualReasoning"]
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(t, loaded.state_dict()[n]) for n, t in model.state_dict().items())
    inputs = pair_inputs(tools)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    # the encoder alone, for other heads
    backbone = LxmertModel.from_pretrained(tmp_path)
    assert torch.equal(backbone.pooler.dense.weight, model.lxmert.pooler.dense.weight)


def test_pretraining_checkpoint_keeps_the_encoder_and_starts_a_new_head(tools, tmp_path):
    # The layout of unc-nlp/lxmert-base-uncased: a transformers LxmertForPreTraining.
    torch.manual_seed(0)
    pretraining = tools.perturb(transformers.LxmertForPreTraining(transformers.LxmertConfig(**tools.TINY)))
    pretraining.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing tensors:\n  logit_fc\.0\.weight \(64, 64\)") as error:
        LxmertForVisualReasoning.from_pretrained(tmp_path)
    assert "strict=False" in str(error.value)
    with pytest.warns(UserWarning, match="6 tensors are not in .* initialized randomly: logit_fc.0.weight"):
        model = LxmertForVisualReasoning.from_pretrained(tmp_path, strict=False)
    reference = pretraining.lxmert.state_dict()
    ours = model.lxmert.state_dict()
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[name], reference[name]) for name in reference)
    assert torch.equal(model.logit_fc[2].weight, torch.ones(64))
    assert torch.equal(model.logit_fc[3].bias, torch.zeros(2))
    with torch.no_grad():
        assert model(**pair_inputs(tools)).logits.shape == (3, 2)


def test_bad_pair_inputs_are_named(model, tools):
    inputs = pair_inputs(tools)
    with pytest.raises(ValueError, match=r"visual_feats must be \(batch, 2 images, boxes, 24\).*\(3, 5, 24\)"):
        model(**{**inputs, "visual_feats": inputs["visual_feats"][:, 0]})
    with pytest.raises(ValueError, match=r"visual_pos must be \(batch, 2 images, boxes, 4\).*\(3, 3, 5, 4\)"):
        model(**{**inputs, "visual_pos": torch.cat([inputs["visual_pos"], inputs["visual_pos"][:, :1]], 1)})
    with pytest.raises(ValueError, match=r"visual_attention_mask must be \(batch, 2, boxes\) = \(3, 2, 5\)"):
        model(**{**inputs, "visual_attention_mask": inputs["visual_attention_mask"][:, 0]})
    with pytest.raises(ValueError, match="2 statements but 3 image pairs"):
        model(**{**inputs, "input_ids": inputs["input_ids"][:2], "attention_mask": None, "token_type_ids": None})
    with pytest.raises(ValueError, match="visual_pos is missing"):
        model(input_ids=inputs["input_ids"], visual_feats=inputs["visual_feats"])
    with pytest.raises(ValueError, match=r"one class id per statement \(3, 1 = true\)"):
        model(**inputs, labels=torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="one class id per statement"):
        model(**inputs, labels=torch.tensor([0, 1]))
    # the per-image checks of the encoder still apply
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(**{**inputs, "input_ids": inputs["input_ids"] + 200})


def test_answers_is_refused_without_an_answer_head(model, tmp_path):
    model.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="LxmertForVisualReasoning has none"):
        LxmertForVisualReasoning.from_pretrained(tmp_path, answers=["yes", "no"])


def test_its_head_loaded_into_another_class_is_an_unused_head(model, tmp_path, recwarn, caplog):
    # An NLVR2 checkpoint into the VQA class: the encoder is kept, `logit_fc` is a head that class lacks (not
    # "a tensor that is not part of an LXMERT model"), and the answer head is new.
    model.save_pretrained(tmp_path)
    with caplog.at_level("INFO", logger="lxmert"):
        loaded = LxmertForQuestionAnswering.from_pretrained(tmp_path, strict=False)
    messages = [str(warning.message) for warning in recwarn]
    assert not any("not part of an LXMERT model" in message for message in messages), messages
    assert any("answer_head.logit_fc.0.weight" in message for message in messages), messages
    assert "6 tensors of heads that LxmertForQuestionAnswering does not have were not used" in caplog.text
    assert torch.equal(loaded.lxmert.pooler.dense.weight, model.lxmert.pooler.dense.weight)
