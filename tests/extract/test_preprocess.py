"""Resize rule, Pillow resize, fast on-device resize and normalization against detectron2.

Reference: tests/fixtures/detectron2-vg-tiny/<image>.npz (detectron2 ResizeShortestEdge(600, 1000)
with Pillow 13.0.0 BILINEAR, then (x - PIXEL_MEAN) / PIXEL_STD in float32). Tolerance 0 everywhere:
SHA-256 of the resized image, exact float32 equality of the normalized samples, and resize_fast equal
to Pillow pixel for pixel.
"""

import hashlib

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from extract.images import load_image
from extract.preprocessing import (
    PIXEL_MEAN_BGR,
    PreprocessedImage,
    normalize,
    output_size,
    preprocess,
    resize_exact,
    resize_fast,
)

DETECTRON2 = FIXTURES / "detectron2-vg-tiny"
IMAGES = FIXTURES / "images"
FIXTURE_IMAGES = ["000456", "000542", "COCO_train2014_000000131486", "input"]
ALL_IMAGES = sorted(path.stem for path in IMAGES.glob("*.jpg"))


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)


@pytest.mark.parametrize("name", FIXTURE_IMAGES)
def test_resize_and_normalize_match_detectron2(name):
    reference = np.load(DETECTRON2 / f"{name}.npz")
    rgb = load_image(IMAGES / f"{name}.jpg")
    size = output_size(*rgb.shape[:2])
    assert size == tuple(reference["resized_hw"].tolist())

    resized = resize_exact(rgb, size)
    resized_bgr = np.ascontiguousarray(resized[:, :, ::-1])
    assert hashlib.sha256(resized_bgr.tobytes()).digest() == reference["resized_bgr_sha256"].tobytes()
    ys, xs = reference["resized_sample_yx"].T
    np.testing.assert_array_equal(resized_bgr[ys, xs], reference["resized_sample_bgr"])

    normalized = normalize(to_chw(resized))
    np.testing.assert_array_equal(normalized[:, ys, xs].numpy(), reference["normalized_sample_chw"])
    for mode in ("exact", "fast"):
        prepared = preprocess(rgb, resize=mode)
        assert prepared.resized_size == size and prepared.original_size == rgb.shape[:2]
        np.testing.assert_array_equal(prepared.tensor[:, ys, xs].numpy(), reference["normalized_sample_chw"])


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (375, 500, (600, 800)),  # landscape: 600 / 375 = 1.6, 500 * 1.6 = 800
        (640, 407, (943, 600)),  # portrait: 640 * 600 / 407 = 943.49 -> 943
        (300, 300, (600, 600)),  # square, upscaled
        (500, 2000, (250, 1000)),  # long side 2400 capped: both times 1000 / 2400
        (3000, 1000, (1000, 333)),  # portrait capped: 1000 * 1000 / 1800 = 333.3
        (1, 2, (500, 1000)),  # tiny: 600 x 1200, capped
        (10, 10, (600, 600)),
        (1, 1000, (1, 1000)),  # 600 x 600000 capped to 1.0 x 1000
        (400, 403, (600, 605)),  # 403 * 1.5 = 604.5 exactly: int(x + 0.5) gives 605 (round() gives 604)
        (480, 640, (600, 800)),
    ],
)
def test_output_size_by_hand(height, width, expected):
    assert output_size(height, width) == expected


def test_output_size_with_other_sizes():
    assert output_size(480, 640, min_size=800, max_size=1333) == (800, 1067)  # 640 * 5 / 3 = 1066.7
    assert output_size(600, 800, min_size=600, max_size=1000) == (600, 800)  # already there


@pytest.mark.parametrize(("height", "width"), [(0, 10), (10, -1), (1, 10_000)])
def test_output_size_refuses_sizes_it_cannot_resize_to(height, width):
    with pytest.raises(ValueError, match=f"{height}x{width}"):
        output_size(height, width)


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_resize_fast_equals_pillow_on_real_images(name):
    # Measured with Pillow 13.0.0 on all 8 images: max 0, mean 0 levels (bit-identical), where
    # torch's float antialiased bilinear + round is off by 1 level in 12-24% of the pixels.
    rgb = load_image(IMAGES / f"{name}.jpg")
    size = output_size(*rgb.shape[:2])
    fast = resize_fast(to_chw(rgb), size).permute(1, 2, 0).numpy()
    deviation = np.abs(fast.astype(np.int16) - resize_exact(rgb, size).astype(np.int16))
    assert deviation.max() == 0, f"max {deviation.max()}, mean {deviation.mean():.4f} levels"


# (H, W) -> (h, w): both pass orders of Pillow 13 (vertical first iff H - h > 0 and H - h > 2 * (W - w)),
# upscaling, strong downscaling, one axis unchanged, one-pixel outputs.
RESIZE_CASES = [
    ((37, 53), (90, 120)),
    ((120, 40), (30, 30)),  # height loses 90 > 2 * 10: vertical first
    ((120, 40), (100, 20)),  # height loses 20 < 2 * 20: horizontal first
    ((70, 70), (2, 24)),  # 68 < 2 * 46: horizontal first despite the stronger vertical shrink
    ((67, 76), (1, 60)),
    ((50, 20), (20, 60)),  # height shrinks, width grows: vertical first
    ((20, 50), (60, 20)),
    ((64, 48), (64, 17)),
    ((64, 48), (5, 48)),
    ((1, 1), (7, 3)),
    ((255, 3), (1, 1)),
    ((97, 101), (97, 101)),
]


