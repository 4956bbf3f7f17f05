"""read_tf_checkpoint against the tf-lxmert-tiny fixture (tests/fixtures/tf-lxmert-tiny/README.md).

References: the fixture's name_map_*.tsv (names, shapes, transposes) and the TF outputs in
outputs_*.npz, reproduced through transformers' PyTorch LXMERT classes (an independent oracle) and,
through ours (from_pretrained on the fixture folders). Tolerance: atol=1e-4, rtol=0; the README measured at most 3.1e-6.
"""

import ast
import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import transformers
from helpers import FIXTURES

import lxmert
from lxmert.checkpoints import CheckpointError
from lxmert.tf_checkpoint import read_tf_checkpoint

FIXTURE = FIXTURES / "tf-lxmert-tiny"
MODEL_H5 = FIXTURE / "model" / "tf_model.h5"
PRETRAINING_H5 = FIXTURE / "pretraining" / "tf_model.h5"
TIED_DECODER = "cls.predictions.decoder.weight"
WORD_EMBEDDINGS = "lxmert.embeddings.word_embeddings.weight"
ATOL = 1e-4
# The README's worst PyTorch-vs-TF difference is 3.1e-6; this catches a slow drift long before ATOL.
EXPECTED_MAX_DIFF = 2e-5

ARCHITECTURES = {"model": "LxmertModel", "pretraining": "LxmertForPreTraining"}
CASES = [("model", ""), ("model", "_vmask"), ("pretraining", ""), ("pretraining", "_vmask")]


def read_name_map(kind: str) -> list[dict[str, str]]:
    with open(FIXTURE / f"name_map_{kind}.tsv", newline="") as tsv:
        return list(csv.DictReader(tsv, delimiter="\t"))


def is_tied_row(row: dict[str, str]) -> bool:
    return row["h5_dataset_path"] == "-"


def is_duplicate_row(row: dict[str, str]) -> bool:
    return row["note"].startswith("duplicate of ")


# --- names, shapes, transposes ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["model", "pretraining"])
def test_names_shapes_and_sources_match_name_map(kind):
    checkpoint = read_tf_checkpoint(FIXTURE / kind / "tf_model.h5")
    rows = read_name_map(kind)
    stored = [row for row in rows if not is_tied_row(row) and not is_duplicate_row(row)]

    assert checkpoint.architecture == ARCHITECTURES[kind]
    assert set(checkpoint.state_dict) == {row["pytorch_state_dict_name"] for row in stored}
    assert set(checkpoint.sources) == set(checkpoint.state_dict)
    for row in stored:
        name = row["pytorch_state_dict_name"]
        assert checkpoint.sources[name] == row["h5_dataset_path"]
        assert tuple(checkpoint.state_dict[name].shape) == ast.literal_eval(row["pytorch_shape"]), name
    for tensor in checkpoint.state_dict.values():
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()


def test_model_has_one_tensor_per_dataset():
    assert len(read_name_map("model")) == 147
    assert len(read_tf_checkpoint(MODEL_H5).state_dict) == 147


def test_pretraining_skips_tied_decoder_and_cls_duplicates():
    checkpoint = read_tf_checkpoint(PRETRAINING_H5)
    rows = read_name_map("pretraining")
    tied = [row for row in rows if is_tied_row(row)]
    duplicates = [row for row in rows if is_duplicate_row(row)]

    # 175 datasets - 5 duplicates = 170 tensors; the README's 171 counts the tied decoder too.
    assert len(checkpoint.state_dict) == 170
    assert [row["pytorch_state_dict_name"] for row in tied] == [TIED_DECODER]
    assert TIED_DECODER not in checkpoint.state_dict
    assert ast.literal_eval(tied[0]["pytorch_shape"]) == tuple(checkpoint.state_dict[WORD_EMBEDDINGS].shape)

    assert len(duplicates) == 5
    for row in duplicates:
        assert row["h5_dataset_path"].startswith("cls/")
        owner = row["note"].removeprefix("duplicate of ").split(" ")[0]
        assert owner.startswith("lxmert/")
        # The name is kept once, sourced from the lxmert/ copy.
        assert checkpoint.sources[row["pytorch_state_dict_name"]] == owner


@pytest.mark.parametrize("kind", ["model", "pretraining"])
def test_values_transposed_as_name_map_says(kind):
    checkpoint = read_tf_checkpoint(FIXTURE / kind / "tf_model.h5")
    with h5py.File(FIXTURE / kind / "tf_model.h5", "r") as h5:
        for row in read_name_map(kind):
            if is_tied_row(row):
                continue
            stored = h5[row["h5_dataset_path"]][()]
            assert stored.shape == ast.literal_eval(row["h5_shape"])
            expected = stored.T if row["transpose"] == "yes" else stored
            assert row["transpose"] in ("yes", "no")
            np.testing.assert_array_equal(checkpoint.state_dict[row["pytorch_state_dict_name"]].numpy(), expected)


