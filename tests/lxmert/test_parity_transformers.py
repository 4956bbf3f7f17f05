"""Parity with the reference: transformers' PyTorch LXMERT (the oracle, from the `test` extra).

Reference models get random weights of a realistic spread (conftest.perturb), are saved with
transformers' save_pretrained and loaded by ours through from_pretrained, the path real checkpoints
take. Tolerance: 1e-5 absolute in float32 on CPU (the issue's), on every output.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import lxmert

ATOL = 1e-5
CLASSES = ["LxmertModel", "LxmertForPreTraining", "LxmertForQuestionAnswering"]


def reference_model(class_name: str, config_kwargs: dict, tools, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(transformers.LxmertConfig(**config_kwargs))
    return tools.perturb(model, seed).eval()


def load_ours(class_name: str, reference: torch.nn.Module, directory) -> torch.nn.Module:
    reference.save_pretrained(directory)
    return getattr(lxmert, class_name).from_pretrained(directory)


def assert_outputs_match(expected, actual, keys=None) -> dict[str, float]:
    keys = keys if keys is not None else list(expected.keys())
    assert list(actual.keys()) == keys, f"ours returned {list(actual.keys())}, the reference {keys}"
    diffs = {}
    for key in keys:
        diffs[key] = max_abs_diff(expected[key], actual[key])
        assert diffs[key] <= ATOL, f"{key}: max abs difference {diffs[key]:.3g} > {ATOL}"
    return diffs


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two tensors or (nested) tuples of tensors of equal structure."""
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), f"structures differ: {len(a)} vs {len(b)}"
        return max((max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("padding", [False, True], ids=["no-masks", "padding-masks"])
@pytest.mark.parametrize("class_name", CLASSES)
def test_tiny_model_matches_reference(tmp_path, tools, class_name, padding):
    reference = reference_model(class_name, tools.TINY, tools)
    ours = load_ours(class_name, reference, tmp_path)
    inputs = tools.make_inputs(99, 24, text_padding=padding, box_padding=padding)
    with torch.no_grad():
        expected = reference(**inputs, output_attentions=True, output_hidden_states=True)
        actual = ours(**inputs, output_attentions=True, output_hidden_states=True)
    assert_outputs_match(expected, actual)
    # Without attentions requested ours takes the fused attention path (and, for question answering,
    # skips what the pooler cannot see): the scores must not move.
    with torch.no_grad():
        expected = reference(**inputs)
        actual = ours(**inputs)
    assert_outputs_match(expected, actual)


@pytest.mark.parametrize("class_name", CLASSES)
def test_tuples_with_return_dict_false_match_reference(tmp_path, tools, class_name):
    reference = reference_model(class_name, tools.TINY, tools, seed=1)
    ours = load_ours(class_name, reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=1)
    for flags in ({}, {"output_hidden_states": True}, {"output_attentions": True, "output_hidden_states": True}):
        with torch.no_grad():
            expected = reference(**inputs, **flags, return_dict=False)
            actual = ours(**inputs, **flags, return_dict=False)
        assert isinstance(actual, tuple)
        assert max_abs_diff(expected, actual) <= ATOL, flags


def test_inputs_embeds_match_reference(tmp_path, tools):
    reference = reference_model("LxmertModel", tools.TINY, tools, seed=2)
    ours = load_ours("LxmertModel", reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=2)
    embeds = reference.embeddings.word_embeddings(inputs.pop("input_ids")) + 0.3 * torch.randn(3, 7, 32)
    with torch.no_grad():
        expected = reference(**inputs, inputs_embeds=embeds, output_hidden_states=True)
        actual = ours(**inputs, inputs_embeds=embeds, output_hidden_states=True)
    assert_outputs_match(expected, actual)


def pretraining_targets(batch: int, length: int, boxes: int, config: dict, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, config["vocab_size"], (batch, length), generator=generator)
    labels[torch.rand(batch, length, generator=generator) < 0.6] = -100
    box_weights = (torch.rand(batch, boxes, generator=generator) < 0.5).float()
    return {
        "labels": labels,
        "matched_label": torch.randint(0, 2, (batch,), generator=generator),
        "obj_labels": {
            "obj": (torch.randint(0, config["num_object_labels"], (batch, boxes), generator=generator), box_weights),
            "attr": (torch.randint(0, config["num_attr_labels"], (batch, boxes), generator=generator), box_weights),
            "feat": (torch.randn(batch, boxes, config["visual_feat_dim"], generator=generator), box_weights),
        },
        "ans": torch.randint(0, config["num_qa_labels"], (batch,), generator=generator),
    }


TASK_SWITCHES = [
    {},
    {"task_mask_lm": False},
    {"task_matched": False},
    {"task_obj_predict": False},
    {"visual_obj_loss": False, "visual_feat_loss": False},
    {"visual_attr_loss": False},
]


@pytest.mark.parametrize("switches", TASK_SWITCHES, ids=lambda s: ",".join(s) or "all-tasks")
def test_pretraining_losses_match_reference(tmp_path, tools, switches):
    config = {**tools.TINY, **switches}
    reference = reference_model("LxmertForPreTraining", config, tools, seed=3)
    ours = load_ours("LxmertForPreTraining", reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=3)
    targets = pretraining_targets(3, 7, 5, config, seed=3)
    with torch.no_grad():
        expected = reference(**inputs, **targets, output_hidden_states=True)
        actual = ours(**inputs, **targets, output_hidden_states=True)
    assert expected.loss.item() > 0
    assert_outputs_match(expected, actual)


def test_pretraining_without_qa_head(tmp_path, tools):
    # The reference returns pooled_output[0][0] as "question_answering_score" when task_qa is off; ours
    # returns None there (documented). Everything else, losses included, must match.
    config = {**tools.TINY, "task_qa": False}
    reference = reference_model("LxmertForPreTraining", config, tools, seed=4)
    ours = load_ours("LxmertForPreTraining", reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=4)
    targets = pretraining_targets(3, 7, 5, config, seed=4)
    with torch.no_grad():
        expected = reference(**inputs, **targets)
        actual = ours(**inputs, **targets)
    assert actual.question_answering_score is None
    assert not hasattr(ours, "answer_head")
    assert_outputs_match(expected, actual, keys=["loss", "prediction_logits", "cross_relationship_score"])


def test_question_answering_loss_matches_reference(tmp_path, tools):
    reference = reference_model("LxmertForQuestionAnswering", tools.TINY, tools, seed=5)
    ours = load_ours("LxmertForQuestionAnswering", reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=5)
    labels = torch.tensor([3, 0, 6])
    with torch.no_grad():
        expected = reference(**inputs, labels=labels)
        actual = ours(**inputs, labels=labels)
    assert_outputs_match(expected, actual)


@pytest.mark.parametrize("class_name", CLASSES)
def test_model_saved_by_us_loads_in_transformers(tmp_path, tools, class_name):
    torch.manual_seed(6)
    ours = tools.perturb(getattr(lxmert, class_name)(lxmert.LxmertConfig(**tools.TINY)), seed=6).eval()
    ours.save_pretrained(tmp_path)
    reference = getattr(transformers, class_name).from_pretrained(tmp_path).eval()
    inputs = tools.make_inputs(99, 24, seed=6)
    with torch.no_grad():
        expected = reference(**inputs, output_attentions=True, output_hidden_states=True)
        actual = ours(**inputs, output_attentions=True, output_hidden_states=True)
    assert_outputs_match(expected, actual)


@pytest.mark.parametrize("activation", ["relu", "gelu_new", "quick_gelu", "silu"])
def test_other_activations_match_reference(tmp_path, tools, activation):
    reference = reference_model("LxmertForPreTraining", {**tools.TINY, "hidden_act": activation}, tools, seed=7)
    ours = load_ours("LxmertForPreTraining", reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=7)
    with torch.no_grad():
        assert_outputs_match(reference(**inputs), ours(**inputs))


@pytest.mark.full_size
@pytest.mark.parametrize("class_name", CLASSES)
def test_default_config_matches_reference(tmp_path, tools, class_name):
    """The full-size default config (unc-nlp/lxmert-base-uncased's), with padding masks."""
    config = {"num_qa_labels": 3129} if class_name == "LxmertForQuestionAnswering" else {}
    reference = reference_model(class_name, config, tools, seed=8)
    ours = load_ours(class_name, reference, tmp_path)
    inputs = tools.make_inputs(30522, 2048, batch=2, length=12, boxes=36, seed=8)
    targets = {}
    if class_name == "LxmertForPreTraining":
        targets = pretraining_targets(2, 12, 36, lxmert.LxmertConfig().__dict__, seed=8)
    elif class_name == "LxmertForQuestionAnswering":
        targets = {"labels": torch.tensor([17, 3000])}
    with torch.no_grad():
        expected = reference(**inputs, **targets, output_attentions=True, output_hidden_states=True)
        actual = ours(**inputs, **targets, output_attentions=True, output_hidden_states=True)
        assert_outputs_match(expected, actual)
        fused = ours(**inputs)
    first = "pooled_output" if class_name == "LxmertModel" else "question_answering_score"
    assert max_abs_diff(expected[first], fused[first]) <= ATOL


def test_gradients_match_reference(tmp_path, tools):
    """Backward through every loss (dropout off): each parameter's gradient equals the reference's."""
    reference = reference_model("LxmertForPreTraining", tools.TINY, tools, seed=9)
    ours = load_ours("LxmertForPreTraining", reference, tmp_path)
    inputs = tools.make_inputs(99, 24, seed=9)
    targets = pretraining_targets(3, 7, 5, tools.TINY, seed=9)
    reference(**inputs, **targets).loss.backward()
    ours(**inputs, **targets).loss.backward()
    theirs = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        expected = theirs[name].grad
        assert parameter.grad is not None and expected is not None, name
        difference = max_abs_diff(expected, parameter.grad)
        # gradients are sums over the batch and, for the tied embeddings, over two uses: relative 1e-5
        assert difference <= 1e-5 * max(1.0, expected.abs().max().item()), (name, difference)
