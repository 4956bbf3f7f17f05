"""The transformers FRCNN port's config layout (`unc-nlp/frcnn-vg-finetuned`; examples/research_projects/
lxmert: utils.Config, modeling_frcnn.py), translated to detectron2 keys.

The port describes the same network in its own layout: lower-case keys, the model's sections (resnets,
rpn, roi_heads, ...) at the top level, a few renamed keys and some settings of its own (`_PORT_KEYS`).
`DetectorConfig.from_yaml` / `from_dict` recognise that layout (`is_port_layout`) and translate it first.
The port-only settings (its list of NMS thresholds, min / max detections, input format, pad value) land
in the `port_*` fields, written under `HF_PORT` in our YAML; only the port's own selection
(extract/port_rule.py) reads them. Keys of a port file that this translation does not know are ignored
with a warning, as the port's own reader ignores every key its code does not ask for (the published
file was not available to check against).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from .config_yaml import ConfigError, clip, merge_trees, quote
from .detectron2_keys import flatten, is_known

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
        upper = merge_trees(upper, {str(key).upper(): value})
    return upper


def port_items(tree: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The port config's values as (detectron2 / HF_PORT key, value, port key) triples."""
    items, unknown = [], []
    for upper, value in flatten(_upper_keys(tree)):
        port_key = upper.lower()
        if upper.split(".")[0] in PORT_MODEL_SECTIONS:
            upper = "MODEL." + upper
        if upper == "SIZE_DIVISIBILITY":
            if value != 0:
                raise ConfigError(
                    f"size_divisibility: {quote(value)} is not supported: images are never padded (the port "
                    "itself raises NotImplementedError for values > 0)"
                )
            continue
        if upper == "MODEL.RESNETS.NORM" and value == "BN":
            value = "FrozenBN"  # nn.BatchNorm2d in eval mode computes FrozenBN's formula
        if upper == "MODEL.ROI_HEADS.NMS_THRESH_TEST" and not isinstance(value, list | tuple):
            items.append((upper, value, port_key))  # one number: detectron2's threshold too
            value = [value]
        key = _PORT_KEYS.get(upper, upper)
        if is_known(key):
            items.append((key, value, port_key))
        else:
            unknown.append(port_key)
    if unknown:
        listed = ", ".join(clip(key) for key in unknown[:20])
        listed += f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        warnings.warn(f"ignoring transformers port config keys this detector does not know: {listed}", stacklevel=4)
    return items
