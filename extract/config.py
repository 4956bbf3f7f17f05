"""DetectorConfig: the architecture and test-time settings of the VG bottom-up-attention Faster R-CNN.

Fields are flat; each one is read from / written to one detectron2 YAML key (the table `_FIELD_KEYS`),
so the configs of detectron2 and py-bottom-up-attention load as they are. Defaults are the full
Visual Genome model that produced LXMERT's features: ResNet-101 C4 with the caffe max-pool stem, an
RPN with 512 hidden channels keeping 6000 / 300 proposals, 1600 classes and 400 attributes, input
resized to a 600 shortest side (1000 longest).

Reading a YAML (`from_yaml`):
- The YAML is a diff against these defaults (not against detectron2's own defaults, which describe a
  COCO model). `_BASE_` files are merged first when they exist next to the YAML; a missing
  `Base-RCNN-C4.yaml` (py-bottom-up-attention's configs name `../Base-RCNN-C4.yaml`, which lives in
  the detectron2 tree) is skipped: its only inference settings are Res5ROIHeads, 6000 pre-NMS
  proposals and 1000 post-NMS proposals, and the bundled defaults stand in for it (with the 300
  post-NMS proposals the VG extraction scripts set in code). Any other missing base is an error.
- Keys that only matter for training or for components this model does not have are accepted and
  ignored (`IGNORED_KEYS`, `IGNORED_SECTIONS`). Keys that select a component are checked against
  what this implementation builds (`_CHOICES`): an FPN backbone, a RoIAlign pooler or deformable
  convolutions are refused with the key path and the supported values. Any other key is an error.
- String values are parsed as Python literals, as detectron2 does (`MIN_SIZE_TRAIN: (640, 672)`).
- Whatever is wrong with a file (unreadable, not UTF-8, invalid YAML, a key spelled twice, a Python tag,
  over the MAX_CONFIG_* limits, a bad _BASE_) raises ConfigError naming it, with the line and column
  YAML reports. PyYAML's safe loader builds plain values only; the limits are checked on the parser's
  events first, so an alias bomb is refused before it is expanded.

The transformers FRCNN port (`unc-nlp/frcnn-vg-finetuned`) describes the same network in its own
layout: lower-case keys, the model's sections (resnets, rpn, roi_heads, ...) at the top level, a few
renamed keys and some settings of its own (`_PORT_KEYS`). `from_yaml` / `from_dict` recognise that
layout and translate it to detectron2 keys first. The port-only settings (its list of NMS
thresholds, min / max detections, input format, pad value) land in the `port_*` fields, written
under `HF_PORT` in our YAML; only the port mode (extract/hf_port.py) reads them. Keys of a port file
that this translation does not know are ignored with a warning, as the port's own reader ignores
every key its code does not ask for (the published file was not available to check against).
"""

from __future__ import annotations

import ast
import math
import os
import reprlib
import stat
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .images import os_error_reason

# ResNet blocks per stage (res2, res3, res4, res5) for the bottleneck depths.
RESNET_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

# Stride of res4, the only feature map of a C4 model: RPN anchors and ROI pooling are laid on it.
FEATURE_STRIDE = 16

# What a config YAML may hold. A detectron2 config is a few KB: a few hundred values, nested four or five
# deep, two or three files in its _BASE_ chain. The limits are far above that and far below what hurts.
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB, per file
MAX_CONFIG_NODES = 100_000  # values, lists and mappings after aliases are expanded ("billion laughs")
MAX_CONFIG_DEPTH = 32  # nested lists / mappings
MAX_BASE_DEPTH = 16  # files in one _BASE_ chain
# No setting is written as a long Python literal; ast.literal_eval recurses on what it is given.
_MAX_LITERAL_CHARS = 1000
# Error messages quote at most this many characters of a value, key or path.
_QUOTE_LIMIT = 200


