"""Checkpoints: detectron2 names, the restricted unpickler, every format by name (folders, files, hub ids),
saving, and error reports."""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURES, TINY_DETECTOR
from huggingface_hub import errors as hub_errors
from safetensors import safe_open
from safetensors.torch import save_file

from extract.checkpoints import (
    CheckpointError,
    load_detectron2_checkpoint,
    read_checkpoint,
    read_detectron2_pkl,
    save_pretrained,
)
from extract.checkpoints.key_maps import DETECTRON2_KEYS, map_state_dict
from extract.model import ConfigError, DetectorConfig, VGDetector

KEY_LIST = FIXTURES / "detectron2-vg-r101-keys.txt"


@pytest.fixture(scope="module")
def tiny_config():
    return DetectorConfig.from_yaml(TINY_DETECTOR / "config.yaml")


def test_full_model_has_detectron2_names_and_shapes():
    # tests/fixtures/detectron2-vg-r101-keys.txt (from the project's spec) lists the 535 tensors of the
    # full model: 470 backbone, 6 RPN head, 50 res5, 9 box predictor. Built on the meta device: no
    # memory, no initialization.
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


def test_full_model_equals_the_spec_key_list():
    listed = {}
    for line in KEY_LIST.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split(" ", 1)
            listed[name] = tuple(int(n) for n in re.findall(r"\d+", shape))
    with torch.device("meta"):
        model = VGDetector(DetectorConfig())
    assert {name: tuple(t.shape) for name, t in model.state_dict().items()} == listed


def test_reads_the_fixture_checkpoint(tiny_config):
    arrays = read_detectron2_pkl(TINY_DETECTOR / "model_final.pkl")
    assert len(arrays) == 280 and all(a.dtype == np.float32 for a in arrays.values())
    model = VGDetector(tiny_config)
    load_detectron2_checkpoint(model, TINY_DETECTOR / "model_final.pkl")
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
    assert message.startswith("x.pkl does not fit the model (1 mis-shaped, 1 missing, 1 unexpected tensors):")
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


# -- every format, by name ----------------------------------------------------------------------------

PORT = TINY_DETECTOR.parent / "hf-frcnn-port-tiny"
PORT_EXTRAS = ("num_batches_tracked", "anchor_generator.cell_anchors")


def d2_state():
    return {name: torch.from_numpy(a) for name, a in read_detectron2_pkl(TINY_DETECTOR / "model_final.pkl").items()}


def port_bin():
    return torch.load(PORT / "pytorch_model.bin", weights_only=True)


def port_state():
    """The port's tensors under our names: its extras (norm counters, anchors) dropped."""
    return {name: t for name, t in port_bin().items() if not any(extra in name for extra in PORT_EXTRAS)}


def assert_same_tensors(state, expected):
    assert sorted(state) == sorted(expected)
    for name, tensor in expected.items():
        assert state[name].dtype == torch.float32 and torch.equal(state[name], tensor), name


def copy_files(folder, *files):
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in files:
        (folder / name).write_bytes(Path(source).read_bytes())
    return folder


def test_detectron2_folder(tiny_config):
    checkpoint = read_checkpoint(TINY_DETECTOR)
    config, state = checkpoint.config, checkpoint.state_dict
    assert config == tiny_config
    assert_same_tensors(state, d2_state())
    VGDetector(config).load_state_dict(state, strict=True)


def test_detectron2_folder_with_other_file_names(tmp_path, tiny_config):
    # The only *.yaml and the only *.pkl of a folder are its config and weights.
    folder = copy_files(
        tmp_path, (TINY_DETECTOR / "model_final.pkl", "vg_attr.pkl"), (TINY_DETECTOR / "config.yaml", "vg.yaml")
    )
    checkpoint = read_checkpoint(folder)
    config, state = checkpoint.config, checkpoint.state_dict
    assert config == tiny_config
    assert_same_tensors(state, d2_state())


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_detectron2_pth(tmp_path, tiny_config, zip_format):
    # detectron2's Checkpointer writes the model next to optimizer / scheduler state and the iteration.
    content = {"model": d2_state(), "optimizer": {"state": {}, "param_groups": [{"lr": 0.02}]}, "iteration": 7}
    copy_files(tmp_path, (TINY_DETECTOR / "config.yaml", "config.yaml"))
    torch.save(content, tmp_path / "model_final.pth", _use_new_zipfile_serialization=zip_format)
    loaded = read_checkpoint(tmp_path)
    assert (loaded.format, loaded.weights.name, loaded.config) == ("detectron2", "model_final.pth", tiny_config)
    assert_same_tensors(loaded.state_dict, d2_state())


