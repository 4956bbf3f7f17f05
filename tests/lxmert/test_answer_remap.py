"""Carrying an answer head over to a new answer list by answer string (LXMERT's `load_lxmert_qa`).

Reference: the normalization of the data README (labels/lxmert_pretrain_answers.json row), written out
as expected strings; rows and biases are checked exactly (they are copies), scores within 1e-6.
"""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from lxmert import (
    LxmertConfig,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertModel,
    load_answers,
    normalize_pretrain_answer,
)
from lxmert.config import fill_answer_labels

SOURCE = ["yes", "dog", "man", "woman", "2", "10", "gray"]  # the tiny head's 7 rows
# target answer -> the source row it must get (None: not found, the row starts at zero)
TARGETS = {
    "Yes.": 0,  # lower case, trailing "."
    "the dog": 1,  # leading "the "
    "a man": 2,  # leading "a " (the synonym table says the same)
    "The Woman": 3,
    "two": 4,  # number word
    "Ten.": 5,
    "grey": 6,  # grey -> gray
    "cat": None,  # not a source answer
    "an apple": None,  # leading "an ", still not a source answer
}


@pytest.mark.parametrize(
    ("answer", "normalized"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("dog .", "dog"),  # what the dot leaves at the end is stripped
        ("1.", "1"),
        ("1.00", "1.00"),
        ("a dog", "dog"),
        ("an apple", "apple"),
        ("the sky", "sky"),
        ("A  Dog", "dog"),  # what the article leaves at the start is stripped
        ("a man", "man"),
        ("the man", "man"),
        ("a woman", "woman"),
        ("The Woman.", "woman"),
        ("a the man", "man"),  # one article goes, then "the man" -> "man"
        ("an a cat", "a cat"),  # only one article goes
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("Ten", "10"),
        ("the ten.", "10"),  # all steps, in the README's order
        ("eleven", "eleven"),
        ("one way", "one way"),  # synonyms are whole answers
        ("grey", "gray"),
        ("a grey.", "gray"),
        ("grey cat", "grey cat"),
        ("another", "another"),  # "an" without its space is no article
        ("theater", "theater"),
        ("a", "a"),
        ("the", "the"),
        ("", ""),
        (".", ""),
    ],
)
def test_normalize_pretrain_answer(answer, normalized):
    assert normalize_pretrain_answer(answer) == normalized


def test_shipped_pretraining_answers():
    answers = load_answers("pretrain")
    assert len(answers) == 9500 and len(set(answers)) == 9500 and answers == sorted(answers)
    assert answers[:3] == ['"stop"', "0", "000"] and "yes" in answers and "gray" in answers
    # every shipped answer is its own normalization: a list maps onto itself
    for name in ("pretrain", "vqa", "gqa"):
        assert all(normalize_pretrain_answer(a) == a for a in load_answers(name)), name
    # a 9,500-answer config is not given the list as labels (only the fine-tuned VQA / GQA lists are)
    assert fill_answer_labels(LxmertConfig(num_qa_labels=9500)).id2label is None


@pytest.fixture
def qa(tools):
    torch.manual_seed(0)
    model = LxmertForQuestionAnswering(LxmertConfig(**tools.TINY, id2label=dict(enumerate(SOURCE))))
    return tools.perturb(model).eval()


def assert_remapped(head: torch.nn.Sequential, before: dict[str, torch.Tensor], expected_rows: list[int | None]):
    for index in (0, 2):  # everything before the last layer is kept
        assert torch.equal(head[index].weight, before[f"{index}.weight"])
        assert torch.equal(head[index].bias, before[f"{index}.bias"])
    last = head[3]
    assert tuple(last.weight.shape) == (len(expected_rows), before["3.weight"].shape[1])
    for target, source in enumerate(expected_rows):
        if source is None:
            assert torch.equal(last.weight[target], torch.zeros_like(last.weight[target]))
            assert last.bias[target].item() == 0.0
        else:
            assert torch.equal(last.weight[target], before["3.weight"][source]), target
            assert torch.equal(last.bias[target], before["3.bias"][source]), target


