"""Token packing (lxmert.modeling.TokenPacking): on the CPU, the pooled-output path (the heads, the pipelines,
training) runs the language stream on the real tokens of a padded batch only. Reference: transformers' LXMERT
on the same weights and inputs, which computes the padding too. Tolerance 1e-5 absolute in float32 on CPU, as
the other parity tests, for the scores and for the gradients of a loss."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers import TINY_LXMERT, perturb

import lxmert.modeling
from lxmert import LxmertConfig, LxmertForQuestionAnswering

from .conftest import make_inputs

ATOL = 1e-5


@pytest.fixture
def models():
    torch.manual_seed(0)
    ours = perturb(LxmertForQuestionAnswering(LxmertConfig(**TINY_LXMERT)), seed=2)
    theirs = transformers.LxmertForQuestionAnswering(transformers.LxmertConfig(**TINY_LXMERT))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.fixture
def packings(monkeypatch):
    """The token counts of every packing made."""
    made = []
    real = lxmert.modeling.TokenPacking

    class Counted(real):
        def __init__(self, keep):
            super().__init__(keep)
            made.append(int(keep.sum()))

    monkeypatch.setattr(lxmert.modeling, "TokenPacking", Counted)
    return made


def padded_inputs(batch: int = 4, length: int = 9) -> dict[str, torch.Tensor]:
    return make_inputs(99, 24, batch=batch, length=length, boxes=6, seed=5)  # rows 1.. end in 2, 4, 6 pads


def test_packed_scores_equal_transformers_on_a_padded_batch(models, packings):
    ours, theirs = (model.eval() for model in models)
    inputs = padded_inputs()
    with torch.no_grad():
        scores = ours(**inputs).question_answering_score
        expected = theirs(**inputs).question_answering_score
    assert packings == [int(inputs["attention_mask"].sum())]  # packed: 36 - 2 - 4 - 6 = 24 real tokens
    torch.testing.assert_close(scores, expected, rtol=0, atol=ATOL)


def test_packed_training_gradients_equal_transformers(models, packings):
    ours, theirs = models
    ours.train(), theirs.train()
    for model in models:  # no dropout: the two would draw different masks
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    inputs = padded_inputs()
    labels = torch.rand(4, TINY_LXMERT["num_qa_labels"])
    losses = []
    for model in models:
        scores = model(**inputs).question_answering_score
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels)
        loss.backward()
        losses.append(loss.detach())
    assert packings == [int(inputs["attention_mask"].sum())]
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=ATOL)
    theirs_grads = dict(theirs.named_parameters())
    compared = 0
    for name, parameter in ours.named_parameters():
        reference = theirs_grads[name].grad
        if parameter.grad is None or reference is None:
            assert parameter.grad is None or not parameter.grad.any(), name  # unused by the pooled output
            continue
        torch.testing.assert_close(parameter.grad, reference, rtol=0, atol=ATOL, msg=name)
        compared += 1
    assert compared > 50


def test_no_packing_without_padding_with_attentions_or_hidden_states(models, packings):
    ours, _ = models
    ours.eval()
    with torch.no_grad():
        ours(**make_inputs(99, 24, batch=3, length=7, boxes=6, text_padding=False))
        ours(**padded_inputs(), output_attentions=True)  # their rows at the padding: as the padded computation
        ours(**padded_inputs(), output_hidden_states=True)  # hidden states at the padding: likewise
    assert packings == []


def test_packing_without_cross_modality_layers(packings):
    config = dict(TINY_LXMERT, x_layers=0)
    torch.manual_seed(0)
    ours = perturb(LxmertForQuestionAnswering(LxmertConfig(**config)), seed=2).eval()
    theirs = transformers.LxmertForQuestionAnswering(transformers.LxmertConfig(**config)).eval()
    theirs.load_state_dict(ours.state_dict())
    inputs = padded_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            ours(**inputs).question_answering_score, theirs(**inputs).question_answering_score, rtol=0, atol=ATOL
        )
    assert len(packings) == 1


# -- the packed query / key / value projections ---------------------------------------------------------


def attentions(model):
    return [module for module in model.modules() if isinstance(module, lxmert.modeling.LxmertAttention)]


def assert_packed(model):
    for attention in attentions(model):
        weight, bias, _ = attention._packed
        size = attention.query.out_features
        for index, linear in enumerate((attention.query, attention.key, attention.value)):
            assert linear.weight.data_ptr() == weight[index * size].data_ptr()
            assert linear.bias.data_ptr() == bias[index * size :].data_ptr()


def test_cpu_runs_three_products_and_a_gpu_one(models, monkeypatch):
    ours, _ = models
    ours.eval()
    calls, linear = [], torch.nn.functional.linear
    packed = {attention._packed[0].data_ptr() for attention in attentions(ours)}

    def counted(x, weight, bias=None):
        calls.append(weight.data_ptr() in packed and len(weight) > len(weight.T))
        return linear(x, weight, bias)

    monkeypatch.setattr(torch.nn.functional, "linear", counted)
    with torch.no_grad():
        ours(**padded_inputs())
    assert calls and not any(calls)  # the CPU: no packed product
    monkeypatch.setattr(lxmert.modeling, "PACKED_PRODUCT_DEVICES", {"cpu"})
    with torch.no_grad():
        ours(**padded_inputs())
    assert any(calls)


def test_projections_are_packed_after_loading_and_conversion(models, tmp_path):
    ours, _ = models
    ours.save_pretrained(tmp_path)  # safetensors: the packed rows are written as tensors of their own
    loaded = LxmertForQuestionAnswering.from_pretrained(tmp_path)
    assert_packed(loaded)
    assert loaded.state_dict().keys() == ours.state_dict().keys()
    assert all(torch.equal(tensor, ours.state_dict()[name]) for name, tensor in loaded.state_dict().items())
    assert_packed(loaded.to(torch.float64))
    assert loaded.lxmert.encoder.layer[0].attention.self._packed[0].dtype == torch.float64


def test_packed_inference_follows_in_place_updates_and_replaced_parameters(models, monkeypatch):
    # The packed products run on GPUs only (PACKED_PRODUCT_DEVICES): here on the CPU too, to test them.
    monkeypatch.setattr(lxmert.modeling, "PACKED_PRODUCT_DEVICES", {"cpu", "cuda"})
    ours, theirs = (model.eval() for model in models)
    inputs = padded_inputs()
    with torch.no_grad():
        for model in models:  # an optimizer's in-place step on a query weight: the packed matrix sees it
            model.lxmert.encoder.x_layers[0].lang_self_att.self.query.weight.add_(0.05)
        torch.testing.assert_close(
            ours(**inputs).question_answering_score, theirs(**inputs).question_answering_score, rtol=0, atol=ATOL
        )
    # parameters replaced by a load with assign=True are no longer the packed rows: the separate path runs
    state = {name: tensor.clone() * 1.01 for name, tensor in theirs.state_dict().items()}
    ours.load_state_dict(state, assign=True)
    theirs.load_state_dict(state)
    calls, packed = [], set()
    linear = torch.nn.functional.linear

    def counted(x, weight, bias=None):  # counts the projections with a packed matrix
        calls.extend(
            [len(weight) // len(weight.T)] if weight.data_ptr() in packed and len(weight) > len(weight.T) else []
        )
        return linear(x, weight, bias)

    monkeypatch.setattr(torch.nn.functional, "linear", counted)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(**inputs).question_answering_score, theirs(**inputs).question_answering_score, rtol=0, atol=ATOL
        )
    assert calls == []  # no packed projection ran (none is packed: `packed` is still empty)
    ours.pack_projections()
    for attention in attentions(ours):
        weight, size = attention._packed[0], attention.query.out_features
        packed |= {weight.data_ptr(), weight[size:].data_ptr()}
    with torch.no_grad():
        torch.testing.assert_close(
            ours(**inputs).question_answering_score, theirs(**inputs).question_answering_score, rtol=0, atol=ATOL
        )
    # query + key + value of the self-attentions in one product (3 language and vision layers, 2 of the first
    # cross-modality layer), key + value of the cross-attentions (2 in the first cross-modality layer, 1 in the
    # last, whose vision stream the pooled-output path skips) and of the last layer's first-token self-attention
    assert sorted(calls) == [2, 2, 2, 2, 3, 3, 3, 3, 3]


def test_trailing_padding_is_dropped_and_left_padding_is_not_packed(models, packings):
    ours, theirs = (model.eval() for model in models)
    single = padded_inputs(batch=1)  # one question with padding: its trailing padding is dropped, no packing
    single["attention_mask"][0, 5:] = 0
    left = padded_inputs()  # left padding: the pooler's token is padding in row 1, computed as transformers does
    left["attention_mask"][1] = left["attention_mask"][1].flip(0)
    with torch.no_grad():
        for inputs in (single, left):
            torch.testing.assert_close(
                ours(**inputs).question_answering_score, theirs(**inputs).question_answering_score, rtol=0, atol=ATOL
            )
    assert packings == []
