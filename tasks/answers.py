"""Answer text: the VQA evaluation's normalization, LXMERT's soft target scores and the VQA answer vocabulary.

One home for answer strings, so that an answer is normalized the same way when the vocabulary is built, when
training targets are scored and when predictions are evaluated (tasks.metrics).

The normalization is the one of the official VQA evaluation code (GT-Vision-Lab/VQA,
PythonEvaluationTools/vqaEvaluation/vqaEval.py: the whitespace clean-up in `evaluate`, then `processPunctuation`
and `processDigitArticle`), reproduced with its quirks; each is noted where it happens. The vocabulary and the
soft scores follow the VQA preprocessing LXMERT took over from bottom-up-attention-vqa (tools/compute_softscore.py:
`filter_answers`, `get_score`).
"""

from __future__ import annotations

import functools
import operator
import re
from collections import Counter
from collections.abc import Iterable

# Marks that processPunctuation removes or turns into a space, in the official order. The apostrophe, the colon
# and the period are not among them (older revisions of vqaEval.py listed ":" and "'" but not "{", "}", "-",
# "!"; the list here is the current one, also the one of bottom-up-attention-vqa).
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'  # one mark per character
_ANY_MARK = re.compile(f"[{re.escape(_PUNCTUATION)}]")
# A comma between two digits ("1,000") anywhere in the answer makes every mark be removed rather than spaced.
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
# Quirk: meant as "a period not preceded by a digit", but `(?!<=\d)` is a negative lookahead for the text "<="
# and a digit, which never follows at a period, so it only tests the right side: a period is removed unless a
# digit follows ("2.5" stays, "2." and "a.b" lose it). Written as the official code writes it.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
# Quirk: the official code calls `periodStrip.sub("", text, re.UNICODE)`, which passes re.UNICODE (32) as the
# `count` argument: at most the first 32 such periods are removed.
_PERIOD_COUNT = int(re.UNICODE)

