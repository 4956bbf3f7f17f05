"""Parity of VGDetector with detectron2 (+ py-bottom-up-attention's VG changes) on the tiny VG model.

Reference: tests/fixtures/detectron2-vg-tiny (README there): detectron2 02b5c4e2, torch 2.14.1, CPU,
float32, one image at a time; per-proposal arrays and every selection rule's output per image.
Ours: the same weights and config through load_image + preprocess(resize="exact") + VGDetector.

Tolerances. The oracle against itself (1 vs 2 threads) differs only in the RPN conv (logits 3.8e-6,
proposal boxes 3.7e-4 px, final boxes 2.4e-4 px). Against us on another CPU the convolutions were
bit-identical, but the Linear layers (MKL sgemm) sum in another order: class logits differ by up to
4.2e-5, box deltas by 1.2e-5, and everything computed from them accordingly (measured maxima in the
comments). Each tolerance below is a few times the measured difference, far below any decision
margin except the near ties handled explicitly (`near_tie_rows`).
Final outputs are compared by box (matching), not by index, as the README advises; the matched
proposal indices must then agree as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.selection import attributes_fork

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "detectron2-vg-tiny"
TINY_IMAGES = ("000456", "000542", "COCO_train2014_000000131486", "input")  # as in conftest.py

IMAGE_IDS = list(range(len(TINY_IMAGES)))

RES4_TOL = 1e-5  # measured 0 (corner) / 2.4e-7 (channel mean, numpy vs torch reduction)
PROPOSAL_BOX_TOL = 1e-3  # px; oracle vs itself 3.7e-4, measured 1.2e-4
OBJECTNESS_TOL = 2e-5  # oracle vs itself 3.8e-6, measured 0
FEATURE_TOL = 1e-5  # pooled features: measured 0 (bit-identical convolutions)
CLS_LOGIT_TOL = 2e-4  # sgemm order, measured 4.2e-5
PROB_TOL = 3e-5  # softmax of the above, measured 6.6e-6
DELTA_TOL = 6e-5  # sgemm order, measured 1.2e-5
ATTR_LOGIT_TOL = 5e-5  # sgemm order, measured 9.5e-6
REGRESSED_BOX_TOL = 2e-3  # px; deltas * width (~300 px) / 10, measured 3.7e-4
FINAL_BOX_TOL = 1e-3  # px, original image; oracle vs itself 2.4e-4, measured 2.4e-4
SCORE_TOL = 1e-5  # object scores / max_conf (probabilities; the bound), measured 6.6e-6
ATTR_SCORE_TOL = 1e-5  # measured 9.2e-7
GIVEN_TOL = 1e-5  # given-box features and scores: oracle vs itself 7.2e-7, measured 6.6e-7

# (rule, num_boxes, npz group)
SELECTIONS = [
    ("d2", None, "d2"),
    ("maxnms", 36, "maxnms_36_36"),
    ("maxnms", (10, 100), "maxnms_10_100"),
    ("maxnms", 200, "maxnms_200_200"),
    ("caffe", 36, "caffe_36_36"),
    ("caffe", (10, 100), "caffe_10_100"),
]


def match_rows(ref_boxes, our_boxes, tol, ref_ids=None, our_ids=None):
    """Index into ours of each reference row: the same box within tol (and the same id if given), 1:1."""
    ref_boxes, our_boxes = np.asarray(ref_boxes), np.asarray(our_boxes)
    assert ref_boxes.shape == our_boxes.shape, f"{len(ref_boxes)} reference boxes vs {len(our_boxes)} ours"
    distance = np.abs(ref_boxes[:, None, :] - our_boxes[None, :, :]).max(axis=-1)
    if ref_ids is not None:
        distance = np.where(np.asarray(ref_ids)[:, None] == np.asarray(our_ids)[None, :], distance, np.inf)
    match = distance.argmin(axis=1)
    worst = distance[np.arange(len(match)), match].max(initial=0.0)
    assert worst <= tol, f"a reference box has no counterpart within {tol} px (closest: {worst})"
    assert len(set(match.tolist())) == len(match), "two reference boxes matched the same box of ours"
    return match


def near_tie_rows(values: np.ndarray, tol: float) -> np.ndarray:
    """Rows whose two largest entries are within tol: their argmax may flip with summation order."""
    top2 = np.sort(values, axis=1)[:, -2:]
    return np.nonzero(top2[:, 1] - top2[:, 0] < tol)[0]


def assert_close(ours, ref, tol, what):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs reference {ref.shape}"
    diff = np.abs(ours - ref).max(initial=0.0)
    assert diff <= tol, f"{what}: max |ours - detectron2| = {diff:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def proposal_match(tiny_predictions, tiny_references):
    """Per image: row of ours for each reference proposal (proposals compared as sets: near-tie
    objectness logits, 5e-6 apart, may swap neighbours)."""
    return [
        match_rows(ref["proposal_boxes"], pred.proposal_boxes.numpy(), PROPOSAL_BOX_TOL)
        for pred, ref in zip(tiny_predictions, tiny_references, strict=True)
    ]


@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_network_input_matches(i, tiny_inputs, tiny_references):
    image, ref = tiny_inputs[i], tiny_references[i]
    assert image.original_size == tuple(ref["image_hw"]) and image.resized_size == tuple(ref["resized_hw"])
    y, x = ref["resized_sample_yx"].T
    # Preprocessing is bit-identical to detectron2's (extract/preprocess.py); anything else would make
    # every later comparison meaningless.
    np.testing.assert_array_equal(image.tensor[:, y, x].numpy(), ref["normalized_sample_chw"])


@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_res4(i, tiny_detector, tiny_inputs, tiny_references):
    ref = tiny_references[i]
    with torch.inference_mode():
        res4 = tiny_detector.backbone(tiny_inputs[i].tensor[None])[0]
    assert tuple(res4.shape) == tuple(ref["res4_shape"])
    assert_close(res4.mean(dim=(1, 2)).numpy(), ref["res4_channel_mean"], RES4_TOL, "res4 channel mean")
    assert_close(res4[:, :4, :4].numpy(), ref["res4_corner"], RES4_TOL, "res4 top-left 4x4")


@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_proposals(i, tiny_predictions, tiny_references, proposal_match):
    pred, ref, match = tiny_predictions[i], tiny_references[i], proposal_match[i]
    assert len(pred.proposal_boxes) == len(ref["proposal_boxes"]) == 300
    assert_close(pred.proposal_boxes.numpy()[match], ref["proposal_boxes"], PROPOSAL_BOX_TOL, "proposal boxes")
    assert_close(pred.objectness_logits.numpy()[match], ref["proposal_logits"], OBJECTNESS_TOL, "objectness logits")
    # Ours come out by descending logit, like detectron2's, and in detectron2's order.
    assert torch.all(pred.objectness_logits[:-1] >= pred.objectness_logits[1:])
    np.testing.assert_array_equal(match, np.arange(300), err_msg="proposal order differs from detectron2's")


@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_per_proposal_outputs(i, tiny_predictions, tiny_references, proposal_match):
    pred, ref, match = tiny_predictions[i], tiny_references[i], proposal_match[i]
    assert_close(pred.pooled_features.numpy()[match], ref["pooled"], FEATURE_TOL, "pooled features")
    assert_close(pred.class_logits.numpy()[match], ref["cls_logits"], CLS_LOGIT_TOL, "class logits")
    assert_close(pred.class_probs.numpy()[match], ref["cls_probs"], PROB_TOL, "class probabilities")
    assert_close(pred.box_deltas.numpy()[match], ref["bbox_deltas"], DELTA_TOL, "box deltas")
    fg_class = torch.from_numpy(ref["proposal_max_fg_class"])
    regressed = pred.class_boxes[torch.from_numpy(match), fg_class]
    assert_close(regressed.numpy(), ref["pred_boxes_argmax_fg"], REGRESSED_BOX_TOL, "regressed box of max fg class")


@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_argmax_fields(i, tiny_predictions, tiny_references, proposal_match):
    pred, ref, match = tiny_predictions[i], tiny_references[i], proposal_match[i]
    probs = pred.class_probs.numpy()[match]
    assert_close(probs[:, :-1].max(axis=1), ref["proposal_max_fg_prob"], PROB_TOL, "max foreground probability")
    assert_close(probs[:, -1], ref["proposal_bg_prob"], PROB_TOL, "background probability (last column)")

    # Argmaxes agree except where the reference's two best values are closer than our tolerance:
    # there either of the two is right (000456 proposal 132: background vs a class, logits 2.4e-7 apart).
    for ours, ref_values, ref_argmax, tol, what in (
        (probs[:, :-1].argmax(axis=1), ref["cls_probs"][:, :-1], ref["proposal_max_fg_class"], PROB_TOL, "fg class"),
        (
            pred.class_logits.numpy()[match].argmax(axis=1),
            ref["cls_logits"],
            ref["proposal_argmax_all"],
            CLS_LOGIT_TOL,
            "class",
        ),
    ):
        ties = near_tie_rows(ref_values, 2 * tol)
        clear = np.setdiff1d(np.arange(len(ours)), ties)
        np.testing.assert_array_equal(ours[clear], ref_argmax[clear], err_msg=f"argmax {what}")
        for row in ties:
            assert ours[row] in np.argsort(ref_values[row])[-2:], f"argmax {what} of proposal {row}"


@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_attribute_head(i, tiny_detector, tiny_predictions, tiny_references, proposal_match):
    pred, ref, match = tiny_predictions[i], tiny_references[i], proposal_match[i]
    attr_logits = pred.attribute_logits.numpy()[match]
    flipped = np.nonzero(pred.class_logits.numpy()[match].argmax(axis=1) != ref["proposal_argmax_all"])[0]
    same = np.setdiff1d(np.arange(len(match)), flipped)
    assert_close(attr_logits[same], ref["attr_logits"][same], ATTR_LOGIT_TOL, "attribute logits")
    ids, scores = attributes_fork(torch.from_numpy(attr_logits[same]))
    np.testing.assert_array_equal(ids.numpy(), ref["proposal_attr_id"][same])
    assert_close(scores.numpy(), ref["proposal_attr_score"][same], ATTR_SCORE_TOL, "attribute scores (fork)")
    # Where the embedded class flipped on a near tie (test_argmax_fields), the head given detectron2's
    # class must give detectron2's logits: the head embeds the argmax over all K + 1 classes.
    if len(flipped):
        with torch.inference_mode():
            redone = tiny_detector.roi_heads.box_predictor.attribute_logits(
                pred.pooled_features[torch.from_numpy(match[flipped])],
                torch.from_numpy(ref["proposal_argmax_all"][flipped]),
            )
        assert_close(redone.numpy(), ref["attr_logits"][flipped], ATTR_LOGIT_TOL, "attribute logits, tied rows")


@pytest.mark.parametrize("rule, num_boxes, group", SELECTIONS, ids=[s[2] for s in SELECTIONS])
@pytest.mark.parametrize("i", IMAGE_IDS, ids=TINY_IMAGES)
def test_selection(i, rule, num_boxes, group, tiny_detector, tiny_predictions, tiny_references, proposal_match):
    pred, ref, match = tiny_predictions[i], tiny_references[i], proposal_match[i]
    regions = tiny_detector.select(pred, rule, num_boxes if num_boxes is not None else 36)
    ref_ids = ref[f"{group}_object_ids"]
    # d2 may hold one proposal several times with different classes: match on (box, class).
    by_class = (ref_ids, regions.object_ids.numpy()) if rule == "d2" else (None, None)
    order = match_rows(ref[f"{group}_boxes"], regions.boxes.numpy(), FINAL_BOX_TOL, *by_class)

    # Same regions in the same order as detectron2 (matching by box only locates a mismatch).
    np.testing.assert_array_equal(order, np.arange(len(ref_ids)), err_msg=f"{group}: output order differs")
    np.testing.assert_array_equal(regions.proposal_index.numpy()[order], match[ref[f"{group}_index"]])
    np.testing.assert_array_equal(regions.object_ids.numpy()[order], ref_ids)
    assert_close(regions.features.numpy()[order], ref[f"{group}_features"], FEATURE_TOL, f"{group} features")
    assert_close(regions.object_scores.numpy()[order], ref[f"{group}_object_scores"], SCORE_TOL, f"{group} scores")
    np.testing.assert_array_equal(regions.attribute_ids.numpy()[order], ref[f"{group}_attribute_ids"])
    assert_close(
        regions.attribute_scores.numpy()[order],
        ref[f"{group}_attribute_scores"],
        ATTR_SCORE_TOL,
        f"{group} attr scores",
    )
    if rule == "maxnms":
        assert np.float32(regions.nms_thresh) == ref[f"{group}_nms_thresh"]  # stored as float32 there
    if rule == "caffe":
        assert_close(regions.max_conf.numpy()[order], ref[f"{group}_max_conf"], SCORE_TOL, f"{group} max_conf")
    # Every box lies inside the original image (detector_postprocess clipping).
    height, width = ref["image_hw"]
    boxes = regions.boxes.numpy()
    assert boxes.min() >= 0 and (boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all()


def test_given_boxes(tiny_detector, tiny_inputs, tiny_references):
    given = [torch.from_numpy(ref["given_boxes"]) for ref in tiny_references]
    all_regions = tiny_detector.detect(tiny_inputs, given_boxes=given)
    for name, regions, ref in zip(TINY_IMAGES, all_regions, tiny_references, strict=True):
        np.testing.assert_array_equal(regions.boxes.numpy(), ref["given_boxes"], err_msg=name)
        assert_close(regions.features.numpy(), ref["given_features"], GIVEN_TOL, f"{name} given features")
        np.testing.assert_array_equal(regions.object_ids.numpy(), ref["given_object_ids"], err_msg=name)
        assert_close(regions.object_scores.numpy(), ref["given_object_scores"], GIVEN_TOL, f"{name} given scores")
        np.testing.assert_array_equal(regions.attribute_ids.numpy(), ref["given_attribute_ids"], err_msg=name)
        assert_close(regions.attribute_scores.numpy(), ref["given_attribute_scores"], GIVEN_TOL, f"{name} attr scores")


FIELDS = (
    "proposal_boxes",
    "objectness_logits",
    "pooled_features",
    "class_logits",
    "class_probs",
    "box_deltas",
    "class_boxes",
    "attribute_logits",
)


@pytest.fixture(scope="module")
def batched_predictions(tiny_detector, tiny_inputs):
    # Three of the four images are 600 x 800 and share one forward pass; the portrait runs alone.
    with torch.inference_mode():
        return tiny_detector(tiny_inputs)


def test_batch_gives_exactly_one_by_one_results(batched_predictions, tiny_predictions, tiny_detector):
    for name, batched, single in zip(TINY_IMAGES, batched_predictions, tiny_predictions, strict=True):
        for field in FIELDS:
            assert torch.equal(getattr(batched, field), getattr(single, field)), f"{name}: {field}"
        for rule in ("caffe", "maxnms", "d2"):
            a, b = tiny_detector.select(batched, rule), tiny_detector.select(single, rule)
            assert torch.equal(a.boxes, b.boxes) and torch.equal(a.features, b.features), f"{name}: {rule}"


def test_batch_is_not_detectron2_padded_batch(batched_predictions, tiny_references):
    # detectron2 pads the batch to 943 x 800: padding leaks into res4 and the RPN, so its proposals
    # differ (272 to 299 of 300 in common). Ours must be the one-by-one proposals instead.
    padded = np.load(TINY / "batch" / "detectron2_batch.npz")
    assert [str(n) for n in padded["images"]] == list(TINY_IMAGES)
    for i, (pred, ref) in enumerate(zip(batched_predictions, tiny_references, strict=True)):
        match_rows(ref["proposal_boxes"], pred.proposal_boxes.numpy(), PROPOSAL_BOX_TOL)
        with pytest.raises(AssertionError):
            match_rows(padded[f"{i}_proposal_boxes"], pred.proposal_boxes.numpy(), PROPOSAL_BOX_TOL)


def test_detect_wraps_forward_and_select(tiny_detector, tiny_inputs, tiny_predictions):
    image = 1  # 000542
    (regions,) = tiny_detector.detect([tiny_inputs[image]], "caffe", (10, 100))
    expected = tiny_detector.select(tiny_predictions[image], "caffe", (10, 100))
    assert torch.equal(regions.boxes, expected.boxes) and torch.equal(regions.features, expected.features)
    assert len(regions) == 19  # the fixture's caffe_10_100 count for this image
    # No given boxes: no regions, shapes kept.
    (empty,) = tiny_detector.detect([tiny_inputs[image]], given_boxes=[torch.zeros(0, 4)])
    assert empty.boxes.shape == (0, 4) and empty.features.shape == (0, 256) and empty.object_ids.shape == (0,)
