"""The models on their own: outputs, initialization, resizing the answer head, training, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from lxmert import (
    LxmertConfig,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertForQuestionAnsweringOutput,
    LxmertModel,
)


@pytest.fixture
def config(tools):
    return LxmertConfig(**tools.TINY)


@pytest.fixture
def inputs(tools):
    return tools.make_inputs(99, 24)


# -- outputs -----------------------------------------------------------------------------------------


def test_output_access_by_attribute_index_and_name(config, inputs):
    model = LxmertForQuestionAnswering(config).eval()
    out = model(**inputs, output_hidden_states=True)
    assert isinstance(out, LxmertForQuestionAnsweringOutput)
    assert out.loss is None and out.language_attentions is None
    assert out.keys() == ["question_answering_score", "language_hidden_states", "vision_hidden_states"]
    assert out[0] is out.question_answering_score is out["question_answering_score"]
    assert out[1:] == (out.language_hidden_states, out.vision_hidden_states)
    assert "loss" not in out and len(out) == 3
    with pytest.raises(KeyError, match="has no output 'loss'"):
        out["loss"]
    assert model(**inputs, return_dict=False)[0].shape == (3, 7)


def test_hidden_state_and_attention_shapes(config, inputs):
    out = LxmertModel(config).eval()(**inputs, output_hidden_states=True, output_attentions=True)
    # language: every l-layer then every x-layer; vision: every r-layer then every x-layer
    assert [h.shape for h in out.language_hidden_states] == [(3, 7, 32)] * (2 + 2)
    assert [h.shape for h in out.vision_hidden_states] == [(3, 5, 32)] * (1 + 2)
    assert [a.shape for a in out.language_attentions] == [(3, 4, 7, 7)] * 2
    assert [a.shape for a in out.vision_attentions] == [(3, 4, 5, 5)] * 1
    assert [a.shape for a in out.cross_encoder_attentions] == [(3, 4, 7, 5)] * 2
    assert out.language_hidden_states[-1] is out.language_output
    assert out.vision_hidden_states[-1] is out.vision_output
    # masked tokens and boxes get no attention
    assert torch.all(out.language_attentions[0][2, :, :, 3:] == 0)
    assert torch.all(out.cross_encoder_attentions[1][1, :, :, 4:] == 0)
    assert torch.allclose(out.vision_attentions[0].sum(-1), torch.ones(3, 4, 5))


def test_config_flags_set_the_default_outputs(tools, inputs):
    config = LxmertConfig(**tools.TINY, output_hidden_states=True, output_attentions=True, return_dict=False)
    out = LxmertModel(config).eval()(**inputs)
    assert isinstance(out, tuple) and len(out) == 3 + 2 + 3


def test_pooled_only_path_equals_the_full_forward(config, inputs, tools):
    """Question answering skips the last cross layer's vision stream and later tokens; same scores."""
    model = tools.perturb(LxmertForQuestionAnswering(config)).eval()
    with torch.no_grad():
        fast = model(**inputs).question_answering_score
        full = model.answer_head(model.lxmert(**inputs).pooled_output)
    # one query row instead of seven changes the attention kernel's blocking: float32 rounding only
    assert (fast - full).abs().max() <= 1e-5


def test_initialization_follows_initializer_range(tools):
    config = LxmertConfig(**{**tools.TINY, "hidden_size": 256, "initializer_range": 0.05})
    model = LxmertForPreTraining(config)
    weight = model.lxmert.encoder.x_layers[0].lang_inter.dense.weight
    assert abs(weight.std().item() - 0.05) < 0.003 and abs(weight.mean().item()) < 0.003
    assert torch.all(model.lxmert.encoder.layer[0].output.dense.bias == 0)
    assert torch.all(model.lxmert.embeddings.LayerNorm.weight == 1)
    assert torch.all(model.cls.predictions.bias == 0)
    # padding_idx rows start at zero, as in the reference
    assert torch.all(model.lxmert.embeddings.word_embeddings.weight[0] == 0)
    assert model.cls.predictions.decoder.weight is model.lxmert.embeddings.word_embeddings.weight


# -- resizing the answer head ------------------------------------------------------------------------