# --- numeric parity with TF's outputs ----------------------------------------------------------------


def load_inputs(case: str) -> dict[str, torch.Tensor]:
    with np.load(FIXTURE / f"inputs{case}.npz") as arrays:
        inputs = {key: torch.from_numpy(arrays[key]) for key in arrays.files}
    assert ("visual_attention_mask" in inputs) == (case == "_vmask")
    return inputs


def flatten(outputs, keys: list[str], prefix: str = "") -> dict[str, torch.Tensor]:
    """Output fields as outputs_*.npz names them: tuples split into `<name>_<i>`."""
    flat = {}
    for key in keys:
        value = getattr(outputs, key)
        if isinstance(value, tuple):
            flat.update({f"{prefix}{key}_{i}": item for i, item in enumerate(value)})
        else:
            flat[f"{prefix}{key}"] = value
    return flat


HIDDEN_AND_ATTENTIONS = [
    "language_hidden_states",
    "vision_hidden_states",
    "language_attentions",
    "vision_attentions",
    "cross_encoder_attentions",
]
BACKBONE_OUTPUTS = ["language_output", "vision_output", "pooled_output"]
HEAD_OUTPUTS = ["prediction_logits", "cross_relationship_score", "question_answering_score"]


@torch.no_grad()
def run_like_tf(model, kind: str, case: str) -> dict[str, torch.Tensor]:
    """Run `model` as the fixture ran TF, returning every array that outputs_{kind}{case}.npz holds."""
    inputs = load_inputs(case)
    options = {"output_attentions": True, "output_hidden_states": True, "return_dict": True}
    outputs = model(**inputs, **options)
    if kind == "model":
        return flatten(outputs, BACKBONE_OUTPUTS + HIDDEN_AND_ATTENTIONS)
    flat = flatten(outputs, HEAD_OUTPUTS + HIDDEN_AND_ATTENTIONS)
    # The extras: the object head on the last vision state, and the backbone run alone.
    object_scores = model.obj_predict_head(outputs.vision_hidden_states[-1])
    flat.update({f"obj_predict_head_{name}": scores for name, scores in object_scores.items()})
    flat.update(flatten(model.lxmert(**inputs, **options), BACKBONE_OUTPUTS, prefix="backbone_"))
    return flat


def assert_matches_tf(ours: dict[str, torch.Tensor], kind: str, case: str) -> None:
    with np.load(FIXTURE / f"outputs_{kind}{case}.npz") as reference:
        assert set(reference.files) <= set(ours), sorted(set(reference.files) - set(ours))
        differences = {}
        for key in reference.files:
            expected = reference[key]
            actual = ours[key].detach().float().cpu().numpy()
            assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
            differences[key] = float(np.abs(actual - expected).max())
    assert len(differences) == {"model": 15, "pretraining": 21}[kind]  # as the README lists them
    too_far = {key: diff for key, diff in differences.items() if diff > ATOL}
    assert not too_far, f"max abs diff over atol={ATOL}: {too_far}"
    worst = max(differences, key=differences.get)
    assert differences[worst] < EXPECTED_MAX_DIFF, f"{worst}: {differences[worst]:.2e}"


def transformers_model(kind: str):
    config = transformers.LxmertConfig.from_json_file(FIXTURE / kind / "config.json")
    return getattr(transformers, ARCHITECTURES[kind])(config)


