"""pipeline("vqa") end to end on real images, with checkpoints loaded from folders like real ones."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub import errors as hub_errors
from PIL import Image

from extract import FeatureStore, ImageLoadError, StoreMetadata, StoreWriter
from lxmert import LxmertForQuestionAnswering
from pipelines import VisualQuestionAnsweringPipeline, pipeline
from pipelines.cli import main as cli_main

QUESTION = "what color is the dog on the left?"
SCORE_TOL = 1e-5  # float32 scores through the same kernels; batching changes summation order only


def by_hand(vqa, image, question: str) -> list[tuple[str, float]]:
    """The answers ranked from the model's own scores on the detector's features, without the pipeline."""
    regions = vqa.reader.extractor([image])[0]
    encoded = vqa.tokenizer([question], return_tensors="pt")
    with torch.no_grad():
        logits = vqa.model(
            **encoded, visual_feats=regions.features[None], visual_pos=regions.normalized_boxes[None]
        ).question_answering_score[0]
    probabilities = torch.sigmoid(logits)
    order = torch.argsort(probabilities, descending=True)
    return [(vqa.answers[i], probabilities[i].item()) for i in order.tolist()]


def assert_same_answers(expected: list[dict], actual: list[dict], tol: float = SCORE_TOL) -> None:
    assert [a["answer"] for a in actual] == [a["answer"] for a in expected]
    assert np.allclose([a["score"] for a in actual], [a["score"] for a in expected], atol=tol, rtol=0)


def test_answer_is_the_argmax_of_the_models_own_scores(vqa, images):
    answers = vqa(image=str(images[0]), question=QUESTION, top_k=7)
    expected = by_hand(vqa, images[0], QUESTION)
    assert [a["answer"] for a in answers] == [answer for answer, _ in expected]
    assert np.allclose([a["score"] for a in answers], [score for _, score in expected], atol=SCORE_TOL, rtol=0)
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert set(answers[0]) == {"score", "answer"}


def test_every_image_form_gives_the_same_answers(vqa, images):
    path = images[1]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    reference = vqa(image=str(path), question=QUESTION)
    for form in (path, path.read_bytes(), Image.open(path), rgb, torch.from_numpy(rgb.copy())):
        assert_same_answers(reference, vqa(image=form, question=QUESTION))
    assert_same_answers(reference, vqa({"image": str(path), "question": QUESTION}))


def test_input_forms_and_result_nesting(vqa, images):
    a, b = str(images[0]), str(images[2])
    single = vqa(image=a, question=QUESTION, top_k=2)
    assert isinstance(single, list) and len(single) == 2 and isinstance(single[0], dict)
    per_question = vqa(image=a, question=[QUESTION, "is it raining?"], top_k=2)
    assert len(per_question) == 2 and isinstance(per_question[0], list)
    assert_same_answers(single, per_question[0])
    per_image = vqa(image=[a, b], question=QUESTION, top_k=2)
    assert_same_answers(single, per_image[0])
    pairs = vqa(image=[a, b], question=["is it raining?", QUESTION], top_k=2)
    assert_same_answers(per_question[1], pairs[0])
    assert_same_answers(per_image[1], pairs[1])
    dicts = vqa([{"image": b, "question": QUESTION}, {"image": a, "question": QUESTION}], top_k=2)
    assert_same_answers(per_image[1], dicts[0])
    assert_same_answers(per_image[0], dicts[1])


def test_batching_gives_the_one_by_one_answers(vqa, images):
    questions = [QUESTION, "how many people are there?", "is this indoors?", "what is on the table?"]
    inputs = [{"image": str(image), "question": questions[i % 4]} for i, image in enumerate(images)]
    batched = vqa(inputs, batch_size=8, top_k=7)
    small_batches = vqa(inputs, batch_size=3, top_k=7)
    for item, together, in_threes in zip(inputs, batched, small_batches, strict=True):
        alone = vqa(item, batch_size=1, top_k=7)
        # Detector passes over several same-size images sum in another order than single ones
        # (extract's tests: features within 4e-6); the answer probabilities move far less than 1e-4.
        assert_same_answers(alone, together, tol=1e-4)
        assert_same_answers(alone, in_threes, tol=1e-4)


class CountingExtractor:
    """Wraps a RegionFeatureExtractor and counts the images it is asked for."""

    def __init__(self, extractor):
        self.extractor, self.images = extractor, 0

    def __getattr__(self, name):
        return getattr(self.extractor, name)

    def __call__(self, images, **kwargs):
        self.images += len(images)
        return self.extractor(images, **kwargs)


def test_several_questions_about_one_image_read_it_once(vqa, images):
    counting = CountingExtractor(vqa.reader.extractor)
    reader = type(vqa.reader)(counting)
    pipe = VisualQuestionAnsweringPipeline(vqa.model, vqa.tokenizer, reader)
    path = str(images[3])
    pipe(image=path, question=[QUESTION, "is it raining?", "what is it?"])
    assert counting.images == 1
    pipe(
        [
            {"image": path, "question": QUESTION},
            {"image": path, "question": "why?"},
            {"image": str(images[4]), "question": "why?"},
        ]
    )
    assert counting.images == 1 + 2


def test_features_stay_on_the_device_until_the_answers(vqa, images, monkeypatch):
    """Between the detector and LXMERT nothing is copied to the host (the CPU path checks the calls)."""
    calls = []
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: calls.append("cpu") or original(self, *a, **k))
    monkeypatch.setattr(torch.Tensor, "numpy", lambda self, *a, **k: pytest.fail("numpy() on the way"))
    vqa(image=str(images[0]), question=QUESTION)
    assert calls == []


def test_top_k_is_clipped_to_the_answers(vqa, images):
    answers = vqa(image=str(images[0]), question=QUESTION, top_k=1000)
    assert len(answers) == 7 and sorted(a["answer"] for a in answers) == sorted(vqa.answers)


def test_precomputed_features_give_the_raw_image_answers(vqa, images, tmp_path):
    regions = vqa.reader.extractor([images[5]])[0]
    metadata = StoreMetadata(
        num_boxes="36", rule="caffe", detector_config={"tiny": True}, checkpoint_sha256="0" * 64, feature_dim=256
    )
    with StoreWriter(tmp_path / "features.h5", metadata=metadata, feature_dtype="float32") as writer:
        height, width = regions.image_size
        writer.append(
            [
                {
                    "id": "image-5",
                    "height": height,
                    "width": width,
                    "features": regions.features.numpy(),
                    "boxes": regions.boxes.numpy(),
                    "normalized_boxes": regions.normalized_boxes.numpy(),
                    "object_ids": regions.object_ids.numpy(),
                    "object_scores": regions.object_scores.numpy(),
                    "attribute_ids": regions.attribute_ids.numpy(),
                    "attribute_scores": regions.attribute_scores.numpy(),
                }
            ]
        )
    raw = vqa(image=str(images[5]), question=QUESTION, top_k=7)
    with FeatureStore(tmp_path / "features.h5") as store:
        assert_same_answers(raw, vqa(image_id="image-5", store=store, question=QUESTION, top_k=7))
        several = vqa(image_id=["image-5", "image-5"], store=store, question=[QUESTION, "why?"], top_k=7)
        assert_same_answers(raw, several[0])
    by_path = vqa(image_id="image-5", store=str(tmp_path / "features.h5"), question=QUESTION, top_k=7)
    assert_same_answers(raw, by_path)
    with pytest.raises(KeyError, match="image-6"):
        vqa(image_id="image-6", store=tmp_path / "features.h5", question=QUESTION)
    with pytest.raises(TypeError, match="store= must be a FeatureStore or the path of one, got int"):
        vqa(image_id="image-5", store=42, question=QUESTION)
    given = vqa(features=regions.features, boxes=regions.normalized_boxes, question=QUESTION, top_k=7)
    assert_same_answers(raw, given)


def test_gqa_scores_are_a_softmax(vqa_dir, detector_dir, images):
    gqa = pipeline("gqa", model=vqa_dir, detector=detector_dir, device="cpu")
    answers = gqa(image=str(images[0]), question=QUESTION, top_k=7)
    assert abs(sum(a["score"] for a in answers) - 1) < 1e-5
    sigmoid = pipeline("visual-question-answering", model=vqa_dir, detector=detector_dir, device="cpu")
    assert [a["answer"] for a in answers] == [
        a["answer"] for a in sigmoid(image=str(images[0]), question=QUESTION, top_k=7)
    ]


# -- the command line --------------------------------------------------------------------------------


def test_lxmert_ask(vqa, vqa_dir, detector_dir, images, capsys):
    args = [
        "ask",
        str(images[0]),
        QUESTION,
        "--model",
        str(vqa_dir),
        "--detector",
        str(detector_dir),
        "--device",
        "cpu",
    ]
    assert cli_main([*args, "--top-k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert_same_answers(vqa(image=str(images[0]), question=QUESTION, top_k=3), printed)
    assert cli_main(args + ["--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == printed[0]["answer"]
    assert cli_main([*args[:1], str(images[0].with_name("nope.jpg")), *args[2:]]) == 2
    assert "nope.jpg" in capsys.readouterr().err


def test_lxmert_ask_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["ask", "--help"])
    assert exit_info.value.code == 0
    assert 'lxmert ask cat.jpg "What color is the cat?"' in capsys.readouterr().out


# -- bad input ---------------------------------------------------------------------------------------


def test_missing_and_unreadable_images(vqa, images, tmp_path):
    with pytest.raises(ImageLoadError, match="no_such_image.jpg"):
        vqa(image=str(tmp_path / "no_such_image.jpg"), question=QUESTION)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        vqa(image=str(text), question=QUESTION)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"question": "   "}, ValueError, "question 0 is empty"),
        ({"question": ["ok?", ""]}, ValueError, "question 1 is empty"),
        ({"question": None}, ValueError, "question= is missing"),
        ({"question": QUESTION, "top_k": 0}, ValueError, "top_k must be an integer >= 1"),
        ({"question": QUESTION, "top_k": -3}, ValueError, "top_k must be an integer >= 1"),
        ({"question": QUESTION, "batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"question": 42}, TypeError, "question 0 is a int"),
    ],
)
def test_bad_questions_and_options(vqa, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        vqa(image=str(images[0]), **kwargs)


def test_mismatched_images_and_questions(vqa, images):
    with pytest.raises(ValueError, match="3 images and 2 questions"):
        vqa(image=[str(images[0])] * 3, question=["a?", "b?"])


def test_long_question_is_truncated_with_a_warning(vqa, images):
    question = "is " + " ".join(["the dog"] * 60) + " on the left?"
    with pytest.warns(UserWarning, match="it was cut to 64") as warned:
        answers = vqa(image=str(images[0]), question=question)
    assert len(answers) == 5
    assert warned[0].filename == __file__  # the warning points at the caller's line


def test_url_needs_network_permission(vqa):
    with pytest.raises(ValueError, match="is a URL and this pipeline does not use the network"):
        vqa(image="https://example.com/cat.jpg", question=QUESTION)


def test_answer_list_must_match_the_head(vqa_dir, detector_dir):
    model = LxmertForQuestionAnswering.from_pretrained(vqa_dir)
    model.config.id2label = {0: "yes", 1: "no"}
    with pytest.raises(ValueError, match="has 7 answers but its answer list .* has 2"):
        pipeline("vqa", model=model, detector=detector_dir, device="cpu")
    model.config.id2label = None
    with pytest.raises(ValueError, match="no answer labels"):
        pipeline("vqa", model=model, detector=detector_dir, device="cpu")


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="unknown task 'captioning'; known tasks: feature-extraction, gqa, image-text-matching"
    ):
        pipeline("captioning")


def test_missing_checkpoint_offline_names_it(detector_dir, monkeypatch):
    def offline(repo_id, filename, **kwargs):
        raise hub_errors.LocalEntryNotFoundError("outgoing traffic has been disabled")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    monkeypatch.setattr("lxmert.hub.hub_reachable", lambda: True)  # the hub answers; the download is refused
    with pytest.raises(OSError, match="'unc-nlp/lxmert-vqa-uncased' is not a local folder"):
        pipeline("vqa", detector=detector_dir, device="cpu")


def test_detector_and_model_feature_sizes_must_agree(vqa_dir, detector_dir, tmp_path):
    model = LxmertForQuestionAnswering.from_pretrained(vqa_dir)
    wide = LxmertForQuestionAnswering(type(model.config).from_dict({**model.config.to_dict(), "visual_feat_dim": 2048}))
    wide.save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError) as error:
        pipeline("vqa", model=tmp_path / "wide", detector=detector_dir, device="cpu")
    message = str(error.value)
    # Both widths, both sources (the checkpoints and their config keys), and what to use instead.
    assert f"the detector '{detector_dir}' gives 256-d region features" in message
    assert "8 x MODEL.RESNETS.RES2_OUT_CHANNELS = 8 x 32 in its config.yaml" in message
    assert (
        f"the LXMERT model '{tmp_path / 'wide'}' reads 2048-d features (visual_feat_dim in its config.json)" in message
    )
    assert "use a detector whose region features are 2048-d" in message
    assert "an LXMERT checkpoint trained on 256-d features (visual_feat_dim=256)" in message
    with pytest.raises(ValueError, match="the LXMERT model passed in .* reads 2048-d features"):
        pipeline("vqa", model=wide, detector=detector_dir, device="cpu")


def test_empty_batches_give_empty_results(vqa):
    assert vqa(image=[], question=QUESTION) == []
    assert vqa([]) == []
    assert vqa(image=[], question=[]) == []


def test_tuples_of_dicts_and_numpy_top_k(vqa, images):
    pairs = ({"image": str(images[0]), "question": QUESTION}, {"image": str(images[1]), "question": "why?"})
    from_tuple = vqa(pairs, top_k=np.int64(2))
    assert len(from_tuple) == 2 and all(len(answers) == 2 for answers in from_tuple)
    assert_same_answers(vqa(list(pairs), top_k=2)[1], from_tuple[1])
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 2.0"):
        vqa(image=str(images[0]), question=QUESTION, top_k=2.0)


def test_url_schemes_are_case_insensitive(vqa):
    with pytest.raises(ValueError, match="is a URL and this pipeline does not use the network"):
        vqa(image="HTTPS://EXAMPLE.COM/cat.jpg", question=QUESTION)


def test_objects_passed_in_move_to_the_pipelines_device_and_dtype(vqa_dir, detector_dir):
    from extract import RegionFeatureExtractor

    model = LxmertForQuestionAnswering.from_pretrained(vqa_dir)
    extractor = RegionFeatureExtractor.from_pretrained(detector_dir)
    # No device given: the objects' own device; dtype= applies to the model passed in too.
    pipe = pipeline("vqa", model=model, detector=extractor, dtype="bfloat16")
    assert pipe.device == torch.device("cpu") and extractor.device == torch.device("cpu")
    assert next(pipe.model.parameters()).dtype == torch.bfloat16 and extractor.dtype == torch.bfloat16
    assert extractor.resize == "exact"
    assert pipeline("vqa", model=vqa_dir, detector=extractor, resize="fast").reader.extractor.resize == "fast"
    assert pipeline("feature-extraction", detector=detector_dir, device="cpu").reader.extractor.resize == "exact"
    with pytest.raises(ValueError, match="resize='pillow': expected one of exact, fast"):
        pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cpu", resize="pillow")
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        pipeline("vqa", model=vqa_dir, detector=detector_dir, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(vqa_dir, detector_dir, images, capsys):
    with pytest.raises(ValueError, match="device 'cuda': CUDA is not available here"):
        pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cuda")
    argv = ["ask", str(images[0]), QUESTION, "--model", str(vqa_dir), "--detector", str(detector_dir)]
    assert cli_main([*argv, "--device", "cuda"]) == 2
    assert "lxmert ask: error: device 'cuda': CUDA is not available here" in capsys.readouterr().err


def test_max_image_pixels_reaches_the_detector(vqa_dir, detector_dir, images):
    guarded = pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cpu", max_image_pixels=1000)
    with pytest.raises(ImageLoadError, match="exceeds max_image_pixels=1000"):
        guarded(image=str(images[0]), question=QUESTION)
    assert pipeline("vqa", model=vqa_dir, detector=guarded.reader.extractor).reader.extractor.max_image_pixels == 1000
    unlimited = pipeline("vqa", model=vqa_dir, detector=guarded.reader.extractor, max_image_pixels=None)
    assert unlimited.reader.extractor.max_image_pixels is None
    assert len(unlimited(image=str(images[0]), question=QUESTION)) == 5
    with pytest.raises(ValueError, match="max_image_pixels=0: expected None"):
        pipeline("vqa", model=vqa_dir, detector=detector_dir, device="cpu", max_image_pixels=0)


def test_regions_from_the_detector_or_a_store_answer_as_their_images(vqa, images, tmp_path):
    # What a service keeps in its cache: RegionFeatures, answered later with any questions, batched with others.
    first, second = vqa.reader.extractor([images[0], images[3]])
    raw = vqa(image=[str(images[0]), str(images[3])], question=[QUESTION, "why?"], top_k=7)
    given = vqa(regions=[first, second], question=[QUESTION, "why?"], top_k=7)
    for ours, theirs in zip(given, raw, strict=True):
        assert_same_answers(theirs, ours)
    assert_same_answers(raw[0], vqa(regions=first, question=QUESTION, top_k=7))
    explained = vqa(regions=first, question=QUESTION, explain=True)
    assert explained.image is first.source and explained.boxes.shape == (len(first), 4)
    record = SimpleNamespace(
        features=first.features.numpy(), normalized_boxes=first.normalized_boxes.numpy(), boxes=first.boxes.numpy()
    )
    assert_same_answers(raw[0], vqa(regions=record, question=QUESTION, top_k=7))
    with pytest.raises(TypeError, match=r"regions\[0\] is a str: expected a RegionFeatures"):
        vqa(regions="cat.jpg", question=QUESTION)
    with pytest.raises(ValueError, match="pass exactly one of .* or regions=; got image, regions"):
        vqa(image=str(images[0]), regions=first, question=QUESTION)
