"""The official numbers of VQA v2, GQA and NLVR2, LXMERT's own evaluator, and each benchmark's submission writer.

    evaluate_vqa("minival_predict.json", "v2_mscoco_val2014_annotations.json")
    # {"overall": 69.9, "perAnswerType": {"yes/no": ..., "number": ..., "other": ...}, "perQuestionType": {...}}
    evaluate_gqa("testdev_predict.json", "testdev_balanced_questions.json")  # {"accuracy": 60.0, ...}
    evaluate_nlvr2("test_predict.csv", "test1.json")  # {"accuracy": 74.5, "consistency": ...}

The references, whose numbers these functions reproduce (where an input is malformed or ambiguous, the function
raises instead of guessing; each docstring says where):

- VQA: GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (`VQAEval.evaluate`) and
  PythonHelperTools/vqaTools/vqa.py (`VQA.loadRes`); the normalization lives in tasks.answers;
- GQA: the GQA evaluation script eval.py (accuracy over the balanced questions, per structural and semantic type,
  binary and open questions);
- NLVR2: lil-lab/nlvr, nlvr2/eval/metrics.py (accuracy, which it calls precision, and consistency);
- LXMERT: airsplay/lxmert, src/tasks/vqa_data.py `VQAEvaluator.evaluate` (gqa_data.py's is the same).

Every input is a path or the data its file holds once parsed. A file that is not JSON, or a record that lacks a
key, is a ValueError naming the file, the record and the key. The evaluators never change what they are given.
Writers replace their file atomically (a temporary file in the same folder, then os.replace).
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .answers import normalize_answer, strip_answer
from .files import write_atomically

PathLike = str | os.PathLike
_SHOWN_IDS = 10  # ids listed in an error message


# ---------------------------------------------------------------------------------------------------
# VQA v2


def evaluate_vqa(
    predictions: PathLike | list[dict[str, Any]],
    annotations: PathLike | Mapping[str, Any],
    questions: PathLike | Mapping[str, Any] | Iterable[Any] | None = None,
    *,
    precision: int = 2,
) -> dict[str, Any]:
    """VQA accuracy as the official evaluation computes it, in percent rounded to `precision` decimals:
    {"overall": 72.31, "perAnswerType": {"yes/no": ..., "number": ..., "other": ...}, "perQuestionType": {...}}.

    predictions: the submission, [{"question_id": int, "answer": str}], or the path of its JSON file.
    annotations: the official annotation file (e.g. v2_mscoco_val2014_annotations.json) or its parsed dict:
        {"annotations": [{"question_id", "question_type", "answer_type", "answers": [{"answer", ...}], ...}]}.
    questions: which questions to evaluate: the official question file (or its parsed dict, whose "questions"
        records give the ids) or the ids themselves. The predictions must then answer exactly those questions,
        as the official loadRes asserts for the questions of its annotation file. Default: the questions the
        predictions answer, which must all be annotated (so minival predictions can be scored with the val2014
        annotations).

    Per question, as the official `evaluate`: the prediction and the ground-truth answers go through
    `strip_answer`; if the ground-truth answers are then not all the same, the prediction and every answer are
    normalized (`normalize_answer`), otherwise all are compared as they are (quirk: ten "Yes" and the
    prediction "yes" do not match, nor do ten "two" and "2"). The question's accuracy is the mean, over its
    ground-truth answers, of min(1, matches / 3), where matches counts the other answers equal to the prediction.
    Each number is round(100 * sum / count, precision) over its questions, taken in annotation-file order.
    Unknown, missing or repeated question ids are a ValueError naming them (the official code asserts, or keeps
    the last of repeated answers).
    """
    predicted, name = _vqa_predictions(predictions)
    annotated, annotations_name = _vqa_annotations(annotations)
    unknown = [question_id for question_id in predicted if question_id not in annotated]
    if unknown:
        raise ValueError(
            f"{name} answers {len(unknown)} questions that {annotations_name} does not annotate: {_shown(unknown)}"
            f"{_id_type_hint(unknown, annotated)}; score predictions against the annotations of their own split"
        )
    if questions is None:
        wanted = set(predicted)
    else:
        wanted = _vqa_question_ids(questions)
        missing = wanted - predicted.keys()
        if missing:
            raise ValueError(
                f"{name} has no answer for {len(missing)} of the {len(wanted)} questions to evaluate: "
                f"{_shown(missing)}{_id_type_hint(missing, predicted)}"
            )
        extra = predicted.keys() - wanted
        if extra:
            raise ValueError(
                f"{name} answers {len(extra)} questions that are not among the {len(wanted)} to evaluate: "
                f"{_shown(extra)}"
            )
    if not wanted:
        raise ValueError(f"no questions to evaluate: {name} holds no predictions")

    accuracies, by_question_type, by_answer_type = [], {}, {}
    for question_id, annotation in annotated.items():
        if question_id not in wanted:
            continue
        where = f"{annotations_name}: question {question_id!r}"
        accuracy = _vqa_accuracy(predicted[question_id], _field(annotation, "answers", where), where)
        accuracies.append(accuracy)
        by_question_type.setdefault(_field(annotation, "question_type", where), []).append(accuracy)
        by_answer_type.setdefault(_field(annotation, "answer_type", where), []).append(accuracy)
    return {
        "overall": _vqa_percent(accuracies, precision),
        "perAnswerType": {kind: _vqa_percent(values, precision) for kind, values in by_answer_type.items()},
        "perQuestionType": {kind: _vqa_percent(values, precision) for kind, values in by_question_type.items()},
    }


def _vqa_accuracy(prediction: str, answers: Any, where: str) -> float:
    if not isinstance(answers, list) or not answers:
        raise ValueError(f"{where}: 'answers' must be a non-empty list of {{'answer': ...}} records, got {answers!r}")
    truths = []
    for index, record in enumerate(answers):
        text = _field(record, "answer", f"{where}, answer {index}")
        if not isinstance(text, str):
            raise ValueError(f"{where}, answer {index}: 'answer' must be a string, got {text!r}")
        truths.append({**record, "answer": strip_answer(text)})
    prediction = strip_answer(prediction)
    # The rule of the current vqaEval.py. Older revisions, and copies taken from them (LAVIS's vqa_eval.py), always
    # normalized the prediction and gave the answers processPunctuation only: their numbers can differ slightly.
    if len({truth["answer"] for truth in truths}) > 1:
        truths = [{**truth, "answer": normalize_answer(truth["answer"])} for truth in truths]
        prediction = normalize_answer(prediction)
    # Each record is held out in turn; matches counts the others equal to the prediction. Quirk: the official code
    # leaves out every record equal to the held-out one (`item != gtAnsDatum` on whole records). With the distinct
    # answer_ids of the official files that is the held-out record alone; records without ids that repeat an
    # answer are left out together. Only a held-out record that matches can take matches away.
    matching = [truth for truth in truths if truth["answer"] == prediction]
    scores = []
    for held_out in truths:
        matches = len(matching)
        if held_out["answer"] == prediction:
            matches -= sum(1 for truth in matching if truth == held_out)
        scores.append(min(1, matches / 3))
    return float(sum(scores)) / len(scores)


def _vqa_percent(values: list[float], precision: int) -> float:
    # The official expression, operation for operation: 100 * sum first, then the division, then round().
    return round(100 * float(sum(values)) / len(values), precision)


def _vqa_predictions(predictions) -> tuple[dict[Any, str], str]:
    records, name = _load_json(predictions, "VQA predictions")
    if not isinstance(records, list):
        raise ValueError(
            f"{name} must be a JSON list of {{'question_id', 'answer'}} records, got a {type(records).__name__}"
        )
    predicted, repeated = {}, []
    for index, record in enumerate(records):
        where = f"{name}: record {index}"
        question_id = _question_id(_field(record, "question_id", where), where)
        answer = _field(record, "answer", where)
        if not isinstance(answer, str):
            raise ValueError(f"{where}: 'answer' must be a string, got {answer!r}")
        if question_id in predicted:
            repeated.append(question_id)
        predicted[question_id] = answer
    if repeated:
        raise ValueError(f"{name} answers {len(set(repeated))} questions more than once: {_shown(set(repeated))}")
    return predicted, name


def _vqa_annotations(annotations) -> tuple[dict[Any, Mapping[str, Any]], str]:
    data, name = _load_json(annotations, "VQA annotations")
    records = _field(data, "annotations", name)
    if not isinstance(records, list):
        raise ValueError(f"{name}: 'annotations' must be a list, got a {type(records).__name__}")
    annotated = {}
    for index, record in enumerate(records):
        where = f"{name}: annotation {index}"
        annotated[_question_id(_field(record, "question_id", where), where)] = record
    return annotated, name


def _vqa_question_ids(questions) -> set[Any]:
    if isinstance(questions, str | os.PathLike | Mapping):
        data, name = _load_json(questions, "VQA questions")
        records = _field(data, "questions", name)
        if not isinstance(records, list):
            raise ValueError(f"{name}: 'questions' must be a list, got a {type(records).__name__}")
        where = f"{name}: question"
        return {
            _question_id(_field(record, "question_id", f"{where} {i}"), f"{where} {i}")
            for i, record in enumerate(records)
        }
    return {_question_id(question_id, "questions") for question_id in questions}


# ---------------------------------------------------------------------------------------------------
# GQA


def evaluate_gqa(
    predictions: PathLike | list[dict[str, Any]], questions: PathLike | Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """GQA accuracy as the GQA evaluation script computes it, in percent (not rounded):
    {"accuracy": 60.0, "binary": ..., "open": ..., "perType": {"structural": {...}, "semantic": {...}}}.

    predictions: the submission, [{"questionId": str, "prediction": str}], or the path of its JSON file.
    questions: the official question file (e.g. testdev_balanced_questions.json: {question_id: {"answer",
        "isBalanced", "types": {"structural", "semantic", "detailed"}, ...}}) or its parsed dict.

    The questions scored are those whose "isBalanced" is true (all of them when the key is absent); each needs a
    prediction, and predictions for other questions are ignored, as in the script. A prediction scores when it
    equals the answer exactly: nothing is lower-cased or stripped. "binary", "open" (open: structural type
    "query") and "perType" cover the questions that have "types"; they are left out when none has.
    """
    predicted, name = _gqa_predictions(predictions)
    data, questions_name = _load_json(questions, "GQA questions")
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{questions_name} must map question ids to questions (an official *_questions.json), "
            f"got a {type(data).__name__}"
        )
    scored = []
    for question_id, question in data.items():
        where = f"{questions_name}: question {question_id!r}"
        if not isinstance(question, Mapping):
            raise ValueError(f"{where} is a {type(question).__name__}, not a JSON object")
        if question.get("isBalanced", True):
            scored.append((question_id, question, where))
    missing = [question_id for question_id, _, _ in scored if question_id not in predicted]
    if missing:
        raise ValueError(
            f"{name} has no prediction for {len(missing)} of the {len(scored)} balanced questions of "
            f"{questions_name}: {_shown(missing)}"
        )
    if not scored:
        raise ValueError(f"no questions to evaluate: {questions_name} holds no balanced questions")

    scores, structural, semantic, kinds = [], {}, {}, {}
    for question_id, question, where in scored:
        score = float(predicted[question_id] == _field(question, "answer", where))
        scores.append(score)
        types = question.get("types")
        if types is None:
            continue
        structural_type = _field(types, "structural", f"{where}, types")
        structural.setdefault(structural_type, []).append(score)
        semantic.setdefault(_field(types, "semantic", f"{where}, types"), []).append(score)
        kinds.setdefault("open" if structural_type == "query" else "binary", []).append(score)
    result: dict[str, Any] = {"accuracy": _gqa_percent(scores)}
    for kind in ("binary", "open"):
        if kind in kinds:
            result[kind] = _gqa_percent(kinds[kind])
    result["perType"] = {}
    if structural:
        result["perType"] = {
            "structural": {kind: _gqa_percent(values) for kind, values in sorted(structural.items())},
            "semantic": {kind: _gqa_percent(values) for kind, values in sorted(semantic.items())},
        }
    return result


def _gqa_percent(values: list[float]) -> float:
    # The script's avg(...) * 100: the mean first, then the percent.
    return float(sum(values)) / len(values) * 100


def _gqa_predictions(predictions) -> tuple[dict[str, str], str]:
    records, name = _load_json(predictions, "GQA predictions")
    if not isinstance(records, list):
        raise ValueError(
            f"{name} must be a JSON list of {{'questionId', 'prediction'}} records, got a {type(records).__name__}"
        )
    predicted, repeated = {}, []
    for index, record in enumerate(records):
        where = f"{name}: record {index}"
        question_id = _field(record, "questionId", where)
        if not isinstance(question_id, str):
            raise ValueError(f"{where}: 'questionId' must be a string (GQA ids are strings), got {question_id!r}")
        prediction = _field(record, "prediction", where)
        if not isinstance(prediction, str):
            raise ValueError(f"{where}: 'prediction' must be a string, got {prediction!r}")
        if question_id in predicted:
            repeated.append(question_id)
        predicted[question_id] = prediction
    if repeated:
        raise ValueError(f"{name} answers {len(set(repeated))} questions more than once: {_shown(set(repeated))}")
    return predicted, name


# ---------------------------------------------------------------------------------------------------
# NLVR2


def evaluate_nlvr2(
    predictions: PathLike | Mapping[str, Any] | Iterable[tuple[str, Any]],
    labels: PathLike | Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> dict[str, float]:
    """NLVR2 accuracy and consistency as lil-lab/nlvr's nlvr2/eval/metrics.py computes them, in percent (the
    script prints fractions): {"accuracy": 74.5, "consistency": 39.1}.

    predictions: {identifier: bool}, (identifier, prediction) pairs, or the path of the CSV the benchmark takes
        (`identifier,prediction` lines, prediction True / False; a first line "identifier,prediction" is skipped).
    labels: {identifier: bool}, or the NLVR2 data file (dev.json, test1.json: a JSON object per line with
        "identifier" and "label") or its parsed records; a JSON list of such records (LXMERT's nlvr2 files) too.
    Labels and predictions are True / False, any case ("true"), or 1 / 0; anything else is a ValueError.

    Identifiers read split-set_id-pair_id-sentence_id. Consistency is the share of sentences (split, set id and
    sentence id: the script blanks the pair id) whose every example is predicted right. Each labeled example
    needs a prediction, and a prediction for an identifier without a label is an error too (the README's
    contract; the script itself only checks the count).
    """
    predicted, name = _nlvr2_predictions(predictions)
    truths, labels_name = _nlvr2_labels(labels)
    missing = truths.keys() - predicted.keys()
    if missing:
        raise ValueError(
            f"{name} has no prediction for {len(missing)} of the {len(truths)} examples of {labels_name}: "
            f"{_shown(missing)}"
        )
    extra = predicted.keys() - truths.keys()
    if extra:
        raise ValueError(f"{name} predicts {len(extra)} examples that {labels_name} does not hold: {_shown(extra)}")
    if not truths:
        raise ValueError(f"no examples to evaluate: {labels_name} is empty")
    correct, consistent = 0, {}
    for identifier, label in truths.items():
        right = predicted[identifier] == label
        correct += right
        sentence = _nlvr2_sentence(identifier)
        consistent[sentence] = consistent.get(sentence, True) and right
    return {
        "accuracy": 100 * correct / len(truths),
        "consistency": 100 * sum(consistent.values()) / len(consistent),
    }


def _nlvr2_sentence(identifier: str) -> tuple[str, ...]:
    parts = identifier.split("-")
    if len(parts) < 3:
        raise ValueError(f"NLVR2 identifier {identifier!r} is not of the form split-set_id-pair_id-sentence_id")
    return (*parts[:2], *parts[3:])


def _nlvr2_bool(value: Any, where: str) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{where}: expected True or False (or 1 / 0), got {value!r}")


def _nlvr2_predictions(predictions) -> tuple[dict[str, bool], str]:
    if isinstance(predictions, str | os.PathLike):
        name = f"NLVR2 predictions {os.fspath(predictions)}"
        pairs = list(_read_nlvr2_csv(Path(predictions), name))
    else:
        name = "NLVR2 predictions"
        items = predictions.items() if isinstance(predictions, Mapping) else predictions
        pairs = []
        for index, item in enumerate(items):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(f"{name}: item {index} is not an (identifier, prediction) pair: {item!r}")
            pairs.append((item[0], item[1], f"{name}: {item[0]!r}"))
    predicted, repeated = {}, []
    for identifier, value, where in pairs:
        if not isinstance(identifier, str):
            raise ValueError(f"{where}: the identifier must be a string, got {identifier!r}")
        if identifier in predicted:
            repeated.append(identifier)
        predicted[identifier] = _nlvr2_bool(value, where)
    if repeated:
        raise ValueError(f"{name} predicts {len(set(repeated))} examples more than once: {_shown(set(repeated))}")
    return predicted, name


def _read_nlvr2_csv(path: Path, name: str):
    with open(path, encoding="utf-8", newline="") as file:
        lines = file.read().splitlines()
    first = True
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        if first and fields == ["identifier", "prediction"]:
            first = False
            continue
        first = False
        if len(fields) != 2:
            raise ValueError(f"{name}, line {number}: expected identifier,prediction, got {line!r}")
        yield fields[0], fields[1], f"{name}, line {number}"


def _nlvr2_labels(labels) -> tuple[dict[str, bool], str]:
    if isinstance(labels, Mapping):
        name = "NLVR2 labels"
        return {identifier: _nlvr2_bool(value, f"{name}: {identifier!r}") for identifier, value in labels.items()}, name
    if isinstance(labels, str | os.PathLike):
        name = f"NLVR2 labels {os.fspath(labels)}"
        records = _read_json_lines(Path(labels), name)
    else:
        name = "NLVR2 labels"
        records = [(record, f"{name}: record {index}") for index, record in enumerate(labels)]
    truths, repeated = {}, []
    for record, where in records:
        identifier = _field(record, "identifier", where)
        if not isinstance(identifier, str):
            raise ValueError(f"{where}: 'identifier' must be a string, got {identifier!r}")
        if identifier in truths:
            repeated.append(identifier)
        truths[identifier] = _nlvr2_bool(_field(record, "label", where), where)
    if repeated:
        raise ValueError(f"{name} holds {len(set(repeated))} identifiers more than once: {_shown(set(repeated))}")
    return truths, name


def _read_json_lines(path: Path, name: str) -> list[tuple[Any, str]]:
    """Records of a JSON-lines file, or of a file holding one JSON list, each with where it was read."""
    text = _read_text(path, name)
    if text.lstrip().startswith("["):
        records = _parse_json(text, name)
        return [(record, f"{name}: record {index}") for index, record in enumerate(records)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            records.append((_parse_json(line, f"{name}, line {number}"), f"{name}, line {number}"))
    return records


# ---------------------------------------------------------------------------------------------------
# LXMERT's evaluator


def evaluate_lxmert(predictions: Mapping[Any, str], records: PathLike | list[Mapping[str, Any]]) -> float:
    """LXMERT's own VQA / GQA evaluator: the sum over the predicted questions of the score their label gives the
    predicted answer (0 when it has none), divided by the number of predictions; a fraction, not a percent.

    predictions: {question_id: answer}. records: LXMERT's preprocessed JSON records, [{"question_id", "label":
    {answer: score}, ...}] (data/vqa/minival.json, data/gqa/testdev.json), or the path of such a file. Answers are
    compared exactly, without normalization. A predicted question that no record holds, or whose record has no
    label, is a ValueError.
    """
    data, name = _load_json(records, "LXMERT records")
    if not isinstance(data, list):
        raise ValueError(
            f"{name} must be a JSON list of {{'question_id', 'label'}} records, got a {type(data).__name__}"
        )
    by_id = {}
    for index, record in enumerate(data):
        by_id[_field(record, "question_id", f"{name}: record {index}")] = record
    unknown = [question_id for question_id in predictions if question_id not in by_id]
    if unknown:
        raise ValueError(
            f"{len(unknown)} predicted questions are not in {name}: {_shown(unknown)}{_id_type_hint(unknown, by_id)}"
        )
    if not predictions:
        raise ValueError("no predictions to evaluate")
    score = 0.0
    for question_id, answer in predictions.items():
        where = f"{name}: question {question_id!r}"
        label = _field(by_id[question_id], "label", where)
        if not isinstance(label, Mapping):
            raise ValueError(f"{where}: 'label' must map answers to scores, got {label!r}")
        if answer in label:
            score += label[answer]
    return score / len(predictions)


# ---------------------------------------------------------------------------------------------------
# Submission files


def write_vqa_predictions(path: PathLike, answers: Mapping[int, str]) -> Path:
    """Write {question_id: answer} as the VQA submission, a JSON list of {"question_id": int, "answer": str}
    (one record a line, in the mapping's order). Returns the path."""
    records = []
    for question_id, answer in answers.items():
        try:
            question_id = operator.index(question_id)
        except TypeError:
            raise ValueError(f"VQA question ids are integers, got {question_id!r}") from None
        records.append({"question_id": question_id, "answer": _answer_text(answer, question_id)})
    return _write_text(path, _json_list(records))


def write_gqa_predictions(path: PathLike, answers: Mapping[str, str]) -> Path:
    """Write {question_id: answer} as the GQA submission, a JSON list of {"questionId": str, "prediction": str}
    (integer ids are written as strings, the form of GQA's ids). Returns the path."""
    records = []
    for question_id, answer in answers.items():
        if not isinstance(question_id, str):
            try:
                question_id = str(operator.index(question_id))
            except TypeError:
                raise ValueError(f"GQA question ids are strings, got {question_id!r}") from None
        records.append({"questionId": question_id, "prediction": _answer_text(answer, question_id)})
    return _write_text(path, _json_list(records))


def write_nlvr2_predictions(path: PathLike, predictions: Mapping[str, Any]) -> Path:
    """Write {identifier: prediction} as the NLVR2 CSV, `identifier,True` / `identifier,False` lines without a
    header; a prediction is a bool, 1 / 0 or "True" / "False". Returns the path."""
    lines = []
    for identifier, prediction in predictions.items():
        if not isinstance(identifier, str) or not identifier or any(c in identifier for c in ",\r\n"):
            raise ValueError(
                f"an NLVR2 identifier is a non-empty string without commas or newlines, got {identifier!r}"
            )
        value = _nlvr2_bool(prediction, f"NLVR2 prediction for {identifier!r}")
        lines.append(f"{identifier},{value}\n")
    return _write_text(path, "".join(lines))


def _answer_text(answer: Any, question_id: Any) -> str:
    if not isinstance(answer, str):
        raise ValueError(f"the answer of question {question_id!r} must be a string, got {answer!r}")
    return answer


def _write_text(path: PathLike, text: str) -> Path:
    return write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _json_list(records: list[dict[str, Any]]) -> str:
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(record, ensure_ascii=False) for record in records) + "\n]\n"


