"""pipeline("feature-extraction") and pipeline("image-text-matching")."""

from __future__ import annotations

import pytest
import torch

from extract import RegionFeatures
from lxmert import LxmertForPreTraining
from pipelines import pipeline


@pytest.fixture(scope="module")
def features(detector_dir):
    return pipeline("feature-extraction", detector=detector_dir, device="cpu")


def test_feature_extraction_returns_the_extractors_regions(features, images):
    one = features(str(images[0]))
    assert isinstance(one, RegionFeatures) and one.features.shape == (36, 256)
    assert one.normalized_boxes.min() >= 0 and one.normalized_boxes.max() <= 1
    several = features([str(images[0]), str(images[1])], rule="maxnms", num_boxes=(10, 20))
    assert len(several) == 2 and all(10 <= len(r) <= 20 for r in several)
    direct = features.reader.extractor([images[0]])[0]
    assert torch.equal(one.features, direct.features) and torch.equal(one.boxes, direct.boxes)


def test_feature_extraction_given_boxes(features, images):
    boxes = torch.tensor([[0.0, 0.0, 100.0, 80.0], [50.0, 60.0, 200.0, 250.0]])
    regions = features(str(images[0]), given_boxes=boxes)
    assert regions.rule == "given" and torch.equal(regions.boxes, boxes)


def test_feature_extraction_takes_no_lxmert_model(detector_dir):
    with pytest.raises(ValueError, match="uses only the detector"):
        pipeline("feature-extraction", model="unc-nlp/lxmert-vqa-uncased", detector=detector_dir)


def test_image_text_matching_is_the_match_probability(matching_dir, detector_dir, images):
    match = pipeline("image-text-matching", model=matching_dir, detector=detector_dir, device="cpu")
    texts = ["a dog on a sofa", "two trains at a station"]
    results = match(image=str(images[2]), text=texts)
    assert [set(r) for r in results] == [{"score", "match"}] * 2
    # By hand: softmax of LxmertForPreTraining's cross_relationship_score, index 1 = "matches".
    model = LxmertForPreTraining.from_pretrained(matching_dir)
    regions = match.reader.extractor([images[2]])[0]
    encoded = match.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(
            **encoded,
            visual_feats=regions.features[None].expand(2, -1, -1),
            visual_pos=regions.normalized_boxes[None].expand(2, -1, -1),
        ).cross_relationship_score
    expected = logits.softmax(-1)[:, 1]
    assert torch.allclose(torch.tensor([r["score"] for r in results]), expected, atol=1e-5, rtol=0)
    assert [r["match"] for r in results] == [p >= 0.5 for p in expected.tolist()]
    single = match(image=str(images[2]), text=texts[0])
    assert isinstance(single, dict) and abs(single["score"] - results[0]["score"]) < 1e-5


def test_image_text_matching_needs_the_pretraining_heads(vqa_dir, detector_dir):
    from lxmert import LxmertForQuestionAnswering

    with pytest.raises(TypeError, match="needs a LxmertForPreTraining"):
        pipeline(
            "image-text-matching", model=LxmertForQuestionAnswering.from_pretrained(vqa_dir), detector=detector_dir
        )
