"""Bad visual inputs and questions get a ValueError naming the input; warnings say only what is true;
score_function= per call."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import pytest
import torch
from helpers import PIPELINE_LXMERT

from lxmert import LxmertConfig, LxmertForQuestionAnswering, LxmertTokenizerFast
from pipelines import VisualQuestionAnsweringPipeline, pipeline

QUESTION = "what color is the dog on the left?"


def regions(count: int = 5, dim: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid features (count, dim) and normalized boxes (count, 4)."""
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(count, 2, generator=generator) * 0.5
    return torch.rand(count, dim, generator=generator), torch.cat([corners, corners + 0.5], dim=1)


def test_valid_given_features_are_answered(vqa):
    features, boxes = regions()
    answers = vqa(features=features, boxes=boxes, question=QUESTION)
    assert len(answers) == 5 and all(0 < a["score"] < 1 for a in answers)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features_and_boxes_are_refused(vqa, value):
    features, boxes = regions()
    features[3, 7] = value
    with pytest.raises(ValueError, match=r"features= holds 1 NaN or infinite values \(the first in region 3\)"):
        vqa(features=features, boxes=boxes, question=QUESTION)
    features, boxes = regions()
    boxes[2, 0] = value
    boxes[4, :] = value
    with pytest.raises(ValueError, match=r"boxes= holds 5 NaN or infinite values \(the first in region 2\)"):
        vqa(features=features, boxes=boxes, question=QUESTION)


def test_no_regions_is_refused(vqa):
    with pytest.raises(ValueError, match=r"features= has no regions \(shape \(0, 256\)\): LXMERT needs at least one"):
        vqa(features=torch.zeros(0, 256), boxes=torch.zeros(0, 4), question=QUESTION)


def test_boxes_must_be_normalized(vqa):
    features, boxes = regions()
    boxes[1] = torch.tensor([10.0, 20.0, 300.0, 200.0])  # pixels, not normalized
    with pytest.raises(ValueError, match=r"boxes= must be normalized boxes .* in \[0, 1\]\), but region 1 is"):
        vqa(features=features, boxes=boxes, question=QUESTION)
    features, boxes = regions()
    boxes[0, 2] = 1 + 1e-6  # float rounding at the image border is accepted
    assert len(vqa(features=features, boxes=boxes, question=QUESTION)) == 5


def test_wrong_shapes_and_types(vqa):
    features, boxes = regions()
    with pytest.raises(ValueError, match=r"features= must be \(K, 256\) region features, got shape \(5, 255\)"):
        vqa(features=features[:, :255], boxes=boxes, question=QUESTION)
    with pytest.raises(ValueError, match=r"boxes= must be \(5, 4\) normalized boxes .* got shape \(4, 4\)"):
        vqa(features=features, boxes=boxes[:4], question=QUESTION)
    with pytest.raises(TypeError, match="features= must be a tensor or an array of numbers, got a str"):
        vqa(features="features.npy", boxes=boxes, question=QUESTION)


class DictStore(dict):
    """A store as the pipeline reads one: records with features and normalized_boxes, by image id."""


def test_store_records_are_checked_and_named(vqa):
    features, boxes = regions()
    bad = features.clone()
    bad[0, 0] = float("nan")
    store = DictStore(
        good=SimpleNamespace(features=features.numpy(), normalized_boxes=boxes.numpy(), boxes=boxes.numpy() * 100),
        bad=SimpleNamespace(features=bad.numpy(), normalized_boxes=boxes.numpy(), boxes=boxes.numpy() * 100),
        empty=SimpleNamespace(
            features=features[:0].numpy(), normalized_boxes=boxes[:0].numpy(), boxes=boxes[:0].numpy() * 100
        ),
    )
    assert len(vqa(image_id="good", store=store, question=QUESTION)) == 5
    with pytest.raises(
        ValueError,
        match=r"the features of image 'bad' in the store holds 1 NaN or infinite values \(the first in region 0\)",
    ):
        vqa(image_id=["good", "bad"], store=store, question=QUESTION)
    with pytest.raises(ValueError, match="the features of image 'empty' in the store has no regions"):
        vqa(image_id="empty", store=store, question=QUESTION)