def load_and_check_keys(model, kind: str) -> None:
    checkpoint = read_tf_checkpoint(FIXTURE / kind / "tf_model.h5")
    result = model.load_state_dict(checkpoint.state_dict, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys == ([TIED_DECODER] if kind == "pretraining" else [])
    if kind == "pretraining":
        decoder = model.cls.predictions.decoder.weight
        word_embeddings = model.lxmert.embeddings.word_embeddings.weight
        assert decoder.data_ptr() == word_embeddings.data_ptr(), "decoder is not tied to the word embeddings"
        assert torch.equal(decoder, checkpoint.state_dict[WORD_EMBEDDINGS])
    model.eval()


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_transformers_model_reproduces_tf_outputs(kind, case):
    model = transformers_model(kind)
    load_and_check_keys(model, kind)
    assert_matches_tf(run_like_tf(model, kind, case), kind, case)


@pytest.mark.parametrize(("kind", "case"), CASES)
def test_our_from_pretrained_reproduces_tf_outputs(kind, case):
    # The folder holds config.json and tf_model.h5 only: from_pretrained reads the TF weights by itself.
    model = getattr(lxmert, ARCHITECTURES[kind]).from_pretrained(FIXTURE / kind)
    assert_matches_tf(run_like_tf(model, kind, case), kind, case)


def test_from_tf_flag_and_other_classes(tmp_path):
    """A TF pretraining checkpoint also loads into the backbone and the QA class (heads it lacks unused)."""
    pretraining = lxmert.LxmertForPreTraining.from_pretrained(FIXTURE / "pretraining", from_tf=True)
    backbone = lxmert.LxmertModel.from_pretrained(FIXTURE / "pretraining", from_tf=True)
    qa = lxmert.LxmertForQuestionAnswering.from_pretrained(FIXTURE / "pretraining")
    inputs = load_inputs("")
    with torch.no_grad():
        expected = pretraining(**inputs)
        assert torch.equal(backbone(**inputs).pooled_output, pretraining.lxmert(**inputs).pooled_output)
        assert (qa(**inputs).question_answering_score - expected.question_answering_score).abs().max() < 1e-5
    # from_tf=True insists on tf_model.h5 even when PyTorch weights sit next to it
    shutil.copytree(FIXTURE / "model", tmp_path / "both")
    tf_model = lxmert.LxmertModel.from_pretrained(tmp_path / "both")
    lxmert.LxmertModel(tf_model.config).save_pretrained(tmp_path / "both")  # random weights, safetensors
    random = lxmert.LxmertModel.from_pretrained(tmp_path / "both")
    assert not torch.equal(random.pooler.dense.weight, tf_model.pooler.dense.weight)
    again = lxmert.LxmertModel.from_pretrained(tmp_path / "both", from_tf=True)
    assert torch.equal(again.pooler.dense.weight, tf_model.pooler.dense.weight)


def test_misshaped_h5_dataset_is_named(tmp_path):
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    path = tmp_path / "model" / "tf_model.h5"
    name = "tf_lxmert_model/lxmert/pooler/dense/bias:0"
    with h5py.File(path, "r+") as h5:
        del h5["lxmert"][name]
        h5["lxmert"].create_dataset(name, data=np.zeros(31, dtype=np.float32))
    with pytest.raises(
        CheckpointError,
        match=r"tf_model\.h5 does not fit the model's config: lxmert/tf_lxmert_model/lxmert/pooler/dense/bias:0 "
        r"has shape \(31,\) but pooler\.dense\.bias is \(32,\)",
    ):
        lxmert.LxmertModel.from_pretrained(tmp_path / "model")


@pytest.fixture
def no_large_reads(monkeypatch):
    """Fails a test whose code reads an h5 dataset of more than 10 million values (40 MB of float32)."""
    original = h5py.Dataset.__getitem__

    def read(dataset, selection):
        assert dataset.size <= 10_000_000, f"read {dataset.name} of shape {dataset.shape}"
        return original(dataset, selection)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", read)


def test_huge_declared_dataset_is_refused_before_it_is_read(tmp_path, no_large_reads):
    """A small file may declare a dataset of gigabytes (chunked, nothing written): its shape is compared
    with the config's before anything is read."""
    shutil.copytree(FIXTURE / "model", tmp_path / "model")
    path = tmp_path / "model" / "tf_model.h5"
    name = "tf_lxmert_model/lxmert/encoder/visn_fc/visn_fc/kernel:0"
    with h5py.File(path, "r+") as h5:
        expected = h5["lxmert"][name].shape
        del h5["lxmert"][name]
        h5["lxmert"].create_dataset(name, shape=(2_000_000, 1000), dtype="f4", chunks=(1, 1000))
    assert path.stat().st_size < 2_000_000  # the 7.45 GiB are only declared
    with pytest.raises(CheckpointError) as error:
        lxmert.LxmertModel.from_pretrained(tmp_path / "model")
    message = str(error.value)
    assert str(path) in message and f"lxmert/{name} has shape (2000000, 1000)" in message
    torch_shape = tuple(reversed(expected))
    assert f"encoder.visn_fc.visn_fc.weight is {torch_shape}" in message
    assert f"stores transposed as {expected}" in message


def test_error_messages_quote_a_bounded_number_of_names(tmp_path):
    path = copy_fixture(MODEL_H5, tmp_path)
    long_scope = "x" * 5000
    with h5py.File(path, "r+") as h5:
        for i in range(300):
            h5[f"lxmert/tf_lxmert_model/lxmert/{long_scope}{i}/kernel:0"] = np.zeros(1, dtype=np.float32)
    with pytest.raises(CheckpointError, match="300 h5 dataset.* and 290 more") as error:
        read_tf_checkpoint(path)
    assert len(str(error.value)) < 5000


# --- robustness: names and attributes --------------------------------------------------------------


def copy_fixture(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "tf_model.h5"
    shutil.copyfile(source, target)
    return target


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_keras_model_name_with_suffix_is_skipped(tmp_path):
    path = copy_fixture(MODEL_H5, tmp_path)
    with h5py.File(path, "r+") as h5:
        h5.move("lxmert/tf_lxmert_model", "lxmert/tf_lxmert_model_1")
        names = [
            name.replace("tf_lxmert_model/", "tf_lxmert_model_1/", 1) for name in h5["lxmert"].attrs["weight_names"]
        ]
        h5["lxmert"].attrs["weight_names"] = names

    checkpoint = read_tf_checkpoint(path)
    assert checkpoint.architecture == "LxmertModel"
    assert same_tensors(checkpoint.state_dict, read_tf_checkpoint(MODEL_H5).state_dict)
    assert checkpoint.sources["pooler.dense.weight"] == "lxmert/tf_lxmert_model_1/lxmert/pooler/dense/kernel:0"


def test_bytes_attributes_are_decoded(tmp_path):
    path = copy_fixture(PRETRAINING_H5, tmp_path)
    with h5py.File(path, "r+") as h5:
        # Fixed-length byte strings read back as bytes, as older h5py gives for these attributes.
        for owner, attribute in [(h5, "layer_names")] + [
            (h5[name], "weight_names") for name in h5.attrs["layer_names"]
        ]:
            owner.attrs[attribute] = np.array([value.encode() for value in owner.attrs[attribute]], dtype="S")
        assert isinstance(h5.attrs["layer_names"][0], bytes)

    checkpoint = read_tf_checkpoint(path)
    assert checkpoint.architecture == "LxmertForPreTraining"
    assert same_tensors(checkpoint.state_dict, read_tf_checkpoint(PRETRAINING_H5).state_dict)


# --- bad input -------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "tf_model.h5"
    with pytest.raises(CheckpointError, match="does not exist") as error:
        read_tf_checkpoint(path)
    assert str(path) in str(error.value)


def test_text_file_named_h5(tmp_path):
    path = tmp_path / "tf_model.h5"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="HDF5") as error:
        read_tf_checkpoint(path)
    assert str(path) in str(error.value)


def test_truncated_file(tmp_path):
    path = tmp_path / "tf_model.h5"
    data = MODEL_H5.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as error:
        read_tf_checkpoint(path)
    assert str(path) in str(error.value)


def test_hdf5_without_layer_names(tmp_path):
    path = tmp_path / "tf_model.h5"
    with h5py.File(path, "w") as h5:
        h5["lxmert/weight:0"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(CheckpointError, match="layer_names") as error:
        read_tf_checkpoint(path)
    assert str(path) in str(error.value)


def test_unmapped_datasets_are_all_named(tmp_path):
    path = copy_fixture(MODEL_H5, tmp_path)
    unknown_scope = "lxmert/tf_lxmert_model/lxmert/encoder/mystery/kernel:0"
    unknown_variable = "lxmert/tf_lxmert_model/lxmert/pooler/dense/moving_mean:0"
    with h5py.File(path, "r+") as h5:
        h5[unknown_scope] = np.zeros((32, 32), dtype=np.float32)
        h5[unknown_variable] = np.zeros(32, dtype=np.float32)
    with pytest.raises(CheckpointError) as error:
        read_tf_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and unknown_scope in message and unknown_variable in message


def test_head_inside_backbone_file_is_unmapped(tmp_path):
    # LxmertModel has no cls head, so a cls weight in a backbone file fits none of its parameters.
    path = copy_fixture(MODEL_H5, tmp_path)
    stray = "lxmert/tf_lxmert_model/cls/seq_relationship/bias:0"
    with h5py.File(path, "r+") as h5:
        h5[stray] = np.zeros(2, dtype=np.float32)
    with pytest.raises(CheckpointError, match="LxmertModel") as error:
        read_tf_checkpoint(path)
    assert stray in str(error.value)


def test_cls_duplicate_that_differs(tmp_path):
    path = copy_fixture(PRETRAINING_H5, tmp_path)
    duplicate = "cls/tf_lxmert_for_pre_training/lxmert/embeddings/LayerNorm/gamma:0"
    owner = "lxmert/tf_lxmert_for_pre_training/lxmert/embeddings/LayerNorm/gamma:0"
    with h5py.File(path, "r+") as h5:
        h5[duplicate][0] += 1.0
    with pytest.raises(CheckpointError, match="different values") as error:
        read_tf_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and duplicate in message and owner in message


def test_weight_names_listing_absent_dataset(tmp_path):
    path = copy_fixture(MODEL_H5, tmp_path)
    absent = "tf_lxmert_model/lxmert/pooler/dense/bias:0"
    with h5py.File(path, "r+") as h5:
        del h5[f"lxmert/{absent}"]
    with pytest.raises(CheckpointError, match="not in the file") as error:
        read_tf_checkpoint(path)
    assert str(path) in str(error.value) and f"lxmert/{absent}" in str(error.value)
