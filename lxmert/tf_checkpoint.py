"""Reading TensorFlow LXMERT checkpoints (`tf_model.h5`) into PyTorch state-dict tensors.

The files are the Keras 2 ("legacy") HDF5 weights that `TFLxmertModel` and `TFLxmertForPreTraining`
write with `save_pretrained`. They are read with h5py alone; TensorFlow is not needed.

Layout of such a file:

    root attrs: layer_names = ['lxmert', 'cls', 'obj_predict_head', 'answer_head']  (or ['lxmert'])
    <layer>/                      one group per name in layer_names
        attrs: weight_names       the group's datasets, in the order Keras created them
        <keras model name>/<layer scopes...>/<variable>:0     one float32 dataset per variable

for example `lxmert/tf_lxmert_model/lxmert/encoder/layer_._0/attention/self/query/kernel:0`, which
becomes the PyTorch name `encoder.layer.0.attention.self.query.weight` (transposed).

The mapping is two tables: `_KNOWN_MODULES` lists every LXMERT module that owns weights, in PyTorch
naming, with its kind; `_VARIABLES` says, per kind, which Keras variables it has, their PyTorch
names and whether they are transposed. A dataset that fits neither is reported, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from lxmert.errors import CheckpointError, name_list

# Keras variable name -> (PyTorch parameter name, transpose?), per kind of module. A Keras Dense kernel
# is (in, out) and a torch Linear weight is (out, in), hence the transpose.
_VARIABLES: dict[str, dict[str, tuple[str, bool]]] = {
    "linear": {"kernel": ("weight", True), "bias": ("bias", False)},
    "layer_norm": {"gamma": ("weight", False), "beta": ("bias", False)},
    "word_embedding": {"weight": ("weight", False)},  # (vocab, hidden) in both frameworks
    "embedding": {"embeddings": ("weight", False)},
    "bias": {"bias": ("bias", False)},
}

# Rewrites from a Keras layer scope to a PyTorch module name, applied in order. Keras names list
# items `layer_._0`, `x_layers_._1`, `logit_fc_._3`; PyTorch names them `layer.0`, `x_layers.1`,
# `logit_fc.3`. `decoder_dict.obj` already has its dot (a ModuleDict key in PyTorch).
_SCOPE_REWRITES: list[tuple[str, str]] = [
    (r"_\._(\d+)", r".\1"),
    (r"/", "."),
]

_SELF_ATTENTION = r"(attention|lang_self_att|visn_self_att)"
_BLOCK = r"encoder\.(layer|r_layers|x_layers)\.\d+"

# Every module of LxmertForPreTraining that owns weights (PyTorch name, full match) -> its kind.
# LxmertModel has the `lxmert.` ones without that prefix.
_KNOWN_MODULES: list[tuple[str, str]] = [
    (r"lxmert\.embeddings\.word_embeddings", "word_embedding"),
    (r"lxmert\.embeddings\.(position|token_type)_embeddings", "embedding"),
    (r"lxmert\.embeddings\.LayerNorm", "layer_norm"),
    (r"lxmert\.encoder\.visn_fc\.(visn_fc|box_fc)", "linear"),
    (r"lxmert\.encoder\.visn_fc\.(visn|box)_layer_norm", "layer_norm"),
    # l-layers and r-layers: attention.self / attention.output / intermediate / output.
    # x-layers: visual_attention.att is the one cross-attention, shared by both directions;
    # lang_self_att and visn_self_att are the self-attentions; lang_/visn_inter and _output the FFNs.
    (rf"lxmert\.{_BLOCK}\.({_SELF_ATTENTION}\.self|visual_attention\.att)\.(query|key|value)", "linear"),
    (rf"lxmert\.{_BLOCK}\.({_SELF_ATTENTION}|visual_attention)\.output\.dense", "linear"),
    (rf"lxmert\.{_BLOCK}\.({_SELF_ATTENTION}|visual_attention)\.output\.LayerNorm", "layer_norm"),
    (rf"lxmert\.{_BLOCK}\.(intermediate|lang_inter|visn_inter)\.dense", "linear"),
    (rf"lxmert\.{_BLOCK}\.(output|lang_output|visn_output)\.dense", "linear"),
    (rf"lxmert\.{_BLOCK}\.(output|lang_output|visn_output)\.LayerNorm", "layer_norm"),
    (r"lxmert\.pooler\.dense", "linear"),
    # The MLM decoder matrix is not stored: TF multiplies by the word-embedding table, and PyTorch's
    # cls.predictions.decoder.weight is tied to lxmert.embeddings.word_embeddings.weight, so it is
    # left out of the state dict on purpose. Only the decoder's bias is a variable of its own.
    (r"cls\.predictions", "bias"),
    (r"cls\.predictions\.transform\.dense", "linear"),
    (r"cls\.predictions\.transform\.LayerNorm", "layer_norm"),
    (r"cls\.seq_relationship", "linear"),
    (r"obj_predict_head\.transform\.dense", "linear"),
    (r"obj_predict_head\.transform\.LayerNorm", "layer_norm"),
    (r"obj_predict_head\.decoder_dict\.\w+", "linear"),
    (r"answer_head\.logit_fc\.[03]", "linear"),  # index 1 is the GELU
    (r"answer_head\.logit_fc\.2", "layer_norm"),
]

# The head modules of the LXMERT family (LxmertForPreTraining's, besides the backbone `lxmert`); in a
# TF file, the layers that hold them.
HEAD_MODULES = ("cls", "obj_predict_head", "answer_head")


@dataclass
class TFCheckpoint:
    """Tensors of a TF LXMERT checkpoint under transformers' PyTorch state-dict names.

    state_dict: float32, contiguous tensors. For "LxmertModel" the names begin at `embeddings.`,
        `encoder.`, `pooler.`; for "LxmertForPreTraining" at `lxmert.`, `cls.`, `obj_predict_head.`,
        `answer_head.`, and `cls.predictions.decoder.weight` is absent (tied to the word embeddings).
    sources: state-dict name -> the h5 dataset path it was read from.
    architecture: "LxmertModel" or "LxmertForPreTraining".
    """

    state_dict: dict[str, torch.Tensor]
    sources: dict[str, str]
    architecture: str


def read_tf_checkpoint(path: str | Path, expected_shapes: Mapping[str, tuple[int, ...]] | None = None) -> TFCheckpoint:
    """Read a `tf_model.h5` saved by `TFLxmertModel` or `TFLxmertForPreTraining`.

    expected_shapes: the shape of every tensor the model's config has, under LxmertForPreTraining's
    names (`lxmert.`, `cls.`, ...). With it each dataset's shape is checked before the dataset is read
    (a small file may declare a dataset of gigabytes), and datasets of heads that the config lacks are
    not read. Raises CheckpointError if the file is missing, not HDF5, truncated, not a Keras weights
    file, holds a dataset that is no LXMERT parameter (every such dataset is named), or one of another
    shape than expected (the dataset and both shapes are named).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the tf_model.h5 file inside it")
    if not path.is_file():
        raise CheckpointError(f"TF checkpoint {path} does not exist")
    try:
        with h5py.File(path, "r") as h5:
            return _read_keras_weights(h5, path, expected_shapes)
    except OSError as error:
        # h5py says "file signature not found" for a non-HDF5 file and "truncated file" for a cut one.
        raise CheckpointError(f"cannot read {path} as an HDF5 file: {str(error)[:300]}") from error