def test_resize_num_qa_labels(config, inputs):
    model = LxmertForQuestionAnswering(config).eval()
    model.config.id2label = {i: f"answer {i}" for i in range(7)}
    old = model.get_qa_logit_layer()
    before = model(**inputs).question_answering_score
    layer = model.resize_num_qa_labels(10)
    after = model(**inputs).question_answering_score
    assert layer is model.get_qa_logit_layer() and layer.out_features == 10
    # The kept answers' rows are copied bit for bit, so their scores are the old ones up to the GEMM's
    # rounding: a product with 10 output columns may be blocked and summed in another order than one with
    # 7 (MKL on an AMD EPYC does; not on the Intel Xeon). Each score sums 64 products whose magnitudes add
    # up to about 1: another order moves it by a few ulps (measured 1 ulp, 3e-8 on scores of about 0.3),
    # 64 float32 eps = 8e-6 at the very worst; 1e-6 allowed, while a row not copied would be off by ~0.1.
    assert torch.equal(layer.weight[:7], old.weight) and torch.equal(layer.bias[:7], old.bias)
    assert after.shape == (3, 10)
    torch.testing.assert_close(after[:, :7], before, rtol=0, atol=1e-6)
    assert model.config.num_qa_labels == 10 and model.config.id2label is None
    model.resize_num_qa_labels(4, labels=["a", "b", "c", "d"])
    assert torch.equal(model.get_qa_logit_layer().weight, old.weight[:4])
    torch.testing.assert_close(model(**inputs).question_answering_score, before[:, :4], rtol=0, atol=1e-6)
    assert model.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    model.resize_num_qa_labels(2)
    assert model.config.id2label == {0: "a", 1: "b"}
    with pytest.raises(ValueError, match="got 3 labels for 5 answers"):
        model.resize_num_qa_labels(5, labels=["x", "y", "z"])


def test_resize_pretraining_answer_head(tools):
    model = LxmertForPreTraining(LxmertConfig(**tools.TINY))
    assert model.resize_num_qa_labels(3).out_features == 3 and model.config.num_qa_labels == 3
    without = LxmertForPreTraining(LxmertConfig(**tools.TINY, task_qa=False))
    assert without.get_qa_logit_layer() is None
    with pytest.raises(ValueError, match="has no answer head"):
        without.resize_num_qa_labels(3)


# -- losses and training -----------------------------------------------------------------------------


def test_soft_answer_targets_use_binary_cross_entropy(config, inputs):
    model = LxmertForQuestionAnswering(config).eval()
    targets = torch.zeros(3, 7)
    targets[0, 2], targets[1, 5], targets[2, 0], targets[2, 6] = 1.0, 0.3, 0.6, 0.9
    out = model(**inputs, labels=targets)
    logits = out.question_answering_score.double()
    # sum over answers of -(t log s + (1 - t) log(1 - s)), averaged over the batch (LXMERT's VQA loss)
    sig = torch.sigmoid(logits)
    expected = -(targets * sig.log() + (1 - targets) * (1 - sig).log()).sum(1).mean()
    assert math.isclose(out.loss.item(), expected.item(), rel_tol=1e-6)


def test_bad_answer_targets(config, inputs):
    model = LxmertForQuestionAnswering(config)
    with pytest.raises(ValueError, match=r"soft answer targets must have the scores' shape \(3, 7\)"):
        model(**inputs, labels=torch.zeros(3, 6))
    with pytest.raises(ValueError, match=r"one id per example \(3\)"):
        model(**inputs, labels=torch.zeros(3, 2, dtype=torch.long))


def fixed_batch(config: LxmertConfig, tools) -> dict:
    inputs = tools.make_inputs(config.vocab_size, config.visual_feat_dim, batch=4, length=8, boxes=6, seed=11)
    generator = torch.Generator().manual_seed(12)
    labels = inputs["input_ids"].clone()
    labels[torch.rand(labels.shape, generator=generator) < 0.7] = -100
    box_weights = (torch.rand(4, 6, generator=generator) < 0.5).float()
    return {
        **inputs,
        "labels": labels,
        "matched_label": torch.tensor([1, 0, 1, 1]),
        "obj_labels": {
            "obj": (torch.randint(0, config.num_object_labels, (4, 6), generator=generator), box_weights),
            "attr": (torch.randint(0, config.num_attr_labels, (4, 6), generator=generator), box_weights),
            "feat": (inputs["visual_feats"], box_weights),
        },
        "ans": torch.tensor([1, 2, 3, 4]),
    }


