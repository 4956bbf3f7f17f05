"""The detectron2 YAML dialect of the detector config: which key sets which DetectorConfig field and how
its value is converted (`FIELD_KEYS`), keys that choose a component and the values this implementation
builds (`CHOICES`: an FPN backbone, a RoIAlign pooler or deformable convolutions are refused with the key
path and the supported values), and keys accepted and ignored because they only matter for training or
for components this model does not have (`IGNORED_KEYS`, `IGNORED_SECTIONS`). Any other key is an error.
String values are parsed as Python literals, as detectron2 does (`MIN_SIZE_TRAIN: (640, 672)`).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import Any

from .config_yaml import ConfigError, clip, quote

# No setting is written as a long Python literal; ast.literal_eval recurses on what it is given.
_MAX_LITERAL_CHARS = 1000


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


def _one_level(v: Any) -> tuple[float, ...]:
    # detectron2 writes one list per feature level ([[64, 128, 256, 512]]); a flat list is broadcast.
    if isinstance(v, list | tuple) and v and all(isinstance(x, list | tuple) for x in v):
        if len(v) != 1:
            raise TypeError("one feature level (res4) has one list; several levels need an FPN (not supported)")
        v = v[0]
    return _floats(None)(v)


# field -> (YAML key, converter)
FIELD_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
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
_KEY_TO_FIELD = {key: name for name, (key, _) in FIELD_KEYS.items()}

# Other spellings of a field's key: py-bottom-up-attention era forks write the RPN's minimum box size
# under MODEL.RPN.
_ALIASES = {"MODEL.RPN.MIN_SIZE": "MODEL.PROPOSAL_GENERATOR.MIN_SIZE"}

# Keys that choose a component: the values this implementation builds (the first one is written).
CHOICES: dict[str, tuple[Any, ...]] = {
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
        "MODEL.RPN.CONV_DIMS",  # checked in read_key: only [-1] ("as many as res4") or one value
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
# (their use is switched off by the keys in CHOICES, e.g. MODEL.MASK_ON or MODEL.BACKBONE.NAME).
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


def is_known(key: str) -> bool:
    key = _ALIASES.get(key, key)
    return key in _KEY_TO_FIELD or key in CHOICES or key == "MODEL.RPN.CONV_DIMS" or _is_ignored(key)


def read_key(key: str, value: Any, values: dict[str, Any]) -> None:
    key = _ALIASES.get(key, key)
    if key in _KEY_TO_FIELD:
        name = _KEY_TO_FIELD[key]
        convert = FIELD_KEYS[name][1]
        try:
            values[name] = convert(_literal(value, expect_str=name in _STRING_FIELDS))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}: {quote(value)} is not valid ({e})", key=key) from None
    elif key in CHOICES:
        allowed = CHOICES[key]
        if _normalize(_literal(value, expect_str=isinstance(allowed[0], str))) not in [_normalize(a) for a in allowed]:
            raise ConfigError(
                f"{key}: {quote(value)} is not supported; this detector builds a ResNet C4 Faster R-CNN "
                f"(ROIPool, Res5 ROI head, FrozenBN, no FPN/mask/keypoint/deformable conv): "
                f"supported value(s): {', '.join(repr(a) for a in allowed)}",
                key=key,
            )
    elif key == "MODEL.RPN.CONV_DIMS":
        dims = _literal(value, expect_str=False)
        if not isinstance(dims, list | tuple) or len(dims) != 1:
            raise ConfigError(
                f"{key}: {quote(value)} is not supported: the RPN head has exactly one hidden conv", key=key
            )
        if dims[0] != -1:
            try:
                values["rpn_hidden_channels"] = _to_int(dims[0])
            except TypeError as e:
                raise ConfigError(f"{key}: {quote(value)} is not valid ({e})", key=key) from None
    elif not _is_ignored(key):
        raise ConfigError(
            f"unknown config key {clip(key)}: not a detectron2 / py-bottom-up-attention key this detector "
            "knows (see extract/model/detectron2_keys.py for the keys read and the ones ignored)"
        )


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


def to_yaml_value(name: str, value: Any) -> Any:
    if name in ("anchor_sizes", "anchor_aspect_ratios"):
        return [list(value)]
    return list(value) if isinstance(value, tuple) else value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if any(path == s or path.startswith(s + ".") for s in IGNORED_SECTIONS):
                continue
            items.extend(flatten(value, path + "."))
        else:
            items.append((path, value))
    return items


def set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value
