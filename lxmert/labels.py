"""The answer vocabularies of the public LXMERT question-answering checkpoints, shipped with the package.

`unc-nlp/lxmert-vqa-uncased` (3,129 answers) and `unc-nlp/lxmert-gqa-uncased` (1,842 answers) publish
configs without labels; their answer lists come from the LXMERT repository (data/vqa, data/gqa).
`lxmert.config.fill_answer_labels` gives such a config the list of its size when it is loaded.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

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


def answers_of_size(count: int) -> tuple[str, ...] | None:
    """The shipped answer list with exactly `count` answers (3,129: VQA, 1,842: GQA), or None."""
    for name in ANSWER_LISTS:
        answers = _answers(name)
        if len(answers) == count:
            return answers
    return None