def _read_keras_weights(
    h5: h5py.File, path: Path, expected_shapes: Mapping[str, tuple[int, ...]] | None
) -> TFCheckpoint:
    if "layer_names" not in h5.attrs:
        raise CheckpointError(f"{path} is HDF5 but not a Keras weights file: its root has no 'layer_names' attribute")
    layer_names = _strings(h5.attrs["layer_names"])
    missing_groups = [name for name in layer_names if not isinstance(h5.get(name), h5py.Group)]
    if missing_groups:
        raise CheckpointError(
            f"{path}: layer_names lists groups that the file does not have: {name_list(missing_groups)}"
        )

    datasets = [(layer, name) for layer in layer_names for name in _dataset_names(h5[layer], path)]
    # Copies stored under another layer's group (the embeddings under `cls`) go last, so that
    # `sources` names the owner's dataset, e.g. lxmert/... rather than cls/....
    datasets.sort(key=lambda item: item[0] != _scope_root(item[1]))
    architecture = _architecture(layer_names, [name for _, name in datasets])

    state_dict: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    unknown: list[str] = []
    for layer, name in datasets:
        source = f"{layer}/{name}"
        target = _torch_name(name, architecture)
        if target is None:
            unknown.append(source)
            continue
        torch_name, transpose = target
        dataset = h5[source]
        if transpose and dataset.ndim != 2:
            raise CheckpointError(f"{path}: {source} is a kernel of shape {dataset.shape}, expected 2-D")
        if expected_shapes is not None:
            full_name = torch_name if architecture == "LxmertForPreTraining" else f"lxmert.{torch_name}"
            if full_name not in expected_shapes:
                continue  # a head that the model's config does not have: never used
            _check_shape(dataset, source, torch_name, tuple(expected_shapes[full_name]), transpose, path)
        array = _float32(dataset, source, path)
        if transpose:
            array = array.T
        if torch_name in state_dict:
            # Keras lists the embedding weights a second time under `cls` (the MLM head holds the
            # embedding layer); such copies must equal the first, and are then skipped.
            first = sources[torch_name]
            if not np.array_equal(state_dict[torch_name].numpy(), array):
                raise CheckpointError(
                    f"{path}: {source} and {first} both map to {torch_name} but hold different values"
                )
            continue
        state_dict[torch_name] = torch.from_numpy(np.ascontiguousarray(array))
        sources[torch_name] = source
    if unknown:
        raise CheckpointError(
            f"{path}: {len(unknown)} h5 dataset(s) map to no {architecture} parameter: {name_list(unknown)}"
        )
    return TFCheckpoint(state_dict=state_dict, sources=sources, architecture=architecture)


