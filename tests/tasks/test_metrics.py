"""tasks.metrics: VQA, GQA and NLVR2 numbers on hand-made data, LXMERT's evaluator, the submission writers.

References: GT-Vision-Lab/VQA vqaEval.py and vqa.py (loadRes), the GQA eval.py script, lil-lab/nlvr
nlvr2/eval/metrics.py, airsplay/lxmert src/tasks/vqa_data.py (VQAEvaluator). No package offers an independent
implementation; every expected value is worked out by hand in a comment, to the exact float.
"""

from __future__ import annotations

import copy
import json
import os

import pytest

from tasks import metrics
from tasks.metrics import (
    evaluate_gqa,
    evaluate_lxmert,
    evaluate_nlvr2,
    evaluate_vqa,
    write_gqa_predictions,
    write_nlvr2_predictions,
    write_vqa_predictions,
)

# ---------------------------------------------------------------------------------------------------
# VQA


def annotation(question_id, answers, question_type="what color is the", answer_type="other", ids=True):
    """An annotation record as the official files have them (answer_id 1..10 unless `ids` is False)."""
    records = [{"answer": answer, "answer_confidence": "yes"} for answer in answers]
    if ids:
        records = [{**record, "answer_id": index + 1} for index, record in enumerate(records)]
    return {
        "question_id": question_id,
        "image_id": 1,
        "question_type": question_type,
        "answer_type": answer_type,
        "answers": records,
        "multiple_choice_answer": answers[0],
    }


def vqa_score(answers, prediction):
    """The overall accuracy of one question."""
    result = evaluate_vqa([{"question_id": 1, "answer": prediction}], {"annotations": [annotation(1, answers)]})
    return result["overall"]


@pytest.mark.parametrize(
    ("matching", "expected"),
    [
        # Each of the ten answers is left out in turn; the subset's score is min(1, matches among the nine / 3).
        (0, 0.0),  # every subset: 0 matches -> 0
        (1, 30.0),  # 1 subset (the match left out): 0; 9 subsets: 1/3.   (0 + 9 * 1/3) / 10 = 0.3
        (2, 60.0),  # 2 subsets: 1/3; 8 subsets: 2/3.   (2 * 1/3 + 8 * 2/3) / 10 = 6 / 10 = 0.6
        (3, 90.0),  # 3 subsets: 2/3; 7 subsets: 3/3.   (3 * 2/3 + 7 * 1) / 10 = 9 / 10 = 0.9
        (4, 100.0),  # 4 subsets: 3 matches -> 1; 6 subsets: 4 -> min(1, 4/3) = 1
        (10, 100.0),
    ],
)
def test_vqa_leave_one_out_accuracy(matching, expected):
    assert vqa_score(["red"] * matching + ["blue"] * (10 - matching), "red") == expected


def test_vqa_normalizes_nothing_when_the_ten_answers_are_the_same():
    # The official rule: normalization only when the answers differ. Ten "Yes" keep their capital, and so does
    # the prediction: "yes" matches none of them; "Yes" matches; the whitespace clean-up always happens.
    assert vqa_score(["Yes"] * 10, "yes") == 0.0
    assert vqa_score(["Yes"] * 10, "Yes") == 100.0
    assert vqa_score(["Yes"] * 10, " Yes\n") == 100.0
    assert vqa_score(["two"] * 10, "2") == 0.0
    assert vqa_score(["yes"] * 10, "Yes.") == 0.0
    # One answer differs: all ten and the prediction are normalized ("Yes" -> "yes", "two" -> "2").
    assert vqa_score(["yes"] * 9 + ["Yes"], "YES") == 100.0
    assert vqa_score(["two"] * 9 + ["2"], "Two") == 100.0


def test_vqa_answers_the_same_after_stripping_count_as_the_same():
    # "yes " and "yes" are equal once stripped, so nothing is normalized and "Yes" matches none of them.
    assert vqa_score(["yes"] * 5 + ["yes "] * 5, "Yes") == 0.0