def head_state(head: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in head.state_dict().items()}


def test_remap_by_answer_string(qa, tools):
    before = head_state(qa.answer_head.logit_fc)
    inputs = tools.make_inputs(99, 24)
    with torch.no_grad():
        old_scores = qa(**inputs).question_answering_score
    assert qa.remap_answer_head(list(TARGETS)) == 7
    assert_remapped(qa.answer_head.logit_fc, before, list(TARGETS.values()))
    assert qa.config.num_qa_labels == 9
    assert qa.config.id2label == dict(enumerate(TARGETS))
    assert qa.config.label2id["grey"] == 6
    with torch.no_grad():
        scores = qa(**inputs).question_answering_score
    assert scores.shape == (3, 9)
    for target, source in enumerate(TARGETS.values()):
        if source is None:
            assert torch.equal(scores[:, target], torch.zeros(3))
        else:
            assert torch.allclose(scores[:, target], old_scores[:, source], atol=1e-6)


def test_remap_keeps_the_size_when_the_list_has_as_many_answers(qa):
    before = head_state(qa.answer_head.logit_fc)
    targets = ["grey", "cat", "Yes.", "two", "the dog", "pig", "ten"]
    assert qa.remap_answer_head(targets) == 5
    assert_remapped(qa.answer_head.logit_fc, before, [6, None, 0, 4, 1, None, 5])
    assert qa.config.id2label == dict(enumerate(targets))


def test_explicit_source_answers_win_over_the_config(qa):
    before = head_state(qa.answer_head.logit_fc)
    source = ["cat", "pig", "cow", "hen", "owl", "yak", "gnu"]
    assert qa.remap_answer_head(["the owl", "Cat.", "dog"], source_answers=source) == 2
    assert_remapped(qa.answer_head.logit_fc, before, [4, 0, None])


def test_a_head_of_9500_rows_without_labels_is_the_pretraining_head(tools):
    torch.manual_seed(0)
    model = tools.perturb(LxmertForQuestionAnswering(LxmertConfig(**{**tools.TINY, "num_qa_labels": 9500})))
    assert model.config.id2label is None
    before = head_state(model.answer_head.logit_fc)
    pretrain = load_answers("pretrain")
    targets = ["yes", "Two", "the man", "grey", "no such answer"]
    assert model.remap_answer_head(targets) == 4
    expected = [pretrain.index(a) for a in ("yes", "2", "man", "gray")] + [None]
    assert_remapped(model.answer_head.logit_fc, before, expected)


def test_pretraining_model_remaps_its_answer_head(tools):
    torch.manual_seed(0)
    config = LxmertConfig(**tools.TINY, id2label=dict(enumerate(SOURCE)))
    model = tools.perturb(LxmertForPreTraining(config)).eval()
    before = head_state(model.answer_head.logit_fc)
    assert model.remap_answer_head(list(TARGETS)) == 7
    assert_remapped(model.answer_head.logit_fc, before, list(TARGETS.values()))
    assert model.get_qa_logit_layer() is model.answer_head.logit_fc[3]
    with torch.no_grad():
        assert model(**tools.make_inputs(99, 24)).question_answering_score.shape == (3, 9)
    without = LxmertForPreTraining(LxmertConfig(**tools.TINY, task_qa=False))
    with pytest.raises(ValueError, match="no answer head"):
        without.remap_answer_head(["yes"])


