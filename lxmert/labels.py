"""The answer vocabularies of the public LXMERT checkpoints, shipped with the package, and the answer
normalization LXMERT uses to carry its pretrained answer head over to a fine-tuning answer list.

`unc-nlp/lxmert-vqa-uncased` (3,129 answers) and `unc-nlp/lxmert-gqa-uncased` (1,842 answers) publish
configs without labels; their answer lists come from the LXMERT repository (data/vqa, data/gqa).
`lxmert.config.fill_answer_labels` gives such a config the list of its size when it is loaded.
The pretraining QA head of `unc-nlp/lxmert-base-uncased` scores 9,500 answers (data/lxmert/all_ans.json
there; sorted, unique); that list is not given to configs: fine-tuning re-maps the head onto a new answer
list by answer string instead (`normalize_pretrain_answer`, and `remap_answer_head` in lxmert.modeling).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

ANSWER_LISTS = {"vqa": "vqa_answers.json", "gqa": "gqa_answers.json", "pretrain": "pretrain_answers.json"}
# The lists of fine-tuned heads whose published configs lack labels (answers_of_size picks among these).
_FINE_TUNED_LISTS = ("vqa", "gqa")

# Whole-answer synonyms LXMERT maps onto its pretraining answers, after the steps of normalize_pretrain_answer.
_ANSWER_SYNONYMS = {
    "a man": "man",
    "the man": "man",
    "a woman": "woman",
    "the woman": "woman",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "grey": "gray",
}
_ARTICLES = ("a ", "an ", "the ")


@cache
def _answers(name: str) -> tuple[str, ...]:
    text = resources.files("lxmert").joinpath("data", ANSWER_LISTS[name]).read_text(encoding="utf-8")
    return tuple(json.loads(text))


def load_answers(name: str) -> list[str]:
    """The answer list "vqa", "gqa" or "pretrain" (the 9,500 answers of the pretraining QA head):
    index = answer id of that checkpoint's head."""
    if name not in ANSWER_LISTS:
        raise ValueError(f"unknown answer list {name!r}; the package ships {', '.join(ANSWER_LISTS)}")
    return list(_answers(name))


def answers_of_size(count: int) -> tuple[str, ...] | None:
    """The shipped fine-tuning answer list with exactly `count` answers (3,129: VQA, 1,842: GQA), or None."""
    for name in _FINE_TUNED_LISTS:
        answers = _answers(name)
        if len(answers) == count:
            return answers
    return None


def normalize_pretrain_answer(answer: str) -> str:
    """An answer as LXMERT looks it up among its pretraining answers, in this order:

    1. lower case;
    2. a trailing "." dropped;
    3. one leading "a ", "an " or "the " dropped;
    4. whole-answer synonyms: "a man" / "the man" -> "man", "a woman" / "the woman" -> "woman",
       "one" .. "ten" -> "1" .. "10", "grey" -> "gray".

    Whitespace left at either end by steps 2 and 3 is stripped, as in the original code ("dog ." -> "dog").
    The original tries the three articles one after the other, so "a an x" would lose both; here one
    article goes, as the data README states (no answer of the shipped lists has two). Every answer of
    the shipped lists is its own normalization.
    """
    answer = answer.lower()
    if answer.endswith("."):
        answer = answer[:-1].strip()
    for article in _ARTICLES:
        if answer.startswith(article):
            answer = answer[len(article) :].strip()
            break
    # Step 3 already turns "a man" into "man"; the article entries still catch "a the man".
    return _ANSWER_SYNONYMS.get(answer, answer)
