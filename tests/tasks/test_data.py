"""tasks.data: the readers of every task data format, against the hand-made files of tests/fixtures/tasks (their
README works out each expected value), and a clear DataFormatError, naming file, record and key, for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
from helpers import FIXTURES

from tasks.data import (
    DataFormatError,
    Question,
    Statement,
    read_answer_list,
    read_gqa_official,
    read_hf_dataset,
    read_lxmert_nlvr2,
    read_lxmert_qa,
    read_nlvr2_jsonl,
    read_task_data,
    read_vqa_official,
    vqa_soft_label,
)

DATA = FIXTURES / "tasks"
VQA_QUESTIONS = DATA / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
VQA_ANNOTATIONS = DATA / "vqa" / "v2_mscoco_val2014_annotations.json"
VQA_TEST_DEV = DATA / "vqa" / "v2_OpenEnded_mscoco_test-dev2015_questions.json"
ANSWERS = ["net", "pitcher", "catcher", "yes", "no", "2"]

VQA_MINIVAL = [
    Question(
        458752000,
        "COCO_val2014_000000458752",
        "What is this photo taken looking through?",
        {"net": 1.0},
        "other",
        "what is this",
    ),
    Question(
        458752001,
        "COCO_val2014_000000458752",
        "What position is this man playing?",
        {"pitcher": 1.0, "catcher": 0.3},
        "other",
        "what position is this man playing",
    ),
    Question(262148000, "COCO_val2014_000000262148", "How many people are in the stands?", {}, "number", "how many"),
]
VQA_OFFICIAL = [
    Question(
        393267000,
        "COCO_val2014_000000393267",
        "Is the man wearing a hat?",
        {"yes": 1.0, "no": 0.6, "nope": 0.3},
        "yes/no",
        "is the man",
    ),
    Question(
        393267001,
        "COCO_val2014_000000393267",
        "How many dogs are there?",
        {"2": 1.0, "3": 0.3, "2 dogs": 0.3},
        "number",
        "how many",
    ),
    Question(
        262148000,
        "COCO_val2014_000000262148",
        "What color is the frisbee?",
        {"pink": 1.0, "red": 0.9, "orange": 0.6, "red 1": 0.3},
        "other",
        "what color is the",
    ),
]
VQA_TEST_DEV_QUESTIONS = [
    Question(262144000, "COCO_test2015_000000262144", "Is the ball flying towards the batter?", None),
    Question(524289001, "COCO_test2015_000000524289", "What is the girl holding?", None),
]
GQA_TESTDEV = [
    Question("20968379", "n288870", "Who is wearing the dress?", {"woman": 1.0}, "query", "rel"),
    Question("201640614", "n161313", "Is the table made of wood?", {"yes": 1.0}, "verify", "attr"),
]
NLVR2_DEV = [
    Statement(
        "dev-850-0-0",
        ("dev-850-0-img0", "dev-850-0-img1"),
        "The left image contains twice the number of dogs as the right image.",
        True,
    ),
    Statement(
        "dev-850-0-1", ("dev-850-0-img0", "dev-850-0-img1"), "Each image shows exactly one dog on a leash.", False
    ),
    Statement(
        "dev-935-1-0", ("dev-935-1-img0", "dev-935-1-img1"), "One image shows a row of brown beer bottles.", True
    ),
]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def raises(call, *args, pieces: tuple[str, ...], **kwargs) -> str:
    """Call, expect a DataFormatError whose message holds every piece; return the message."""
    with pytest.raises(DataFormatError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    for piece in pieces:
        assert piece in message, f"{piece!r} not in {message!r}"
    return message


def vqa_pair(folder: Path, questions=None, annotations=None, subtype: str = "val2014") -> tuple[Path, Path]:
    """The fixture's official VQA pair copied to `folder`, with questions / annotations lists replaced."""
    question_data = json.loads(VQA_QUESTIONS.read_text())
    annotation_data = json.loads(VQA_ANNOTATIONS.read_text())
    if questions is not None:
        question_data["questions"] = questions
    if annotations is not None:
        annotation_data["annotations"] = annotations
    annotation_data["data_subtype"] = subtype
    return (
        write_json(folder / f"v2_OpenEnded_mscoco_{subtype}_questions.json", question_data),
        write_json(folder / f"v2_mscoco_{subtype}_annotations.json", annotation_data),
    )