@pytest.mark.parametrize("question", ["\x00\x01", "\u200b\u200d", "\ufeff\u200b \u2060", "\x7f" * 1000])
def test_questions_of_invisible_characters_are_refused(vqa, question):
    with pytest.raises(ValueError, match="question 1 .* has no words: only control, zero-width") as error:
        vqa(image_id="x", store={}, question=[QUESTION, question])
    assert len(str(error.value)) < 300  # the question is quoted, cut short


@pytest.mark.parametrize("question", ["\t\n", " \u3000 "])
def test_whitespace_questions_are_empty(vqa, question):
    with pytest.raises(ValueError, match="question 0 is empty"):
        vqa(image_id="x", store={}, question=question)


def test_a_long_question_warns_once_with_the_true_length(vqa, caplog):
    """Only the pipeline's warning: the batch is truncated, so the tokenizer's "indexing errors, pass
    truncation=True" would be false."""
    pipe = VisualQuestionAnsweringPipeline(vqa.model, LxmertTokenizerFast(), vqa.reader)
    words = ["is", *["dog"] * 600, "red"]  # each one wordpiece of bert-base-uncased
    question = " ".join(words)
    features, boxes = regions()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(features=features, boxes=boxes, question=question)
    assert [str(w.message) for w in caught] == [
        f"question {question[:40]!r}... has {len(words) + 2} tokens; it was cut to 64"
    ]
    assert not [record for record in caplog.records if "truncation" in record.getMessage()]


def qa_model(num_answers: int) -> LxmertForQuestionAnswering:
    labels = {i: f"answer {i}" for i in range(num_answers)}
    return LxmertForQuestionAnswering(
        LxmertConfig(**{**PIPELINE_LXMERT, "num_qa_labels": num_answers}, id2label=labels)
    )


@pytest.mark.parametrize("task, answers, other", [("gqa", 3129, "vqa"), ("vqa", 1842, "gqa")])
def test_another_tasks_answer_head_is_warned_about(detector_dir, task, answers, other):
    with pytest.warns(
        UserWarning, match=rf"the '{task}' task expects .* has {answers} answers.*use the '{other}' task"
    ):
        pipeline(task, model=qa_model(answers), detector=detector_dir, device="cpu")


@pytest.mark.parametrize("task, answers", [("vqa", 3129), ("gqa", 1842), ("vqa", 7)])
def test_a_fitting_or_custom_head_is_not_warned_about(detector_dir, task, answers):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipeline(task, model=qa_model(answers), detector=detector_dir, device="cpu")


def test_score_function_per_call(vqa, vqa_dir, detector_dir):
    features, boxes = regions()
    inputs = {"features": features, "boxes": boxes, "question": QUESTION, "top_k": 7}
    softmax = vqa(**inputs, score_function="softmax")
    assert abs(sum(a["score"] for a in softmax) - 1) < 1e-5
    gqa = pipeline("gqa", model=vqa_dir, detector=detector_dir, device="cpu")
    assert [a["answer"] for a in softmax] == [a["answer"] for a in gqa(**inputs)]
    assert [a["score"] for a in softmax] == pytest.approx([a["score"] for a in gqa(**inputs)], abs=1e-6)
    sigmoid = gqa(**inputs, score_function="sigmoid")
    assert [a["score"] for a in sigmoid] == pytest.approx([a["score"] for a in vqa(**inputs)], abs=1e-6)
    assert vqa.score_function == "sigmoid" and gqa.score_function == "softmax"  # the call changed nothing
    with pytest.raises(ValueError, match="score_function must be one of sigmoid, softmax, got 'relu'"):
        vqa(**inputs, score_function="relu")
