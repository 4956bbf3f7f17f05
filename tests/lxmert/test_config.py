"""LxmertConfig: the seed's defaults, hub configs, round trips through config.json, impossible values."""

from __future__ import annotations

import dataclasses
import json

import pytest
import transformers
from helpers import FIXTURES

from lxmert import LxmertConfig

HUB_CONFIGS = FIXTURES / "hub-configs"

# The defaults listed by the transformers v4.34 documentation of LxmertConfig (the project's seed).
SEED_DEFAULTS = dict(
    vocab_size=30522,
    hidden_size=768,
    num_attention_heads=12,
    num_qa_labels=9500,
    num_object_labels=1600,
    num_attr_labels=400,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    l_layers=9,
    x_layers=5,
    r_layers=5,
    visual_feat_dim=2048,
    visual_pos_dim=4,
    visual_loss_normalizer=6.67,
    task_matched=True,
    task_mask_lm=True,
    task_obj_predict=True,
    task_qa=True,
    visual_obj_loss=True,
    visual_attr_loss=True,
    visual_feat_loss=True,
    output_attentions=False,
    output_hidden_states=False,
)


def test_defaults_are_the_seeds():
    config = LxmertConfig()
    for name, value in SEED_DEFAULTS.items():
        assert getattr(config, name) == value, name


def test_defaults_equal_transformers_defaults():
    ours, theirs = LxmertConfig(), transformers.LxmertConfig()
    for name in SEED_DEFAULTS:
        assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize(
    "name, architecture, num_qa_labels",
    [
        ("lxmert-base-uncased", "LxmertForPreTraining", 9500),
        ("lxmert-vqa-uncased", "LxmertForQuestionAnswering", 3129),
        ("lxmert-gqa-uncased", "LxmertForQuestionAnswering", 1842),
    ],
)
def test_hub_configs_load(name, architecture, num_qa_labels):
    config = LxmertConfig.from_json_file(HUB_CONFIGS / f"{name}.json")
    assert config.num_qa_labels == num_qa_labels
    assert config.architectures == [architecture]
    assert (config.l_layers, config.x_layers, config.r_layers) == (9, 5, 5)
    # num_hidden_layers and model_type are derived, not kept as unknown keys
    assert config.extra == {}


def test_config_json_round_trip_keeps_unknown_keys(tmp_path):
    values = json.loads((HUB_CONFIGS / "lxmert-vqa-uncased.json").read_text())
    values.update(use_cache=False, my_project_note="kept", nested={"a": [1, 2]})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    config = LxmertConfig.from_json_file(path)
    assert config.my_project_note == "kept" and config.use_cache is False
    config.save_pretrained(tmp_path / "saved")
    written = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert written["my_project_note"] == "kept" and written["nested"] == {"a": [1, 2]}
    assert LxmertConfig.from_json_file(tmp_path / "saved" / "config.json") == config


def test_saved_config_loads_in_transformers(tmp_path):
    config = LxmertConfig(
        hidden_size=64, num_attention_heads=8, l_layers=3, hidden_act="relu", id2label={0: "yes", 1: "no"}
    )
    config.save_pretrained(tmp_path)
    theirs = transformers.LxmertConfig.from_pretrained(tmp_path)
    for name in SEED_DEFAULTS:
        assert getattr(theirs, name) == getattr(config, name), name
    assert theirs.id2label == {0: "yes", 1: "no"} and theirs.label2id == {"yes": 0, "no": 1}
    assert theirs.num_hidden_layers == {"vision": 5, "cross_encoder": 5, "language": 3}


def test_transformers_config_loads_here(tmp_path):
    transformers.LxmertConfig(x_layers=2, num_qa_labels=3, id2label={0: "a", 1: "b", 2: "c"}).save_pretrained(tmp_path)
    config = LxmertConfig.from_pretrained(tmp_path)
    assert config.x_layers == 2 and config.id2label == {0: "a", 1: "b", 2: "c"}
    assert config.label2id == {"a": 0, "b": 1, "c": 2}


def test_placeholder_labels_count_as_no_labels(tmp_path):
    # transformers writes {"0": "LABEL_0", "1": "LABEL_1"} when a config has no labels
    transformers.LxmertConfig(num_qa_labels=5).save_pretrained(tmp_path)
    assert LxmertConfig.from_pretrained(tmp_path).id2label is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_size": 100, "num_attention_heads": 12}, "not divisible by num_attention_heads"),
        ({"l_layers": -1}, "l_layers must be a non-negative integer"),
        ({"x_layers": -2}, "x_layers must be a non-negative integer"),
        ({"r_layers": 1.5}, "r_layers must be a non-negative integer"),
        ({"hidden_act": "swishy"}, "hidden_act 'swishy' is not a known activation"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"vocab_size": -5}, "vocab_size must be a positive integer"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must lie in [0, 1)"),
        ({"l_layers": 0, "x_layers": 0}, "at least one layer on each stream"),
        ({"id2label": {0: "a", 2: "c"}}, "no gaps"),
    ],
)
def test_impossible_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        LxmertConfig(**kwargs)


def test_config_json_that_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 768,,}')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        LxmertConfig.from_json_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        LxmertConfig.from_json_file(path)


def test_bad_value_in_config_json_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 10, "num_attention_heads": 3}))
    with pytest.raises(ValueError, match=rf"{path}.*not divisible"):
        LxmertConfig.from_json_file(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(OSError, match="cannot read LXMERT config"):
        LxmertConfig.from_json_file(tmp_path / "nope.json")
    with pytest.raises(OSError, match="has no config.json"):
        LxmertConfig.from_pretrained(tmp_path)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'hiden_size'"):
        LxmertConfig().hiden_size  # noqa: B018


def test_constructor_takes_unknown_keys_and_label2id_like_transformers(tmp_path):
    ours = LxmertConfig(
        num_qa_labels=2, label2id={"yes": 0, "no": 1}, my_note="kept", num_labels=2, transformers_version="4.0"
    )
    assert ours.id2label == {0: "yes", 1: "no"} and ours.label2id == {"yes": 0, "no": 1}
    assert ours.my_note == "kept" and ours.extra == {"my_note": "kept"}
    theirs = transformers.LxmertConfig(num_qa_labels=2, label2id={"yes": 0, "no": 1}, my_note="kept")
    assert theirs.my_note == "kept"
    ours.save_pretrained(tmp_path)
    loaded = transformers.LxmertConfig.from_pretrained(tmp_path)
    assert loaded.my_note == "kept" and loaded.label2id == {"yes": 0, "no": 1}
    assert LxmertConfig.from_pretrained(tmp_path) == ours
    assert dataclasses.replace(ours, hidden_size=96).extra == {"my_note": "kept"}
    assert LxmertConfig(1000).vocab_size == 1000  # positional, in field order, like transformers
    with pytest.raises(TypeError, match="two values for 'vocab_size'"):
        LxmertConfig(1000, vocab_size=10)
    with pytest.raises(ValueError, match="hidden_size \\(10\\) is not divisible"):
        LxmertConfig(hidden_size=10, num_attention_heads=3, some_key=1)