def test_lone_weights_file_with_a_config(tmp_path, tiny_config):
    path = copy_files(tmp_path / "lone", (TINY_DETECTOR / "model_final.pkl", "weights.pkl")) / "weights.pkl"
    for config in (tiny_config, TINY_DETECTOR / "config.yaml", str(TINY_DETECTOR / "config.yaml")):
        checkpoint = read_checkpoint(path, config=config)
        loaded, state = checkpoint.config, checkpoint.state_dict
        assert loaded == tiny_config
        assert_same_tensors(state, d2_state())
    # Without one: the full VG ResNet-101 config, which does not fit these tiny weights.
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert "weights.pkl does not fit the model" in message and "the default config (full VG ResNet-101)" in message
    assert "tensor backbone.stem.conv1.weight has shape (16, 3, 7, 7), the model expects (64, 3, 7, 7)" in message


def test_given_config_replaces_the_one_found(tmp_path):
    wrong = dataclasses.replace(DetectorConfig.from_yaml(TINY_DETECTOR / "config.yaml"), num_attributes=7)
    with pytest.raises(CheckpointError, match=r"attr_score\.weight has shape \(101, 64\), the model expects \(8, 64\)"):
        read_checkpoint(TINY_DETECTOR, config=wrong)


def test_hf_port_folder_and_file():
    for source in (PORT, PORT / "pytorch_model.bin", PORT / "config.yaml"):
        loaded = read_checkpoint(source)
        assert loaded.format == "hf-port" and loaded.weights.name == "pytorch_model.bin"
        assert loaded.config.port_nms_thresholds == (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        assert_same_tensors(loaded.state_dict, port_state())
        VGDetector(loaded.config).load_state_dict(loaded.state_dict, strict=True)


def test_hf_port_legacy_names_and_counter_shapes(tmp_path):
    # gamma / beta norm names (renamed by the port's loader) and num_batches_tracked of shape (1,)
    # (what the port's own converter writes) load the same.
    legacy = {}
    for name, tensor in port_bin().items():
        if name.endswith("num_batches_tracked"):
            tensor = torch.tensor([0])
        legacy[re.sub(r"\.norm\.weight$", ".norm.gamma", re.sub(r"\.norm\.bias$", ".norm.beta", name))] = tensor
    assert sum(name.endswith("gamma") for name in legacy) == 53
    copy_files(tmp_path, (PORT / "config.yaml", "config.yaml"))
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    state = read_checkpoint(tmp_path).state_dict
    assert_same_tensors(state, port_state())


def test_hf_port_anchors_are_checked(tmp_path):
    copy_files(tmp_path, (PORT / "config.yaml", "config.yaml"))
    tensors = port_bin()
    anchors = tensors["proposal_generator.anchor_generator.cell_anchors.0"]
    tensors["proposal_generator.anchor_generator.cell_anchors.0"] = anchors + 1e-5  # float noise: accepted
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    read_checkpoint(tmp_path)
    tensors["proposal_generator.anchor_generator.cell_anchors.0"] = anchors * 1.5  # other anchor sizes
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: .*cell_anchors\.0 holds other cell anchors"):
        read_checkpoint(tmp_path)
    config = dataclasses.replace(DetectorConfig.from_yaml(PORT / "config.yaml"), anchor_aspect_ratios=(0.5, 1.0))
    with pytest.raises(CheckpointError, match=r"holds \(12, 4\) cell anchors; the config gives \(8, 4\)"):
        read_checkpoint(PORT, config=config)


def test_save_pretrained_writes_our_format(tmp_path, tiny_config):
    save_pretrained(tiny_config, d2_state(), tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.yaml", "model.safetensors"]
    with safe_open(tmp_path / "ours" / "model.safetensors", framework="pt") as file:
        assert file.metadata() == {"format": "pt", "checkpoint": "extract.VGDetector", "checkpoint_version": "1"}
    loaded = read_checkpoint(tmp_path / "ours")
    assert (loaded.format, loaded.config) == ("safetensors", tiny_config)
    assert_same_tensors(loaded.state_dict, d2_state())
    # The weights file alone works too (its folder's config.yaml is found).
    assert read_checkpoint(tmp_path / "ours" / "model.safetensors").config == tiny_config


def test_save_pretrained_refuses_what_would_not_load(tmp_path, tiny_config):
    state = d2_state()
    del state["roi_heads.box_predictor.cls_score.bias"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"(?s)missing tensor roi_heads.box_predictor.cls_score.bias.*extra"):
        save_pretrained(tiny_config, state, tmp_path)
    assert not any(tmp_path.iterdir())


def test_newer_format_version_is_refused(tmp_path, tiny_config):
    save_pretrained(tiny_config, d2_state(), tmp_path)
    metadata = {"format": "pt", "checkpoint": "extract.VGDetector", "checkpoint_version": "2"}
    save_file(d2_state(), tmp_path / "model.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="format version '2'; this version of extract reads version 1"):
        read_checkpoint(tmp_path)


def test_other_architectures_are_named(tmp_path, tiny_config):
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(TINY_DETECTOR, config=dataclasses.replace(tiny_config, num_classes=1600))
    message = str(error.value)
    assert "model_final.pkl does not fit the model (5 mis-shaped tensors):" in message
    assert "tensor roi_heads.box_predictor.cls_score.weight has shape (401, 256), the model expects (1601, 256)" in (
        message
    )
    # Depth 50 weights under a depth 101 config: res4 blocks 6..22 missing; the first ones are named.
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(TINY_DETECTOR, config=dataclasses.replace(tiny_config, resnet_depth=101))
    message = str(error.value)
    assert (
        "(153 missing tensors)" in message and "missing tensor backbone.res4.6.conv1.weight (32, 128, 1, 1)" in message
    )
    assert "... and 143 more like that" in message and len(message.splitlines()) == 13


class _Marker:
    """Unpickling it would create `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.mark.parametrize(
    "save",
    [
        lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2)),
        lambda obj, path: torch.save(obj, path),
        lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False),
    ],
    ids=["plain-pickle", "torch-zip", "torch-legacy"],
)
def test_malicious_bin_is_refused_without_running(tmp_path, save):
    marker = tmp_path / "marker"
    copy_files(tmp_path, (PORT / "config.yaml", "config.yaml"))
    save({"evil": _Marker(marker), "backbone.stem.conv1.weight": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: refusing .*(posix|os)\.system"):
        read_checkpoint(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name, content",
    [
        ("pytorch_model.bin", b""),
        ("pytorch_model.bin", lambda: (PORT / "pytorch_model.bin").read_bytes()[:100_000]),
        ("model_final.pkl", lambda: (TINY_DETECTOR / "model_final.pkl").read_bytes()[:100_000]),
        ("model_final.pkl", b"MODEL:\n  WEIGHTS: x\n"),
        ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"),
        ("model.safetensors", b"x"),
    ],
    ids=["empty", "truncated-zip", "truncated-pickle", "text", "bad-safetensors", "tiny-safetensors"],
)
def test_unreadable_weights_name_the_file(tmp_path, name, content):
    copy_files(tmp_path, (TINY_DETECTOR / "config.yaml", "config.yaml"))
    (tmp_path / name).write_bytes(content() if callable(content) else content)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / name))):
        read_checkpoint(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no detector weights in folder .*it holds notes.txt"):
        (tmp_path / "notes.txt").write_text("hi")
        read_checkpoint(tmp_path)
    copy_files(tmp_path, (TINY_DETECTOR / "model_final.pkl", "a.pkl"), (TINY_DETECTOR / "model_final.pkl", "b.pkl"))
    with pytest.raises(CheckpointError, match=r"several .pkl files \(a.pkl, b.pkl\)"):
        read_checkpoint(tmp_path)
    (tmp_path / "b.pkl").unlink()
    copy_files(tmp_path, (TINY_DETECTOR / "config.yaml", "x.yaml"), (TINY_DETECTOR / "config.yaml", "y.yaml"))
    with pytest.raises(CheckpointError, match=r"several YAML files \(x.yaml, y.yaml\) and no config.yaml"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an existing file or folder, nor a Hugging Face hub id"):
        read_checkpoint(tmp_path / "missing" / "model.pkl")


def test_bad_yaml_names_the_file(tmp_path):
    copy_files(tmp_path, (TINY_DETECTOR / "model_final.pkl", "model_final.pkl"))
    (tmp_path / "config.yaml").write_text("MODEL:\n  RESNETS:\n    DEPHT: 50\n")
    with pytest.raises(ConfigError, match=r"config.yaml: unknown config key MODEL\.RESNETS\.DEPHT"):
        read_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match=r"config.yaml: unknown config key MODEL\.RESNETS\.DEPHT"):
        read_checkpoint(TINY_DETECTOR, config=tmp_path / "config.yaml")  # a given YAML replaces the folder's


# -- the Hugging Face hub -----------------------------------------------------------------------------


def fake_hub(monkeypatch, repos, calls):
    """hf_hub_download serving repo id -> local folder; a missing file is a 404."""

    def download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        path = repos[repo_id] / filename
        if not path.is_file():
            raise hub_errors.EntryNotFoundError(f"404 Client Error: {filename}")
        return str(path)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)


def test_hub_port_repository(monkeypatch, tmp_path):
    calls = []
    fake_hub(monkeypatch, {"unc-nlp/frcnn-vg-finetuned": PORT}, calls)
    checkpoint = read_checkpoint(
        "unc-nlp/frcnn-vg-finetuned", revision="abc123", cache_dir=tmp_path, token="hf_x", local_files_only=None
    )
    config, state = checkpoint.config, checkpoint.state_dict
    assert [c[1] for c in calls] == ["config.yaml", "model.safetensors", "pytorch_model.bin"]
    assert all(c[2] == {"revision": "abc123", "cache_dir": tmp_path, "token": "hf_x"} for c in calls)
    assert config == DetectorConfig.from_yaml(PORT / "config.yaml")
    assert_same_tensors(state, port_state())


def test_hub_repository_of_ours(monkeypatch, tmp_path, tiny_config):
    save_pretrained(tiny_config, d2_state(), tmp_path)
    calls = []
    fake_hub(monkeypatch, {"someone/vg-tiny": tmp_path}, calls)
    checkpoint = read_checkpoint("someone/vg-tiny", local_files_only=False)
    config, state = checkpoint.config, checkpoint.state_dict
    assert [(c[1], c[2]) for c in calls] == [
        (n, {"local_files_only": False}) for n in ("config.yaml", "model.safetensors")
    ]
    assert config == tiny_config
    assert_same_tensors(state, d2_state())
    # With config= the repository's config.yaml is not fetched.
    calls.clear()
    assert read_checkpoint("someone/vg-tiny", config=tiny_config).config == tiny_config
    assert [c[1] for c in calls] == ["model.safetensors"]


@pytest.mark.parametrize(
    "error, match",
    [
        (hub_errors.LocalEntryNotFoundError("outgoing traffic has been disabled"), "hub is unreachable"),
        (hub_errors.RepositoryNotFoundError("404"), "RepositoryNotFoundError"),
    ],
    ids=["offline", "no-such-repo"],
)
def test_hub_failures_name_the_id(monkeypatch, error, match):
    def fail(repo_id, filename, **kwargs):
        raise error

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fail)
    with pytest.raises(
        OSError, match=rf"'unc-nlp/frcnn-vg-finetuned' is not a local file or folder.*{match}.*local folder"
    ):
        read_checkpoint("unc-nlp/frcnn-vg-finetuned")


def test_hub_cache_without_network(tmp_path, tiny_config):
    # A real huggingface_hub look-up, local_files_only: served from the cache layout, never the network.
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=r"'someone/vg-tiny' is not a local .*not have it.*pass a local folder"):
        read_checkpoint("someone/vg-tiny", cache_dir=cache, local_files_only=True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--vg-tiny"
    save_pretrained(tiny_config, d2_state(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    checkpoint = read_checkpoint("someone/vg-tiny", cache_dir=cache, local_files_only=True)
    config, state = checkpoint.config, checkpoint.state_dict
    assert config == tiny_config
    assert_same_tensors(state, d2_state())