class ConfigError(ValueError):
    """A YAML key or value that this detector cannot honour; the message names the key path (also in
    `key` where one key is at fault)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# What error messages quote of a value, key or path: a bounded repr (its work is bounded too, whatever
# the value holds), cut in the middle past _QUOTE_LIMIT characters.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = _QUOTE_LIMIT
_REPR.maxlong = 40


def _quote(value: Any) -> str:
    return _clip(_REPR.repr(value))


def _clip(text: str) -> str:
    if len(text) <= _QUOTE_LIMIT:
        return text
    return f"{text[: _QUOTE_LIMIT - 40]}...{text[-20:]} ({len(text)} characters)"


@dataclass(frozen=True)
class DetectorConfig:
    """Hyper-parameters of the VG Faster R-CNN; defaults are the full bottom-up-attention model."""

    # Backbone (MODEL.RESNETS.*, MODEL.CAFFE_MAXPOOL)
    resnet_depth: int = 101
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    num_groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = True
    # A C4 backbone ends at res4; res5 is built by the ROI head, so this detectron2 key has no effect.
    res5_dilation: int = 1
    caffe_maxpool: bool = True

    # Anchors and RPN (MODEL.ANCHOR_GENERATOR.*, MODEL.RPN.*, MODEL.PROPOSAL_GENERATOR.*)
    anchor_sizes: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_offset: float = 0.0
    rpn_hidden_channels: int = 512  # -1: as many as res4 has (py-bottom-up-attention's default)
    rpn_pre_nms_topk_test: int = 6000
    rpn_post_nms_topk_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_min_size: float = 0.0
    rpn_bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)

    # ROI head (MODEL.ROI_HEADS.*, MODEL.ROI_BOX_HEAD.*)
    num_classes: int = 1600
    score_thresh_test: float = 0.2
    nms_thresh_test: float = 0.6
    pooler_resolution: int = 14
    box_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    res5_halve: bool = False
    attribute_head: bool = True
    num_attributes: int = 400

    # Input (MODEL.PIXEL_*, INPUT.*) and output (TEST.*)
    pixel_mean: tuple[float, float, float] = (102.9801, 115.9465, 122.7717)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    min_size_test: int = 600
    max_size_test: int = 1000
    input_format: str = "BGR"
    detections_per_image: int = 100

    # The transformers FRCNN port's own settings (HF_PORT.*); None unless read from a port config.yaml.
    # Only the port mode (extract.hf_port) uses them.
    port_nms_thresholds: tuple[float, ...] | None = None  # class-agnostic NMS thresholds, tried in order
    port_min_detections: int | None = None  # a threshold is accepted once this many boxes survive
    port_max_detections: int | None = None  # survivors kept
    port_input_format: str | None = None  # "BGR" (the only working one) feeds the network RGB pixels
    port_pad_value: float | None = None  # fills batched inputs after normalization (we never pad)

    def __post_init__(self) -> None:
        checks = [
            (self.resnet_depth in RESNET_STAGE_BLOCKS, "resnet_depth", f"one of {sorted(RESNET_STAGE_BLOCKS)}"),
            (self.stem_out_channels > 0, "stem_out_channels", "> 0"),
            (self.res2_out_channels > 0, "res2_out_channels", "> 0"),
            (self.num_groups > 0, "num_groups", "> 0"),
            (self.width_per_group > 0, "width_per_group", "> 0"),
            (self.res5_dilation in (1, 2), "res5_dilation", "1 or 2"),
            (_all_positive(self.anchor_sizes), "anchor_sizes", "a non-empty list of sizes > 0"),
            (_all_positive(self.anchor_aspect_ratios), "anchor_aspect_ratios", "a non-empty list of ratios > 0"),
            (0.0 <= self.anchor_offset < 1.0, "anchor_offset", "in [0, 1)"),
            (self.rpn_hidden_channels == -1 or self.rpn_hidden_channels > 0, "rpn_hidden_channels", "> 0 or -1"),
            (self.rpn_pre_nms_topk_test > 0, "rpn_pre_nms_topk_test", "> 0"),
            (self.rpn_post_nms_topk_test > 0, "rpn_post_nms_topk_test", "> 0"),
            (_in_unit((self.rpn_nms_thresh,)), "rpn_nms_thresh", "in [0, 1]"),
            (self.rpn_min_size >= 0.0, "rpn_min_size", ">= 0"),
            (self.num_classes > 0, "num_classes", "> 0"),
            (_in_unit((self.score_thresh_test,)), "score_thresh_test", "in [0, 1]"),
            (_in_unit((self.nms_thresh_test,)), "nms_thresh_test", "in [0, 1]"),
            (self.detections_per_image > 0, "detections_per_image", "> 0"),
            (not self.attribute_head or self.num_attributes > 0, "num_attributes", "> 0 with the attribute head"),
            (self.min_size_test > 0 and self.max_size_test > 0, "min_size_test", "positive sizes"),
            (self.input_format == "BGR", "input_format", '"BGR" (the network was trained on BGR input)'),
            (self.pooler_resolution > 0, "pooler_resolution", "> 0"),
            (
                self.port_nms_thresholds is None or (self.port_nms_thresholds and _in_unit(self.port_nms_thresholds)),
                "port_nms_thresholds",
                "a non-empty list of thresholds in [0, 1]",
            ),
            (self.port_min_detections is None or self.port_min_detections > 0, "port_min_detections", "> 0"),
            (
                self.port_max_detections is None or self.port_max_detections >= (self.port_min_detections or 1),
                "port_max_detections",
                ">= max(1, MIN_DETECTIONS)",
            ),
            (self.port_input_format in (None, "BGR", "RGB"), "port_input_format", '"BGR" or "RGB"'),
        ]
        for ok, name, expected in checks:
            if not ok:
                key = _FIELD_KEYS[name][0]
                raise ConfigError(
                    f"DetectorConfig.{name} ({key}) = {_quote(getattr(self, name))}: expected {expected}", key=key
                )

    # Derived sizes ---------------------------------------------------------------------------------

    @property
    def stage_blocks(self) -> tuple[int, int, int, int]:
        """Bottleneck blocks in res2, res3, res4, res5."""
        return RESNET_STAGE_BLOCKS[self.resnet_depth]

    @property
    def res4_channels(self) -> int:
        return self.res2_out_channels * 4

    @property
    def pooled_dim(self) -> int:
        """Size of a region feature: the channels of res5 (2048 for the full model)."""
        return self.res2_out_channels * 8

    @property
    def rpn_channels(self) -> int:
        return self.res4_channels if self.rpn_hidden_channels == -1 else self.rpn_hidden_channels

    @property
    def num_cell_anchors(self) -> int:
        return len(self.anchor_sizes) * len(self.anchor_aspect_ratios)

    # Reading and writing ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> DetectorConfig:
        """Read a detectron2 / py-bottom-up-attention YAML file (a path) or YAML text (a str).

        Anything wrong with the file or its `_BASE_` files (missing, unreadable, not UTF-8, invalid YAML,
        Python tags, over the size limits, unknown keys or bad values) raises ConfigError naming the file
        and, for YAML errors, the line and column."""
        if not isinstance(source, str | os.PathLike):
            raise TypeError(f"DetectorConfig.from_yaml takes a path or YAML text, got {type(source).__name__}")
        path = _as_path(source)
        if path is None:
            text = str(source)
            where = "YAML text" if "\n" in text else f"YAML text {_quote(text)} (no file of that name exists)"
            tree = _parse_yaml(text, where=where)
            if "_BASE_" in tree:
                tree = _merge(_load_base(tree.pop("_BASE_"), Path.cwd(), named_in="YAML text", seen=()), tree)
            return cls.from_dict(tree)
        tree = _load_yaml_tree(path, label=f"config file {_clip(str(path))}", seen=())
        try:
            return cls.from_dict(tree)
        except ConfigError as e:  # a key or value: name the file it was read from (with its _BASE_ files)
            raise ConfigError(f"{_clip(str(path))}: {e}", key=e.key) from None

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any]) -> DetectorConfig:
        """Read a nested dict in detectron2 key layout (what `to_dict` writes, or a parsed YAML), or in
        the transformers port's layout (recognised by `is_port_layout`)."""
        if not isinstance(tree, Mapping):
            raise ConfigError(f"a detector config is a mapping of detectron2 keys, not a {type(tree).__name__}")
        values: dict[str, Any] = {}
        if not is_port_layout(tree):
            for key, value in _flatten(tree):
                _read_key(key, value, values)
            return cls(**values)
        port_keys = {}
        for key, value, port_key in _port_items(tree):
            port_keys[key] = port_key
            try:
                _read_key(key, value, values)
            except ConfigError as e:
                raise ConfigError(f"{e} (transformers port config key {port_key})", key=key) from None
        try:
            return cls(**values)
        except ConfigError as e:
            if e.key not in port_keys:
                raise
            raise ConfigError(f"{e} (transformers port config key {port_keys[e.key]})", key=e.key) from None

    def to_dict(self) -> dict[str, Any]:
        """The complete configuration as a nested dict with detectron2 key names (no _BASE_); the
        port-only fields go under HF_PORT when they are set."""
        tree: dict[str, Any] = {}
        for key, allowed in _CHOICES.items():
            _set_path(tree, key, allowed[0])
        for name, (key, _) in _FIELD_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                _set_path(tree, key, _to_yaml_value(name, value))
        tree["VERSION"] = 2
        return tree

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The complete configuration as detectron2 YAML text; also written to `path` when given."""
        yaml = _import_yaml()
        text = "# VG bottom-up-attention Faster R-CNN (extract.config.DetectorConfig)\n" + yaml.safe_dump(
            self.to_dict(), sort_keys=False, default_flow_style=None
        )
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


# ---------------------------------------------------------------------------------------------------
# The key table


def _to_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise TypeError("expected an integer")  # is_integer: also refuses inf and nan
    return int(v)


def _to_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise TypeError("expected a number")
    return float(v)


def _to_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError("expected true or false")
    return v


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _floats(n: int | None) -> Callable[[Any], tuple[float, ...]]:
    def convert(v: Any) -> tuple[float, ...]:
        if not isinstance(v, list | tuple) or (n is not None and len(v) != n):
            raise TypeError(f"expected a list of {n or 'some'} numbers")
        return tuple(_to_float(x) for x in v)

    return convert


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # A port-only setting may be written as null (= not set).
    return lambda v: None if v is None else convert(v)


def _in_unit(values: tuple[float, ...]) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def _all_positive(values: tuple[float, ...]) -> bool:
    return bool(values) and all(v > 0 for v in values)


def _one_level(v: Any) -> tuple[float, ...]:
    # detectron2 writes one list per feature level ([[64, 128, 256, 512]]); a flat list is broadcast.
    if isinstance(v, list | tuple) and v and all(isinstance(x, list | tuple) for x in v):
        if len(v) != 1:
            raise TypeError("one feature level (res4) has one list; several levels need an FPN (not supported)")
        v = v[0]
    return _floats(None)(v)


# field -> (YAML key, converter)
_FIELD_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "resnet_depth": ("MODEL.RESNETS.DEPTH", _to_int),
    "stem_out_channels": ("MODEL.RESNETS.STEM_OUT_CHANNELS", _to_int),
    "res2_out_channels": ("MODEL.RESNETS.RES2_OUT_CHANNELS", _to_int),
    "num_groups": ("MODEL.RESNETS.NUM_GROUPS", _to_int),
    "width_per_group": ("MODEL.RESNETS.WIDTH_PER_GROUP", _to_int),
    "stride_in_1x1": ("MODEL.RESNETS.STRIDE_IN_1X1", _to_bool),
    "res5_dilation": ("MODEL.RESNETS.RES5_DILATION", _to_int),
    "caffe_maxpool": ("MODEL.CAFFE_MAXPOOL", _to_bool),
    "anchor_sizes": ("MODEL.ANCHOR_GENERATOR.SIZES", _one_level),
    "anchor_aspect_ratios": ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", _one_level),
    "anchor_offset": ("MODEL.ANCHOR_GENERATOR.OFFSET", _to_float),
    "rpn_hidden_channels": ("MODEL.PROPOSAL_GENERATOR.HID_CHANNELS", _to_int),
    "rpn_pre_nms_topk_test": ("MODEL.RPN.PRE_NMS_TOPK_TEST", _to_int),
    "rpn_post_nms_topk_test": ("MODEL.RPN.POST_NMS_TOPK_TEST", _to_int),
    "rpn_nms_thresh": ("MODEL.RPN.NMS_THRESH", _to_float),
    "rpn_min_size": ("MODEL.PROPOSAL_GENERATOR.MIN_SIZE", _to_float),
    "rpn_bbox_reg_weights": ("MODEL.RPN.BBOX_REG_WEIGHTS", _floats(4)),
    "num_classes": ("MODEL.ROI_HEADS.NUM_CLASSES", _to_int),
    "score_thresh_test": ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", _to_float),
    "nms_thresh_test": ("MODEL.ROI_HEADS.NMS_THRESH_TEST", _to_float),
    "pooler_resolution": ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", _to_int),
    "box_reg_weights": ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", _floats(4)),
    "res5_halve": ("MODEL.ROI_BOX_HEAD.RES5HALVE", _to_bool),
    "attribute_head": ("MODEL.ROI_BOX_HEAD.ATTR", _to_bool),
    "num_attributes": ("MODEL.ROI_BOX_HEAD.NUM_ATTRS", _to_int),
    "pixel_mean": ("MODEL.PIXEL_MEAN", _floats(3)),
    "pixel_std": ("MODEL.PIXEL_STD", _floats(3)),
    "min_size_test": ("INPUT.MIN_SIZE_TEST", _to_int),
    "max_size_test": ("INPUT.MAX_SIZE_TEST", _to_int),
    "input_format": ("INPUT.FORMAT", _to_str),
    "detections_per_image": ("TEST.DETECTIONS_PER_IMAGE", _to_int),
    "port_nms_thresholds": ("HF_PORT.NMS_THRESH_TEST", _optional(_floats(None))),
    "port_min_detections": ("HF_PORT.MIN_DETECTIONS", _optional(_to_int)),
    "port_max_detections": ("HF_PORT.MAX_DETECTIONS", _optional(_to_int)),
    "port_input_format": ("HF_PORT.INPUT_FORMAT", _optional(_to_str)),
    "port_pad_value": ("HF_PORT.PAD_VALUE", _optional(_to_float)),
}
_KEY_TO_FIELD = {key: name for name, (key, _) in _FIELD_KEYS.items()}

# Other spellings of a field's key: py-bottom-up-attention era forks write the RPN's minimum box size
# under MODEL.RPN.
_ALIASES = {"MODEL.RPN.MIN_SIZE": "MODEL.PROPOSAL_GENERATOR.MIN_SIZE"}

# Keys that choose a component: the values this implementation builds (the first one is written).
_CHOICES: dict[str, tuple[Any, ...]] = {
    "MODEL.META_ARCHITECTURE": ("GeneralizedRCNN",),
    "MODEL.BACKBONE.NAME": ("build_resnet_backbone", "build_resnet_backbone_caffe_maxpool"),
    "MODEL.RESNETS.OUT_FEATURES": (["res4"],),
    "MODEL.RESNETS.NORM": ("FrozenBN",),
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": ([False, False, False, False],),
    "MODEL.PROPOSAL_GENERATOR.NAME": ("RPN",),
    "MODEL.ANCHOR_GENERATOR.NAME": ("DefaultAnchorGenerator",),
    "MODEL.RPN.HEAD_NAME": ("StandardRPNHead", "StandardRPNHeadForVGWithHiddenDim"),
    "MODEL.RPN.IN_FEATURES": (["res4"],),
    "MODEL.ROI_HEADS.NAME": ("Res5ROIHeads", "AttributeRes5ROIHeads", "Res5ROIHeadsForVGStride"),
    "MODEL.ROI_HEADS.IN_FEATURES": (["res4"],),
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": ("ROIPool",),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": (False,),
    "MODEL.MASK_ON": (False,),
    "MODEL.KEYPOINT_ON": (False,),
    "MODEL.LOAD_PROPOSALS": (False,),
}

# Inference-irrelevant keys, accepted and ignored: training schedules and losses, data loading,
# bookkeeping, and (for a C4 model) the box-head layers that only StandardROIHeads builds.
IGNORED_KEYS = frozenset(
    {
        "VERSION",
        "SEED",
        "OUTPUT_DIR",
        "CUDNN_BENCHMARK",
        "VIS_PERIOD",
        "MODEL.DEVICE",
        "MODEL.WEIGHTS",
        "MODEL.BACKBONE.FREEZE_AT",
        "MODEL.RESNETS.DEFORM_MODULATED",
        "MODEL.RESNETS.DEFORM_NUM_GROUPS",
        "MODEL.ANCHOR_GENERATOR.ANGLES",
        "MODEL.RPN.CONV_DIMS",  # checked in _read_key: only [-1] ("as many as res4") or one value
        "MODEL.RPN.BOUNDARY_THRESH",
        "MODEL.RPN.IOU_THRESHOLDS",
        "MODEL.RPN.IOU_LABELS",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
        "MODEL.RPN.POSITIVE_FRACTION",
        "MODEL.RPN.BBOX_REG_LOSS_TYPE",
        "MODEL.RPN.BBOX_REG_LOSS_WEIGHT",
        "MODEL.RPN.SMOOTH_L1_BETA",
        "MODEL.RPN.LOSS_WEIGHT",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN",
        "MODEL.ROI_HEADS.IOU_THRESHOLDS",
        "MODEL.ROI_HEADS.IOU_LABELS",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        "MODEL.ROI_HEADS.POSITIVE_FRACTION",
        "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT",
        "MODEL.ROI_BOX_HEAD.NAME",
        "MODEL.ROI_BOX_HEAD.NUM_FC",
        "MODEL.ROI_BOX_HEAD.FC_DIM",
        "MODEL.ROI_BOX_HEAD.NUM_CONV",
        "MODEL.ROI_BOX_HEAD.CONV_DIM",
        "MODEL.ROI_BOX_HEAD.NORM",
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",  # ROIPool takes the max over whole bins
        "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA",
        "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
        "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT",
        "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES",
        "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE",
        "MODEL.ROI_BOX_HEAD.USE_FED_LOSS",
        "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER",
        "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES",
        "INPUT.MIN_SIZE_TRAIN",
        "INPUT.MAX_SIZE_TRAIN",
        "INPUT.MIN_SIZE_TRAIN_SAMPLING",
        "INPUT.MASK_FORMAT",
        "INPUT.RANDOM_FLIP",
        "TEST.EVAL_PERIOD",
        "TEST.EXPECTED_RESULTS",
        "TEST.KEYPOINT_OKS_SIGMAS",
    }
)

# Whole sections accepted and ignored: training, data, and heads of components this model lacks
# (their use is switched off by the keys in _CHOICES, e.g. MODEL.MASK_ON or MODEL.BACKBONE.NAME).
IGNORED_SECTIONS = (
    "SOLVER",
    "DATASETS",
    "DATALOADER",
    "GLOBAL",
    "INPUT.CROP",
    "TEST.AUG",
    "TEST.PRECISE_BN",
    "MODEL.FPN",
    "MODEL.RETINANET",
    "MODEL.ROI_MASK_HEAD",
    "MODEL.ROI_KEYPOINT_HEAD",
    "MODEL.ROI_BOX_CASCADE_HEAD",
    "MODEL.SEM_SEG_HEAD",
    "MODEL.PANOPTIC_FPN",
)


# Fields whose YAML value is a string (others may be Python literals written as strings).
_STRING_FIELDS = frozenset({"input_format", "port_input_format"})


def _is_ignored(key: str) -> bool:
    return key in IGNORED_KEYS or any(key == s or key.startswith(s + ".") for s in IGNORED_SECTIONS)


def _is_known(key: str) -> bool:
    key = _ALIASES.get(key, key)
    return key in _KEY_TO_FIELD or key in _CHOICES or key == "MODEL.RPN.CONV_DIMS" or _is_ignored(key)


def _read_key(key: str, value: Any, values: dict[str, Any]) -> None:
    key = _ALIASES.get(key, key)
    if key in _KEY_TO_FIELD:
        name = _KEY_TO_FIELD[key]
        convert = _FIELD_KEYS[name][1]
        try:
            values[name] = convert(_literal(value, expect_str=name in _STRING_FIELDS))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}: {_quote(value)} is not valid ({e})", key=key) from None
    elif key in _CHOICES:
        allowed = _CHOICES[key]
        if _normalize(_literal(value, expect_str=isinstance(allowed[0], str))) not in [_normalize(a) for a in allowed]:
            raise ConfigError(
                f"{key}: {_quote(value)} is not supported; this detector builds a ResNet C4 Faster R-CNN "
                f"(ROIPool, Res5 ROI head, FrozenBN, no FPN/mask/keypoint/deformable conv): "
                f"supported value(s): {', '.join(repr(a) for a in allowed)}",
                key=key,
            )
    elif key == "MODEL.RPN.CONV_DIMS":
        dims = _literal(value, expect_str=False)
        if not isinstance(dims, list | tuple) or len(dims) != 1:
            raise ConfigError(
                f"{key}: {_quote(value)} is not supported: the RPN head has exactly one hidden conv", key=key
            )
        if dims[0] != -1:
            try:
                values["rpn_hidden_channels"] = _to_int(dims[0])
            except TypeError as e:
                raise ConfigError(f"{key}: {_quote(value)} is not valid ({e})", key=key) from None
    elif not _is_ignored(key):
        raise ConfigError(
            f"unknown config key {_clip(key)}: not a detectron2 / py-bottom-up-attention key this detector "
            "knows (see extract/config.py for the keys read and the ones ignored)"
        )


# ---------------------------------------------------------------------------------------------------
# The transformers port's layout (examples/research_projects/lxmert: utils.Config, modeling_frcnn.py)

# Sections that detectron2 keeps under MODEL and the port at the top level.
PORT_MODEL_SECTIONS = frozenset(
    {"RESNETS", "RPN", "ROI_HEADS", "ROI_BOX_HEAD", "ANCHOR_GENERATOR", "BACKBONE", "PROPOSAL_GENERATOR"}
)
_PORT_TOP_LEVEL = PORT_MODEL_SECTIONS | {"MIN_DETECTIONS", "MAX_DETECTIONS", "SIZE_DIVISIBILITY", "PAD_VALUE"}

# Port key (upper case, its sections moved under MODEL) -> the detectron2 or HF_PORT key it sets.
# Every other port key keeps its name.
_PORT_KEYS = {
    "MODEL.MAX_POOL": "MODEL.CAFFE_MAXPOOL",
    "MODEL.PROPOSAL_GENERATOR.HIDDEN_CHANNELS": "MODEL.PROPOSAL_GENERATOR.HID_CHANNELS",
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": "HF_PORT.NMS_THRESH_TEST",
    "INPUT.FORMAT": "HF_PORT.INPUT_FORMAT",
    "MIN_DETECTIONS": "HF_PORT.MIN_DETECTIONS",
    "MAX_DETECTIONS": "HF_PORT.MAX_DETECTIONS",
    "PAD_VALUE": "HF_PORT.PAD_VALUE",
}


def is_port_layout(tree: Mapping[str, Any]) -> bool:
    """Whether a parsed config is in the transformers port's layout: a lower-case key at the top level
    (detectron2's keys are upper case) or one of the port's top-level sections."""
    return any(isinstance(k, str) and (k != k.upper() or k.upper() in _PORT_TOP_LEVEL) for k in tree)


def _upper_keys(tree: Mapping[str, Any]) -> dict[str, Any]:
    # The port's Config reads every key in upper case as well; a key spelled twice merges like _BASE_.
    upper: dict[str, Any] = {}
    for key, value in tree.items():
        value = _upper_keys(value) if isinstance(value, Mapping) else value
        upper = _merge(upper, {str(key).upper(): value})
    return upper


def _port_items(tree: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The port config's values as (detectron2 / HF_PORT key, value, port key) triples."""
    items, unknown = [], []
    for upper, value in _flatten(_upper_keys(tree)):
        port_key = upper.lower()
        if upper.split(".")[0] in PORT_MODEL_SECTIONS:
            upper = "MODEL." + upper
        if upper == "SIZE_DIVISIBILITY":
            if value != 0:
                raise ConfigError(
                    f"size_divisibility: {_quote(value)} is not supported: images are never padded (the port "
                    "itself raises NotImplementedError for values > 0)"
                )
            continue
        if upper == "MODEL.RESNETS.NORM" and value == "BN":
            value = "FrozenBN"  # nn.BatchNorm2d in eval mode computes FrozenBN's formula
        if upper == "MODEL.ROI_HEADS.NMS_THRESH_TEST" and not isinstance(value, list | tuple):
            items.append((upper, value, port_key))  # one number: detectron2's threshold too
            value = [value]
        key = _PORT_KEYS.get(upper, upper)
        if _is_known(key):
            items.append((key, value, port_key))
        else:
            unknown.append(port_key)
    if unknown:
        listed = ", ".join(_clip(key) for key in unknown[:20])
        listed += f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        warnings.warn(f"ignoring transformers port config keys this detector does not know: {listed}", stacklevel=4)
    return items


def _normalize(v: Any) -> Any:
    return [_normalize(x) for x in v] if isinstance(v, list | tuple) else v


def _literal(v: Any, *, expect_str: bool) -> Any:
    if isinstance(v, str) and not expect_str and len(v) <= _MAX_LITERAL_CHARS:
        try:
            return ast.literal_eval(v)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return v  # not a literal: the converter names the key and what it expected
    if isinstance(v, tuple):
        return list(v)
    return v


def _to_yaml_value(name: str, value: Any) -> Any:
    if name in ("anchor_sizes", "anchor_aspect_ratios"):
        return [list(value)]
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------------
# YAML files


def _import_yaml():
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - PyYAML is a dependency of the package
        raise ImportError("reading or writing detectron2 YAML configs needs PyYAML: pip install pyyaml") from e
    return yaml


def _as_path(source: str | os.PathLike) -> Path | None:
    # A one-line str names a file when something exists at that path (also a directory, a broken link or
    # a symlink loop: reading it then says what is wrong); otherwise it is YAML text.
    if isinstance(source, os.PathLike):
        return Path(source)
    if "\n" not in source and source.strip() and os.path.lexists(source):
        return Path(source)
    return None


def _read_text(path: Path, label: str) -> str:
    """The text of a config file; what keeps it from being one (missing, a directory, unreadable, over
    MAX_CONFIG_BYTES, not UTF-8) raises ConfigError starting with `label`."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):  # not a FIFO or a device, which could block or never end
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        broken = " (a symlink to a missing file)" if os.path.islink(path) else ""
        raise ConfigError(f"{label} does not exist{broken}") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL character in the path
        raise ConfigError(f"cannot read {label}: {os_error_reason(e, path)}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{label} is a directory, not a YAML file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{label} is not a regular file")
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{label} is larger than {MAX_CONFIG_BYTES} bytes (1 MiB), the most a detector config may be "
            "(a detectron2 config is a few KB)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise ConfigError(
            f"{label} is not UTF-8 text: byte 0x{data[e.start]:02x} at line {line}, column {column} ({e.reason}); "
            "save it as UTF-8"
        ) from None


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    """Parse YAML text into plain values, refusing (ConfigError naming `where`, the line and the column)
    invalid YAML, Python tags, recursive aliases, keys spelled twice in one mapping, and documents over
    the MAX_CONFIG_* limits. The limits are checked on the parser's events, before any Python object is
    built, so an alias bomb fails in milliseconds."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{where} has {len(text)} characters, more than a detector config may have ({MAX_CONFIG_BYTES})"
        )
    yaml = _import_yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # CSafeLoader when PyYAML is built with libyaml
    try:
        _check_yaml_events(yaml.parse(text, Loader=loader), where)
        tree = yaml.load(text, Loader=loader)  # a safe loader: plain values only
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as e:
        problem = _clip(e.problem or e.context or "invalid YAML")
        if e.problem and e.context:  # e.g. "while parsing a flow sequence" and where that began
            problem += f" ({_clip(e.context)}{_at(e.context_mark)})"
        raise ConfigError(f"{where}: invalid YAML{_at(e.problem_mark or e.context_mark, text)}: {problem}") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a control character, ...)
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{where}: invalid YAML at line {line}: {_clip(str(e).splitlines()[0])}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {_clip(' '.join(str(e).split()))}") from None
    except ValueError as e:  # a value PyYAML cannot build: a date such as 2001-13-45, an int of 5000 digits
        raise ConfigError(f"{where}: a YAML value cannot be read: {_clip(str(e))}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{where} is not a YAML mapping of detectron2 keys (its top level is of type {type(tree).__name__})"
        )
    return tree