@pytest.mark.parametrize(("in_size", "out_size"), RESIZE_CASES)
def test_resize_fast_equals_pillow_on_noise(in_size, out_size):
    generator = np.random.default_rng(sum(in_size) * 1000 + sum(out_size))
    noise = generator.integers(0, 256, size=(*in_size, 3), dtype=np.uint8)
    fast = resize_fast(to_chw(noise), out_size).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(fast, resize_exact(noise, out_size))


@pytest.mark.parametrize("vertical_first_rule", [True, False])
def test_resize_fast_pass_orders_equal_pillow_one_axis_at_a_time(vertical_first_rule):
    # A tall image shrunk mostly in height: Pillow 13 runs the vertical pass first, older Pillow the
    # horizontal one. Pillow resizing one axis at a time runs exactly one pass each, in the order
    # chosen here, so both orders are checked whichever Pillow is installed.
    noise = np.random.default_rng(7).integers(0, 256, size=(300, 90, 3), dtype=np.uint8)
    out_height, out_width = 100, 80
    fast = resize_fast(to_chw(noise), (out_height, out_width), vertical_first_rule=vertical_first_rule)
    if vertical_first_rule:
        expected = resize_exact(resize_exact(noise, (out_height, 90)), (out_height, out_width))
    else:
        expected = resize_exact(resize_exact(noise, (300, out_width)), (out_height, out_width))
    np.testing.assert_array_equal(fast.permute(1, 2, 0).numpy(), expected)
    other = resize_fast(to_chw(noise), (out_height, out_width), vertical_first_rule=not vertical_first_rule)
    assert not torch.equal(fast, other)  # the order matters for this image, so the check has teeth


def test_resize_fast_on_a_batch_equals_one_by_one():
    generator = np.random.default_rng(0)
    batch = torch.from_numpy(generator.integers(0, 256, size=(2, 3, 40, 31), dtype=np.uint8))
    resized = resize_fast(batch, (17, 50))
    assert resized.shape == (2, 3, 17, 50) and resized.dtype == torch.uint8
    for image, single in zip(batch, resized, strict=True):
        expected = resize_exact(image.permute(1, 2, 0).numpy(), (17, 50))
        np.testing.assert_array_equal(single.permute(1, 2, 0).numpy(), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resize_fast_on_cuda_equals_pillow():
    rgb = load_image(IMAGES / "COCO_train2014_000000131486.jpg")
    size = output_size(*rgb.shape[:2])
    fast = resize_fast(to_chw(rgb).cuda(), size)
    assert fast.device.type == "cuda"
    np.testing.assert_array_equal(fast.cpu().permute(1, 2, 0).numpy(), resize_exact(rgb, size))
    on_gpu = preprocess(rgb, resize="fast", device="cuda")
    np.testing.assert_array_equal(on_gpu.tensor.cpu().numpy(), preprocess(rgb).tensor.numpy())


def test_resize_input_checks():
    with pytest.raises(ValueError, match="uint8"):
        resize_fast(torch.zeros(3, 4, 4), (2, 2))
    with pytest.raises(ValueError, match="uint8"):
        resize_exact(np.zeros((4, 4, 3), np.float32), (2, 2))
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert resize_exact(gray, (2, 3)).shape == (2, 3)


def test_normalize_flips_to_bgr_and_subtracts_the_bgr_mean():
    rgb = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)
    # float32 arithmetic, as detectron2's (x - pixel_mean) / pixel_std with float32 buffers
    expected_bgr = torch.tensor([30.0, 20.0, 10.0]) - torch.tensor([102.9801, 115.9465, 122.7717])
    normalized = normalize(rgb)
    assert normalized.dtype == torch.float32 and normalized.shape == (3, 1, 1)
    assert torch.equal(normalized.view(3), expected_bgr)
    assert PIXEL_MEAN_BGR == (102.9801, 115.9465, 122.7717)
    scaled = normalize(rgb.float(), pixel_mean=(0.0, 0.0, 0.0), pixel_std=(2.0, 4.0, 8.0))
    assert scaled.view(3).tolist() == [15.0, 5.0, 1.25]
    batch = normalize(rgb.expand(3, 2, 2).unsqueeze(0).repeat(2, 1, 1, 1))
    assert batch.shape == (2, 3, 2, 2) and torch.equal(batch[1, :, 1, 1], expected_bgr)


def test_normalize_input_checks():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        normalize(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="must not contain 0"):
        normalize(torch.zeros(3, 2, 2), pixel_std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3 values"):
        normalize(torch.zeros(3, 2, 2), pixel_mean=(1.0, 2.0))


def test_preprocess_returns_the_network_input_and_its_sizes():
    rgb = load_image(IMAGES / "COCO_train2014_000000131486.jpg")
    prepared = preprocess(rgb)
    assert isinstance(prepared, PreprocessedImage)
    assert prepared.original_size == (640, 407) and prepared.resized_size == (943, 600)
    assert prepared.tensor.shape == (3, 943, 600) and prepared.tensor.dtype == torch.float32
    assert prepared.tensor.is_contiguous() and prepared.tensor.device.type == "cpu"
    assert prepared.scale_xy == (600 / 407, 943 / 640)  # per axis: 1.4742 vs 1.4734
    assert torch.equal(preprocess(rgb, resize="fast").tensor, prepared.tensor)
    small = preprocess(rgb, min_size=100, max_size=120, pixel_std=(2.0, 2.0, 2.0))
    assert small.resized_size == (120, 76)  # 640 x 407 -> 157 x 100, capped: 120 x 76.3


def test_preprocess_input_checks():
    rgb = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(ValueError, match="'exact'.*'fast'.*got 'pillow'"):
        preprocess(rgb, resize="pillow")
    with pytest.raises(ValueError, match="load_image"):
        preprocess(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="load_image"):
        preprocess(rgb[:, :, 0])