# ---- the readers ----------------------------------------------------------------------------------------


def test_lxmert_vqa_json():
    assert read_lxmert_qa(DATA / "lxmert_vqa_minival.json") == VQA_MINIVAL


def test_lxmert_vqa_test_json_has_no_labels():
    assert read_lxmert_qa(DATA / "lxmert_vqa_test.json") == [
        Question(262144000, "COCO_test2015_000000262144", "Is the ball flying towards the batter?", None),
        Question(262144001, "COCO_test2015_000000262144", "What sport is being played?", None),
    ]


def test_lxmert_gqa_json_keeps_string_ids():
    assert read_lxmert_qa(DATA / "lxmert_gqa_valid.json") == [
        Question("07333408", "2375429", "What is on the white wall?", {"pipe": 1.0}),
        Question("07333409", "2375429", "Is the pipe black?", {"yes": 1.0}),
        Question("201640614", "n161313", "On which side of the photo is the man?", {"left": 1.0}),
    ]


def test_lxmert_nlvr2_json():
    assert read_lxmert_nlvr2(DATA / "lxmert_nlvr2_valid.json") == NLVR2_DEV[:2]


@pytest.mark.parametrize("name", ["trainval_label2ans.json", "trainval_ans2label.json"])
def test_answer_tables(name):
    assert read_answer_list(DATA / name) == ANSWERS


def test_soft_label_of_ten_answers_worked_by_hand():
    # "Yes." normalizes to "yes": 7 annotators -> 1.0; "no" 2 -> 0.6; "nope" 1 -> 0.3
    answers = ["yes"] * 4 + ["Yes."] * 3 + ["no"] * 2 + ["nope"]
    assert vqa_soft_label(answers) == {"yes": 1.0, "no": 0.6, "nope": 0.3}
    assert vqa_soft_label(["red", "Red", "the red", "blue"]) == {"red": 0.9, "blue": 0.3}
    assert vqa_soft_label([]) == {}


def test_official_vqa_with_annotations():
    assert read_vqa_official(VQA_QUESTIONS, VQA_ANNOTATIONS) == VQA_OFFICIAL


def test_official_vqa_test_dev_questions_are_on_test2015_images():
    assert read_vqa_official(VQA_TEST_DEV) == VQA_TEST_DEV_QUESTIONS


def test_official_vqa_image_id_format():
    questions = read_vqa_official(VQA_QUESTIONS, image_id_format="{data_subtype}/{image_id}")
    assert [question.image_id for question in questions] == ["val2014/393267", "val2014/393267", "val2014/262148"]
    assert all(question.label is None for question in questions)


def test_gqa_question_files():
    assert read_gqa_official(DATA / "gqa" / "testdev_balanced_questions.json") == GQA_TESTDEV
    assert read_gqa_official(DATA / "gqa" / "test_balanced_questions.json") == [
        Question("2121411", "n15675", "What color is the car on the right?", None),
        Question("2121412", "n15675", "Is the sky cloudy?", None),
    ]


def test_nlvr2_json_lines():
    assert read_nlvr2_jsonl(DATA / "nlvr2" / "dev.json") == NLVR2_DEV