# ---------------------------------------------------------------------------------------------------
# Reading


def _load_json(source: Any, what: str) -> tuple[Any, str]:
    """(the data, the name errors give it): a path is read as JSON, anything else is taken as already parsed."""
    if isinstance(source, str | os.PathLike):
        name = f"{what} {os.fspath(source)}"
        return _parse_json(_read_text(Path(source), name), name), name
    return source, what


def _read_text(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{name} is not UTF-8 text: {error}") from None


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not JSON: {error}") from None


def _field(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, Mapping):
        raise ValueError(f"{where} is a {type(record).__name__}, not a JSON object with {key!r}")
    if key not in record:
        raise ValueError(f"{where} has no {key!r}")
    return record[key]


def _question_id(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{where}: a question id is an integer or a string, got {value!r}")
    return value


def _shown(ids: Iterable[Any]) -> str:
    ids = list(ids)
    try:
        ids.sort()
    except TypeError:
        ids.sort(key=repr)
    shown = ", ".join(repr(question_id) for question_id in ids[:_SHOWN_IDS])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > _SHOWN_IDS else "")


def _id_type_hint(ids: Iterable[Any], known: Mapping[Any, Any]) -> str:
    """A hint when ids differ from known ones by type only (123 against "123")."""
    for question_id in ids:
        other = str(question_id) if isinstance(question_id, int) else question_id
        if isinstance(question_id, str) and question_id.isdigit():
            other = int(question_id)
        if other in known:
            return f" (ids are compared as they are: {question_id!r} is not {other!r})"
    return ""
