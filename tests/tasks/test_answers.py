"""tasks.answers: the official VQA normalization branch by branch, soft scores, the answer vocabulary.

Reference: GT-Vision-Lab/VQA vqaEval.py (processPunctuation, processDigitArticle) and bottom-up-attention-vqa
tools/compute_softscore.py (get_score, filter_answers). No package offers an independent implementation, so the
expected values are worked out by hand from the reference's rules; each case says which rule it exercises.
"""

from __future__ import annotations

import pytest

from lxmert.labels import load_answers
from tasks.answers import (
    build_answer_vocabulary,
    normalize_answer,
    process_digits_and_articles,
    process_punctuation,
    soft_score,
    strip_answer,
)

# ---------------------------------------------------------------------------------------------------
# Punctuation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("black/white", "black white"),  # a mark with no space beside it becomes a space
        ("t-shirt", "t shirt"),
        ("yes, it is", "yes it is"),  # ", " : a mark next to a space is removed
        ("why ?", "why "),  # " ?" : the same, the space before it counts too
        ("x, y,z", "x yz"),  # the decision covers every comma of the answer: one ", " removes "," in "y,z"
        ("(x) y", " x y"),  # "(" has no space beside it -> " "; ")" has (") ") -> removed
        ("1,000", "1000"),  # a comma between digits: every mark is removed, never spaced
        ("1,000-2,000", "10002000"),  # ... "-" included, although no space is next to it
        ("don't", "don't"),  # the apostrophe is not in the list
        ("10:30", "10:30"),  # nor the colon
        ("hi!", "hi "),
    ],
)
def test_punctuation_marks(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.5", "2.5"),  # a period followed by a digit stays
        (".5", ".5"),
        ("dog.", "dog"),  # any other period goes: at the end,
        ("a.b", "ab"),  # between letters (no space is put in),
        ("3.14.", "3.14"),  # after a digit (the regex meant to keep those only looks ahead)
        ("5.a", "5a"),
    ],
)
def test_periods(text, expected):
    assert process_punctuation(text) == expected


def test_at_most_32_periods_are_removed():
    # periodStrip.sub("", text, re.UNICODE) passes re.UNICODE (32) as the count: 40 periods leave 8.
    assert process_punctuation("." * 40) == "." * 8


# ---------------------------------------------------------------------------------------------------
# Digits, articles, contractions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", "yes"),  # lower case
        ("  big   dog ", "big dog"),  # split on whitespace, joined by single spaces
        ("Two", "2"),  # number words zero..ten -> digits
        ("ten", "10"),
        ("none", "0"),  # "none" is one of them
        ("eleven", "eleven"),  # past ten, words stay
        ("the dog", "dog"),  # articles dropped
        ("a an the", ""),
        ("An Apple", "apple"),  # lower case first, then the article test
        ("dont", "don't"),  # contractions get their apostrophes
        ("Dont know", "don't know"),
        ("Im", "im"),  # the table's capitalized keys (Im, Ive, ...) can never match after lower-casing
        ("somebody'd", "somebodyd"),  # the table maps this one the wrong way round
        ("twas", "'twas"),
        ("let's", "let's"),  # keys that already have their apostrophe map to themselves
    ],
)
def test_digits_articles_contractions(text, expected):
    assert process_digits_and_articles(text) == expected


# ---------------------------------------------------------------------------------------------------
# The whole normalization


def test_strip_answer_turns_newlines_and_tabs_into_spaces_then_strips():
    assert strip_answer("\tred\nblue \n") == "red blue"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("\tThe Two dogs.\n", "2 dogs"),  # strip, period, article, number word
        ("Ten, not nine", "10 not 9"),  # ", " removed, then the number words
        ("1,000", "1000"),
        ("black/white", "black white"),
        ("x-y- ", "x y"),  # stripped first: "x-y-" has no mark next to a space, so "-" becomes " "
        ("dont", "don't"),
        ("", ""),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def test_the_published_vqa_answers_are_already_normalized():
    answers = load_answers("vqa")
    assert len(answers) == 3129
    assert [answer for answer in answers if normalize_answer(answer) != answer] == []
    assert "" in answers  # an answer that normalizes to nothing ("the") is counted as the empty answer


# ---------------------------------------------------------------------------------------------------
# Soft scores


@pytest.mark.parametrize(("count", "score"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_soft_score(count, score):
    assert soft_score(count) == score  # exact: 0.9 from the table, not 0.3 * 3 == 0.8999999999999999


@pytest.mark.parametrize("count", range(11))
def test_soft_score_is_the_vqa_accuracy_of_an_answer_given_by_count_of_ten(count):
    # Leave each of the ten annotators out in turn; the answer matches `count` of the other nine when an
    # annotator who gave another answer is left out, `count - 1` when one who gave it is.
    subsets = [min(1, (count - 1) / 3)] * count + [min(1, count / 3)] * (10 - count)
    assert soft_score(count) == pytest.approx(sum(subsets) / 10)


def test_soft_score_rejects_negative_and_fractional_counts():
    with pytest.raises(ValueError, match="negative"):
        soft_score(-1)
    with pytest.raises(TypeError):
        soft_score(1.5)


# ---------------------------------------------------------------------------------------------------
# Vocabulary


def test_vocabulary_counts_questions_and_keeps_answers_of_at_least_min_count():
    questions = [["Two"], ["2"], ["two."], ["red"], ["red"], ["blue"]]
    # "Two", "2" and "two." normalize to "2": 3 questions; "red": 2; "blue": 1.
    assert build_answer_vocabulary(questions, min_count=3) == ["2"]
    assert build_answer_vocabulary(questions, min_count=2) == ["2", "red"]
    assert build_answer_vocabulary(questions, min_count=1) == ["2", "blue", "red"]


def test_vocabulary_counts_an_answer_once_per_question():
    # Ten annotators saying "red" for one question are one question, not ten.
    assert build_answer_vocabulary([["red"] * 10, ["red", "Red"]], min_count=2) == ["red"]
    assert build_answer_vocabulary([["red"] * 10], min_count=2) == []


def test_vocabulary_of_the_reference_recipe_uses_one_answer_per_question():
    annotations = [{"multiple_choice_answer": answer} for answer in ["yes"] * 9 + ["no"] * 8 + ["the 2"] * 9]
    vocabulary = build_answer_vocabulary([[a["multiple_choice_answer"]] for a in annotations])  # min_count 9
    assert vocabulary == ["2", "yes"]


def test_vocabulary_keeps_the_reference_form_without_the_whitespace_clean_up():
    # bottom-up-attention-vqa normalizes the raw answer: in "x-y- " the "-" has a space beside it and is removed.
    assert build_answer_vocabulary([["x-y- "]], min_count=1) == ["xy"]


def test_vocabulary_input_errors():
    with pytest.raises(ValueError, match=r"item 0 is the string 'yes'.*\['yes'\]"):
        build_answer_vocabulary(["yes"])
    with pytest.raises(ValueError, match="min_count"):
        build_answer_vocabulary([["yes"]], min_count=0)