def test_hf_dataset_answer_forms():
    dataset = datasets.Dataset.from_dict(
        {
            "question": ["Is it sunny?", "What animal is this?", "How many?", "What color?", "Where?"],
            "image_id": [393267, 393267, 262148, 458752, 2375429],  # ints: ids are their str
            "answers": [
                ["yes"] * 4 + ["Yes."] * 3 + ["no"] * 2 + ["nope"],  # annotator answers: soft scores
                ["dog", "Dog", "a dog", "cat"],
                None,  # a test row
                ["red"],
                ["on the table", "table"],
            ],
        }
    )
    assert read_hf_dataset(dataset) == [
        Question(0, "393267", "Is it sunny?", {"yes": 1.0, "no": 0.6, "nope": 0.3}),
        Question(1, "393267", "What animal is this?", {"dog": 0.9, "cat": 0.3}),
        Question(2, "262148", "How many?", None),
        Question(3, "458752", "What color?", {"red": 0.3}),
        Question(4, "2375429", "Where?", {"on table": 0.3, "table": 0.3}),
    ]


def test_hf_dataset_single_answers_scores_and_vqav2_answer_objects():
    single = datasets.Dataset.from_dict(
        {"q": ["Is the sky blue?", "What is it?"], "img": ["a", "b"], "a": ["yes", "Frisbee"], "qid": ["q1", "q2"]}
    )
    assert read_hf_dataset(single, question="q", image_id="img", answers="a", question_id="qid") == [
        Question("q1", "a", "Is the sky blue?", {"yes": 1.0}),
        Question("q2", "b", "What is it?", {"Frisbee": 1.0}),  # a single answer is kept as written
    ]
    scored = datasets.Dataset.from_dict({"question": ["Q?"], "image_id": [7], "answers": [{"yes": 1.0, "no": 0.3}]})
    assert read_hf_dataset(scored)[0].label == {"yes": 1.0, "no": 0.3}
    assert read_hf_dataset(scored, answers=None)[0].label is None
    # VQAv2 datasets: a list of {"answer", "answer_confidence", "answer_id"}, which `datasets` gives as a list of
    # dicts (a list feature) or as a dict of lists (a Sequence feature)
    rows = [
        {"answer": "2", "answer_confidence": "yes", "answer_id": 1},
        {"answer": "two", "answer_confidence": "yes", "answer_id": 2},
    ]
    listed = datasets.Dataset.from_dict({"question": ["How many?"], "image_id": [1], "answers": [rows]})
    assert read_hf_dataset(listed)[0].label == {"2": 0.6}
    features = datasets.Features(
        {
            "question": datasets.Value("string"),
            "image_id": datasets.Value("int64"),
            "answers": datasets.Sequence(
                {"answer": datasets.Value("string"), "answer_confidence": datasets.Value("string")}
            ),
        }
    )
    sequence = datasets.Dataset.from_dict(
        {"question": ["How many?"], "image_id": [1], "answers": [{"answer": ["2"], "answer_confidence": ["yes"]}]},
        features=features,
    )
    assert read_hf_dataset(sequence)[0].label == {"2": 0.3}


# ---- format detection ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, path, expected",
    [
        ("vqa", DATA / "lxmert_vqa_minival.json", VQA_MINIVAL),
        ("vqa", VQA_ANNOTATIONS, VQA_OFFICIAL),  # finds its questions file next to it
        ("vqa", VQA_QUESTIONS, VQA_OFFICIAL),  # finds its annotations next to it
        ("vqa", VQA_TEST_DEV, VQA_TEST_DEV_QUESTIONS),  # no annotations: unlabelled
        ("gqa", DATA / "gqa" / "testdev_balanced_questions.json", GQA_TESTDEV),
        ("gqa", DATA / "lxmert_gqa_valid.json", read_lxmert_qa(DATA / "lxmert_gqa_valid.json")),
        ("nlvr2", DATA / "nlvr2" / "dev.json", NLVR2_DEV),
        ("nlvr2", DATA / "lxmert_nlvr2_valid.json", NLVR2_DEV[:2]),
    ],
)
def test_read_task_data_detects_the_format(task, path, expected):
    assert read_task_data(task, path) == expected


def test_read_task_data_single_line_nlvr2_file(tmp_path):
    line = (DATA / "nlvr2" / "dev.json").read_text().splitlines()[0]
    (tmp_path / "one.json").write_text(line + "\n")
    assert read_task_data("nlvr2", tmp_path / "one.json") == NLVR2_DEV[:1]