def test_pretraining_loss_falls(tools):
    torch.manual_seed(0)
    config = LxmertConfig(**tools.TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = LxmertForPreTraining(config).train()
    batch = fixed_batch(config, tools)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_question_answering_loss_falls_with_soft_targets(tools):
    torch.manual_seed(0)
    config = LxmertConfig(**tools.TINY)
    model = LxmertForQuestionAnswering(config).train()  # dropout on
    inputs = tools.make_inputs(99, 24, batch=4, seed=13)
    targets = torch.zeros(4, 7)
    targets[torch.arange(4), torch.tensor([0, 3, 5, 3])] = 1.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = model(**inputs, labels=targets).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_each_task_flag_switches_its_loss(tools):
    torch.manual_seed(0)
    base = LxmertForPreTraining(LxmertConfig(**tools.TINY)).eval()
    batch = fixed_batch(base.config, tools)
    with torch.no_grad():
        total = base(**batch).loss
        parts = {
            "mlm": base(**{**batch, "matched_label": None, "obj_labels": None, "ans": None}).loss,
            "matched": base(**{**batch, "labels": None, "obj_labels": None, "ans": None}).loss,
            "visual": base(**{**batch, "labels": None, "matched_label": None, "ans": None}).loss,
            "qa": base(**{**batch, "labels": None, "matched_label": None, "obj_labels": None}).loss,
        }
    assert torch.allclose(total, sum(parts.values()), atol=1e-5)
    for flag, part in [
        ("task_mask_lm", "mlm"),
        ("task_matched", "matched"),
        ("task_obj_predict", "visual"),
        ("task_qa", "qa"),
    ]:
        model = LxmertForPreTraining(LxmertConfig(**tools.TINY, **{flag: False})).eval()
        model.load_state_dict(base.state_dict(), strict=False)
        with torch.no_grad():
            assert torch.allclose(model(**batch).loss, total - parts[part], atol=1e-5), flag


def test_visual_loss_scaled_by_normalizer(tools):
    torch.manual_seed(0)
    batch = fixed_batch(LxmertConfig(**tools.TINY), tools)
    visual_only = {**batch, "labels": None, "matched_label": None, "ans": None}
    model = LxmertForPreTraining(LxmertConfig(**tools.TINY)).eval()
    scaled = LxmertForPreTraining(LxmertConfig(**tools.TINY, visual_loss_normalizer=2.0)).eval()
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(**visual_only).loss / 6.67, scaled(**visual_only).loss / 2.0, rtol=1e-5)


def test_missing_visual_target(tools):
    model = LxmertForPreTraining(LxmertConfig(**tools.TINY))
    batch = fixed_batch(model.config, tools)
    del batch["obj_labels"]["attr"]
    with pytest.raises(ValueError, match=r"obj_labels lacks \['attr'\]"):
        model(**batch)


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i: i.pop("visual_pos"), "visual_pos is missing"),
        (lambda i: i.pop("visual_feats"), r"visual_feats is missing.*\(got only visual_pos\)"),
        (lambda i: (i.pop("visual_feats"), i.pop("visual_pos")), "visual_feats and visual_pos are missing"),
        (lambda i: i.update(visual_pos=i["visual_pos"][:, :4]), r"visual_pos has 4 boxes .* visual_feats has 5"),
        (lambda i: i.update(visual_pos=i["visual_pos"][:2]), r"visual_pos has 5 boxes for 2 images"),
        (lambda i: i.update(visual_feats=torch.zeros(3, 5, 2048)), r"visual_feats must be \(batch, boxes, 24\)"),
        (lambda i: i.update(visual_pos=torch.zeros(3, 5, 5)), r"visual_pos must be \(batch, boxes, 4\)"),
        (
            lambda i: i.update(visual_feats=i["visual_feats"][:2], visual_pos=i["visual_pos"][:2]),
            "the text batch has 3 rows but visual_feats has 2",
        ),
        (lambda i: i.update(input_ids=torch.ones(3, 65, dtype=torch.long)), "has only 64 position embeddings"),
        (lambda i: i.update(input_ids=i["input_ids"] + 50), r"ids outside the vocabulary \[0, 99\)"),
        (lambda i: i.update(inputs_embeds=torch.zeros(3, 7, 32)), "either input_ids or inputs_embeds, not both"),
        (lambda i: i.pop("input_ids"), "got neither"),
        (lambda i: i.update(attention_mask=torch.ones(3, 6)), "attention_mask must have the text's shape"),
        (lambda i: i.update(visual_attention_mask=torch.ones(3, 4)), r"visual_attention_mask must be \(batch, boxes\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(config, inputs, change, message):
    model = LxmertForQuestionAnswering(config).eval()
    change(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_unnormalized_boxes_warn(config, inputs):
    model = LxmertModel(config).eval()
    inputs["visual_pos"] = inputs["visual_pos"] * 640
    with pytest.warns(UserWarning, match=r"visual_pos lies outside \[0, 1\]"):
        model(**inputs)


def test_config_type_is_checked():
    with pytest.raises(TypeError, match="needs an LxmertConfig, got dict"):
        LxmertModel({"hidden_size": 32})