_NUMBER_WORDS = {
    "none": "0",  # quirk: "none" counts as a number word
    "zero": "0",
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
}
_ARTICLES = frozenset({"a", "an", "the"})
# Whole words (after lower-casing) -> their spelling with apostrophes, the official table. Quirks kept: some keys
# already have their apostrophes ("let's", "she's" map to themselves), "somebody'd" maps the wrong way round to
# "somebodyd", and "twas" gains a leading apostrophe. The official table also lists "Id've", "I'dve", "Im" and
# "Ive"; words are lower-cased before the look-up, so those never match and are left out here.
# fmt: off
_CONTRACTIONS = {
    "'ow'sat": "'ow's'at", "'ows'at": "'ow's'at", "aint": "ain't", "arent": "aren't", "cant": "can't",
    "couldn'tve": "couldn't've", "couldnt": "couldn't", "couldnt've": "couldn't've", "couldve": "could've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadn'tve": "hadn't've", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "he'dve": "he'd've", "hed": "he'd",
    "hed've": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "isnt": "isn't",
    "it'dve": "it'd've", "itd": "it'd", "itd've": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightn'tve": "mightn't've", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "shant": "shan't", "she'dve": "she'd've", "she's": "she's",
    "shed've": "she'd've", "shouldn'tve": "shouldn't've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldve": "should've", "somebody'd": "somebodyd", "somebody'dve": "somebody'd've",
    "somebodyd've": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someone'dve": "someone'd've", "someoned": "someone'd", "someoned've": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "something'dve": "something'd've", "somethingd": "something'd",
    "somethingd've": "something'd've", "somethingll": "something'll", "thats": "that's", "there'dve": "there'd've",
    "thered": "there'd", "thered've": "there'd've", "therere": "there're", "theres": "there's",
    "they'dve": "they'd've", "theyd": "they'd", "theyd've": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "we'dve": "we'd've", "wed've": "we'd've",
    "werent": "weren't", "weve": "we've", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "who'dve": "who'd've", "whod": "who'd", "whod've": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldn'tve": "wouldn't've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldve": "would've",
    "y'all'dve": "y'all'd've", "y'alld've": "y'all'd've", "y'allll": "y'all'll", "yall": "y'all",
    "yall'd've": "y'all'd've", "yall'll": "y'all'll", "you'dve": "you'd've", "youd": "you'd", "youd've": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
# fmt: on

# LXMERT's target score of an answer that `count` of the 10 annotators gave, count -> score. A table, not
# min(1, 0.3 * count): 0.3 * 3 is 0.8999999999999999 in floating point, the reference returns 0.9.
_SOFT_SCORES = (0.0, 0.3, 0.6, 0.9)


def strip_answer(answer: str) -> str:
    """The official clean-up of a raw answer before anything else: newlines and tabs become spaces, then the
    ends are stripped. The VQA metric applies it to predictions and ground-truth answers alike."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official `processPunctuation`: each mark of the punctuation list is removed where the answer has it
    next to a space, or anywhere once the answer has a comma between digits ("1,000" -> "1000"); otherwise it
    becomes a space ("yes/no" -> "yes no"). Then periods not followed by a digit are removed ("2.5" stays)."""
    out = text
    has_digit_comma = _DIGIT_COMMA.search(text) is not None
    # Most answers have no mark at all: only the period step applies to them.
    for mark in _PUNCTUATION if _ANY_MARK.search(text) else ():
        # Quirk: the test reads the input `text`, not `out`, and decides for every occurrence of the mark at once:
        # one ", " makes all commas of the answer vanish, spaced or not ("x, y,z" -> "x yz").
        if f"{mark} " in text or f" {mark}" in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def process_digits_and_articles(text: str) -> str:
    """The official `processDigitArticle`: lower case, split on whitespace, number words zero..ten (and "none")
    -> digits, the articles a / an / the dropped, contractions spelled with their apostrophes ("dont" ->
    "don't"), words joined by single spaces."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    # The number words are mapped before the articles are dropped, the contractions after.
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


@functools.lru_cache(maxsize=1 << 18)  # a VQA split holds millions of answers, few of them distinct
def normalize_answer(answer: str) -> str:
    """One answer as the official VQA evaluation normalizes it: `strip_answer`, `process_punctuation`,
    `process_digits_and_articles`. "The Two dogs." -> "2 dogs", "1,000" -> "1000", "yes/no" -> "yes no".

    tasks.metrics.evaluate_vqa applies it to a question's prediction and its ground-truth answers only when those
    answers are not all the same (the official evaluation's rule)."""
    return process_digits_and_articles(process_punctuation(strip_answer(answer)))


def soft_score(count: int) -> float:
    """LXMERT's target score of an answer given by `count` of the 10 annotators: 0 -> 0.0, 1 -> 0.3, 2 -> 0.6,
    3 -> 0.9, 4 or more -> 1.0. With 10 annotators it equals the VQA accuracy of that answer (the mean over the
    ten leave-one-out sets of min(1, matches / 3))."""
    count = operator.index(count)
    if count < 0:
        raise ValueError(f"an answer count cannot be negative, got {count}")
    return _SOFT_SCORES[count] if count < len(_SOFT_SCORES) else 1.0


def _vocabulary_form(answer: str) -> str:
    # bottom-up-attention-vqa's preprocess_answer: the two official steps without the whitespace clean-up. Its
    # final `.replace(",", "")` is left out: process_punctuation has already removed or spaced every comma.
    # Without the clean-up, an answer with surrounding whitespace can come out differently from normalize_answer
    # ("x-y- " -> "xy", where normalize_answer gives "x y"); the vocabulary keeps the reference's form.
    return process_digits_and_articles(process_punctuation(answer))


def build_answer_vocabulary(answer_lists: Iterable[Iterable[str]], min_count: int = 9) -> list[str]:
    """The answers, normalized, that at least `min_count` questions have; sorted (Python string order).

    `answer_lists` holds one iterable of answers per question, and what is counted is the number of questions
    whose normalized answers include an answer (an answer given twice for one question counts once). LXMERT's
    VQA answers come from the recipe of bottom-up-attention-vqa (tools/compute_softscore.py, `filter_answers`),
    which passes one answer per question, the annotation's `multiple_choice_answer` (the most common of the ten),
    over VQA v2 train + val, with `min_count` 9:

        annotations = train["annotations"] + val["annotations"]
        build_answer_vocabulary([[a["multiple_choice_answer"]] for a in annotations])  # 3,129 answers

    Passing all ten annotator answers per question gives a larger vocabulary instead. An answer that normalizes
    to nothing ("the") counts as the empty answer, which the published list holds too. The order is ours: the
    published list (LXMERT's data/vqa/trainval_label2ans.json, lxmert.labels.load_answers("vqa")) keeps the
    reference's dictionary order, which is what the label ids of the published checkpoints index.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    questions = Counter()
    for index, answers in enumerate(answer_lists):
        if isinstance(answers, str):
            raise ValueError(
                f"answer_lists item {index} is the string {answers!r}; give each question's answers as a list "
                f"([{answers!r}] for a single answer)"
            )
        questions.update({_vocabulary_form(answer) for answer in answers})
    return sorted(answer for answer, count in questions.items() if count >= min_count)