def _dataset_names(group: h5py.Group, path: Path) -> list[str]:
    """The group's datasets, relative to it: those in weight_names first (Keras order), then any others."""
    listed = _strings(group.attrs.get("weight_names", []))
    absent = [name for name in listed if not isinstance(group.get(name), h5py.Dataset)]
    if absent:
        absent_paths = [f"{group.name.lstrip('/')}/{name}" for name in absent]
        raise CheckpointError(
            f"{path}: weight_names lists datasets that are not in the file: {name_list(absent_paths)}"
        )
    found: list[str] = []
    group.visititems(lambda name, item: found.append(name) if isinstance(item, h5py.Dataset) else None)
    return listed + sorted(set(found) - set(listed))


def _architecture(layer_names: list[str], dataset_names: list[str]) -> str:
    if any(layer in HEAD_MODULES for layer in layer_names):
        return "LxmertForPreTraining"
    # A pretraining model with every head switched off would store only `lxmert`; its Keras model name
    # (tf_lxmert_for_pre_training, maybe with a suffix like _1) still tells it apart.
    if any(name.split("/", 1)[0].startswith("tf_lxmert_for_pre_training") for name in dataset_names):
        return "LxmertForPreTraining"
    return "LxmertModel"


def _scope_root(weight_name: str) -> str:
    """`tf_lxmert_for_pre_training/lxmert/embeddings/...` -> `lxmert` (the layer that owns the weight)."""
    components = weight_name.split("/")
    return components[1] if len(components) > 1 else ""


def _torch_name(weight_name: str, architecture: str) -> tuple[str, bool] | None:
    """`tf_lxmert_model/lxmert/pooler/dense/kernel:0` -> ("pooler.dense.weight", True); None if unknown."""
    # The first component is the Keras model name (tf_lxmert_model, tf_lxmert_for_pre_training, or
    # either with a suffix like _1), so it is skipped rather than matched.
    components = re.sub(r":\d+$", "", weight_name).split("/")[1:]
    if len(components) < 2:
        return None
    scope, variable = "/".join(components[:-1]), components[-1]
    for pattern, replacement in _SCOPE_REWRITES:
        scope = re.sub(pattern, replacement, scope)
    kind = next((kind for pattern, kind in _KNOWN_MODULES if re.fullmatch(pattern, scope)), None)
    if kind is None or variable not in _VARIABLES[kind]:
        return None
    parameter, transpose = _VARIABLES[kind][variable]
    name = f"{scope}.{parameter}"
    if architecture == "LxmertModel":
        # PyTorch's LxmertModel is the backbone itself: its names start below `lxmert.`.
        if not name.startswith("lxmert."):
            return None
        name = name.removeprefix("lxmert.")
    return name, transpose


def _check_shape(
    dataset: h5py.Dataset, source: str, torch_name: str, expected: tuple[int, ...], transpose: bool, path: Path
) -> None:
    stored = expected[::-1] if transpose else expected  # a Keras kernel is (in, out), a torch weight (out, in)
    if tuple(dataset.shape) == stored:
        return
    how = f", which a Keras kernel stores transposed as {stored}" if transpose else ""
    raise CheckpointError(
        f"{path} does not fit the model's config: {source} has shape {tuple(dataset.shape)} but {torch_name} is "
        f"{expected}{how}"
    )


def _float32(dataset: h5py.Dataset, source: str, path: Path) -> np.ndarray:
    """The dataset's values as float32, its dtype checked before it is read."""
    if not np.issubdtype(dataset.dtype, np.floating):
        raise CheckpointError(f"{path}: {source} has dtype {dataset.dtype}, expected a floating-point tensor")
    return dataset[()].astype(np.float32, copy=False)


def _strings(values) -> list[str]:
    # h5py 3 reads variable-length string attributes as str; older h5py and fixed-length ones give bytes.
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]
