"""Synthetic tasks whose answers can only be read from the region features, and a tiny LXMERT to learn them.

VQA: each image has BOXES regions; the one with the largest norm carries its class as a one-hot direction
(plus noise), the others are small noise; every question asks the same thing ("what is the biggest
thing?"), so the answer (the class name) is in the features and nowhere else. NLVR2: "the two images show
the same thing" is true when the largest boxes of both images have one class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_LXMERT, perturb

from extract.store import StoreMetadata, StoreWriter
from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering

CLASSES = ["cat", "dog", "car", "tree", "cup"]
BOXES = 8
DIM = 24  # TINY_LXMERT's visual_feat_dim


def synthetic_image(rng: np.random.Generator, label: int, boxes: int = BOXES, dim: int = DIM) -> dict:
    features = rng.normal(0, 0.3, (boxes, dim)).astype(np.float32)
    big = rng.integers(boxes)
    features[big] = rng.normal(0, 0.3, dim)
    features[big, label] += 6.0
    corners = rng.uniform(0, 200, (boxes, 2))
    corners = np.concatenate([corners, corners + rng.uniform(10, 100, (boxes, 2))], axis=1).astype(np.float32)
    return {
        "height": 320,
        "width": 320,
        "features": features,
        "boxes": corners,
        "object_ids": rng.integers(0, 1600, boxes),
        "object_scores": rng.random(boxes, dtype=np.float32),
        "attribute_ids": rng.integers(0, 400, boxes),
        "attribute_scores": rng.random(boxes, dtype=np.float32),
    }


def write_synthetic_store(
    path: Path, labels: dict[str, int], seed: int = 0, boxes: int = BOXES, dim: int = DIM
) -> Path:
    rng = np.random.default_rng(seed)
    metadata = StoreMetadata(
        num_boxes=str(boxes), rule="synthetic", detector_config={}, checkpoint_sha256="-", feature_dim=dim
    )
    with StoreWriter(path, metadata=metadata, feature_dtype="float16") as writer:
        writer.append([{"id": key, **synthetic_image(rng, label, boxes, dim)} for key, label in labels.items()])
    return path


@pytest.fixture(scope="session")
def vqa_task(tmp_path_factory) -> dict:
    """Files of a synthetic VQA task: train.json / valid.json (LXMERT's format), answers.json, a store."""
    folder = tmp_path_factory.mktemp("vqa-task")
    rng = np.random.default_rng(1)
    labels = {f"img{i:04d}": int(rng.integers(len(CLASSES))) for i in range(600)}
    write_synthetic_store(folder / "features.h5", labels)
    records = [
        {"img_id": image_id, "question_id": i, "sent": "what is the biggest thing?", "label": {CLASSES[label]: 1.0}}
        for i, (image_id, label) in enumerate(labels.items())
    ]
    (folder / "train.json").write_text(json.dumps(records[:480]))
    (folder / "valid.json").write_text(json.dumps(records[480:]))
    (folder / "answers.json").write_text(json.dumps(CLASSES))
    return {"folder": folder, "labels": labels, "records": records}


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> Path:
    """A tiny LXMERT pretraining checkpoint (random weights of a realistic spread, 24-d features) whose answer
    head has the 9,500 rows of the published one (its answers: lxmert.labels.load_answers("pretrain"))."""
    folder = tmp_path_factory.mktemp("tiny-pretrained")
    config = LxmertConfig(**dict(TINY_LXMERT, vocab_size=30522, num_qa_labels=9500))
    perturb(LxmertForPreTraining(config), seed=3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_qa(tmp_path_factory) -> Path:
    """A tiny fine-tuned-style QA checkpoint whose answers are CLASSES."""
    folder = tmp_path_factory.mktemp("tiny-qa")
    config = LxmertConfig(
        **dict(TINY_LXMERT, vocab_size=30522, num_qa_labels=len(CLASSES)), id2label=dict(enumerate(CLASSES))
    )
    perturb(LxmertForQuestionAnswering(config), seed=4).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_qa_without_dropout(tiny_qa, tmp_path_factory) -> Path:
    """tiny_qa without dropout: runs that split their batches differently (over ranks, or into accumulated
    micro-batches) draw other dropout masks, so only runs without dropout can be compared."""
    folder = tmp_path_factory.mktemp("tiny-qa-without-dropout")
    config = LxmertConfig.from_pretrained(tiny_qa, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    LxmertForQuestionAnswering.from_pretrained(tiny_qa, config=config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def nlvr2_task(tmp_path_factory) -> dict:
    """A synthetic NLVR2 task: "both images show a cat" is true when the largest boxes of both images carry
    class 0 (half the pairs; the false ones are any other pair of classes, so one image alone never tells);
    LXMERT's NLVR2 JSON, and a store of both images of each pair."""
    folder = tmp_path_factory.mktemp("nlvr2-task")
    rng = np.random.default_rng(2)
    classes, records, labels = 3, [], {}
    for i in range(750):
        true = bool(rng.integers(2))
        left, right = (0, 0) if true else divmod(int(rng.integers(1, classes * classes)), classes)
        split = "train" if i < 600 else "dev"
        labels[f"{split}-{i}-0-img0"], labels[f"{split}-{i}-0-img1"] = left, right
        records.append(
            {
                "identifier": f"{split}-{i}-0-0",
                "img0": f"{split}-{i}-0-img0",
                "img1": f"{split}-{i}-0-img1",
                "sent": "both images show a cat.",
                "label": int(true),
            }
        )
    write_synthetic_store(folder / "features.h5", labels, seed=3)
    (folder / "train.json").write_text(json.dumps(records[:600]))
    (folder / "valid.json").write_text(json.dumps(records[600:]))
    return {"folder": folder, "records": records}
