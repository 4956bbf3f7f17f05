"""Checkpoint reading: detectron2 names, the restricted unpickler, and error reports."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.checkpoints import (
    DETECTRON2_KEYS,
    CheckpointError,
    load_detectron2_checkpoint,
    map_state_dict,
    read_detectron2_pkl,
)
from extract.config import DetectorConfig
from extract.detector import VGDetector

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "detectron2-vg-tiny"


@pytest.fixture(scope="module")
def tiny_config():
    return DetectorConfig.from_yaml(TINY / "config.yaml")


def test_full_model_has_detectron2_names_and_shapes():
    # ../shared/spec/detectron2-vg-r101-keys.txt lists 535 tensors: 470 backbone, 6 RPN head, 50 res5,
    # 9 box predictor. Built on the meta device: no memory, no initialization.
    with torch.device("meta"):
        model = VGDetector(DetectorConfig())
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert len(shapes) == 535
    for prefix, count in (("backbone.", 470), ("proposal_generator.", 6), ("roi_heads.res5.", 50)):
        assert sum(name.startswith(prefix) for name in shapes) == count, prefix
    expected = {
        "backbone.stem.conv1.weight": (64, 3, 7, 7),
        "backbone.stem.conv1.norm.running_var": (64,),
        "backbone.res2.0.shortcut.weight": (256, 64, 1, 1),
        "backbone.res3.0.conv1.weight": (128, 256, 1, 1),
        "backbone.res4.0.shortcut.weight": (1024, 512, 1, 1),
        "backbone.res4.22.conv2.weight": (256, 256, 3, 3),
        "backbone.res4.22.conv3.norm.running_mean": (1024,),
        "proposal_generator.rpn_head.conv.weight": (512, 1024, 3, 3),
        "proposal_generator.rpn_head.conv.bias": (512,),
        "proposal_generator.rpn_head.objectness_logits.weight": (12, 512, 1, 1),
        "proposal_generator.rpn_head.anchor_deltas.bias": (48,),
        "roi_heads.res5.0.shortcut.weight": (2048, 1024, 1, 1),
        "roi_heads.res5.2.conv3.norm.bias": (2048,),
        "roi_heads.box_predictor.cls_score.weight": (1601, 2048),
        "roi_heads.box_predictor.bbox_pred.weight": (6400, 2048),
        "roi_heads.box_predictor.cls_embedding.weight": (1601, 256),
        "roi_heads.box_predictor.fc_attr.weight": (512, 2304),
        "roi_heads.box_predictor.attr_score.weight": (401, 512),
        "roi_heads.box_predictor.attr_score.bias": (401,),
    }
    assert {name: shapes.get(name) for name in expected} == expected
    assert {n for n in shapes if n.startswith("roi_heads.box_predictor.")} == {
        f"roi_heads.box_predictor.{layer}.{kind}"
        for layer in ("cls_score", "bbox_pred", "fc_attr", "attr_score")
        for kind in ("weight", "bias")
    } | {"roi_heads.box_predictor.cls_embedding.weight"}


def test_reads_the_fixture_checkpoint(tiny_config):
    arrays = read_detectron2_pkl(TINY / "model_final.pkl")
    assert len(arrays) == 280 and all(a.dtype == np.float32 for a in arrays.values())
    model = VGDetector(tiny_config)
    load_detectron2_checkpoint(model, TINY / "model_final.pkl")
    for name in (
        "backbone.stem.conv1.weight",
        "backbone.res4.5.conv3.norm.running_var",
        "roi_heads.box_predictor.attr_score.bias",
    ):
        assert torch.equal(model.state_dict()[name], torch.from_numpy(arrays[name])), name


class _Payload:
    """An object whose unpickling calls `function(*args)`."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "make, global_name",
    [
        (lambda marker: _Payload(os.system, f"touch {marker}"), "system"),
        (lambda marker: _Payload(eval, f"open({str(marker)!r}, 'w').write('pwned')"), "builtins.eval"),
        (lambda marker: _Payload(exec, f"open({str(marker)!r}, 'w').write('pwned')"), "builtins.exec"),
        (lambda marker: _Payload(Path.write_text, marker, "pwned"), "(builtins.getattr|pathlib.Path.write_text)"),
    ],
    ids=["os.system", "eval", "exec", "Path.write_text"],
)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_without_running(tmp_path, make, global_name, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    payload = {"model": {"backbone.stem.conv1.weight": np.zeros(3, np.float32), "x": make(marker)}}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(CheckpointError, match=f"evil.pkl: refusing to load global .*{global_name}"):
        read_detectron2_pkl(path)
    assert not marker.exists()


def test_object_arrays_and_raw_array_constructors_are_refused(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"model": {"a": np.array([1, "x"], dtype=object)}}, protocol=2))
    with pytest.raises(CheckpointError, match="objects.pkl: refusing a numpy dtype .O"):
        read_detectron2_pkl(path)
    # Records / void types are refused too: their pickled state can flag object fields.
    path.write_bytes(pickle.dumps({"a": np.zeros(2, dtype=[("x", "f4")])}, protocol=2))
    with pytest.raises(CheckpointError, match="objects.pkl: refusing a numpy dtype 'V4'"):
        read_detectron2_pkl(path)
    # The stream may name numpy.ndarray only as the type _reconstruct rebuilds, never call it.
    path.write_bytes(pickle.dumps({"a": _Payload(np.ndarray, (2,), np.dtype("float32"))}, protocol=2))
    with pytest.raises(CheckpointError, match="objects.pkl is not a readable pickle"):
        read_detectron2_pkl(path)