@dataclass
class _OpenCollection:
    is_mapping: bool
    anchor: str | None
    nodes: int = 1  # this collection and everything in it so far, aliases expanded
    children: int = 0
    keys: dict[str, int] = field(default_factory=dict)  # mapping key -> line


def _check_yaml_events(events: Iterable[Any], where: str) -> None:
    yaml = _import_yaml()
    open_collections: list[_OpenCollection] = []
    anchor_nodes: dict[str, int] = {}  # anchor -> nodes in what it names

    def refused(event: Any, problem: str) -> ConfigError:
        return ConfigError(f"{where}{_at(event.start_mark)}: {problem}")

    for event in events:
        if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
            continue  # stream and document boundaries
        tag = getattr(event, "tag", None) or ""
        if tag.startswith("tag:yaml.org,2002:python/"):
            raise refused(
                event,
                f"the YAML tag {_clip(tag.replace('tag:yaml.org,2002:', '!!'))} is not allowed: a detector config "
                "holds plain values (numbers, strings, lists, mappings); Python objects are never built",
            )
        parent = open_collections[-1] if open_collections else None
        is_key = parent is not None and parent.is_mapping and parent.children % 2 == 0
        if is_key and isinstance(event, yaml.ScalarEvent) and event.value != "<<":  # a merge key may repeat
            if event.value in parent.keys:
                raise refused(
                    event,
                    f"key {_quote(event.value)} appears twice in one mapping (also on line "
                    f"{parent.keys[event.value]}); YAML would silently keep only the last one",
                )
            parent.keys[event.value] = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_collections) >= MAX_CONFIG_DEPTH:
                raise refused(event, f"lists / mappings nested more than {MAX_CONFIG_DEPTH} deep")
            open_collections.append(_OpenCollection(isinstance(event, yaml.MappingStartEvent), event.anchor))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            closed = open_collections.pop()
            nodes, anchor = closed.nodes, closed.anchor
        elif isinstance(event, yaml.AliasEvent):
            if any(c.anchor == event.anchor for c in open_collections):
                raise refused(
                    event,
                    f"alias *{_clip(event.anchor)} refers to a list / mapping that contains it (a recursive value)",
                )
            nodes, anchor = anchor_nodes.get(event.anchor, 1), None  # an undefined alias: the loader names it
        else:
            nodes, anchor = 1, event.anchor
        if anchor is not None:
            anchor_nodes[anchor] = nodes
        if open_collections:
            open_collections[-1].nodes += nodes
            open_collections[-1].children += 1
            nodes = open_collections[-1].nodes
        if nodes > MAX_CONFIG_NODES:
            aliased = " once aliases are expanded" if anchor_nodes else ""
            bomb = "; refusing what looks like an alias bomb" if anchor_nodes else ""
            raise refused(
                event, f"more than {MAX_CONFIG_NODES} values{aliased} (a detector config has a few hundred){bomb}"
            )


