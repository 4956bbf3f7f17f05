"""vqa(..., explain=True): the answers and, per word of the question, the language-to-vision attention over
the regions, and its pictures.

Reference: transformers' LxmertForQuestionAnswering on the same weights and inputs, one pair at a time (no
padding), with output_attentions=True: its cross_encoder_attentions averaged over the heads are our per-token
weights within 1e-5 (float32 on CPU, as the other parity tests). Rollout has no reference implementation; its
reference here is the docstring's rule applied by hand to the attention probabilities of transformers' own
modules (recomputed with output_attentions=True from the inputs each module received).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from extract import FeatureStore, StoreMetadata, StoreWriter
from extract.draw import region_heatmap
from lxmert import LxmertForQuestionAnswering, LxmertTokenizerFast
from pipelines.explain import Explanation, merge_word_pieces
from pipelines.vqa import VisualQuestionAnsweringPipeline

ATOL = 1e-5
QUESTIONS = ["how many giraffes are there?", "is the small dog sleeping on a red sofa near the window?"]
BOXES = {"a": 5, "b": 9}  # regions per stored image: the batch pads the boxes of "a"


@pytest.fixture(scope="module")
def answerer(vqa_dir) -> VisualQuestionAnsweringPipeline:
    """The VQA pipeline without a detector (stored features), on the tiny LXMERT of conftest.py."""
    return VisualQuestionAnsweringPipeline(
        LxmertForQuestionAnswering.from_pretrained(vqa_dir), LxmertTokenizerFast(), None
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("explain") / "features.h5"
    metadata = StoreMetadata(
        num_boxes="5-9", rule="test", detector_config={}, checkpoint_sha256="0" * 64, feature_dim=256
    )
    with StoreWriter(path, metadata=metadata, feature_dtype="float32") as writer:
        for image_id, count in BOXES.items():
            corners = rng.uniform(0, 300, (count, 2))
            boxes = np.concatenate([corners, corners + rng.uniform(20, 100, (count, 2))], axis=1)
            writer.append(
                [
                    {
                        "id": image_id,
                        "height": 400,
                        "width": 400,
                        "features": rng.normal(0, 1, (count, 256)).astype(np.float32),
                        "boxes": boxes.astype(np.float32),
                        "object_ids": rng.integers(0, 1600, count),
                        "object_scores": rng.random(count, dtype=np.float32),
                        "attribute_ids": rng.integers(0, 400, count),
                        "attribute_scores": rng.random(count, dtype=np.float32),
                    }
                ]
            )
    with FeatureStore(path) as opened:
        yield opened


def reference_attentions(vqa_dir, store, image_id: str, question: str) -> tuple[list[str], tuple, list[dict]]:
    """transformers' tokens, cross_encoder_attentions and, per cross-modality layer, the probabilities of its
    four attentions, for one pair alone."""
    model = transformers.LxmertForQuestionAnswering.from_pretrained(vqa_dir).eval()
    tokenizer = transformers.LxmertTokenizerFast(vocab_file=str(LxmertTokenizerFast().vocab_file))
    encoded = tokenizer(question, return_tensors="pt")
    record = store[image_id]
    recorded = [{} for _ in model.lxmert.encoder.x_layers]
    handles, busy = [], [False]

    def keep(index, name):
        def hook(module, args, kwargs, output):
            if busy[0]:
                return
            busy[0] = True  # recompute the probabilities from the same inputs (the layer asked for none)
            hidden, context = args[0], args[1]
            mask = args[2] if len(args) > 2 else kwargs.get("attention_mask")
            probs = module(hidden, context, mask, output_attentions=True)[1]
            busy[0] = False
            key = name
            if name == "cross":  # language over vision first, then vision over language
                key = "vision_over_language" if "language_over_vision" in recorded[index] else "language_over_vision"
            recorded[index][key] = probs

        return hook

    for index, layer in enumerate(model.lxmert.encoder.x_layers):
        for module, name in (
            (layer.visual_attention.att, "cross"),
            (layer.lang_self_att.self, "language"),
            (layer.visn_self_att.self, "vision"),
        ):
            handles.append(module.register_forward_hook(keep(index, name), with_kwargs=True))
    with torch.no_grad():
        output = model(
            **encoded,
            visual_feats=torch.from_numpy(record.features)[None],
            visual_pos=torch.from_numpy(record.normalized_boxes)[None],
            output_attentions=True,
        )
    for handle in handles:
        handle.remove()
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
    return tokens, output.cross_encoder_attentions, recorded


def rollout_by_hand(recorded: list[dict]) -> torch.Tensor:
    """The rollout rule of pipelines.explain, written out step by step for one unpadded pair."""
    heads = {name: [layer[name][0].mean(0).double() for layer in recorded] for name in recorded[0]}
    tokens, regions = heads["language_over_vision"][0].shape
    text = torch.cat([torch.eye(tokens), torch.zeros(tokens, regions)], dim=1).double()
    image = torch.cat([torch.zeros(regions, tokens), torch.eye(regions)], dim=1).double()
    for layer in range(len(recorded)):
        after_cross = (text + heads["language_over_vision"][layer] @ image) / 2
        if layer == len(recorded) - 1:
            text = after_cross
            break
        image_after_cross = (image + heads["vision_over_language"][layer] @ text) / 2
        text = (after_cross + heads["language"][layer] @ after_cross) / 2
        image = (image_after_cross + heads["vision"][layer] @ image_after_cross) / 2
    region_part = text[:, tokens:]
    return region_part / region_part.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("attention_layer", [0, 1, -1, "mean", "rollout"])
def test_weights_are_transformers_cross_encoder_attentions(answerer, store, vqa_dir, attention_layer):
    ours = answerer(
        image_id=list(BOXES), store=store, question=QUESTIONS, explain=True, attention_layer=attention_layer
    )  # one batch: the texts and the boxes are padded
    for explanation, image_id, question in zip(ours, BOXES, QUESTIONS, strict=True):
        tokens, cross, recorded = reference_attentions(vqa_dir, store, image_id, question)
        assert explanation.tokens == tokens
        per_layer = [layer[0].mean(0) for layer in cross]  # (tokens, regions) per layer
        if attention_layer == "mean":
            expected = torch.stack(per_layer).mean(0)
        elif attention_layer == "rollout":
            expected = rollout_by_hand(recorded).float()
        else:
            expected = per_layer[attention_layer]
        assert explanation.token_weights.shape == (len(tokens), BOXES[image_id])
        torch.testing.assert_close(explanation.token_weights, expected, rtol=0, atol=ATOL)
        torch.testing.assert_close(explanation.weights.sum(1), torch.ones(len(explanation.words)), rtol=0, atol=ATOL)


def test_rollout_of_one_layer_is_that_layers_attention(answerer, store):
    # One cross-modality layer: the mixture is half the tokens, half the regions as that layer attends to them.
    model = answerer.model
    layers = model.lxmert.encoder.x_layers
    kept = torch.nn.ModuleList(layers[-1:])
    model.lxmert.encoder.x_layers, model.config.x_layers = kept, 1
    try:
        rolled = answerer(image_id="b", store=store, question=QUESTIONS[0], explain=True, attention_layer="rollout")
        last = answerer(image_id="b", store=store, question=QUESTIONS[0], explain=True)
    finally:
        model.lxmert.encoder.x_layers, model.config.x_layers = layers, len(layers)
    torch.testing.assert_close(rolled.token_weights, last.token_weights, rtol=0, atol=ATOL)


def test_word_pieces_are_merged_into_words(answerer, store):
    explanation = answerer(image_id="a", store=store, question="How many giraffes?", explain=True)
    assert explanation.tokens == ["[CLS]", "how", "many", "gi", "##raf", "##fe", "##s", "?", "[SEP]"]
    assert explanation.words == ["[CLS]", "how", "many", "giraffes", "?", "[SEP]"]
    torch.testing.assert_close(explanation.weights[3], explanation.token_weights[3:7].mean(0))
    torch.testing.assert_close(explanation.weights[[0, 1, 2, 4, 5]], explanation.token_weights[[0, 1, 2, 7, 8]])
    assert [item["word"] for item in explanation.attention] == explanation.words
    assert all(len(item["weights"]) == BOXES["a"] for item in explanation.attention)
    # the whole question: its words, without [CLS] and [SEP]
    torch.testing.assert_close(explanation.question_weights, explanation.weights[1:5].mean(0))
    top = explanation.top_regions(3)
    assert [item["weight"] for item in top] == sorted(explanation.question_weights.tolist(), reverse=True)[:3]


def test_merge_word_pieces_by_hand():
    tokens = ["[CLS]", "##a", "un", "##believ", "##able", "##", "[SEP]", "##x"]
    assert merge_word_pieces(tokens) == [
        ("[CLS]", [0]),
        ("##a", [1]),  # a piece never joins [CLS] or [SEP]
        ("unbelievable", [2, 3, 4, 5]),  # "##" adds nothing to the word but its weights
        ("[SEP]", [6]),
        ("##x", [7]),
    ]


def test_answers_are_those_without_explain(answerer, store):
    plain = answerer(image_id=list(BOXES), store=store, question=QUESTIONS, top_k=7)
    explained = answerer(image_id=list(BOXES), store=store, question=QUESTIONS, top_k=7, explain=True)
    for answers, explanation in zip(plain, explained, strict=True):
        assert [a["answer"] for a in answers] == [a["answer"] for a in explanation.answers]
        assert [a["score"] for a in answers] == pytest.approx([a["score"] for a in explanation.answers], abs=1e-6)


@pytest.mark.parametrize("attention_layer", [2, -3, "last", 1.0, True, None])
def test_bad_attention_layers_are_named(answerer, store, attention_layer):
    with pytest.raises(ValueError, match=r"attention_layer=.*expected a cross-modality layer \(an int from -2 to 1"):
        answerer(image_id="a", store=store, question="why?", explain=True, attention_layer=attention_layer)


def test_drawing_needs_an_image_for_stored_features(answerer, store, images):
    explanation = answerer(image_id="b", store=store, question="what is this?", explain=True)
    assert explanation._repr_png_() is None
    with pytest.raises(ValueError, match=r"has no image .*explanation.draw\(image\)"):
        explanation.draw()
    figure = explanation.draw(images[0])
    width, height = Image.open(images[0]).size
    assert figure.width >= width and figure.height > height
    words = explanation.draw(images[0], per_word=True)
    assert words.height > figure.height // 2  # a header, then rows of 4 word panels


def test_heat_map_of_the_figure_peaks_in_the_most_attended_box():
    # An explanation made by hand: three boxes, the middle one weighted most; the figure's heat map pixels
    # (where the picture differs from the plain image) are strongest inside that box.
    image = np.full((120, 200, 3), 128, dtype=np.uint8)
    boxes = torch.tensor([[0.0, 0.0, 60.0, 60.0], [70.0, 30.0, 130.0, 90.0], [140.0, 60.0, 200.0, 120.0]])
    weights = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.4, 0.3]])
    explanation = Explanation(
        question="what?",
        answers=[{"score": 0.9, "answer": "cat"}],
        words=["[CLS]", "what", "[SEP]"],
        weights=weights,
        tokens=["[CLS]", "what", "[SEP]"],
        token_weights=weights,
        normalized_boxes=boxes / torch.tensor([200.0, 120.0, 200.0, 120.0]),
        boxes=boxes,
        image=image,
    )
    heat = region_heatmap(boxes, explanation.question_weights, (120, 200))
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert 70 <= x < 130 and 30 <= y < 90
    figure = np.asarray(explanation.draw())
    picture = figure[-120:, :200]  # the image: bottom left of the figure, under the (wider) text band
    change = np.abs(picture.astype(int) - 128).sum(axis=2)
    y, x = np.unravel_index(np.argmax(change), change.shape)
    assert 70 <= x < 130 and 30 <= y < 90
    png = explanation._repr_png_()
    assert Image.open(io.BytesIO(png)).size == (figure.shape[1], figure.shape[0])


def test_an_image_explains_with_its_regions_boxes_and_names(vqa, images):
    image = Image.open(images[1])
    explanation = vqa(image=image, question="what is on the table?", explain=True, top_k=2)
    regions = vqa.reader.extractor([image])[0]
    assert explanation.image is image  # the input itself, not a decoded copy
    torch.testing.assert_close(explanation.boxes, regions.boxes)
    torch.testing.assert_close(explanation.normalized_boxes, regions.normalized_boxes)
    assert explanation.region_names == [
        f"{attribute} {name}" for attribute, name in zip(regions.attribute_names, regions.object_names, strict=True)
    ]
    assert len(explanation.answers) == 2 and explanation.weights.shape == (len(explanation.words), len(regions))
    figure = explanation.draw()
    assert figure.width == image.width and figure.height > image.height
    assert Image.open(io.BytesIO(explanation._repr_png_())).size == figure.size
    assert explanation.top_regions(1)[0]["name"] in explanation.region_names


def test_lxmert_ask_draws_where_the_question_looked(vqa, vqa_dir, detector_dir, images, tmp_path, capsys):
    from pipelines.cli import main as cli_main

    question = "what color is the cat?"
    args = ["ask", str(images[2]), question, "--model", str(vqa_dir), "--detector", str(detector_dir)]
    args += ["--device", "cpu", "--top-k", "3"]
    assert cli_main([*args, "--draw", str(tmp_path / "why.png"), "--json"]) == 0
    captured = capsys.readouterr()
    explanation = vqa(image=str(images[2]), question=question, top_k=3, explain=True)
    assert [a["answer"] for a in json.loads(captured.out)] == [a["answer"] for a in explanation.answers]
    assert "why.png: the question's attention drawn" in captured.err
    drawn = np.asarray(Image.open(tmp_path / "why.png"))
    assert np.array_equal(drawn, np.asarray(explanation.draw()))
    assert cli_main([*args, "--draw", str(tmp_path / "words.jpg"), "--per-word", "--attention-layer", "rollout"]) == 0
    rolled = vqa(image=str(images[2]), question=question, explain=True, attention_layer="rollout")
    assert Image.open(tmp_path / "words.jpg").size == rolled.draw(per_word=True).size
    capsys.readouterr()
    # refusals before any model loads: one line each
    assert cli_main([*args, "--per-word"]) == 2
    assert "--per-word goes with --draw OUT" in capsys.readouterr().err
    assert cli_main([*args, "--draw", str(tmp_path / "missing" / "why.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main([*args, "--draw", str(tmp_path / "why.png"), "--attention-layer", "5"]) == 2
    assert "attention_layer=5: expected a cross-modality layer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main([*args, "--attention-layer", "last"])
    assert "expected a layer number, mean or rollout, got 'last'" in capsys.readouterr().err