def test_accepts_flat_dicts_and_every_protocol(tmp_path):
    arrays = collections.OrderedDict(a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.float64(2.5) * np.ones(2))
    for protocol in (2, 4, 5):
        for content in (arrays, {"model": arrays, "__author__": "someone", "matching_heuristics": False}):
            path = tmp_path / f"p{protocol}.pkl"
            path.write_bytes(pickle.dumps(content, protocol=protocol))
            read = read_detectron2_pkl(path)
            assert list(read) == ["a", "b"] and np.array_equal(read["a"], arrays["a"])


def test_unreadable_files(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(2)}, path)  # a zip archive, not a pickle
    with pytest.raises(CheckpointError, match="model.pth"):
        read_detectron2_pkl(path)
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="holds a list"):
        read_detectron2_pkl(path)
    path.write_bytes(pickle.dumps({"model": {"a": 3}}))
    with pytest.raises(CheckpointError, match="entry 'a' is a int, not a numpy array"):
        read_detectron2_pkl(path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_detectron2_pkl(tmp_path / "missing.pkl")


def test_every_mismatch_is_reported_at_once(tiny_config):
    model = VGDetector(tiny_config)
    arrays = {name: t.numpy() for name, t in model.state_dict().items()}
    del arrays["roi_heads.box_predictor.cls_score.weight"]
    arrays["roi_heads.box_predictor.bbox_pred.bias"] = np.zeros(7, np.float32)
    arrays["roi_heads.mask_head.weight"] = np.zeros((2, 2), np.float32)
    arrays["pixel_mean"] = np.zeros((3, 1, 1), np.float32)  # a config value: ignored by name
    with pytest.raises(CheckpointError) as error:
        map_state_dict(arrays, model, DETECTRON2_KEYS, source="x.pkl")
    message = str(error.value)
    assert message.startswith("x.pkl does not fit the model:")
    assert "missing tensor roi_heads.box_predictor.cls_score.weight (401, 256)" in message
    assert "tensor roi_heads.box_predictor.bbox_pred.bias has shape (7,), the model expects (1600,)" in message
    assert "unexpected tensor roi_heads.mask_head.weight (2, 2)" in message
    assert "pixel_mean" not in message


def test_missing_norm_statistics_mean_zero_and_one(tiny_config):
    model = VGDetector(tiny_config)
    arrays = {name: t.numpy() + 0.5 for name, t in model.state_dict().items()}
    del arrays["backbone.stem.conv1.norm.running_mean"], arrays["backbone.stem.conv1.norm.running_var"]
    state = map_state_dict(arrays, model, DETECTRON2_KEYS, source="x.pkl")
    assert torch.equal(state["backbone.stem.conv1.norm.running_mean"], torch.zeros(16))
    assert torch.equal(state["backbone.stem.conv1.norm.running_var"], torch.ones(16))
    assert torch.equal(state["backbone.stem.conv1.norm.weight"], torch.full((16,), 1.5))