def _at(mark: Any, text: str | None = None) -> str:
    if mark is None:
        return ""
    where = f" at line {mark.line + 1}, column {mark.column + 1}"
    lines = text.splitlines() if text is not None else []
    if mark.line < len(lines) and lines[mark.line].strip():
        where += f" ({_clip(lines[mark.line].strip())!r})"
    return where


def _load_yaml_tree(path: Path, label: str, seen: tuple[Path, ...]) -> dict[str, Any]:
    text = _read_text(path, label)
    resolved = Path(os.path.realpath(path))  # never raises, unlike Path.resolve on a link loop
    if resolved in seen:
        raise ConfigError(f"_BASE_ cycle: {' -> '.join(_clip(str(p)) for p in (*seen, resolved))}")
    tree = _parse_yaml(text, where=_clip(str(path)))
    if "_BASE_" in tree:
        if len(seen) + 1 >= MAX_BASE_DEPTH:
            raise ConfigError(f"{label}: its _BASE_ chain is longer than {MAX_BASE_DEPTH} files")
        base = _load_base(tree.pop("_BASE_"), path.parent, named_in=_clip(str(path)), seen=(*seen, resolved))
        tree = _merge(base, tree)
    return tree


def _load_base(base: Any, directory: Path, named_in: str, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{named_in}: _BASE_: {_quote(base)} is not a file name")
    path = Path(os.path.expanduser(base))  # os.path.expanduser never raises (Path.expanduser may)
    path = path if path.is_absolute() else directory / path
    if path.name == "Base-RCNN-C4.yaml" and not os.path.lexists(path):
        return {}  # the bundled defaults stand in for it (module docstring)
    return _load_yaml_tree(path, label=f"_BASE_ file {_clip(str(path))} (named in {named_in})", seen=seen)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if any(path == s or path.startswith(s + ".") for s in IGNORED_SECTIONS):
                continue
            items.extend(_flatten(value, path + "."))
        else:
            items.append((path, value))
    return items


def _set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value