def test_vqa_questions_alone_are_unlabelled(tmp_path):
    shutil.copy(VQA_QUESTIONS, tmp_path / VQA_QUESTIONS.name)
    questions = read_task_data("vqa", tmp_path / VQA_QUESTIONS.name)
    assert [question.label for question in questions] == [None, None, None]


def test_vqa_annotations_without_their_questions_file(tmp_path):
    shutil.copy(VQA_ANNOTATIONS, tmp_path / VQA_ANNOTATIONS.name)
    expected = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    raises(read_task_data, "vqa", tmp_path / VQA_ANNOTATIONS.name, pieces=(str(expected), "is not there"))
    shutil.copy(VQA_ANNOTATIONS, tmp_path / "val_answers.json")
    raises(read_task_data, "vqa", tmp_path / "val_answers.json", pieces=("cannot be found from its name",))


@pytest.mark.parametrize(
    "task, path, what",
    [
        ("gqa", VQA_ANNOTATIONS, "an official VQA annotations file"),
        ("nlvr2", DATA / "lxmert_vqa_minival.json", "LXMERT's VQA / GQA JSON"),
        ("vqa", DATA / "gqa" / "testdev_balanced_questions.json", "a GQA question file"),
        ("vqa", DATA / "nlvr2" / "dev.json", "NLVR2's JSON-lines file"),
        ("gqa", DATA / "lxmert_nlvr2_valid.json", "LXMERT's NLVR2 JSON"),
        ("vqa", DATA / "trainval_label2ans.json", "an answer table"),
        ("gqa", DATA / "trainval_ans2label.json", "an answer table"),
    ],
)
def test_read_task_data_refuses_another_tasks_format(task, path, what):
    raises(read_task_data, task, path, pieces=(str(path), what, f"not data for task {task}"))


def test_read_task_data_unknown_task_and_format(tmp_path):
    with pytest.raises(ValueError, match="task 'vqa2': expected one of vqa, gqa, nlvr2"):
        read_task_data("vqa2", DATA / "lxmert_vqa_minival.json")
    path = write_json(tmp_path / "other.json", [{"image": "a.jpg", "caption": "a dog"}])
    raises(read_task_data, "vqa", path, pieces=(str(path), "not a data format for VQA, GQA or NLVR2", "caption"))
    lines = tmp_path / "lines.json"
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    raises(read_task_data, "nlvr2", lines, pieces=(str(lines), "line 1 is not an NLVR2 record"))


# ---- bad input ----------------------------------------------------------------------------------------


READERS = [read_lxmert_qa, read_lxmert_nlvr2, read_answer_list, read_vqa_official, read_gqa_official, read_nlvr2_jsonl]


@pytest.mark.parametrize("reader", READERS)
def test_unreadable_files(reader, tmp_path):
    raises(reader, tmp_path / "missing.json", pieces=(str(tmp_path / "missing.json"), "file not found"))
    raises(reader, tmp_path, pieces=(str(tmp_path), "a directory, not a data file"))
    binary = tmp_path / "features.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe")
    raises(reader, binary, pieces=(str(binary), "not UTF-8"))