@pytest.mark.parametrize(
    ("truth", "prediction", "expected"),
    [
        # 3 annotators give `truth`, 7 give "other thing": after normalization 3 matches -> 90.0 (see above).
        ("1,000", "1000", 90.0),  # comma between digits removed
        ("black/white", "black white", 90.0),  # a mark without a space beside it becomes a space
        ("yes, it is", "yes it is", 90.0),  # a mark next to a space is removed
        ("dog.", "dog", 90.0),  # a period not followed by a digit is removed
        ("2.5", "25", 0.0),  # ... one followed by a digit is kept
        ("the dog", "a dog", 90.0),  # articles dropped on both sides
        ("two", "2", 90.0),  # number words
        ("dont", "don't", 90.0),  # contractions
        ("Red", "RED", 90.0),  # lower case
    ],
)
def test_vqa_normalization_branches(truth, prediction, expected):
    assert vqa_score([truth] * 3 + ["other thing"] * 7, prediction) == expected


def test_vqa_records_equal_in_full_are_left_out_together():
    # Without answer_ids, the three {"answer": "red", ...} records are equal, and the official `item !=
    # gtAnsDatum` leaves all three out when one is held out: 3 subsets score 0 matches, 7 subsets 3 matches.
    # (3 * 0 + 7 * 1) / 10 = 0.7, where the same answers with ids give 0.9.
    record = annotation(1, ["red"] * 3 + ["blue"] * 7, ids=False)
    result = evaluate_vqa([{"question_id": 1, "answer": "red"}], {"annotations": [record]})
    assert result["overall"] == 70.0


def test_vqa_per_answer_type_per_question_type_and_rounding():
    annotations = {
        "annotations": [
            annotation(1, ["yes"] * 10, "is this", "yes/no"),  # "yes": 1.0
            annotation(2, ["2"] * 1 + ["3"] * 9, "how many", "number"),  # "2": 1 of 10 -> 0.3
            annotation(3, ["red"] * 10, "what color is the", "other"),  # "blue": 0
            annotation(4, ["blue"] * 2 + ["red"] * 8, "what color is the", "other"),  # "blue": 2 of 10 -> 0.6
        ]
    }
    predictions = [
        {"question_id": 4, "answer": "blue"},  # the order of the predictions does not matter
        {"question_id": 1, "answer": "yes"},
        {"question_id": 2, "answer": "2"},
        {"question_id": 3, "answer": "blue"},
    ]
    result = evaluate_vqa(predictions, annotations)
    # overall: round(100 * (1 + 0.3 + 0 + 0.6) / 4, 2) = round(47.5, 2); the sum is taken in annotation order
    assert result["overall"] == round(100 * (1.0 + 0.3 + 0.0 + 0.6) / 4, 2) == 47.5
    assert result["perAnswerType"] == {"yes/no": 100.0, "number": 30.0, "other": 30.0}  # other: (0 + 0.6) / 2
    assert result["perQuestionType"] == {"is this": 100.0, "how many": 30.0, "what color is the": 30.0}
    assert list(result["perAnswerType"]) == ["yes/no", "number", "other"]  # first seen in the annotation file

    # Rounding, on questions 1, 2 and 3: 100 * (1 + 0.3 + 0) / 3 = 43.333.. -> 43.33, or 43.333 with precision 3
    partial = [p for p in predictions if p["question_id"] in (1, 2, 3)]
    assert evaluate_vqa(partial, annotations)["overall"] == 43.33
    assert evaluate_vqa(partial, annotations, precision=3)["overall"] == 43.333
    # "other" is question 3 alone there: 0 / 1 -> 0.0
    assert evaluate_vqa(partial, annotations)["perAnswerType"] == {"yes/no": 100.0, "number": 30.0, "other": 0.0}


def test_vqa_rounds_to_two_decimals():
    # 100 * (1 + 1 + 0) / 3 = 66.666.. -> 66.67 (Python's round of the float, as the official setAccuracy)
    annotations = {"annotations": [annotation(q, ["x"] * 10) for q in (1, 2, 3)]}
    predictions = [
        {"question_id": 1, "answer": "x"},
        {"question_id": 2, "answer": "x"},
        {"question_id": 3, "answer": "y"},
    ]
    assert evaluate_vqa(predictions, annotations)["overall"] == 66.67


