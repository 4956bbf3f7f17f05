"""from_pretrained / save_pretrained: file formats, key sets, cross-class loading, the hub, bad checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from helpers import FIXTURES
from huggingface_hub import errors as hub_errors

import lxmert
from lxmert import CheckpointError, LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel

HUB_CONFIGS = FIXTURES / "hub-configs"


def tiny_model(tools, cls=LxmertForPreTraining, seed=0, **overrides):
    torch.manual_seed(seed)
    return tools.perturb(cls(LxmertConfig(**{**tools.TINY, **overrides})), seed).eval()


def scores(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out.question_answering_score if "question_answering_score" in out else out.pooled_output


# -- key sets of the public checkpoints --------------------------------------------------------------


@pytest.mark.parametrize(
    "hub_name, class_name",
    [
        ("lxmert-base-uncased", "LxmertForPreTraining"),
        ("lxmert-vqa-uncased", "LxmertForQuestionAnswering"),
        ("lxmert-gqa-uncased", "LxmertForQuestionAnswering"),
    ],
)
def test_state_dict_names_and_shapes_equal_transformers(hub_name, class_name):
    """The unc-nlp checkpoints are transformers state dicts: same names and shapes means they load with
    nothing missing and nothing unexpected."""
    values = json.loads((HUB_CONFIGS / f"{hub_name}.json").read_text())
    with torch.device("meta"):
        theirs = getattr(transformers, class_name)(transformers.LxmertConfig(**values))
        ours = getattr(lxmert, class_name)(LxmertConfig.from_dict(values))
    expected = {name: tuple(t.shape) for name, t in theirs.state_dict().items()}
    actual = {name: tuple(t.shape) for name, t in ours.state_dict().items()}
    assert actual == expected


# -- formats -----------------------------------------------------------------------------------------


def test_safetensors_round_trip(tmp_path, tools):
    model = tiny_model(tools)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = LxmertForPreTraining.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    # the MLM decoder is tied again, not a copy
    assert loaded.cls.predictions.decoder.weight is loaded.lxmert.embeddings.word_embeddings.weight
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LxmertForPreTraining"]


def test_pytorch_bin_round_trip(tmp_path, tools):
    model = tiny_model(tools, LxmertForQuestionAnswering)
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "pytorch_model.bin").is_file()
    loaded = LxmertForQuestionAnswering.from_pretrained(tmp_path)
    inputs = tools.make_inputs(99, 24)
    assert torch.equal(scores(model, inputs), scores(loaded, inputs))


def test_safetensors_preferred_over_bin(tmp_path, tools):
    tiny_model(tools, LxmertModel, seed=1).save_pretrained(tmp_path, safe_serialization=False)
    tiny_model(tools, LxmertModel, seed=2).save_pretrained(tmp_path)
    loaded = LxmertModel.from_pretrained(tmp_path)
    reference = tiny_model(tools, LxmertModel, seed=2)
    assert torch.equal(loaded.pooler.dense.weight, reference.pooler.dense.weight)


def test_weights_file_path_and_explicit_config(tmp_path, tools):
    model = tiny_model(tools, LxmertModel)
    model.save_pretrained(tmp_path / "a")
    loaded = LxmertModel.from_pretrained(tmp_path / "a" / "model.safetensors")
    assert torch.equal(loaded.pooler.dense.bias, model.pooler.dense.bias)
    shutil.copy(tmp_path / "a" / "model.safetensors", tmp_path / "weights.safetensors")
    with pytest.raises(OSError, match="no config.json next to"):
        LxmertModel.from_pretrained(tmp_path / "weights.safetensors")
    loaded = LxmertModel.from_pretrained(tmp_path / "weights.safetensors", config=model.config)
    assert torch.equal(loaded.pooler.dense.bias, model.pooler.dense.bias)


def test_dtype_device_and_config_overrides(tmp_path, tools):
    tiny_model(tools, LxmertModel).save_pretrained(tmp_path)
    model = LxmertModel.from_pretrained(tmp_path, dtype="bfloat16", device="cpu", output_hidden_states=True)
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    assert model.config.output_hidden_states and not model.training
    out = model(**tools.make_inputs(99, 24))
    assert out.language_hidden_states[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float12'"):
        LxmertModel.from_pretrained(tmp_path, dtype="float12")


def test_dtype_auto_keeps_the_checkpoint_dtype(tmp_path, tools):
    tiny_model(tools, LxmertModel).to(torch.float16).save_pretrained(tmp_path)
    assert LxmertModel.from_pretrained(tmp_path, dtype="auto").dtype == torch.float16
    assert LxmertModel.from_pretrained(tmp_path).dtype == torch.float32


# -- one class's checkpoint into another -------------------------------------------------------------


def test_pretraining_checkpoint_into_backbone_and_qa(tmp_path, tools):
    pretraining = tiny_model(tools, LxmertForPreTraining)
    pretraining.save_pretrained(tmp_path)
    backbone = LxmertModel.from_pretrained(tmp_path)
    qa = LxmertForQuestionAnswering.from_pretrained(tmp_path)
    inputs = tools.make_inputs(99, 24)
    with torch.no_grad():
        expected = pretraining(**inputs)
        assert torch.equal(backbone(**inputs).pooled_output, pretraining.lxmert(**inputs).pooled_output)
        assert torch.allclose(qa(**inputs).question_answering_score, expected.question_answering_score, atol=1e-6)


def test_backbone_checkpoint_into_qa_needs_strict_false(tmp_path, tools):
    backbone = tiny_model(tools, LxmertModel)
    backbone.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing tensors:\n  answer_head\.logit_fc\.0\.weight \(64, 32\)"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="initialized randomly: answer_head.logit_fc.0.weight"):
        qa = LxmertForQuestionAnswering.from_pretrained(tmp_path, strict=False)
    assert torch.equal(qa.lxmert.pooler.dense.weight, backbone.pooler.dense.weight)
    assert torch.equal(qa.answer_head.logit_fc[2].weight, torch.ones(64))  # freshly initialized LayerNorm


def test_transformers_backbone_checkpoint_loads_into_pretraining_heads(tmp_path, tools):
    torch.manual_seed(0)
    theirs = tools.perturb(transformers.LxmertModel(transformers.LxmertConfig(**tools.TINY)))
    theirs.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="cls.predictions.bias"):
        ours = LxmertForPreTraining.from_pretrained(tmp_path, strict=False)
    assert torch.equal(ours.lxmert.embeddings.word_embeddings.weight, theirs.embeddings.word_embeddings.weight)
    assert ours.cls.predictions.decoder.weight is ours.lxmert.embeddings.word_embeddings.weight


def test_old_gamma_beta_names_are_renamed(tmp_path, tools):
    model = tiny_model(tools, LxmertModel)
    state = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): t
        for name, t in model.state_dict().items()
    }
    assert any(name.endswith(".gamma") for name in state)
    model.config.save_pretrained(tmp_path)
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = LxmertModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.embeddings.LayerNorm.weight, model.embeddings.LayerNorm.weight)


# -- bad checkpoints ---------------------------------------------------------------------------------


def saved_state(tmp_path, tools, cls=LxmertForQuestionAnswering):
    model = tiny_model(tools, cls)
    model.config.save_pretrained(tmp_path)
    return {name: t.clone() for name, t in model.state_dict().items()}


def test_missing_tensor_is_named(tmp_path, tools):
    state = saved_state(tmp_path, tools)
    del state["lxmert.encoder.x_layers.1.visn_output.LayerNorm.bias"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"lxmert\.encoder\.x_layers\.1\.visn_output\.LayerNorm\.bias \(32,\)"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path)


def test_misshaped_tensor_is_named_with_both_shapes(tmp_path, tools):
    state = saved_state(tmp_path, tools)
    state["lxmert.encoder.visn_fc.visn_fc.weight"] = torch.zeros(32, 2048)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"visn_fc\.visn_fc\.weight: checkpoint \(32, 2048\), model \(32, 24\)"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path)
    # strict=False does not let a wrong shape through either
    with pytest.raises(CheckpointError, match="wrong shape"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path, strict=False)


def test_unexpected_tensor_is_named(tmp_path, tools):
    state = saved_state(tmp_path, tools)
    state["lxmert.encoder.mystery.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"unexpected tensors .*\n  lxmert\.encoder\.mystery\.weight \(3, 3\)"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="ignored tensors .*mystery"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path, strict=False)


def test_errors_quote_a_bounded_number_of_tensors(tmp_path, tools):
    state = saved_state(tmp_path, tools)
    for i in range(500):
        state[f"lxmert.encoder.{'mystery' * 500}.{i}.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"(?s)unexpected tensors .*\n  \.\.\. and 480 more$") as error:
        LxmertForQuestionAnswering.from_pretrained(tmp_path)
    assert len(str(error.value)) < 10_000  # 500 names of 3,500 characters each: 1.75 MB unbounded
    with pytest.warns(UserWarning, match=r"ignored tensors .* and 490 more") as warned:
        LxmertForQuestionAnswering.from_pretrained(tmp_path, strict=False)
    assert len(str(warned[0].message)) < 5_000


def test_truncated_checkpoints(tmp_path, tools):
    model = tiny_model(tools, LxmertModel)
    for safe in (True, False):
        folder = tmp_path / str(safe)
        model.save_pretrained(folder, safe_serialization=safe)
        weights = next(p for p in folder.iterdir() if p.name != "config.json")
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match=str(weights)):
            LxmertModel.from_pretrained(folder)


def test_not_a_checkpoint(tmp_path, tools):
    tiny_model(tools, LxmertModel).config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_text("these are not the weights you are looking for")
    with pytest.raises(CheckpointError, match="is not a readable PyTorch checkpoint"):
        LxmertModel.from_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        LxmertModel.from_pretrained(tmp_path)
    torch.save([1, 2, 3], tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds a list, not a dict of tensors"):
        LxmertModel.from_pretrained(tmp_path)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_pickled_code_is_not_run(tmp_path, tools):
    state = saved_state(tmp_path, tools, LxmertModel)
    marker = tmp_path / "pwned"
    state["surprise"] = _Exploit(marker)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="could run code"):
        LxmertModel.from_pretrained(tmp_path)
    assert not marker.exists()


def test_config_json_not_json(tmp_path, tools):
    tiny_model(tools, LxmertModel).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        LxmertModel.from_pretrained(tmp_path)


def test_folder_without_weights(tmp_path, tools):
    tiny_model(tools, LxmertModel).config.save_pretrained(tmp_path)
    with pytest.raises(OSError, match=r"no LXMERT weights in folder .*looked for model\.safetensors"):
        LxmertModel.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="is not an existing file or folder, nor a Hugging Face hub id"):
        LxmertModel.from_pretrained(str(tmp_path / "no" / "such" / "folder"))


# -- the hub -----------------------------------------------------------------------------------------


def fake_hub(monkeypatch, repo: Path, calls: list):
    """hf_hub_download served from a local folder (no network in tests)."""

    def download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        if not (repo / filename).is_file():
            raise hub_errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(repo / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)


def test_hub_id_downloads_through_huggingface_hub(tmp_path, tools, monkeypatch):
    model = tiny_model(tools, LxmertForQuestionAnswering)
    model.save_pretrained(tmp_path)
    calls = []
    fake_hub(monkeypatch, tmp_path, calls)
    loaded = LxmertForQuestionAnswering.from_pretrained("someone/tiny-lxmert", revision="v1")
    assert [c[1] for c in calls] == ["config.json", "model.safetensors"]
    assert calls[0][0] == "someone/tiny-lxmert" and calls[0][2] == {"revision": "v1"}
    inputs = tools.make_inputs(99, 24)
    assert torch.equal(scores(model, inputs), scores(loaded, inputs))


def test_hub_falls_back_to_pytorch_bin(tmp_path, tools, monkeypatch):
    tiny_model(tools, LxmertModel).save_pretrained(tmp_path, safe_serialization=False)
    calls = []
    fake_hub(monkeypatch, tmp_path, calls)
    LxmertModel.from_pretrained("someone/tiny-lxmert")
    assert [c[1] for c in calls] == ["config.json", "model.safetensors", "pytorch_model.bin"]


def test_offline_hub_error_names_the_id(monkeypatch):
    def offline(repo_id, filename, **kwargs):
        raise hub_errors.LocalEntryNotFoundError("outgoing traffic has been disabled")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(
        OSError, match=r"'unc-nlp/lxmert-vqa-uncased' is not a local folder .*hub is unreachable.*pass a local"
    ) as error:
        LxmertForQuestionAnswering.from_pretrained("unc-nlp/lxmert-vqa-uncased")
    assert "huggingface-cli download unc-nlp/lxmert-vqa-uncased" in str(error.value)
    assert "<id>" not in str(error.value)


def test_unknown_repository(monkeypatch):
    def missing(repo_id, filename, **kwargs):
        raise hub_errors.RepositoryNotFoundError("404")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", missing)
    with pytest.raises(OSError, match=r"'nobody/nothing' is not a local folder .*RepositoryNotFoundError"):
        LxmertModel.from_pretrained("nobody/nothing")


# -- answer vocabularies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hub_name, first_answers", [("lxmert-vqa-uncased", ["", "woods"]), ("lxmert-gqa-uncased", ["cat food", "elephant"])]
)
def test_public_qa_configs_get_the_shipped_answers(tmp_path, hub_name, first_answers):
    shutil.copy(HUB_CONFIGS / f"{hub_name}.json", tmp_path / "config.json")
    config = LxmertConfig.from_pretrained(tmp_path)
    assert len(config.id2label) == config.num_qa_labels
    assert [config.id2label[0], config.id2label[1]] == first_answers
    assert config.label2id[first_answers[1]] == 1


def test_loaded_vqa_model_has_labels_and_saves_them(tmp_path, tools):
    values = json.loads((HUB_CONFIGS / "lxmert-vqa-uncased.json").read_text())
    values.update({k: v for k, v in tools.TINY.items() if k != "num_qa_labels"})
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps(values))
    with torch.device("meta"):
        shapes = LxmertForQuestionAnswering(LxmertConfig.from_dict(values)).state_dict()
    torch.save({k: torch.randn(v.shape) for k, v in shapes.items()}, tmp_path / "src" / "pytorch_model.bin")
    model = LxmertForQuestionAnswering.from_pretrained(tmp_path / "src")
    assert model.config.id2label[1] == "woods"
    model.save_pretrained(tmp_path / "dst")
    written = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert len(written["id2label"]) == 3129 and written["id2label"]["1"] == "woods"
    assert written["label2id"]["woods"] == 1


def test_base_config_gets_no_labels():
    config = LxmertConfig.from_json_file(HUB_CONFIGS / "lxmert-base-uncased.json")
    assert lxmert.config.fill_answer_labels(config).id2label is None


def test_load_answers():
    assert len(lxmert.load_answers("vqa")) == 3129 and len(lxmert.load_answers("gqa")) == 1842
    with pytest.raises(ValueError, match="unknown answer list 'okvqa'"):
        lxmert.load_answers("okvqa")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"l_layers": 9999, "hidden_size": 96000}, r"hidden_size 96000, but its word embeddings are \d+ wide"),
        ({"l_layers": 9999}, r"l_layers=9999, but it holds \d+ such layers"),
        (
            {"x_layers": 0, "r_layers": 7},
            r"(?=.*x_layers=0, but it holds \d+ such layers)(?=.*r_layers=7, but it holds \d+)",
        ),
    ],
)
def test_a_config_the_checkpoint_does_not_fit_is_refused_before_the_model_is_built(tmp_path, tools, changes, message):
    """A hostile or mistaken config.json (thousands of layers, a huge width) next to a small checkpoint:
    refused from the checkpoint's own names and shapes, before any module of that size is constructed."""
    tiny_model(tools).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))
    built = []
    original_init = lxmert.modeling.LxmertLayer.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original_init(self, *args, **kwargs)

    lxmert.modeling.LxmertLayer.__init__ = counting_init
    try:
        with pytest.raises(CheckpointError, match=message):
            LxmertForPreTraining.from_pretrained(tmp_path)
    finally:
        lxmert.modeling.LxmertLayer.__init__ = original_init
    assert built == []  # nothing was built
