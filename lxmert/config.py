"""LxmertConfig: the architecture and training switches of an LXMERT model, read from / written to config.json.

The field names and defaults are those of the transformers `LxmertConfig`, so the hub configs of
`unc-nlp/lxmert-base-uncased`, `-vqa-uncased` and `-gqa-uncased` load as they are, and a config.json
written here loads in transformers. Keys this class does not know are kept in `extra` and written back.
`fill_answer_labels` gives the configs of the public question-answering checkpoints, which have no
labels, the answer lists shipped in lxmert/data.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from lxmert.activations import ACTIVATIONS
from lxmert.hub import CONFIG_NAME, resolve_config_file
from lxmert.labels import answers_of_size

# Keys that transformers' PretrainedConfig writes into every config.json. They say nothing about the
# architecture; they are accepted and kept out of `extra`; to_dict writes model_type (and
# num_hidden_layers) again and leaves the others out (transformers derives num_labels from id2label).
_DERIVED_KEYS = ("model_type", "num_labels", "transformers_version", "num_hidden_layers")


@dataclass(init=False)
class LxmertConfig:
    """Hyper-parameters of LXMERT; defaults are those of `unc-nlp/lxmert-base-uncased`.

    Like transformers' configs, the constructor takes keywords it does not know (kept in `extra` and
    written back to config.json); `label2id` gives `id2label` when that is not given; the keys every
    transformers config.json carries (model_type, num_labels, ...) are accepted and not kept.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    num_qa_labels: int = 9500
    num_object_labels: int = 1600
    num_attr_labels: int = 400
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    l_layers: int = 9
    x_layers: int = 5
    r_layers: int = 5
    visual_feat_dim: int = 2048
    visual_pos_dim: int = 4
    visual_loss_normalizer: float = 6.67
    task_matched: bool = True
    task_mask_lm: bool = True
    task_obj_predict: bool = True
    task_qa: bool = True
    visual_obj_loss: bool = True
    visual_attr_loss: bool = True
    visual_feat_loss: bool = True
    output_attentions: bool = False
    output_hidden_states: bool = False
    return_dict: bool = True
    id2label: dict[int, str] | None = None
    architectures: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = [f.name for f in dataclasses.fields(self)]
        if len(args) > len(names):
            raise TypeError(f"LxmertConfig takes at most {len(names)} positional arguments, got {len(args)}")
        for name, value in zip(names, args, strict=False):
            if name in kwargs:
                raise TypeError(f"LxmertConfig got two values for {name!r}")
            kwargs[name] = value
        extra = dict(kwargs.pop("extra", None) or {})
        label2id = kwargs.pop("label2id", None)
        if label2id and kwargs.get("id2label") is None:
            kwargs["id2label"] = {int(i): label for label, i in label2id.items()}
        for key in [k for k in kwargs if k not in names]:
            value = kwargs.pop(key)
            if key not in _DERIVED_KEYS:
                extra[key] = value
        for f in dataclasses.fields(self):
            if f.name in kwargs:
                value = kwargs[f.name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            object.__setattr__(self, f.name, value)
        self.extra = extra
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        self.validate()

    # -- validation -------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ValueError naming the first impossible value."""
        positive = (
            "vocab_size",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "visual_feat_dim",
            "visual_pos_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LxmertConfig.{name} must be a positive integer, got {value!r}")
        for name in ("num_qa_labels", "num_object_labels", "num_attr_labels", "l_layers", "x_layers", "r_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"LxmertConfig.{name} must be a non-negative integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"LxmertConfig.hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head needs hidden_size / num_attention_heads dimensions"
            )
        if self.l_layers + self.x_layers == 0 or self.r_layers + self.x_layers == 0:
            raise ValueError(
                "LxmertConfig needs at least one layer on each stream: l_layers + x_layers and "
                f"r_layers + x_layers must be > 0 (got l_layers={self.l_layers}, x_layers={self.x_layers}, "
                f"r_layers={self.r_layers})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"LxmertConfig.hidden_act {self.hidden_act!r} is not a known activation; "
                f"choose one of {', '.join(ACTIVATIONS)}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"LxmertConfig.{name} must lie in [0, 1), got {value!r}")
        for name in ("initializer_range", "layer_norm_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LxmertConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.id2label is not None and sorted(self.id2label) != list(range(len(self.id2label))):
            raise ValueError("LxmertConfig.id2label must map the ids 0..n-1 to labels, with no gaps")

    # -- labels -----------------------------------------------------------------------------------

    @property
    def label2id(self) -> dict[str, int] | None:
        if self.id2label is None:
            return None
        return {label: i for i, label in self.id2label.items()}

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    # -- unknown keys -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: unknown config.json keys read like attributes.
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"LxmertConfig has no attribute {name!r}")

    # -- dict / json ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> LxmertConfig:
        """Build from a config.json dict; unknown keys go to `extra`, `overrides` win."""
        values = {**values, **overrides}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {k: v for k, v in values.items() if k in known}
        extra = dict(values.get("extra", {}))
        extra.update({k: v for k, v in values.items() if k not in known and k not in _DERIVED_KEYS and k != "extra"})
        extra.pop("label2id", None)  # derived from id2label
        if "use_return_dict" in extra:
            kwargs.setdefault("return_dict", bool(extra.pop("use_return_dict")))
        kwargs["id2label"] = _real_labels(kwargs.get("id2label"))
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The config.json content, in transformers' layout (loads in transformers' LxmertConfig)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        values = {**self.extra, **values}
        values["model_type"] = "lxmert"
        values["num_hidden_layers"] = {
            "vision": self.r_layers,
            "cross_encoder": self.x_layers,
            "language": self.l_layers,
        }
        if self.id2label is None:
            del values["id2label"]
        else:
            values["id2label"] = {str(i): label for i, label in sorted(self.id2label.items())}
            values["label2id"] = {label: i for i, label in sorted(self.id2label.items())}
        if self.architectures is None:
            del values["architectures"]
        return dict(sorted(values.items()))

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> LxmertConfig:
        """Read a config.json; a missing file, invalid JSON or bad values raise an error naming the file."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise OSError(f"cannot read LXMERT config {os.fspath(path)!r}: {e.strerror or e}") from e
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{os.fspath(path)} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
            ) from e
        if not isinstance(values, dict):
            raise ValueError(f"{os.fspath(path)} must hold a JSON object, found {type(values).__name__}")
        try:
            return cls.from_dict(values, **overrides)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{os.fspath(path)}: {e}") from e

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `directory/config.json`."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> LxmertConfig:
        """Read config.json from a local folder / file, or a hub id (through huggingface_hub)."""
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in _HUB_KWARGS}
        config_path = resolve_config_file(name_or_path, **kwargs)
        return fill_answer_labels(LxmertConfig.from_json_file(config_path, **overrides))


_HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token")


def _real_labels(id2label: dict | None) -> dict[int, str] | None:
    """None for transformers' placeholder labels ({0: "LABEL_0", 1: "LABEL_1", ...})."""
    if not id2label:
        return None
    if all(str(label) == f"LABEL_{int(i)}" for i, label in id2label.items()):
        return None
    return id2label


def fill_answer_labels(config: LxmertConfig) -> LxmertConfig:
    """Give a config without labels the shipped answer list whose size equals its num_qa_labels.

    The sizes identify the heads of the public checkpoints (3,129 = VQA, 1,842 = GQA); a config that
    already has labels, or another answer count, is left alone.
    """
    if config.id2label is None:
        answers = answers_of_size(config.num_qa_labels)
        if answers is not None:
            config.id2label = dict(enumerate(answers))
    return config
