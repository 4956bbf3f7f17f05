"""The answer vocabularies of the public LXMERT question-answering checkpoints, shipped with the package.

`unc-nlp/lxmert-vqa-uncased` (3,129 answers) and `unc-nlp/lxmert-gqa-uncased` (1,842 answers) publish
configs without labels; their answer lists come from the LXMERT repository (data/vqa, data/gqa).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from lxmert.config import LxmertConfig

ANSWER_LISTS = {"vqa": "vqa_answers.json", "gqa": "gqa_answers.json"}


@cache
def _answers(name: str) -> tuple[str, ...]:
    text = resources.files("lxmert").joinpath("data", ANSWER_LISTS[name]).read_text(encoding="utf-8")
    return tuple(json.loads(text))


def load_answers(name: str) -> list[str]:
    """The answer list of "vqa" or "gqa": index = answer id of that checkpoint's head."""
    if name not in ANSWER_LISTS:
        raise ValueError(f"unknown answer list {name!r}; the package ships {', '.join(ANSWER_LISTS)}")
    return list(_answers(name))


def fill_answer_labels(config: LxmertConfig) -> LxmertConfig:
    """Give a config without labels the shipped answer list whose size equals its num_qa_labels.

    The sizes identify the heads of the public checkpoints (3,129 = VQA, 1,842 = GQA); a config that
    already has labels, or another answer count, is left alone.
    """
    if config.id2label is None:
        for name in ANSWER_LISTS:
            answers = _answers(name)
            if len(answers) == config.num_qa_labels:
                config.id2label = dict(enumerate(answers))
    return config
