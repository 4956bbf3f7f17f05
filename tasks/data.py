"""Questions (VQA, GQA) and statements (NLVR2) read from every data format LXMERT is fine-tuned on.

One small reader per format, each returning `Question` or `Statement` records:

- `read_lxmert_qa`: LXMERT's preprocessed VQA / GQA JSON (airsplay/lxmert data/vqa/*.json, data/gqa/*.json);
- `read_lxmert_nlvr2`: LXMERT's NLVR2 JSON (data/nlvr2/*.json);
- `read_vqa_official`: the official VQA questions file, with its annotations file for labels;
- `read_gqa_official`: GQA's question files (train_balanced_questions.json, ...);
- `read_nlvr2_jsonl`: NLVR2's own files (nlvr2/data/train.json, dev.json, test1.json: one JSON object a line);
- `read_hf_dataset`: a `datasets.Dataset` with question, image id and answers columns;
- `read_answer_list`: an answer table (trainval_label2ans.json, trainval_ans2label.json, or a JSON list);
- `read_task_data`: one file of any format above, detected by content, for a task ("vqa", "gqa", "nlvr2").

Image ids are the ids our feature stores use: COCO file stems for VQA ("COCO_val2014_000000393267"), GQA's
imageId ("2375429", "n161313"), NLVR2 image file stems ("dev-850-0-img0"). A malformed file or record is a
`DataFormatError` naming the file, the record (index or line, and its id when known) and the key.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from extract.image_errors import os_error_reason

from .answers import normalize_answer, soft_score
from .config import TASKS

__all__ = [
    "detect_format",
    "vqa_annotations_of",
    "DataFormatError",
    "Question",
    "Statement",
    "read_answer_list",
    "read_gqa_official",
    "read_hf_dataset",
    "read_lxmert_nlvr2",
    "read_lxmert_qa",
    "read_nlvr2_jsonl",
    "read_task_data",
    "read_vqa_official",
    "vqa_soft_label",
]

# The COCO image folder (and file-name part) of each VQA data_subtype: test-dev questions are on test2015 images.
COCO_IMAGE_SETS = {"test-dev2015": "test2015"}
VQA_IMAGE_ID_FORMAT = "COCO_{data_subtype}_{image_id:012d}"
# normalize_answer costs ~13 us; VQA v2 train has 4.4M annotator answers but far fewer distinct ones.
_normalized = functools.lru_cache(maxsize=1 << 18)(normalize_answer)
# Official VQA file names (v1 without the "v2_" prefix): annotations <-> OpenEnded questions of one subtype.
_VQA_ANNOTATIONS_NAME = re.compile(r"(?P<version>(?:v2_)?)mscoco_(?P<subtype>[\w-]+)_annotations\.json")
_VQA_QUESTIONS_NAME = re.compile(r"(?P<version>(?:v2_)?)OpenEnded_mscoco_(?P<subtype>[\w-]+)_questions\.json")


class DataFormatError(ValueError):
    """A data file (or dataset) that is not the format it should be: names the file, the record and the key."""


@dataclass(frozen=True)
class Question:
    """A VQA or GQA question about one image."""

    question_id: int | str  # as the source writes it (VQA: int, GQA: str)
    image_id: str  # the feature store id of its image
    text: str
    label: dict[str, float] | None  # answer -> soft score; None on test splits
    answer_type: str | None = None  # VQA "yes/no" | "number" | "other"; GQA structural type
    question_type: str | None = None  # VQA question_type ("what color is the"); GQA semantic type


@dataclass(frozen=True)
class Statement:
    """An NLVR2 statement about a pair of images."""

    identifier: str  # "dev-850-0-0"
    image_ids: tuple[str, str]  # store ids of the left and right image ("dev-850-0-img0", "dev-850-0-img1")
    text: str
    label: bool | None  # None where the file has no label


def vqa_soft_label(answers: Sequence[str]) -> dict[str, float]:
    """Answer -> soft score from the annotators' answers (VQA: 10 a question), as LXMERT's VQA JSON holds it.

    Each answer is normalized (`normalize_answer`), counted over all the answers given (not the 9 others of
    one annotator), and scores `soft_score(count)`: 1 annotator 0.3, 2 0.6, 3 0.9, 4 or more 1.0, as
    bottom-up-attention-vqa's tools/compute_softscore.py `compute_target` made the labels LXMERT's JSON took
    over; with 10 answers that is the official accuracy of the answer, whose leave-one-out average is built in.
    Every answer is kept: tasks.examples leaves those outside a model's answer list out of the target
    (LXMERT's JSON holds only answers of its 3,129).
    """
    counts = Counter(_normalized(answer) for answer in answers)
    return {answer: soft_score(count) for answer, count in counts.items()}


# ---- reading files ----------------------------------------------------------------------------------------


class _TopLevelKeys:
    """json object_pairs_hook that notes the keys repeated in the last object closed: the top-level object,
    which closes last (`json` would keep only the last of two GQA questions with one id)."""

    def __init__(self) -> None:
        self.repeated: list[str] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        built = dict(pairs)
        self.repeated = [] if len(built) == len(pairs) else _repeated([key for key, _ in pairs])
        return built


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.read()
    except IsADirectoryError as error:
        raise DataFormatError(f"{path}: this is a directory, not a data file") from error
    except OSError as error:
        raise DataFormatError(f"{path}: cannot be read: {os_error_reason(error, path)}") from error
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 text (byte {error.start}): not a JSON data file") from error


def _parse_json(path: Path, text: str) -> Any:
    keys = _TopLevelKeys()
    try:
        data = json.loads(text, object_pairs_hook=keys)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            f"{path}: not JSON ({error.msg} at line {error.lineno}, column {error.colno})"
            + ("; one JSON object a line is NLVR2's format (task nlvr2)" if error.msg == "Extra data" else "")
        ) from error
    except RecursionError as error:
        raise DataFormatError(f"{path}: JSON nested too deeply to be a data file") from error
    if isinstance(data, dict) and keys.repeated:
        raise DataFormatError(
            f"{path}: the key(s) {_show_some(keys.repeated)} appear more than once in the top-level object (GQA: "
            "question ids; trainval_ans2label.json: answers)"
        )
    return data


def _load_json(path: str | os.PathLike) -> tuple[Path, Any]:
    path = Path(path)
    return path, _parse_json(path, _read_text(path))


def _parse_jsonl(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line."""
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                values.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise DataFormatError(
                    f"{path}: line {number} is not JSON ({error.msg} at column {error.colno}); NLVR2's files hold "
                    "one JSON object a line"
                ) from error
    return values


# ---- checking values ----------------------------------------------------------------------------------------

_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "true / false", list: "a list"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... ({_kind(value)})" if len(text) > 60 else f"{text} ({_kind(value)})"


def _show_some(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _repeated(items: Sequence[Any]) -> list[Any]:
    return [item for item, count in Counter(items).items() if count > 1]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_id(value: Any) -> bool:
    return _is_str(value) or _is_int(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field(record: Mapping, key: str, at: str, check: Callable[[Any], bool], expected: str, *, required=True) -> Any:
    """record[key] after `check`; an optional key that is absent or null is None."""
    if key not in record or (record[key] is None and not required):
        if required:
            raise DataFormatError(f"{at}: key {key!r} is missing (keys: {_show_some(list(record), 10)})")
        return None
    value = record[key]
    if not check(value):
        raise DataFormatError(f"{at}: key {key!r} holds {_show(value)}, expected {expected}")
    return value


def _record(value: Any, at: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise DataFormatError(f"{at}: holds {_show(value)}, expected an object")
    return value


def _top_level(path: Path, data: Any, kind: type, expected: str) -> Any:
    if not isinstance(data, kind):
        raise DataFormatError(f"{path}: the top level is {_kind(data)}, expected {expected}")
    return data


def _score_label(value: Any, at: str, key: str) -> dict[str, float]:
    """A label answer -> score, every score a number in [0, 1]."""
    if not isinstance(value, Mapping):
        raise DataFormatError(f"{at}: key {key!r} holds {_show(value)}, expected an object answer -> score")
    for answer, score in value.items():
        if not _is_str(answer):
            raise DataFormatError(f"{at}: key {key!r} has the answer {_show(answer)}, expected a string")
        if not _is_number(score) or not 0 <= score <= 1:
            raise DataFormatError(
                f"{at}: key {key!r} gives answer {answer!r} the score {_show(score)}, expected a number in [0, 1]"
            )
    return {answer: float(score) for answer, score in value.items()}


def _refuse_repeated_ids(source: str, ids: Sequence[Any], places: Sequence[str], name: str = "question id") -> None:
    repeated = set(_repeated(ids))
    if repeated:
        where = [f"{ident!r} at {place}" for ident, place in zip(ids, places, strict=True) if ident in repeated]
        raise DataFormatError(
            f"{source}: {len(repeated)} {name}(s) appear more than once: {', '.join(where[:6])}"
            + (f" and {len(where) - 6} more" if len(where) > 6 else "")
        )


def _check_ids(source: str, ids: Sequence[Any], places: Sequence[str], name: str = "question id") -> None:
    """No records, or one id twice, is an error."""
    if not ids:
        raise DataFormatError(f"{source}: holds no records")
    _refuse_repeated_ids(source, ids, places, name)


def _statement_image_ids(identifier: str, at: str) -> tuple[str, str]:
    """NLVR2 names the images of `split-set_id-pair_id-sentence_id` `split-set_id-pair_id-img0` / `-img1`."""
    stem, _, sentence = identifier.rpartition("-")
    if stem.count("-") < 2 or not sentence.isdigit():
        raise DataFormatError(
            f"{at}: key 'identifier' holds {identifier!r}, expected NLVR2's split-set_id-pair_id-sentence_id "
            "(e.g. 'dev-850-0-0')"
        )
    return f"{stem}-img0", f"{stem}-img1"


# ---- LXMERT's JSON ----------------------------------------------------------------------------------------


def read_lxmert_qa(path: str | os.PathLike) -> list[Question]:
    """LXMERT's VQA / GQA JSON: a list of {"img_id", "question_id", "sent", "label": {answer: score}}.

    "label" is absent on test splits (label None); "answer_type" and "question_type" (VQA) are kept when present.
    Question ids stay as written (VQA int, GQA str).
    """
    path, data = _load_json(path)
    return _lxmert_questions(path, data)


def _lxmert_questions(path: Path, data: Any) -> list[Question]:
    records = _top_level(path, data, list, 'a list of {"img_id", "question_id", "sent", "label"} (LXMERT\'s JSON)')
    questions, places = [], []
    for index, value in enumerate(records):
        at = f"{path}: record {index}"
        record = _record(value, at)
        question_id = _field(record, "question_id", at, _is_id, "an integer or a string")
        at = f"{at} (question_id {question_id!r})"
        label = record.get("label")
        questions.append(
            Question(
                question_id=question_id,
                image_id=_field(record, "img_id", at, _is_str, "a string"),
                text=_field(record, "sent", at, _is_str, "a string"),
                label=None if label is None else _score_label(label, at, "label"),
                answer_type=_field(record, "answer_type", at, _is_str, "a string", required=False),
                question_type=_field(record, "question_type", at, _is_str, "a string", required=False),
            )
        )
        places.append(f"record {index}")
    _check_ids(str(path), [question.question_id for question in questions], places)
    return questions


def read_lxmert_nlvr2(path: str | os.PathLike) -> list[Statement]:
    """LXMERT's NLVR2 JSON: a list of {"identifier", "img0", "img1", "sent", "label": 0 / 1} (label 1: true)."""
    path, data = _load_json(path)
    return _lxmert_statements(path, data)


def _lxmert_statements(path: Path, data: Any) -> list[Statement]:
    records = _top_level(path, data, list, 'a list of {"identifier", "img0", "img1", "sent", "label"}')
    statements, places = [], []
    for index, value in enumerate(records):
        at = f"{path}: record {index}"
        record = _record(value, at)
        identifier = _field(record, "identifier", at, _is_str, "a string")
        at = f"{at} (identifier {identifier!r})"
        image_ids = (_field(record, "img0", at, _is_str, "a string"), _field(record, "img1", at, _is_str, "a string"))
        label = _field(record, "label", at, lambda value: value in (0, 1), "0 or 1", required=False)
        text = _field(record, "sent", at, _is_str, "a string")
        statements.append(Statement(identifier, image_ids, text, None if label is None else bool(label)))
        places.append(f"record {index}")
    _check_ids(str(path), [statement.identifier for statement in statements], places, "identifier")
    return statements


def read_answer_list(path: str | os.PathLike) -> list[str]:
    """The answers of a model's answer head, index = label: LXMERT's trainval_label2ans.json (a list),
    trainval_ans2label.json (an object answer -> index: every index 0..N-1 exactly once) or a plain JSON list."""
    path, data = _load_json(path)
    return _answer_list(path, data)


def _answer_list(path: Path, data: Any) -> list[str]:
    if isinstance(data, list):
        for index, answer in enumerate(data):
            if not _is_str(answer):
                raise DataFormatError(f"{path}: answer {index} is {_show(answer)}, expected a string")
        answers = data
    elif isinstance(data, Mapping):
        for answer, label in data.items():
            if not _is_int(label):
                raise DataFormatError(f"{path}: answer {answer!r} has the label {_show(label)}, expected an integer")
        by_label: dict[int, list[str]] = {}
        for answer, label in data.items():
            by_label.setdefault(label, []).append(answer)
        shared = {label: names for label, names in by_label.items() if len(names) > 1}
        if shared:
            shown = "; ".join(f"label {label}: {_show_some(names)}" for label, names in sorted(shared.items())[:5])
            raise DataFormatError(f"{path}: answers share a label ({shown}); each label names one answer")
        missing = sorted(set(range(len(data))) - set(by_label))
        if missing:
            outside = sorted(label for label in by_label if not 0 <= label < len(data))
            raise DataFormatError(
                f"{path}: the labels of {len(data)} answers must be 0..{len(data) - 1}; missing {_show_some(missing)}"
                f" (given instead: {_show_some(outside)})"
            )
        answers = [by_label[label][0] for label in range(len(data))]
    else:
        raise DataFormatError(
            f"{path}: the top level is {_kind(data)}, expected a list of answers (trainval_label2ans.json) or an "
            "object answer -> label (trainval_ans2label.json)"
        )
    if not answers:
        raise DataFormatError(f"{path}: holds no answers")
    repeated = _repeated(answers)
    if repeated:
        raise DataFormatError(f"{path}: the answer(s) {_show_some(repeated)} appear more than once")
    return list(answers)


# ---- official formats ----------------------------------------------------------------------------------------


def read_vqa_official(
    questions: str | os.PathLike, annotations: str | os.PathLike | None = None, *, image_id_format: str | None = None
) -> list[Question]:
    """The official VQA files: questions ({"data_subtype", "questions": [{"image_id", "question", "question_id"}]})
    and, for labels, the annotations of the same split (10 answers, answer_type, question_type a question).

    Image ids become the ids `lxmert-extract` gives COCO's files (their stems):
    ``image_id_format.format(data_subtype=..., image_id=...)``, by default "COCO_{data_subtype}_{image_id:012d}"
    ("COCO_val2014_000000393267"); test-dev2015 questions are on test2015 images, so data_subtype is the
    image folder's name (COCO_IMAGE_SETS). Labels: `vqa_soft_label` of the 10 answers. Without annotations:
    test-split questions, label None.
    """
    questions_path, questions_data = _load_json(questions)
    annotations_json = None if annotations is None else _load_json(annotations)
    return _vqa_questions(questions_path, questions_data, annotations_json, image_id_format)


def _vqa_questions(
    path: Path, data: Any, annotations: tuple[Path, Any] | None, image_id_format: str | None
) -> list[Question]:
    top = _top_level(path, data, Mapping, 'an object {"data_subtype", "questions": [...]} (VQA questions)')
    records = _field(top, "questions", str(path), lambda value: isinstance(value, list), "a list")
    subtype = _field(top, "data_subtype", str(path), _is_str, "a string", required=False)
    image_id_of = _vqa_image_ids(path, subtype, image_id_format)
    questions, places = [], []
    for index, value in enumerate(records):
        at = f"{path}: question {index}"
        record = _record(value, at)
        question_id = _field(record, "question_id", at, _is_int, "an integer")
        at = f"{at} (question_id {question_id})"
        image_id = _field(record, "image_id", at, _is_int, "an integer")
        text = _field(record, "question", at, _is_str, "a string")
        questions.append(Question(question_id, image_id_of(image_id), text, None))
        places.append(f"question {index}")
    _check_ids(str(path), [question.question_id for question in questions], places)
    if annotations is None:
        return questions
    annotations_path, labels = annotations[0], _vqa_annotations(*annotations, path, subtype)
    unanswered = [question.question_id for question in questions if question.question_id not in labels]
    unasked = set(labels) - {question.question_id for question in questions}
    if unanswered or unasked:
        problems = []
        if unanswered:
            problems.append(f"{len(unanswered)} question(s) without annotation (question_id {_show_some(unanswered)})")
        if unasked:
            problems.append(
                f"annotations of {len(unasked)} other question(s) (question_id {_show_some(sorted(unasked))})"
            )
        raise DataFormatError(
            f"{annotations_path} and {path} are not the two files of one split: {'; '.join(problems)}"
        )
    for index, question in enumerate(questions):
        label, answer_type, question_type, image_id = labels[question.question_id]
        if image_id_of(image_id) != question.image_id:
            raise DataFormatError(
                f"{annotations_path}: the annotation of question_id {question.question_id} has image_id {image_id}, "
                f"{path}: question {index} is about {question.image_id}"
            )
        questions[index] = replace(question, label=label, answer_type=answer_type, question_type=question_type)
    return questions


def _vqa_image_ids(path: Path, subtype: str | None, image_id_format: str | None) -> Callable[[int], str]:
    form = VQA_IMAGE_ID_FORMAT if image_id_format is None else image_id_format
    fields = {} if subtype is None else {"data_subtype": COCO_IMAGE_SETS.get(subtype, subtype)}
    try:
        form.format(image_id=0, **fields)
    except KeyError as error:
        raise DataFormatError(
            f"{path}: the image id format {form!r} needs {error.args[0]!r}, which the questions file does not give"
            + (" (it has no 'data_subtype')" if error.args[0] == "data_subtype" else "")
            + "; pass image_id_format with the fields data_subtype and image_id"
        ) from error
    except (ValueError, IndexError) as error:
        raise ValueError(
            f"image_id_format={form!r} is not a format for image ids ({error}); e.g. {VQA_IMAGE_ID_FORMAT!r}"
        ) from error
    return lambda image_id: form.format(image_id=image_id, **fields)


def _vqa_annotations(
    path: Path, data: Any, questions_path: Path, questions_subtype: str | None
) -> dict[int, tuple[dict[str, float], str, str, int]]:
    """question_id -> (label, answer_type, question_type, image_id)."""
    top = _top_level(path, data, Mapping, 'an object {"data_subtype", "annotations": [...]} (VQA annotations)')
    records = _field(top, "annotations", str(path), lambda value: isinstance(value, list), "a list")
    subtype = _field(top, "data_subtype", str(path), _is_str, "a string", required=False)
    if subtype is not None and questions_subtype is not None and subtype != questions_subtype:
        raise DataFormatError(
            f"{path} annotates {subtype} but {questions_path} holds {questions_subtype} questions; pass the two "
            "files of one split"
        )
    labels, ids, places = {}, [], []
    for index, value in enumerate(records):
        at = f"{path}: annotation {index}"
        record = _record(value, at)
        question_id = _field(record, "question_id", at, _is_int, "an integer")
        at = f"{at} (question_id {question_id})"
        answers = _field(record, "answers", at, lambda value: isinstance(value, list), "a list of answers")
        for number, answer in enumerate(answers):
            place = f"{at}: answer {number}"
            _field(_record(answer, place), "answer", place, _is_str, "a string")
        labels[question_id] = (
            vqa_soft_label([answer["answer"] for answer in answers]),
            _field(record, "answer_type", at, _is_str, "a string"),
            _field(record, "question_type", at, _is_str, "a string"),
            _field(record, "image_id", at, _is_int, "an integer"),
        )
        ids.append(question_id)
        places.append(f"annotation {index}")
    _refuse_repeated_ids(str(path), ids, places)
    return labels


def read_gqa_official(path: str | os.PathLike) -> list[Question]:
    """A GQA question file: {question_id: {"imageId", "question", "answer", "types": {"structural", "semantic",
    "detailed"}, ...}}. Label {answer: 1.0} (as LXMERT's GQA JSON), None where "answer" is absent (test files);
    answer_type the structural type ("query", "verify", ...), question_type the semantic type ("rel", "attr",
    ...): the two breakdowns of GQA's evaluation."""
    path, data = _load_json(path)
    return _gqa_questions(path, data)


def _gqa_questions(path: Path, data: Any) -> list[Question]:
    records = _top_level(path, data, Mapping, 'an object question id -> {"imageId", "question", "answer", ...}')
    questions = []
    for index, (question_id, value) in enumerate(records.items()):
        at = f"{path}: question {index} (id {question_id!r})"
        record = _record(value, at)
        answer = _field(record, "answer", at, _is_str, "a string", required=False)
        types = _field(record, "types", at, lambda value: isinstance(value, Mapping), "an object", required=False)
        types = {} if types is None else types
        questions.append(
            Question(
                question_id=question_id,
                image_id=_field(record, "imageId", at, _is_str, "a string"),
                text=_field(record, "question", at, _is_str, "a string"),
                label=None if answer is None else {answer: 1.0},
                answer_type=_field(types, "structural", f"{at} types", _is_str, "a string", required=False),
                question_type=_field(types, "semantic", f"{at} types", _is_str, "a string", required=False),
            )
        )
    if not questions:
        raise DataFormatError(f"{path}: holds no records")
    return questions  # the ids are the object's keys: _parse_json refused repeated ones


def read_nlvr2_jsonl(path: str | os.PathLike) -> list[Statement]:
    """NLVR2's own files (nlvr2/data/*.json): one {"identifier", "sentence", "label": "True" / "False",
    "left_url", ...} a line. The images are named as NLVR2 names its image files: identifier
    "dev-850-0-0" (split-set_id-pair_id-sentence_id) -> "dev-850-0-img0" (left), "dev-850-0-img1" (right)."""
    path = Path(path)
    return _nlvr2_statements(path, _parse_jsonl(path, _read_text(path)))


def _nlvr2_statements(path: Path, lines: list[tuple[int, Any]]) -> list[Statement]:
    statements, places = [], []
    for number, value in lines:
        at = f"{path}: line {number}"
        record = _record(value, at)
        identifier = _field(record, "identifier", at, _is_str, "a string")
        at = f"{at} (identifier {identifier!r})"
        label = _field(
            record, "label", at, lambda value: value in ("True", "False"), '"True" or "False"', required=False
        )
        statements.append(
            Statement(
                identifier=identifier,
                image_ids=_statement_image_ids(identifier, at),
                text=_field(record, "sentence", at, _is_str, "a string"),
                label=None if label is None else label == "True",
            )
        )
        places.append(f"line {number}")
    _check_ids(str(path), [statement.identifier for statement in statements], places, "identifier")
    return statements


# ---- Hugging Face datasets ----------------------------------------------------------------------------------------


def read_hf_dataset(
    dataset: Any,
    *,
    question: str = "question",
    image_id: str = "image_id",
    answers: str | None = "answers",
    question_id: str | None = None,
) -> list[Question]:
    """Questions from a `datasets.Dataset`, one a row, read by column (no image is decoded).

    image_id: the column whose values (as str) are the store ids, as `lxmert-extract --id-column` wrote them.
    answers: a list of annotator answers (strings, or {"answer": ...} objects as in VQAv2 datasets: soft scores
    by `vqa_soft_label`), a single answer (label {answer: 1.0}) or an object answer -> score; a null cell or
    answers=None: label None. question_id: the column of question ids; by default the row index.
    """
    columns = list(getattr(dataset, "column_names", None) or [])
    source = _dataset_name(dataset)
    wanted = {"question": question, "image_id": image_id, "answers": answers, "question_id": question_id}
    absent = [f"{name}={column!r}" for name, column in wanted.items() if column is not None and column not in columns]
    if absent:
        raise DataFormatError(f"{source} has no column {', '.join(absent)} (columns: {_show_some(columns, 20)})")
    texts, images = list(dataset[question]), list(dataset[image_id])
    labels = [None] * len(texts) if answers is None else list(dataset[answers])
    ids = list(range(len(texts))) if question_id is None else list(dataset[question_id])
    questions, places = [], []
    for row, (ident, text, image, label) in enumerate(zip(ids, texts, images, labels, strict=True)):
        at = f"{source}: row {row}"
        if not _is_id(ident):
            raise DataFormatError(f"{at}: column {question_id!r} holds {_show(ident)}, expected an integer or a string")
        at = f"{at} (question_id {ident!r})"
        if not _is_id(image) or str(image) == "" or "\n" in str(image):
            raise DataFormatError(f"{at}: column {image_id!r} holds {_show(image)}, expected a one-line image id")
        if not _is_str(text):
            raise DataFormatError(f"{at}: column {question!r} holds {_show(text)}, expected a string")
        questions.append(Question(ident, str(image), text, _hf_label(label, at, answers)))
        places.append(f"row {row}")
    _check_ids(source, [question.question_id for question in questions], places)
    return questions


def _dataset_name(dataset: Any) -> str:
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
    split = getattr(dataset, "split", None)
    return (f"dataset {name}" + (f" ({split})" if split else "")) if name else "the dataset"


def _hf_label(value: Any, at: str, column: str | None) -> dict[str, float] | None:
    if value is None:
        return None
    if _is_str(value):
        return {value: 1.0}
    if isinstance(value, Mapping) and isinstance(value.get("answer"), list):
        value = value["answer"]  # a Sequence of {"answer", ...} features: `datasets` gives a dict of lists
    elif isinstance(value, Mapping):
        return _score_label(value, at, column)
    if isinstance(value, list):
        texts = [answer.get("answer") if isinstance(answer, Mapping) else answer for answer in value]
        for number, text in enumerate(texts):
            if not _is_str(text):
                raise DataFormatError(
                    f"{at}: column {column!r} answer {number} is {_show(value[number])}, expected a string or "
                    '{"answer": string}'
                )
        return vqa_soft_label(texts)
    raise DataFormatError(
        f"{at}: column {column!r} holds {_show(value)}, expected a list of answers, one answer or an object "
        "answer -> score"
    )


# ---- one file of any format ---------------------------------------------------------------------------------------

_FORMAT_NAMES = {
    "lxmert-qa": "LXMERT's VQA / GQA JSON",
    "lxmert-nlvr2": "LXMERT's NLVR2 JSON",
    "vqa-questions": "an official VQA questions file",
    "vqa-annotations": "an official VQA annotations file",
    "gqa": "a GQA question file",
    "nlvr2-jsonl": "NLVR2's JSON-lines file",
    "answers": "an answer table (pass it as the answer list, --answers)",
}
_TASK_FORMATS = {
    "vqa": ("lxmert-qa", "vqa-questions", "vqa-annotations"),
    "gqa": ("lxmert-qa", "gqa"),
    "nlvr2": ("lxmert-nlvr2", "nlvr2-jsonl"),
}


def read_task_data(task: str, path: str | os.PathLike) -> list[Question] | list[Statement]:
    """The records of one data file for `task` ("vqa", "gqa", "nlvr2"), its format detected by content.

    vqa: LXMERT's JSON or the official files. The official files come in pairs, found next to each other by
    their official names: given v2_mscoco_train2014_annotations.json, the questions are read from
    v2_OpenEnded_mscoco_train2014_questions.json in the same folder (it must be there); given a questions file,
    its annotations are read when they are there, and otherwise the questions are unlabelled (test splits).
    gqa: LXMERT's JSON or a GQA question file. nlvr2: LXMERT's JSON or NLVR2's JSON-lines files.
    A file of another task's format (or an answer table) is a DataFormatError saying what it is.
    """
    if task not in _TASK_FORMATS:
        raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    path = Path(path)
    form, data = _detect(path)
    if form not in _TASK_FORMATS[task]:
        *others, last = [_FORMAT_NAMES[name] for name in _TASK_FORMATS[task]]
        raise DataFormatError(
            f"{path} is {_FORMAT_NAMES[form]}, not data for task {task}, which reads {', '.join(others)} or {last}"
        )
    if form == "lxmert-qa":
        return _lxmert_questions(path, data)
    if form == "lxmert-nlvr2":
        return _lxmert_statements(path, data)
    if form == "gqa":
        return _gqa_questions(path, data)
    if form == "nlvr2-jsonl":
        return _nlvr2_statements(path, data)
    if form == "vqa-annotations":
        questions = _vqa_partner(path, _VQA_ANNOTATIONS_NAME, "{version}OpenEnded_mscoco_{subtype}_questions.json")
        if questions is None or not questions.exists():
            raise DataFormatError(
                f"{path} is an official VQA annotations file; its questions file "
                + (f"{questions} is not there" if questions else "cannot be found from its name")
                + " (the official names: v2_mscoco_train2014_annotations.json next to "
                "v2_OpenEnded_mscoco_train2014_questions.json); or call read_vqa_official(questions, annotations)"
            )
        return _vqa_questions(*_load_json(questions), (path, data), None)
    annotations = _vqa_partner(path, _VQA_QUESTIONS_NAME, "{version}mscoco_{subtype}_annotations.json")
    labelled = annotations is not None and annotations.exists()
    return _vqa_questions(path, data, _load_json(annotations) if labelled else None, None)


def detect_format(path: str | os.PathLike) -> str:
    """The format of a data file, as read_task_data detects it: "lxmert-qa", "lxmert-nlvr2", "vqa-questions",
    "vqa-annotations", "gqa", "nlvr2-jsonl" or "answers" (an answer table)."""
    return _detect(Path(path))[0]


def vqa_annotations_of(path: str | os.PathLike) -> Path | None:
    """The official VQA annotations file of a VQA data file: itself, or the annotations next to a questions
    file (by the official names); None for other files or when there is none (a test split)."""
    path = Path(path)
    form = detect_format(path)
    if form == "vqa-annotations":
        return path
    if form == "vqa-questions":
        annotations = _vqa_partner(path, _VQA_QUESTIONS_NAME, "{version}mscoco_{subtype}_annotations.json")
        return annotations if annotations is not None and annotations.exists() else None
    return None


def _vqa_partner(path: Path, name: re.Pattern, partner: str) -> Path | None:
    match = name.fullmatch(path.name)
    return None if match is None else path.with_name(partner.format(**match.groupdict()))


def _detect(path: Path) -> tuple[str, Any]:
    """(format, parsed content) of one data file."""
    text = _read_text(path)
    try:
        data = _parse_json(path, text)
    except DataFormatError as error:
        if not isinstance(error.__cause__, json.JSONDecodeError) or error.__cause__.msg != "Extra data":
            raise
        lines = _parse_jsonl(path, text)
        if isinstance(lines[0][1], Mapping) and "sentence" in lines[0][1]:
            return "nlvr2-jsonl", lines
        raise DataFormatError(
            f"{path}: one JSON value a line, but line {lines[0][0]} is not an NLVR2 record "
            '({"identifier", "sentence", "label", ...})'
        ) from error
    if isinstance(data, list):
        if not data:
            raise DataFormatError(f"{path}: an empty list: no records")
        first = data[0]
        if _is_str(first):
            return "answers", data
        if isinstance(first, Mapping) and "img0" in first:
            return "lxmert-nlvr2", data
        if isinstance(first, Mapping) and ("sent" in first or "img_id" in first):
            return "lxmert-qa", data
    elif isinstance(data, Mapping):
        if "annotations" in data:
            return "vqa-annotations", data
        if "questions" in data:
            return "vqa-questions", data
        if "sentence" in data and "identifier" in data:
            return "nlvr2-jsonl", [(1, data)]
        first = next(iter(data.values()), None)
        if isinstance(first, Mapping) and ("imageId" in first or "question" in first):
            return "gqa", data
        if data and all(_is_int(label) for label in data.values()):
            return "answers", data
        if not data:
            raise DataFormatError(f"{path}: an empty object: no records")
    shown = _show(data[0] if isinstance(data, list) else data)
    raise DataFormatError(
        f"{path}: not a data format for VQA, GQA or NLVR2 (starts with {shown}); expected LXMERT's JSON, the "
        "official VQA questions / annotations, a GQA question file or an NLVR2 file"
    )