def test_errors_name_the_sizes_and_leave_the_head_alone(qa, tools):
    before = head_state(qa.answer_head.logit_fc)
    with pytest.raises(ValueError, match="source_answers has 3 answers but the answer head has 7 rows"):
        qa.remap_answer_head(["yes"], source_answers=["yes", "no", "dog"])
    with pytest.raises(ValueError, match="answers is empty"):
        qa.remap_answer_head([])
    with pytest.raises(TypeError, match=r"got the string 'vqa' \(a shipped list: load_answers\('vqa'\)\)"):
        qa.remap_answer_head("vqa")
    with pytest.raises(ValueError, match="answers repeats yes, no: each answer needs a row of its own"):
        qa.remap_answer_head(["yes", "no", "yes", "dog", "no"])
    qa.config.id2label = {0: "yes", 1: "no", 2: "dog"}
    with pytest.raises(ValueError, match="config.id2label has 3 labels but the answer head has 7 rows"):
        qa.remap_answer_head(["yes"])
    qa.config.id2label = None
    with pytest.raises(ValueError, match=r"the answer head has 7 rows and config.id2label is not set.*9,500"):
        qa.remap_answer_head(["yes"])
    assert all(torch.equal(t, before[n]) for n, t in qa.answer_head.logit_fc.state_dict().items())
    assert qa.config.num_qa_labels == 7


def test_remapped_model_round_trips(qa, tmp_path):
    qa.remap_answer_head(list(TARGETS))
    qa.save_pretrained(tmp_path)
    loaded = LxmertForQuestionAnswering.from_pretrained(tmp_path)
    assert loaded.config.id2label == dict(enumerate(TARGETS)) and loaded.config.num_qa_labels == 9
    assert torch.equal(loaded.answer_head.logit_fc[3].weight, qa.answer_head.logit_fc[3].weight)


def test_from_pretrained_with_answers_remaps_a_pretraining_checkpoint(tools, tmp_path, caplog):
    # unc-nlp/lxmert-base-uncased's layout: a transformers LxmertForPreTraining with 9,500 answers, no labels.
    torch.manual_seed(0)
    config = transformers.LxmertConfig(**{**tools.TINY, "num_qa_labels": 9500})
    pretraining = tools.perturb(transformers.LxmertForPreTraining(config)).eval()
    pretraining.save_pretrained(tmp_path)
    vqa = load_answers("vqa")
    with caplog.at_level(logging.INFO, logger="lxmert"):
        model = LxmertForQuestionAnswering.from_pretrained(tmp_path, answers=vqa)
    assert "answer head re-mapped to 3129 answers: 3124 carried over from its 9500, 5 start at zero" in caplog.text
    assert model.config.num_qa_labels == 3129 and model.config.id2label[1] == vqa[1]
    pretrain = load_answers("pretrain")
    before = head_state(pretraining.answer_head.logit_fc)
    assert_remapped(model.answer_head.logit_fc, before, [pretrain.index(a) if a in pretrain else None for a in vqa])
    reference = pretraining.lxmert.state_dict()
    assert all(torch.equal(t, reference[name]) for name, t in model.lxmert.state_dict().items())


def test_from_pretrained_with_answers_uses_the_checkpoint_labels(tools, tmp_path):
    # A VQA head: its config has no labels, and loading gives it the shipped VQA list (3,129 rows).
    torch.manual_seed(0)
    vqa_model = tools.perturb(LxmertForQuestionAnswering(LxmertConfig(**{**tools.TINY, "num_qa_labels": 3129})))
    vqa_model.save_pretrained(tmp_path)
    gqa = load_answers("gqa")
    model = LxmertForQuestionAnswering.from_pretrained(tmp_path, answers=gqa)
    vqa = load_answers("vqa")
    expected = [vqa.index(a) if a in vqa else None for a in gqa]
    assert_remapped(model.answer_head.logit_fc, head_state(vqa_model.answer_head.logit_fc), expected)
    assert sum(row is not None for row in expected) > 1000


def test_answers_needs_a_class_with_an_answer_head(qa, tmp_path):
    qa.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="LxmertModel has none"):
        LxmertModel.from_pretrained(tmp_path, answers=["yes"])