def test_vqa_questions_restrict_and_must_all_be_answered():
    annotations = {"annotations": [annotation(q, ["x"] * 10) for q in range(1, 5)]}
    predictions = [{"question_id": q, "answer": "x"} for q in (1, 2)]
    questions = {"questions": [{"question_id": 1, "question": "?"}, {"question_id": 2, "question": "?"}]}
    assert evaluate_vqa(predictions, annotations, questions)["overall"] == 100.0
    assert evaluate_vqa(predictions, annotations, [1, 2])["overall"] == 100.0
    with pytest.raises(ValueError, match=r"no answer for 2 of the 4 questions to evaluate: 3, 4"):
        evaluate_vqa(predictions, annotations, [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"answers 1 questions that are not among the 1 to evaluate: 2"):
        evaluate_vqa(predictions, annotations, [1])


def test_vqa_unknown_and_repeated_question_ids_are_named():
    annotations = {"annotations": [annotation(1, ["x"] * 10)]}
    unknown = [{"question_id": q, "answer": "x"} for q in range(1, 14)]
    with pytest.raises(ValueError, match=r"12 questions that VQA annotations does not annotate: 2, 3, .*, 11, \.\.\."):
        evaluate_vqa(unknown, annotations)
    with pytest.raises(ValueError, match=r"'1' is not 1"):
        evaluate_vqa([{"question_id": "1", "answer": "x"}], annotations)
    repeated = [{"question_id": 1, "answer": "x"}, {"question_id": 1, "answer": "y"}]
    with pytest.raises(ValueError, match="more than once: 1"):
        evaluate_vqa(repeated, annotations)
    with pytest.raises(ValueError, match="no predictions"):
        evaluate_vqa([], annotations)


def test_vqa_reads_files_and_names_what_is_malformed(tmp_path):
    annotations_path = tmp_path / "annotations.json"
    annotations_path.write_text(json.dumps({"annotations": [annotation(7, ["dog"] * 10)]}))
    predictions_path = write_vqa_predictions(tmp_path / "predictions.json", {7: "dog"})
    assert evaluate_vqa(predictions_path, annotations_path)["overall"] == 100.0
    assert evaluate_vqa(str(predictions_path), str(annotations_path))["overall"] == 100.0

    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match=r"VQA predictions .*broken.json is not JSON"):
        evaluate_vqa(broken, annotations_path)
    with pytest.raises(ValueError, match=r"record 1 has no 'answer'"):
        evaluate_vqa([{"question_id": 7, "answer": "dog"}, {"question_id": 8}], annotations_path)
    with pytest.raises(ValueError, match=r"record 0: 'answer' must be a string"):
        evaluate_vqa([{"question_id": 7, "answer": 3}], annotations_path)
    with pytest.raises(ValueError, match="must be a JSON list"):
        evaluate_vqa({"question_id": 7, "answer": "dog"}, annotations_path)
    with pytest.raises(ValueError, match=r"VQA annotations .*predictions.json is a list, not a JSON object"):
        evaluate_vqa(predictions_path, predictions_path)
    without_type = annotation(7, ["dog"] * 10)
    del without_type["answer_type"]
    with pytest.raises(ValueError, match=r"question 7 has no 'answer_type'"):
        evaluate_vqa(predictions_path, {"annotations": [without_type]})
    with pytest.raises(ValueError, match=r"question 7: 'answers' must be a non-empty list"):
        evaluate_vqa(predictions_path, {"annotations": [{**without_type, "answers": []}]})


def test_vqa_changes_nothing_it_is_given():
    annotations = {"annotations": [annotation(1, ["Two"] * 5 + ["2."] * 5)]}
    predictions = [{"question_id": 1, "answer": " two\n"}]
    before = copy.deepcopy((annotations, predictions))
    assert evaluate_vqa(predictions, annotations)["overall"] == 100.0  # all normalize to "2"
    assert (annotations, predictions) == before
    assert evaluate_vqa(predictions, annotations)["overall"] == 100.0  # a second run gives the same


# ---------------------------------------------------------------------------------------------------
# GQA