@pytest.mark.parametrize("reader", [read_lxmert_qa, read_answer_list, read_vqa_official, read_gqa_official])
def test_not_json(reader, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"img_id": "a",')
    raises(reader, path, pieces=(str(path), "not JSON", "line 1"))


def test_json_lines_given_to_a_json_reader(tmp_path):
    raises(read_lxmert_qa, DATA / "nlvr2" / "dev.json", pieces=("Extra data", "one JSON object a line is NLVR2"))
    path = tmp_path / "dev.json"
    path.write_text('{"identifier": "dev-1-0-0"}\n{"identifier": \n')
    raises(read_nlvr2_jsonl, path, pieces=(str(path), "line 2 is not JSON"))


@pytest.mark.parametrize(
    "reader, data, expected",
    [
        (read_lxmert_qa, {"img_id": "a"}, "a list of"),
        (read_lxmert_nlvr2, "dev-1-0-0", "a list of"),
        (read_gqa_official, [{"imageId": "n1"}], "an object question id ->"),
        (read_vqa_official, [], "VQA questions"),
        (read_answer_list, 12, "a list of answers (trainval_label2ans.json)"),
    ],
)
def test_wrong_top_level(reader, data, expected, tmp_path):
    path = write_json(tmp_path / "data.json", data)
    raises(reader, path, pieces=(str(path), "the top level is", expected))


def test_empty_files(tmp_path):
    for reader, data in [(read_lxmert_qa, []), (read_lxmert_nlvr2, []), (read_gqa_official, {})]:
        raises(reader, write_json(tmp_path / "empty.json", data), pieces=("empty.json", "holds no records"))
    (tmp_path / "empty.jsonl").write_text("\n")
    raises(read_nlvr2_jsonl, tmp_path / "empty.jsonl", pieces=("holds no records",))
    raises(read_answer_list, write_json(tmp_path / "none.json", []), pieces=("holds no answers",))
    raises(read_task_data, "vqa", write_json(tmp_path / "list.json", []), pieces=("an empty list",))


LXMERT_QA = {
    "img_id": "COCO_val2014_000000458752",
    "question_id": 458752000,
    "sent": "What is it?",
    "label": {"net": 1},
}


@pytest.mark.parametrize(
    "change, pieces",
    [
        ({"sent": None}, ("record 1 (question_id 458752000)", "key 'sent' holds None (null), expected a string")),
        ({"img_id": 458752}, ("record 1 (question_id 458752000)", "key 'img_id' holds 458752 (an integer)")),
        (
            {"question_id": 1.5},
            ("record 1:", "key 'question_id' holds 1.5 (a number), expected an integer or a string"),
        ),
        ({"question_id": True}, ("record 1:", "key 'question_id' holds True (true / false)")),
        ({"label": ["net"]}, ("record 1 (question_id 458752000)", "key 'label' holds ['net'] (a list)")),
        (
            {"label": {"net": 2}},
            ("key 'label' gives answer 'net' the score 2 (an integer), expected a number in [0, 1]",),
        ),
        ({"label": {"net": "1"}}, ("key 'label' gives answer 'net' the score '1' (a string)",)),
        ({"answer_type": 3}, ("key 'answer_type' holds 3 (an integer), expected a string",)),
    ],
)
def test_lxmert_qa_bad_values(change, pieces, tmp_path):
    path = write_json(tmp_path / "train.json", [dict(LXMERT_QA, question_id=1), dict(LXMERT_QA, **change)])
    raises(read_lxmert_qa, path, pieces=(str(path), *pieces))


@pytest.mark.parametrize("key", ["img_id", "question_id", "sent"])
def test_lxmert_qa_missing_key(key, tmp_path):
    record = {name: value for name, value in LXMERT_QA.items() if name != key}
    path = write_json(tmp_path / "train.json", [LXMERT_QA, record])
    raises(read_lxmert_qa, path, pieces=(str(path), "record 1", f"key {key!r} is missing"))
    path = write_json(tmp_path / "train.json", [LXMERT_QA, 7])
    raises(read_lxmert_qa, path, pieces=(str(path), "record 1: holds 7 (an integer), expected an object"))


def test_repeated_question_ids(tmp_path):
    path = write_json(tmp_path / "train.json", [LXMERT_QA, dict(LXMERT_QA, question_id=1), LXMERT_QA])
    raises(
        read_lxmert_qa,
        path,
        pieces=(str(path), "1 question id(s) appear more than once", "458752000 at record 0", "458752000 at record 2"),
    )
    gqa = tmp_path / "questions.json"
    gqa.write_text('{"07333408": {"imageId": "1", "question": "Q?"}, "07333408": {"imageId": "2", "question": "R?"}}')
    raises(read_gqa_official, gqa, pieces=(str(gqa), "'07333408' appear more than once", "question ids"))
    nlvr2 = tmp_path / "dev.json"
    line = (DATA / "nlvr2" / "dev.json").read_text().splitlines()[0]
    nlvr2.write_text(f"{line}\n{line}\n")
    raises(
        read_nlvr2_jsonl,
        nlvr2,
        pieces=(str(nlvr2), "identifier(s) appear more than once", "'dev-850-0-0' at line 1", "at line 2"),
    )
    statements = json.loads((DATA / "lxmert_nlvr2_valid.json").read_text())
    lxmert = write_json(tmp_path / "valid.json", [statements[0], statements[0]])
    raises(read_lxmert_nlvr2, lxmert, pieces=(str(lxmert), "'dev-850-0-0' at record 0", "at record 1"))


def test_lxmert_nlvr2_bad_records(tmp_path):
    record = json.loads((DATA / "lxmert_nlvr2_valid.json").read_text())[0]
    for change, pieces in [
        ({"label": 2}, ("key 'label' holds 2 (an integer), expected 0 or 1",)),
        ({"img1": None}, ("key 'img1' holds None (null), expected a string",)),
        ({"identifier": 850}, ("record 0:", "key 'identifier' holds 850 (an integer)")),
    ]:
        path = write_json(tmp_path / "valid.json", [dict(record, **change)])
        raises(read_lxmert_nlvr2, path, pieces=(str(path), "record 0", *pieces))
    path = write_json(tmp_path / "valid.json", [{key: value for key, value in record.items() if key != "sent"}])
    raises(read_lxmert_nlvr2, path, pieces=("record 0 (identifier 'dev-850-0-0')", "key 'sent' is missing"))
    unlabelled = {key: value for key, value in record.items() if key != "label"}
    assert read_lxmert_nlvr2(write_json(tmp_path / "test.json", [unlabelled]))[0].label is None


def test_nlvr2_jsonl_bad_records(tmp_path):
    record = json.loads((DATA / "nlvr2" / "dev.json").read_text().splitlines()[0])
    for change, pieces in [
        (
            {"label": "true"},
            (
                "line 2 (identifier 'dev-850-0-0')",
                "key 'label' holds 'true' (a string), expected \"True\" or \"False\"",
            ),
        ),
        ({"label": 1}, ("key 'label' holds 1 (an integer)",)),
        (
            {"identifier": "dev-850"},
            ("key 'identifier' holds 'dev-850', expected NLVR2's split-set_id-pair_id-sentence_id",),
        ),
        ({"identifier": "dev-850-0-x"}, ("'dev-850-0-x', expected NLVR2's",)),
        ({"sentence": ["a"]}, ("key 'sentence' holds ['a'] (a list)",)),
    ]:
        path = tmp_path / "dev.json"
        path.write_text("\n" + json.dumps(dict(record, **change)) + "\n")  # a blank first line: counted, skipped
        raises(read_nlvr2_jsonl, path, pieces=(str(path), "line 2", *pieces))
    path.write_text(json.dumps({key: value for key, value in record.items() if key != "sentence"}) + "\n")
    raises(read_nlvr2_jsonl, path, pieces=("line 1 (identifier 'dev-850-0-0')", "key 'sentence' is missing"))
    path.write_text("[1, 2]\n")
    raises(read_nlvr2_jsonl, path, pieces=("line 1: holds [1, 2] (a list), expected an object",))
    unlabelled = {key: value for key, value in record.items() if key != "label"}
    path.write_text(json.dumps(unlabelled) + "\n")
    assert read_nlvr2_jsonl(path)[0].label is None


def test_gqa_bad_records(tmp_path):
    for record, pieces in [
        ({"question": "Q?"}, ("key 'imageId' is missing",)),
        ({"imageId": 2375429, "question": "Q?"}, ("key 'imageId' holds 2375429 (an integer), expected a string",)),
        ({"imageId": "1", "question": "Q?", "answer": 3}, ("key 'answer' holds 3 (an integer)",)),
        (
            {"imageId": "1", "question": "Q?", "types": "query"},
            ("key 'types' holds 'query' (a string), expected an object",),
        ),
        ({"imageId": "1", "question": "Q?", "types": {"semantic": 1}}, ("types: key 'semantic' holds 1",)),
    ]:
        path = write_json(tmp_path / "val.json", {"0": {"imageId": "1", "question": "Q?"}, "07333408": record})
        raises(read_gqa_official, path, pieces=(str(path), "question 1 (id '07333408')", *pieces))


def test_answer_list_errors(tmp_path):
    cases = [
        (["yes", "no", "yes"], ("the answer(s) 'yes' appear more than once",)),
        (["yes", 2], ("answer 1 is 2 (an integer), expected a string",)),
        ({"yes": 0, "no": 2}, ("the labels of 2 answers must be 0..1; missing 1 (given instead: 2)",)),
        ({"yes": 0, "no": 0}, ("answers share a label (label 0: 'yes', 'no')",)),
        ({"yes": 0, "no": "1"}, ("answer 'no' has the label '1' (a string), expected an integer",)),
        ({"yes": 0, "no": True}, ("answer 'no' has the label True (true / false)",)),
    ]
    for data, pieces in cases:
        raises(read_answer_list, write_json(tmp_path / "answers.json", data), pieces=("answers.json", *pieces))
    repeated = tmp_path / "trainval_ans2label.json"
    repeated.write_text('{"yes": 0, "no": 1, "yes": 2}')
    raises(read_answer_list, repeated, pieces=(str(repeated), "'yes' appear more than once"))


# ---- official VQA: bad input ----------------------------------------------------------------------------------------


def test_vqa_question_and_annotation_errors(tmp_path):
    questions = json.loads(VQA_QUESTIONS.read_text())["questions"]
    annotations = json.loads(VQA_ANNOTATIONS.read_text())["annotations"]
    bad_question = [questions[0], dict(questions[1], image_id="393267")]
    q, a = vqa_pair(tmp_path, questions=bad_question)
    raises(
        read_vqa_official,
        q,
        a,
        pieces=(
            str(q),
            "question 1 (question_id 393267001)",
            "key 'image_id' holds '393267' (a string), expected an integer",
        ),
    )
    q, a = vqa_pair(tmp_path, questions=[questions[0], {"image_id": 1, "question": "Q?"}])
    raises(read_vqa_official, q, pieces=(str(q), "question 1:", "key 'question_id' is missing"))
    q, a = vqa_pair(tmp_path, annotations=[annotations[0], dict(annotations[1], answer_type=None), annotations[2]])
    raises(
        read_vqa_official, q, a, pieces=(str(a), "annotation 1 (question_id 393267001)", "key 'answer_type' holds None")
    )
    broken = dict(annotations[2], answers=[*annotations[2]["answers"][:3], {"answer_id": 4}])
    q, a = vqa_pair(tmp_path, annotations=[*annotations[:2], broken])
    raises(
        read_vqa_official,
        q,
        a,
        pieces=(str(a), "annotation 2 (question_id 262148000): answer 3", "key 'answer' is missing"),
    )
    q, a = vqa_pair(tmp_path, annotations=[*annotations[:2], dict(annotations[2], answers="pink")])
    raises(
        read_vqa_official,
        q,
        a,
        pieces=("annotation 2", "key 'answers' holds 'pink' (a string), expected a list of answers"),
    )


def test_vqa_files_of_different_splits(tmp_path):
    questions = json.loads(VQA_QUESTIONS.read_text())["questions"]
    annotations = json.loads(VQA_ANNOTATIONS.read_text())["annotations"]
    q, a = vqa_pair(tmp_path, annotations=annotations[:2])
    raises(
        read_vqa_official,
        q,
        a,
        pieces=(
            str(a),
            str(q),
            "not the two files of one split",
            "1 question(s) without annotation (question_id 262148000)",
        ),
    )
    q, a = vqa_pair(tmp_path, questions=questions[1:])
    raises(read_vqa_official, q, a, pieces=("annotations of 1 other question(s) (question_id 393267000)",))
    q, a = vqa_pair(tmp_path, annotations=[*annotations[:2], dict(annotations[2], image_id=1)])
    raises(
        read_vqa_official,
        q,
        a,
        pieces=("the annotation of question_id 262148000 has image_id 1", "COCO_val2014_000000262148"),
    )
    q, _ = vqa_pair(tmp_path)
    _, a = vqa_pair(tmp_path, subtype="train2014")
    raises(read_vqa_official, q, a, pieces=(f"{a} annotates train2014 but {q} holds val2014 questions",))


def test_vqa_repeated_ids(tmp_path):
    questions = json.loads(VQA_QUESTIONS.read_text())["questions"]
    annotations = json.loads(VQA_ANNOTATIONS.read_text())["annotations"]
    q, a = vqa_pair(tmp_path, questions=[*questions, questions[0]])
    raises(read_vqa_official, q, a, pieces=(str(q), "393267000 at question 0", "393267000 at question 3"))
    q, a = vqa_pair(tmp_path, annotations=[*annotations, annotations[1]])
    raises(read_vqa_official, q, a, pieces=(str(a), "393267001 at annotation 1", "393267001 at annotation 3"))


def test_vqa_image_id_format_errors(tmp_path):
    data = json.loads(VQA_QUESTIONS.read_text())
    del data["data_subtype"]
    path = write_json(tmp_path / "questions.json", data)
    raises(
        read_vqa_official,
        path,
        pieces=(str(path), "needs 'data_subtype'", "it has no 'data_subtype'", "image_id_format"),
    )
    assert read_vqa_official(path, image_id_format="{image_id}")[0].image_id == "393267"
    with pytest.raises(ValueError, match="is not a format for image ids"):
        read_vqa_official(VQA_QUESTIONS, image_id_format="COCO_{image_id:s}")


# ---- datasets: bad input ----------------------------------------------------------------------------------------


def test_hf_dataset_errors():
    dataset = datasets.Dataset.from_dict({"question": ["Q?", "R?"], "image_id": ["a", "b"], "answers": ["yes", "no"]})
    raises(read_hf_dataset, dataset, image_id="img", pieces=("has no column image_id='img'", "columns: 'question'"))
    repeated = datasets.Dataset.from_dict({"question": ["Q?", "R?"], "image_id": ["a", "b"], "qid": [5, 5]})
    raises(read_hf_dataset, repeated, answers=None, question_id="qid", pieces=("5 at row 0", "5 at row 1"))
    cases = [
        (
            {"question": ["Q?"], "image_id": [""], "answers": ["yes"]},
            ("row 0 (question_id 0)", "column 'image_id' holds ''"),
        ),
        ({"question": [None], "image_id": ["a"], "answers": ["yes"]}, ("column 'question' holds None (null)",)),
        (
            {"question": ["Q?"], "image_id": ["a"], "answers": [[1, 2]]},
            ("column 'answers' answer 0 is 1 (an integer)",),
        ),
        ({"question": ["Q?"], "image_id": ["a"], "answers": [3.5]}, ("column 'answers' holds 3.5 (a number)",)),
        ({"question": ["Q?"], "image_id": ["a"], "answers": [{"yes": 7}]}, ("gives answer 'yes' the score 7",)),
        ({"question": ["Q?"], "image_id": ["a"], "qid": [1.5]}, ("column 'qid' holds 1.5 (a number)",)),
    ]
    for columns, pieces in cases:
        answers = "answers" if "answers" in columns else None
        qid = "qid" if "qid" in columns else None
        raises(read_hf_dataset, datasets.Dataset.from_dict(columns), answers=answers, question_id=qid, pieces=pieces)
