"""DetectorConfig: the architecture and test-time settings of the VG bottom-up-attention Faster R-CNN.

Fields are flat; each one is read from / written to one detectron2 YAML key (the table
`detectron2_keys.FIELD_KEYS`), so the configs of detectron2 and py-bottom-up-attention load as they are.
Defaults are the full Visual Genome model that produced LXMERT's features: ResNet-101 C4 with the caffe
max-pool stem, an RPN with 512 hidden channels keeping 6000 / 300 proposals, 1600 classes and 400
attributes, input resized to a 600 shortest side (1000 longest).

Reading a YAML (`from_yaml`): the file is read and parsed safely by `config_yaml` (limits, tags,
`_BASE_` chain), a tree in the transformers port's layout is translated by `port_layout`, and every key
goes through the dialect of `detectron2_keys`. The YAML is a diff against these defaults (not against
detectron2's own defaults, which describe a COCO model). `_BASE_` files are merged first when they exist
next to the YAML; a missing `Base-RCNN-C4.yaml` is skipped: its only inference settings are Res5ROIHeads,
6000 pre-NMS proposals and 1000 post-NMS proposals, and the bundled defaults stand in for it (with the
300 post-NMS proposals the VG extraction scripts set in code). Any other missing base is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_yaml import (
    ConfigError,
    as_path,
    clip,
    import_yaml,
    load_base,
    load_yaml_tree,
    merge_trees,
    parse_yaml,
    quote,
)
from .detectron2_keys import CHOICES, FIELD_KEYS, flatten, read_key, set_path, to_yaml_value
from .port_layout import is_port_layout, port_items

__all__ = ["FEATURE_STRIDE", "RESNET_STAGE_BLOCKS", "ConfigError", "DetectorConfig"]

# ResNet blocks per stage (res2, res3, res4, res5) for the bottleneck depths.
RESNET_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

# Stride of res4, the only feature map of a C4 model: RPN anchors and ROI pooling are laid on it.
FEATURE_STRIDE = 16


def _in_unit(values: tuple[float, ...]) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def _all_positive(values: tuple[float, ...]) -> bool:
    return bool(values) and all(v > 0 for v in values)


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
    # Only the port's selection (extract.port_rule) uses them.
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
                key = FIELD_KEYS[name][0]
                raise ConfigError(
                    f"DetectorConfig.{name} ({key}) = {quote(getattr(self, name))}: expected {expected}", key=key
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
        path = as_path(source)
        if path is None:
            text = str(source)
            where = "YAML text" if "\n" in text else f"YAML text {quote(text)} (no file of that name exists)"
            tree = parse_yaml(text, where=where)
            if "_BASE_" in tree:
                tree = merge_trees(load_base(tree.pop("_BASE_"), Path.cwd(), named_in="YAML text", seen=()), tree)
            return cls.from_dict(tree)
        tree = load_yaml_tree(path, label=f"config file {clip(str(path))}", seen=())
        try:
            return cls.from_dict(tree)
        except ConfigError as e:  # a key or value: name the file it was read from (with its _BASE_ files)
            raise ConfigError(f"{clip(str(path))}: {e}", key=e.key) from None

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any]) -> DetectorConfig:
        """Read a nested dict in detectron2 key layout (what `to_dict` writes, or a parsed YAML), or in
        the transformers port's layout (recognised by `is_port_layout`)."""
        if not isinstance(tree, Mapping):
            raise ConfigError(f"a detector config is a mapping of detectron2 keys, not a {type(tree).__name__}")
        values: dict[str, Any] = {}
        if not is_port_layout(tree):
            for key, value in flatten(tree):
                read_key(key, value, values)
            return cls(**values)
        port_keys = {}
        for key, value, port_key in port_items(tree):
            port_keys[key] = port_key
            try:
                read_key(key, value, values)
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
        for key, allowed in CHOICES.items():
            set_path(tree, key, allowed[0])
        for name, (key, _) in FIELD_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                set_path(tree, key, to_yaml_value(name, value))
        tree["VERSION"] = 2
        return tree

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The complete configuration as detectron2 YAML text; also written to `path` when given."""
        yaml = import_yaml()
        text = "# VG bottom-up-attention Faster R-CNN (extract.model.config.DetectorConfig)\n" + yaml.safe_dump(
            self.to_dict(), sort_keys=False, default_flow_style=None
        )
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text