def gqa_question(answer, structural="query", semantic="attr", balanced=True):
    return {
        "answer": answer,
        "isBalanced": balanced,
        "types": {"structural": structural, "semantic": semantic, "detailed": "x"},
    }


GQA_QUESTIONS = {
    "1": gqa_question("red", "query", "attr"),
    "2": gqa_question("yes", "verify", "rel"),
    "3": gqa_question("no", "logical", "obj"),
    "4": gqa_question("cat", "query", "cat"),
    "5": gqa_question("dog", "query", "cat", balanced=False),  # not scored
}


def test_gqa_accuracy_per_type_binary_and_open():
    predictions = [
        {"questionId": "1", "prediction": "red"},  # right
        {"questionId": "2", "prediction": "Yes"},  # wrong: compared exactly, no lower-casing
        {"questionId": "3", "prediction": "no"},  # right
        {"questionId": "4", "prediction": "dog"},  # wrong
        {"questionId": "999", "prediction": "x"},  # not a question of the file: ignored, as by the script
    ]
    result = evaluate_gqa(predictions, GQA_QUESTIONS)
    assert result["accuracy"] == 50.0  # 2 of the 4 balanced questions: 2 / 4 * 100
    assert result["open"] == 50.0  # query: 1 and 4, one right
    assert result["binary"] == 50.0  # verify, logical: 2 and 3, one right
    assert result["perType"] == {
        "structural": {"logical": 100.0, "query": 50.0, "verify": 0.0},
        "semantic": {"attr": 100.0, "cat": 0.0, "obj": 100.0, "rel": 0.0},
    }


def test_gqa_without_types_gives_the_accuracy_alone(tmp_path):
    questions = {"1": {"answer": "red"}, "2": {"answer": "blue"}, "3": {"answer": "green"}}  # balanced by default
    path = write_gqa_predictions(tmp_path / "gqa.json", {"1": "red", "2": "red", 3: "green"})
    # (1 + 0 + 1) / 3 * 100, the mean first as the script's avg(...) * 100
    assert evaluate_gqa(path, questions) == {"accuracy": 2 / 3 * 100, "perType": {}}


def test_gqa_errors():
    with pytest.raises(ValueError, match=r"no prediction for 1 of the 4 balanced questions of GQA questions: '4'"):
        evaluate_gqa([{"questionId": q, "prediction": "x"} for q in "123"], GQA_QUESTIONS)
    with pytest.raises(ValueError, match=r"record 0: 'questionId' must be a string"):
        evaluate_gqa([{"questionId": 1, "prediction": "red"}], GQA_QUESTIONS)
    with pytest.raises(ValueError, match=r"record 0 has no 'prediction'"):
        evaluate_gqa([{"questionId": "1", "answer": "red"}], GQA_QUESTIONS)
    with pytest.raises(ValueError, match="more than once"):
        evaluate_gqa([{"questionId": "1", "prediction": "red"}] * 2, {"1": {"answer": "red"}})
    with pytest.raises(ValueError, match=r"question '1' has no 'answer'"):
        evaluate_gqa([{"questionId": "1", "prediction": "red"}], {"1": {"question": "?"}})
    with pytest.raises(ValueError, match="must map question ids to questions"):
        evaluate_gqa([], [{"answer": "red"}])


# ---------------------------------------------------------------------------------------------------
# NLVR2

# Set 1 has two image pairs (0, 1), each with two sentences (0, 1); set 2 one example.
NLVR2_LABELS = {"dev-1-0-0": True, "dev-1-1-0": False, "dev-1-0-1": True, "dev-1-1-1": True, "dev-2-0-0": False}


def test_nlvr2_accuracy_and_consistency_group_by_sentence_across_pairs():
    predictions = dict(NLVR2_LABELS)
    predictions["dev-1-0-0"] = False  # wrong
    predictions["dev-1-1-0"] = True  # wrong
    result = evaluate_nlvr2(predictions, NLVR2_LABELS)
    assert result["accuracy"] == 60.0  # 3 of 5 right
    # A sentence is split-set_id-sentence_id (the script blanks the pair id): dev-1-?-0 has both pairs wrong,
    # dev-1-?-1 both right, dev-2-?-0 right -> 2 of 3 sentences consistent. (Grouping by the pair instead, i.e.
    # dropping the last field, would give dev-1-0 and dev-1-1 each one wrong -> 1 of 3.)
    assert result["consistency"] == 100 * 2 / 3


