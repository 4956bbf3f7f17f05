"""lxmert-convert-detector (extract.checkpoints.convert): every source format into ours, round trips, refusals."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from helpers import FIXTURES, TINY_DETECTOR, run_help

from extract.checkpoints import load_detector, read_checkpoint, read_detectron2_pkl
from extract.checkpoints.convert import main
from extract.images import load_image
from extract.model import DetectorConfig, VGDetector
from extract.preprocessing import preprocess

PORT = FIXTURES / "hf-frcnn-port-tiny"


def assert_same_tensors(state, expected):
    assert sorted(state) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: lxmert-convert-detector" in text and "SRC" in text and "DST" in text
    assert "examples:" in text and "lxmert-convert-detector unc-nlp/frcnn-vg-finetuned" in text
    assert "--overwrite" in text and "--config YAML" in text


def test_detectron2_round_trip_gives_the_same_tensors_and_outputs(tmp_path, capsys):
    assert main([str(TINY_DETECTOR), str(tmp_path / "ours")]) == 0
    out = capsys.readouterr().out
    assert "(detectron2; config: " in out and "280 tensors, ResNet-50 C4, 400 classes, 100 attributes" in out
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.yaml", "model.safetensors"]

    checkpoint = read_checkpoint(tmp_path / "ours")
    config, state = checkpoint.config, checkpoint.state_dict
    assert config == DetectorConfig.from_yaml(TINY_DETECTOR / "config.yaml")
    assert_same_tensors(
        state, {n: torch.from_numpy(a) for n, a in read_detectron2_pkl(TINY_DETECTOR / "model_final.pkl").items()}
    )

    # A small input and 20 proposals keep the two forward passes fast (res5 on 300 proposals dominates).
    fast = dataclasses.replace(config, rpn_post_nms_topk_test=20)
    converted = VGDetector(fast)
    converted.load_state_dict(state, strict=True)
    original = load_detector(TINY_DETECTOR / "model_final.pkl", config=fast)
    image = preprocess(load_image(FIXTURES / "images" / "000456.jpg"), min_size=160, max_size=240)
    with torch.inference_mode():
        ours, reference = converted([image])[0], original([image])[0]
    for field in ("proposal_boxes", "objectness_logits", "pooled_features", "class_logits", "attribute_logits"):
        assert torch.equal(getattr(ours, field), getattr(reference, field)), field


def test_hf_port_round_trip_keeps_its_tensors_and_settings(tmp_path, capsys):
    assert main([str(PORT), str(tmp_path / "ours")]) == 0
    assert "(hf-port; config: " in capsys.readouterr().out
    checkpoint = read_checkpoint(tmp_path / "ours")
    config, state = checkpoint.config, checkpoint.state_dict
    assert config == DetectorConfig.from_yaml(PORT / "config.yaml")
    assert config.port_nms_thresholds == (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9) and config.port_max_detections == 36
    # The port's tensors under the same names, less its extras (norm counters, stored anchors).
    port = torch.load(PORT / "pytorch_model.bin", weights_only=True)
    expected = {n: t for n, t in port.items() if "num_batches_tracked" not in n and "cell_anchors" not in n}
    assert len(port) - len(expected) == 54
    assert_same_tensors(state, expected)


def test_lone_pkl_with_config(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "faster_rcnn.pkl").write_bytes((TINY_DETECTOR / "model_final.pkl").read_bytes())
    assert (
        main(
            [
                str(tmp_path / "src" / "faster_rcnn.pkl"),
                str(tmp_path / "out"),
                "--config",
                str(TINY_DETECTOR / "config.yaml"),
            ]
        )
        == 0
    )
    assert read_checkpoint(tmp_path / "out").config == DetectorConfig.from_yaml(TINY_DETECTOR / "config.yaml")


def test_refuses_a_non_empty_destination_unless_overwrite(tmp_path, capsys):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "notes.txt").write_text("keep me")
    assert main([str(TINY_DETECTOR), str(dst)]) == 1
    assert f"lxmert-convert-detector: error: DST {dst} is not empty; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in dst.iterdir()) == ["notes.txt"]
    assert main([str(TINY_DETECTOR), str(dst), "--overwrite"]) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["config.yaml", "model.safetensors", "notes.txt"]
    (dst / "file").write_text("")
    assert main([str(TINY_DETECTOR), str(dst / "file")]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main([str(tmp_path / "no" / "such.pkl"), str(tmp_path / "out")]) == 1
    assert "error: " in capsys.readouterr().err and not (tmp_path / "out").exists()
    # No config next to the weights: the default (full-size) config does not fit them.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model_final.pkl").write_bytes((TINY_DETECTOR / "model_final.pkl").read_bytes())
    assert main([str(tmp_path / "bad"), str(tmp_path / "out2")]) == 1
    assert "does not fit the model" in capsys.readouterr().err


def test_hub_id_offline_and_not_cached(tmp_path, capsys):
    args = ["unc-nlp/frcnn-vg-finetuned", str(tmp_path / "out"), "--local-files-only", "--cache-dir", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "'unc-nlp/frcnn-vg-finetuned' is not a local file or folder" in err and "pass a local folder" in err


def test_hub_options_reach_the_hub(monkeypatch, tmp_path):
    from huggingface_hub import errors

    calls = []

    def download(repo_id, filename, **kwargs):
        calls.append(kwargs)
        if not (PORT / filename).is_file():
            raise errors.EntryNotFoundError(filename)
        return str(PORT / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    assert main(["unc-nlp/frcnn-vg-finetuned", str(tmp_path / "out"), "--revision", "v1", "--cache-dir", "c"]) == 0
    assert calls and all(kwargs == {"revision": "v1", "cache_dir": "c"} for kwargs in calls)


def test_runs_as_a_module(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "extract.checkpoints.convert", str(TINY_DETECTOR), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "280 tensors" in run.stdout and (tmp_path / "out" / "model.safetensors").is_file()


def test_help_loads_neither_torch_nor_the_network():
    # `lxmert-convert-detector --help` took about 5 s when the package imported every reader (and torch) up front.
    code, printed, loaded = run_help("extract.checkpoints.convert", ["--help"])
    assert code == 0 and not {"torch", "numpy", "extract.model", "extract.checkpoints.formats"} & loaded
    assert "lxmert-convert-detector" in printed and "model.safetensors" in printed
