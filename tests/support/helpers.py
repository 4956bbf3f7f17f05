"""Helpers shared by the tests: where the fixtures are, and small synthetic feature-store records.

Importable as `helpers` from every test module and from the child processes tests start: tests/support is
on pytest's pythonpath, and children put it on their path themselves. (Not tests/ itself: its folders
extract/, lxmert/ and pipelines/ would shadow the packages of those names.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import h5py
import numpy as np
import torch

from extract.boxes import decode_boxes
from extract.model.config import FEATURE_STRIDE
from extract.store import FeatureRecord, FeatureStore, StoreMetadata, StoreWriter
from extract.store.tsv import encode_line

SUPPORT = Path(__file__).resolve().parent  # this folder: on the path of tests and of the children they start
FIXTURES = SUPPORT.parent / "fixtures"
IMAGES = FIXTURES / "images"
TINY_DETECTOR = FIXTURES / "detectron2-vg-tiny"  # the tiny detectron2 VG model and its reference outputs
# The four images detectron2 ran the tiny model on (one npz each); COCO_..._131486 is the portrait one.
TINY_IMAGES = ("000456", "000542", "COCO_train2014_000000131486", "input")


# ---------------------------------------------------------------------------------------------------
# Synthetic store records

DIM = 16  # feature width of the synthetic records (the real detector's is 2048)


def metadata(num_boxes: str = "10-100", **changes) -> StoreMetadata:
    fields = {"rule": "caffe", "detector_config": {"score_thresh_test": 0.2, "anchor_sizes": (64.0, 128.0)}}
    fields |= {"checkpoint_sha256": "ab" * 32, "feature_dim": DIM} | changes
    return StoreMetadata(num_boxes=num_boxes, **fields)


def record(i: int, count: int | None = None, **changes) -> dict:
    """Deterministic synthetic record of image i with ``count`` boxes (default 10 to 100, varying)."""
    rng = np.random.default_rng(i)
    count = 10 + (i * 37) % 91 if count is None else count
    fields = {
        "id": f"COCO_val2014_{i:012d}",
        "height": 300 + i,
        "width": 400 + 2 * i,
        "features": rng.uniform(0, 30, (count, DIM)).astype(np.float32),
        "boxes": rng.uniform(0, 300, (count, 4)).astype(np.float32),
        "object_ids": rng.integers(0, 1600, count),
        "object_scores": rng.random(count, dtype=np.float32),
        "attribute_ids": rng.integers(0, 400, count),
        "attribute_scores": rng.random(count, dtype=np.float32),
    }
    return fields | changes


def write_store(path, records, num_boxes="10-100", feature_dtype="float16", batch=4):
    with StoreWriter(path, metadata=metadata(num_boxes), feature_dtype=feature_dtype) as writer:
        for first in range(0, len(records), batch):
            writer.append(records[first : first + batch])
    return path


def rewrite_settings(path, **changes) -> None:
    """Change settings of a store as its writer would have written them (docs/feature-store.md): the root
    attribute, and the JSON text of the dataset "settings" with its CRC-32 in settings_checksum."""
    with h5py.File(path, "a") as file:
        settings = json.loads(file["settings"][()].tobytes()) | changes
        text = json.dumps(settings, sort_keys=True).encode()
        del file["settings"]
        file["settings"] = np.frombuffer(text, np.uint8)
        file.attrs.modify("settings_checksum", np.int64(zlib.crc32(text)))
        for name, value in changes.items():
            file.attrs[name] = value


def assert_record_equal(stored: FeatureRecord, expected: dict, feature_dtype: str = "float16") -> None:
    assert stored.id == expected["id"]
    assert (stored.height, stored.width) == (expected["height"], expected["width"])
    np.testing.assert_array_equal(stored.features, np.asarray(expected["features"]).astype(feature_dtype))
    for name in ("boxes", "object_ids", "object_scores", "attribute_ids", "attribute_scores"):
        np.testing.assert_array_equal(getattr(stored, name), expected[name], err_msg=name)


def tiny_record(image_id: str, count: int = 3, width: int = 8, seed: int = 0) -> FeatureRecord:
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 50, (count, 4)).astype(np.float32)
    return FeatureRecord(
        image_id,
        60,
        80,
        features=rng.uniform(0, 5, (count, width)).astype(np.float32),
        boxes=boxes,
        normalized_boxes=None,
        object_ids=rng.integers(0, 1600, count),
        object_scores=rng.random(count, dtype=np.float32),
        attribute_ids=rng.integers(0, 400, count),
        attribute_scores=rng.random(count, dtype=np.float32),
    )


def good_lines(count: int = 4) -> list[bytes]:
    return [encode_line(tiny_record(f"img{i}", seed=i)) for i in range(count)]


def replace_field(line: bytes, index: int, value: bytes) -> bytes:
    fields = line.rstrip(b"\r\n").split(b"\t")
    fields[index] = value
    return b"\t".join(fields) + b"\r\n"


def stored_ids(path) -> list[str]:
    with FeatureStore(path) as store:
        return store.ids()


def store_with_ids(path, ids: list[str]) -> None:
    metadata = StoreMetadata(num_boxes="3", rule="unknown", detector_config={}, checkpoint_sha256="-", feature_dim=8)
    with StoreWriter(path, metadata=metadata, feature_dtype="float32") as writer:
        writer.append([tiny_record(image_id, seed=i) for i, image_id in enumerate(ids)])


# ---------------------------------------------------------------------------------------------------
# Detector parity with reference outputs
# Comparing our detector with reference outputs made on another CPU.
#
# float32 convolution and GEMM kernels may sum in another order on another CPU (oneDNN and MKL pick AVX-512,
# AVX2, ... code paths), so what a convolution or a Linear layer computes need not be bit-identical to a
# reference made elsewhere. Values are compared within tolerances; decisions (an argmax, a sort order, ROIPool's
# rounding of a box corner) agree except where the reference sits closer to the decision boundary than
# those tolerances: there either outcome is right, and these helpers say where.

# The fields of ImagePredictions that hold one row per proposal.
PER_PROPOSAL = (
    "proposal_boxes",
    "objectness_logits",
    "pooled_features",
    "class_logits",
    "class_probs",
    "box_deltas",
    "class_boxes",
    "attribute_logits",
)


def match_rows(ref_boxes, our_boxes, tol, ref_ids=None, our_ids=None) -> np.ndarray:
    """Index into ours of each reference row: the same box within tol (and the same id if given), 1:1."""
    ref_boxes, our_boxes = np.asarray(ref_boxes), np.asarray(our_boxes)
    assert ref_boxes.shape == our_boxes.shape, f"{len(ref_boxes)} reference boxes vs {len(our_boxes)} ours"
    distance = np.abs(ref_boxes[:, None, :] - our_boxes[None, :, :]).max(axis=-1)
    if ref_ids is not None:
        distance = np.where(np.asarray(ref_ids)[:, None] == np.asarray(our_ids)[None, :], distance, np.inf)
    match = distance.argmin(axis=1)
    worst = distance[np.arange(len(match)), match].max(initial=0.0)
    assert worst <= tol, f"a reference box has no counterpart within {tol} px (closest: {worst})"
    assert len(set(match.tolist())) == len(match), "two reference boxes matched the same box of ours"
    return match


def near_tie_rows(values: np.ndarray, tol: float) -> np.ndarray:
    """Rows whose two largest entries are within tol: their argmax may flip with summation order."""
    top2 = np.sort(values, axis=1)[:, -2:]
    return np.nonzero(top2[:, 1] - top2[:, 0] < tol)[0]


def assert_argmax_up_to_ties(ours: np.ndarray, ref_values: np.ndarray, ref_argmax: np.ndarray, tol: float, what):
    """Our argmax per row equals the reference's, except where the reference's two best values are closer
    than tol (`near_tie_rows`): there ours may be either of the two."""
    ours = np.asarray(ours)
    ties = near_tie_rows(ref_values, tol)
    clear = np.setdiff1d(np.arange(len(ours)), ties)
    np.testing.assert_array_equal(ours[clear], np.asarray(ref_argmax)[clear], err_msg=f"argmax {what}")
    for row in ties:
        assert ours[row] in np.argsort(ref_values[row])[-2:], f"argmax {what} of row {row}"


def assert_order_up_to_ties(order: np.ndarray, keys: np.ndarray, tol: float, what: str) -> None:
    """order[k]: our position of reference row k. Ours may list two reference rows the other way round only
    if their sort keys (the reference's, e.g. descending scores) are closer than tol: a near tie."""
    order, keys = np.asarray(order), np.asarray(keys, dtype=np.float64)
    first, second = np.nonzero(np.triu(order[:, None] > order[None, :], k=1))  # reference rows first < second
    gaps = np.abs(keys[first] - keys[second])
    bad = np.nonzero(gaps >= tol)[0]
    assert len(bad) == 0, (
        f"{what}: reference rows {first[bad[0]]} and {second[bad[0]]} come in the other order, "
        f"{gaps[bad[0]]:.3g} apart in sort key (ties: < {tol:.3g})"
    )


def roi_pool_ties(boxes: np.ndarray, image_hw: tuple[int, int], tol: float) -> np.ndarray:
    """Rows of (R, 4) network-input boxes with a corner within tol px of where ROIPool's rounding jumps.

    torchvision's roi_pool rounds each corner to the feature grid, round(x / 16), which jumps at
    x = 16 k + 8: a box that is within tol of the reference's may pool other cells there (the features
    then differ by ~0.1, not by float noise). A corner clipped to the image border is exact on every
    CPU and is no tie.
    """
    height, width = image_hw
    exact = (boxes == 0) | (boxes == np.array([width, height, width, height], dtype=boxes.dtype))
    cells = boxes.astype(np.float64) / FEATURE_STRIDE - 0.5
    distance = np.abs(cells - np.round(cells)) * FEATURE_STRIDE
    return np.nonzero(((distance < tol) & ~exact).any(axis=1))[0]


def by_reference_row(detector, image, pred, match: np.ndarray, ref_boxes: np.ndarray, tol: float):
    """Our per-proposal outputs (ImagePredictions) in the reference's row order: row i is our proposal
    matched to reference proposal i. Rows whose reference box is a ROIPool tie (`roi_pool_ties`) are
    recomputed by our own network on the reference box, so that every row compares at float tolerances."""
    rows = torch.from_numpy(match)
    with torch.inference_mode():
        per_row = {name: getattr(pred, name) for name in PER_PROPOSAL}
        aligned = dataclasses.replace(pred, **{name: t if t is None else t[rows] for name, t in per_row.items()})
        tied = roi_pool_ties(ref_boxes, pred.resized_size, tol)
        if len(tied):
            boxes = torch.from_numpy(ref_boxes[tied])
            res4 = detector.backbone(image.tensor[None])
            pooled, class_logits, box_deltas, attribute_logits = detector.roi_heads(res4, [boxes])
            class_boxes = decode_boxes(box_deltas, boxes, detector.config.box_reg_weights)
            t = torch.from_numpy(tied)
            aligned.pooled_features[t] = pooled
            aligned.class_logits[t] = class_logits
            aligned.class_probs[t] = class_logits.softmax(dim=-1)
            aligned.box_deltas[t] = box_deltas
            aligned.class_boxes[t] = class_boxes.view(len(tied), -1, 4)
            if attribute_logits is not None:
                aligned.attribute_logits[t] = attribute_logits
    return aligned


# ---------------------------------------------------------------------------------------------------
# LXMERT models with weights off their defaults

# A tiny LXMERT: small enough for fast tests, with every dimension different so that a swapped axis cannot
# pass.
TINY_LXMERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    l_layers=2,
    x_layers=2,
    r_layers=1,
    visual_feat_dim=24,
    num_qa_labels=7,
    num_object_labels=11,
    num_attr_labels=5,
)
# The answers of the pipeline, service and CLI tests' tiny VQA checkpoint (tests/conftest.py: vqa_dir), and its
# config: the tiny LXMERT reading the 256-d features of the tiny detector in its cheaper setting (detector_dir).
ANSWERS = ["yes", "no", "2", "red", "dog", "table", "left"]
PIPELINE_LXMERT = dict(TINY_LXMERT, vocab_size=30522, visual_feat_dim=256, num_qa_labels=len(ANSWERS))


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter a random value of a sensible scale, in place.

    The default initialization sets biases to 0 and LayerNorm to (1, 0): a model that dropped or swapped
    those would still match. Here nothing is left at its default. Dense weights keep the activations'
    scale (std 1/sqrt(fan_in); embeddings std 1/sqrt(hidden)), so logits land in the range of trained
    models (a few units) and float32 rounding stays comparable to theirs.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name or name.endswith("logit_fc.2.weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.dim() == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / math.sqrt(p.shape[1]))
    return model


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (for a live server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str) -> int | None:
    """The status of a GET of url (error statuses included); None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet
        return None


def wait_until(condition, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll condition() until it holds; fail, with the end of the child's log, if the child exits first or
    timeout seconds pass (a live server a test started: readiness, draining)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the server exited ({process.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not reached in {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def run_help(module: str, argv: list[str]) -> tuple[object, str, set[str]]:
    """`module.main(argv)` (a --help) in a fresh interpreter -> its exit code, what it printed, and every module
    it loaded (the command lines' promise: --help answers without torch)."""
    script = (
        "import json, sys\n"
        f"from {module} import main\n"
        "try:\n"
        f"    code = main({list(argv)!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('\\n' + json.dumps([code, sorted(sys.modules)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed, _, last = result.stdout.rstrip("\n").rpartition("\n")
    code, modules = json.loads(last)
    return code, printed, set(modules)