def test_nlvr2_one_wrong_of_a_sentences_two_examples_makes_it_inconsistent():
    predictions = {**NLVR2_LABELS, "dev-1-1-1": False}  # dev-1-?-1: one right, one wrong
    result = evaluate_nlvr2(predictions, NLVR2_LABELS)
    assert result == {"accuracy": 80.0, "consistency": 100 * 2 / 3}


def test_nlvr2_csv_and_jsonl_files(tmp_path):
    labels = tmp_path / "dev.json"  # the NLVR2 data format: one JSON object a line, labels as strings
    labels.write_text(
        "".join(json.dumps({"identifier": i, "label": str(v), "sentence": "s"}) + "\n" for i, v in NLVR2_LABELS.items())
    )
    predictions = tmp_path / "predict.csv"
    predictions.write_text(
        "identifier,prediction\n" + "".join(f"{i},{str(v).lower()}\n" for i, v in NLVR2_LABELS.items())
    )
    assert evaluate_nlvr2(predictions, labels) == {"accuracy": 100.0, "consistency": 100.0}

    lxmert_style = tmp_path / "valid.json"  # LXMERT's processed files: one JSON list, labels 0 / 1
    lxmert_style.write_text(json.dumps([{"identifier": i, "label": int(v), "uid": i} for i, v in NLVR2_LABELS.items()]))
    pairs = [(identifier, not value) for identifier, value in NLVR2_LABELS.items()]
    assert evaluate_nlvr2(pairs, lxmert_style) == {"accuracy": 0.0, "consistency": 0.0}


def test_nlvr2_writer_round_trip(tmp_path):
    path = write_nlvr2_predictions(tmp_path / "out" / "test_predict.csv", {"dev-1-0-0": True, "dev-1-1-0": 0})
    assert path.read_text() == "dev-1-0-0,True\ndev-1-1-0,False\n"
    assert evaluate_nlvr2(path, {"dev-1-0-0": "True", "dev-1-1-0": "false"}) == {
        "accuracy": 100.0,
        "consistency": 100.0,
    }


def test_nlvr2_errors(tmp_path):
    missing = {i: v for i, v in NLVR2_LABELS.items() if i != "dev-2-0-0"}
    with pytest.raises(ValueError, match=r"no prediction for 1 of the 5 examples of NLVR2 labels: 'dev-2-0-0'"):
        evaluate_nlvr2(missing, NLVR2_LABELS)
    with pytest.raises(ValueError, match=r"predicts 1 examples that NLVR2 labels does not hold: 'dev-9-0-0'"):
        evaluate_nlvr2({**NLVR2_LABELS, "dev-9-0-0": True}, NLVR2_LABELS)
    bad = tmp_path / "bad.csv"
    bad.write_text("dev-1-0-0,True\ndev-1-1-0,yes\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: expected True or False .*'yes'"):
        evaluate_nlvr2(bad, NLVR2_LABELS)
    bad.write_text("dev-1-0-0,True,0.9\n")
    with pytest.raises(ValueError, match=r"line 1: expected identifier,prediction"):
        evaluate_nlvr2(bad, NLVR2_LABELS)
    bad.write_text("dev-1-0-0,True\ndev-1-0-0,False\n")
    with pytest.raises(ValueError, match="more than once: 'dev-1-0-0'"):
        evaluate_nlvr2(bad, NLVR2_LABELS)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"identifier": "dev-1-0-0", "label": "True"}\n{"identifier": "dev-1-1-0"}\n')
    with pytest.raises(ValueError, match=r"labels.jsonl, line 2 has no 'label'"):
        evaluate_nlvr2({"dev-1-0-0": True, "dev-1-1-0": True}, labels)
    labels.write_text('{"identifier": "dev-1-0-0", "label": "True"}\nnot json\n')
    with pytest.raises(ValueError, match=r"labels.jsonl, line 2 is not JSON"):
        evaluate_nlvr2({"dev-1-0-0": True}, labels)
    with pytest.raises(ValueError, match="not of the form split-set_id-pair_id-sentence_id"):
        evaluate_nlvr2({"dev-1": True}, {"dev-1": True})


