"""Scoring a fine-tuned model on a data file: predictions in the benchmark's submission format and its
official scores (`evaluate`, `lxmert evaluate`).

The score follows the data: the official VQA annotations give the official VQA accuracy (overall, per
answer type, per question type); a GQA question file GQA's accuracy; NLVR2 labels accuracy and
consistency; LXMERT's JSON files its own evaluator (the mean label score of the predicted answers: what its
published validation numbers are), and for NLVR2 accuracy and consistency too. Unlabelled data (test
splits) gives predictions only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from extract.devices import resolve_device
from lxmert import LxmertForQuestionAnswering, LxmertForVisualReasoning, LxmertTokenizerFast

from .data import Question, detect_format, read_task_data, vqa_annotations_of
from .examples import QuestionExamples, StatementExamples, match_images
from .features import RegionFeatures
from .metrics import (
    evaluate_gqa,
    evaluate_lxmert,
    evaluate_nlvr2,
    evaluate_vqa,
    write_gqa_predictions,
    write_nlvr2_predictions,
    write_vqa_predictions,
)
from .models import model_answers_of
from .training import predict


def load_finetuned(task: str, model: str | os.PathLike, device: torch.device):
    """(model, tokenizer) of a fine-tuned checkpoint folder (the tokenizer saved with it, else LXMERT's)."""
    cls = LxmertForVisualReasoning if task == "nlvr2" else LxmertForQuestionAnswering
    loaded = cls.from_pretrained(model, device=device)
    folder = Path(model)
    has_tokenizer = (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()
    tokenizer = LxmertTokenizerFast.from_pretrained(folder) if has_tokenizer else LxmertTokenizerFast()
    if task != "nlvr2" and model_answers_of(loaded) is None:
        raise ValueError(f"{model}: its config names no answers (id2label): which answer is which label is unknown")
    return loaded, tokenizer


def evaluate(
    task: str,
    model: str | os.PathLike,
    data: str | os.PathLike,
    features: Sequence[str | os.PathLike],
    *,
    predictions: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    max_length: int = 20,
) -> dict[str, Any]:
    """Answer every record of `data` whose images the stores hold, write `predictions` (the submission format
    of the task, when given) and return the scores: {"metric": ..., "questions": n, ...scores}."""
    device = resolve_device(device)
    loaded, tokenizer = load_finetuned(task, model, device)
    lookup = RegionFeatures(features)
    try:
        matched = match_images(read_task_data(task, data), lookup, what=str(data))
        if task == "nlvr2":
            examples = StatementExamples(matched.records, lookup)
        else:
            examples = QuestionExamples(matched.records, lookup)
        labels = predict(loaded, examples, tokenizer, device=device, batch_size=batch_size, max_length=max_length)
    finally:
        lookup.close()
    scores: dict[str, Any] = {"task": task, "data": str(data), "examples": len(labels), "skipped": matched.dropped}
    if task == "nlvr2":
        chosen = {
            statement.identifier: bool(label) for statement, label in zip(examples.statements, labels, strict=True)
        }
        if predictions is not None:
            write_nlvr2_predictions(predictions, chosen)
        truth = {statement.identifier: statement.label for statement in examples.statements}
        if all(label is not None for label in truth.values()):
            scores |= {"metric": "nlvr2", **evaluate_nlvr2(chosen, truth)}
        return scores
    answers = model_answers_of(loaded)
    chosen = {question.question_id: answers[label] for question, label in zip(examples.questions, labels, strict=True)}
    if predictions is not None:
        (write_vqa_predictions if task == "vqa" else write_gqa_predictions)(predictions, chosen)
    form = detect_format(data)
    if task == "vqa" and form in ("vqa-annotations", "vqa-questions"):
        annotations = vqa_annotations_of(data)
        if annotations is not None:
            submission = [{"question_id": qid, "answer": answer} for qid, answer in chosen.items()]
            scores |= {"metric": "vqa", **evaluate_vqa(submission, annotations)}
    elif task == "gqa" and form == "gqa":
        submission = [{"questionId": qid, "prediction": answer} for qid, answer in chosen.items()]
        # GQA's script wants every balanced question of the file answered: score the ones whose images the
        # stores hold (`skipped` says how many were left out)
        questions = json.loads(Path(data).read_text(encoding="utf-8"))
        answered = {qid: question for qid, question in questions.items() if qid in chosen}
        scores |= {"metric": "gqa", **evaluate_gqa(submission, answered)}
    elif _labelled(examples.questions):
        records = [{"question_id": q.question_id, "label": q.label} for q in examples.questions]
        scores |= {"metric": "lxmert", "score": round(100 * evaluate_lxmert(chosen, records), 2)}
    return scores


def _labelled(questions: Sequence[Question]) -> bool:
    return all(question.label is not None for question in questions)


def format_scores(scores: dict[str, Any], *, as_json: bool = False) -> str:
    """The scores as lines for a terminal (overall, then per answer / question type), or as JSON."""
    if as_json:
        return json.dumps(scores, indent=2)
    lines = [f"{scores['task']}: {scores['examples']} examples of {scores['data']}"]
    if scores.get("skipped"):
        lines[0] += f" ({scores['skipped']} skipped: images not in the stores)"
    metric = scores.get("metric")
    if metric is None:
        lines.append("no labels: predictions only")
    elif metric == "vqa":
        lines.append(f"overall accuracy: {scores['overall']:.2f}")
        lines += [f"  {kind}: {value:.2f}" for kind, value in sorted(scores["perAnswerType"].items())]
        lines.append("per question type:")
        lines += [f"  {kind}: {value:.2f}" for kind, value in sorted(scores["perQuestionType"].items())]
    elif metric == "lxmert":
        lines.append(f"score (LXMERT's evaluator, sum of the predicted answers' label scores): {scores['score']:.2f}")
    else:
        shown = {
            name: value
            for name, value in scores.items()
            if isinstance(value, (int, float)) and name not in ("examples", "skipped")
        }
        lines += [f"{name}: {value:.2f}" for name, value in shown.items()]
    return "\n".join(lines)
