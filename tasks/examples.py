"""Training and evaluation examples: questions or statements joined with their images' region features.

`QuestionExamples` (VQA, GQA) and `StatementExamples` (NLVR2) are torch Datasets over records of
tasks.data and a `RegionFeatures`; `Batches` turns their items into model inputs (the texts tokenized
to `max_length` tokens, as LXMERT's code pads and truncates them: 20 by default). `match_images` keeps
the records whose images the stores hold and reports the rest.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lxmert import LxmertTokenizerFast

from .data import Question, Statement
from .features import RegionFeatures


class ExamplesError(ValueError):
    """Records that cannot make a training or evaluation set (none left, images missing with strict)."""


@dataclass
class Matched:
    """What `match_images` kept and left out."""

    records: list  # the records whose every image is in the stores
    missing_images: list[str] = field(default_factory=list)  # distinct image ids none of the stores holds
    dropped: int = 0  # records left out for them


def match_images(
    records: Sequence[Question | Statement], features: RegionFeatures, *, strict: bool = False, what: str = "data"
) -> Matched:
    """The records whose images `features` holds. With `strict`, any missing image is an ExamplesError;
    otherwise the count is warned about once. No record left is always an error."""
    kept, missing = [], {}
    for record in records:
        image_ids = record.image_ids if isinstance(record, Statement) else (record.image_id,)
        absent = [image_id for image_id in image_ids if image_id not in features]
        if absent:
            missing.update(dict.fromkeys(absent))
        else:
            kept.append(record)
    matched = Matched(kept, list(missing), len(records) - len(kept))
    if missing:
        shown = ", ".join(repr(image_id) for image_id in matched.missing_images[:5])
        message = (
            f"{what}: {matched.dropped} of {len(records)} records name images that none of the feature stores "
            f"holds ({len(missing)} images, e.g. {shown})"
        )
        if strict:
            raise ExamplesError(message + "; extract them, or drop --strict to leave those records out")
        if kept:
            warnings.warn(message + "; those records are left out", stacklevel=2)
    if not kept:
        raise ExamplesError(
            f"{what}: no record left: none of the {len(records)} records has its images in the feature stores "
            f"({features.paths[0]}{' ...' if len(features.paths) > 1 else ''}); are the ids the same? e.g. "
            f"{matched.missing_images[:3]}"
        )
    return matched


class QuestionExamples(torch.utils.data.Dataset):
    """Item i: the question text, its image's regions and (with `answers`) the soft-score target over them.

    Answers of a label that are not in `answers` are left out of the target; `unknown_answers` counts the
    (question, answer) pairs left out that way and `unanswerable` the labelled questions with no known answer.
    """

    def __init__(self, questions: Sequence[Question], features: RegionFeatures, answers: Sequence[str] | None = None):
        self.questions = list(questions)
        self.features = features
        self.answers = list(answers) if answers is not None else None
        self.unknown_answers = self.unanswerable = 0
        self.targets: list[dict[int, float]] | None = None
        if self.answers is not None:
            index = {answer: i for i, answer in enumerate(self.answers)}
            self.targets = []
            for question in self.questions:
                label = question.label or {}
                target = {index[answer]: score for answer, score in label.items() if answer in index}
                self.unknown_answers += len(label) - len(target)
                self.unanswerable += bool(label) and not target
                self.targets.append(target)

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        question = self.questions[i]
        regions = self.features[question.image_id]
        item = {"index": i, "text": question.text, "features": regions.features, "boxes": regions.boxes}
        item["mask"] = regions.mask
        if self.targets is not None:
            target = torch.zeros(len(self.answers))
            for answer, score in self.targets[i].items():
                target[answer] = score
            item["target"] = target
        return item


class StatementExamples(torch.utils.data.Dataset):
    """Item i: the statement text, the regions of both images (2, K, ...) and its label (1 = true)."""

    def __init__(self, statements: Sequence[Statement], features: RegionFeatures):
        self.statements = list(statements)
        self.features = features

    def __len__(self) -> int:
        return len(self.statements)

    def __getitem__(self, i: int) -> dict[str, Any]:
        statement = self.statements[i]
        left, right = (self.features[image_id] for image_id in statement.image_ids)
        item = {
            "index": i,
            "text": statement.text,
            "features": torch.stack([left.features, right.features]),
            "boxes": torch.stack([left.boxes, right.boxes]),
            "mask": torch.stack([left.mask, right.mask]),
        }
        if statement.label is not None:
            item["target"] = torch.tensor(int(statement.label))
        return item


class Batches:
    """collate_fn: items -> one batch of model inputs (`input_ids`, `attention_mask`, `token_type_ids`,
    `visual_feats`, `visual_pos`, `visual_attention_mask`) plus `index` and, when labelled, `target`."""

    def __init__(self, tokenizer: LxmertTokenizerFast, max_length: int = 20):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            [item["text"] for item in items],
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        batch = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "token_type_ids": encoded["token_type_ids"],
            "visual_feats": torch.stack([item["features"] for item in items]),
            "visual_pos": torch.stack([item["boxes"] for item in items]),
            "visual_attention_mask": torch.stack([item["mask"] for item in items]),
            "index": torch.tensor([item["index"] for item in items]),
        }
        if all("target" in item for item in items):
            batch["target"] = torch.stack([item["target"] for item in items])
        return batch