# ---------------------------------------------------------------------------------------------------
# LXMERT's evaluator

LXMERT_RECORDS = [
    {"question_id": 1, "label": {"red": 1, "dark red": 0.3}, "sent": "?"},
    {"question_id": 2, "label": {"2": 0.6, "3": 1}},
    {"question_id": 3, "label": {}},
]


def test_lxmert_evaluator_sums_label_scores_of_the_predicted_answers():
    predictions = {1: "dark red", 2: "2", 3: "anything"}
    # (0.3 + 0.6 + 0) / 3, summed in the predictions' order as LXMERT's loop does
    assert evaluate_lxmert(predictions, LXMERT_RECORDS) == (0.0 + 0.3 + 0.6 + 0.0) / 3
    assert evaluate_lxmert({1: "Red"}, LXMERT_RECORDS) == 0.0  # exact strings
    assert evaluate_lxmert({1: "red", 2: "3"}, LXMERT_RECORDS) == 1.0  # only the predicted questions count


def test_lxmert_evaluator_reads_files_and_names_errors(tmp_path):
    path = tmp_path / "minival.json"
    path.write_text(json.dumps(LXMERT_RECORDS))
    assert evaluate_lxmert({1: "red"}, path) == 1.0
    with pytest.raises(ValueError, match=r"2 predicted questions are not in LXMERT records .*minival.json: 4, 5"):
        evaluate_lxmert({1: "red", 4: "x", 5: "y"}, path)
    with pytest.raises(ValueError, match=r"question 1 has no 'label'"):
        evaluate_lxmert({1: "red"}, [{"question_id": 1, "sent": "?"}])
    with pytest.raises(ValueError, match=r"record 0 has no 'question_id'"):
        evaluate_lxmert({1: "red"}, [{"label": {}}])
    with pytest.raises(ValueError, match="no predictions"):
        evaluate_lxmert({}, path)


# ---------------------------------------------------------------------------------------------------
# Writers


def test_vqa_writer_writes_the_submission_format(tmp_path):
    path = write_vqa_predictions(tmp_path / "test_predict.json", {458752000: "net", 1: "2"})
    assert json.loads(path.read_text()) == [
        {"question_id": 458752000, "answer": "net"},
        {"question_id": 1, "answer": "2"},
    ]
    assert json.loads(write_vqa_predictions(tmp_path / "empty.json", {}).read_text()) == []
    with pytest.raises(ValueError, match="VQA question ids are integers, got '1'"):
        write_vqa_predictions(tmp_path / "bad.json", {"1": "yes"})
    with pytest.raises(ValueError, match="the answer of question 1 must be a string"):
        write_vqa_predictions(tmp_path / "bad.json", {1: 2})
    assert not (tmp_path / "bad.json").exists()


def test_gqa_writer_writes_the_submission_format(tmp_path):
    path = write_gqa_predictions(tmp_path / "submit_predict.json", {"201307251": "yes", 5: "no"})
    assert json.loads(path.read_text()) == [
        {"questionId": "201307251", "prediction": "yes"},
        {"questionId": "5", "prediction": "no"},  # integer ids become GQA's string ids
    ]


def test_writers_replace_atomically(tmp_path, monkeypatch):
    path = tmp_path / "predict.json"
    write_vqa_predictions(path, {1: "old"})
    write_vqa_predictions(path, {1: "new"})
    assert json.loads(path.read_text()) == [{"question_id": 1, "answer": "new"}]

    def fail(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(metrics.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_vqa_predictions(path, {1: "lost"})
    assert json.loads(path.read_text()) == [{"question_id": 1, "answer": "new"}]  # the old file, whole
    assert sorted(os.listdir(tmp_path)) == ["predict.json"]  # no temporary file left behind
