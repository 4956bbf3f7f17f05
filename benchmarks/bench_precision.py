"""What a low-precision detector changes, and what it gains: bfloat16 / float16 convolutions against float32.

On the eight real test images (tests/fixtures/images), caffe rule, 36 boxes, one model per dtype with the same
weights: the tiny fixture detector (its trained-looking random weights) or the full-size VG R101 with random
weights (`--full-size`). Measured as tests/extract/test_precision.py measures the tiny one:

- same boxes (float32's boxes given to the low-precision model): the features' minimum cosine to float32's,
  max |d| / max |f| per image (the worst image), mean |d| / mean |f|, regions whose class stays the same;
- own selection: float32 boxes that the low-precision run also finds, at IoU >= 0.5 and >= 0.9;
- speed: median seconds per image of the extractor (decode to RegionFeatures), and the ratio to float32;
- with --profile: one image's forward under torch.profiler for each dtype, self time per operator side by side
  (which operators the low precision speeds up, which stay as slow: the ceiling of the whole forward's speed-up).
  With ONEDNN_VERBOSE=1 in the environment oneDNN also prints the kernel of every convolution: "amx" in its
  name means the matrix units run it.

Low precision runs channels-last (VGDetector.set_compute_dtype); --compare-layouts adds, for each low precision,
a row with its weights put back in the default layout (how it ran before 2026-12-03), timed in the same process.
--channels-last puts float32's weights (and so its activations) in channels-last memory format too.

    python benchmarks/bench_precision.py                        # tiny fixture model, CPU
    python benchmarks/bench_precision.py --full-size --images 2 # full size, random weights (minutes on a CPU)
    python benchmarks/bench_precision.py --full-size --device cuda
    python benchmarks/bench_precision.py --full-size --images 2 --dtypes bfloat16 --profile [--channels-last]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torchvision.ops import box_iou

from extract import DetectorConfig, RegionFeatureExtractor, VGDetector

ROOT = Path(__file__).resolve().parent.parent
IMAGES = [str(path) for path in sorted((ROOT / "tests" / "fixtures" / "images").glob("*.jpg"))]
TINY = ROOT / "tests" / "fixtures" / "detectron2-vg-tiny"


def extractors(full_size: bool, device: str, dtypes: list[torch.dtype]) -> dict[torch.dtype, RegionFeatureExtractor]:
    made = {}
    for dtype in dtypes:
        if full_size:
            torch.manual_seed(0)  # the same random weights for every dtype
            made[dtype] = RegionFeatureExtractor(VGDetector(DetectorConfig()), device=device, dtype=dtype)
        else:
            made[dtype] = RegionFeatureExtractor.from_pretrained(TINY, device=device, dtype=dtype)
    return made


def timed(extractor: RegionFeatureExtractor, device: str) -> tuple[list, float]:
    """The regions of every image, one call per image, and the median seconds per image."""
    results, seconds = [], []
    for image in IMAGES:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        results.append(extractor([image])[0])
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return results, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="the full-size detector with random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=["bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--images", type=int, default=len(IMAGES), help="the first N of the eight test images")
    parser.add_argument("--profile", action="store_true", help="self time per operator, float32 vs each dtype")
    parser.add_argument("--channels-last", action="store_true", help="float32 in channels-last memory format too")
    parser.add_argument(
        "--compare-layouts", action="store_true", help="each low precision also in the default layout (slower)"
    )
    args = parser.parse_args()
    del IMAGES[args.images :]
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = [getattr(torch, name) for name in args.dtypes]
    models = extractors(args.full_size, args.device, [torch.float32, *dtypes])
    if args.channels_last:
        models[torch.float32].detector.to(memory_format=torch.channels_last)
    # (row name, extractor) of every low-precision row; with --compare-layouts each dtype also in the default layout
    candidates = []
    others = extractors(args.full_size, args.device, dtypes) if args.compare_layouts else {}
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        candidates.append((name, models[dtype]))
        if dtype in others:
            others[dtype].detector.to(memory_format=torch.contiguous_format)
            candidates.append((f"{name}, default layout", others[dtype]))
    capability = torch.backends.cpu.get_cpu_capability() if args.device == "cpu" else torch.cuda.get_device_name()
    print(
        f"torch {torch.__version__}, {args.device} ({capability}), {torch.get_num_threads()} threads, "
        f"{'full-size VG R101, random weights' if args.full_size else 'tiny fixture detector'}, "
        f"{len(IMAGES)} real images, caffe rule, 36 boxes{', float32 channels-last' if args.channels_last else ''}"
    )
    with torch.inference_mode():
        timed(models[torch.float32], args.device)  # warm-up
        reference, reference_seconds = timed(models[torch.float32], args.device)
        rows = []
        for name, extractor in candidates:
            timed(extractor, args.device)  # warm-up
            own, seconds = timed(extractor, args.device)
            given = extractor(IMAGES, given_boxes=[regions.boxes for regions in reference])
            rows.append((name, seconds, compare(reference, own, given)))
    count = sum(len(regions) for regions in reference)
    print()
    print(
        "| dtype | s / image | speed vs float32 | same boxes: min cosine | max \\|d\\| / max \\|f\\| "
        "| mean \\|d\\| / mean \\|f\\| | same class | own selection: IoU >= 0.5 | IoU >= 0.9 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| float32 | {reference_seconds:.3f} | 1.00 | 1 | 0 | 0 | {count} / {count} | {count} / {count} | - |")
    for name, seconds, found in rows:
        print(
            f"| {name} | {seconds:.3f} | {reference_seconds / seconds:.2f} | "
            f"{found['cosine']:.5f} | {found['max']:.4f} | {found['mean']:.4f} | {found['same_class']} / {count} | "
            f"{found['iou50']} / {count} | {found['iou90']} / {count} |"
        )
    if args.profile:
        print_profile(models, args.device)


def operator_times(extractor: RegionFeatureExtractor, device: str) -> dict[str, float]:
    """Self time (ms) per operator of one extraction of the first image (after a warm-up call)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch.inference_mode():
        extractor(IMAGES[:1])
        with profile(activities=activities) as prof:
            extractor(IMAGES[:1])
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        own = event.self_device_time_total if device == "cuda" else event.self_cpu_time_total
        times[event.key] += own / 1e3
    return times


def print_profile(models: dict[torch.dtype, RegionFeatureExtractor], device: str, rows: int = 15) -> None:
    profiles = {dtype: operator_times(extractor, device) for dtype, extractor in models.items()}
    names = [str(dtype).removeprefix("torch.") for dtype in profiles]
    totals = {dtype: sum(times.values()) for dtype, times in profiles.items()}
    reference = profiles[torch.float32]
    top = sorted(
        set().union(*(sorted(t, key=t.get, reverse=True)[:rows] for t in profiles.values())),
        key=lambda k: -reference.get(k, 0.0),
    )
    print()
    print(f"One image, self {'GPU' if device == 'cuda' else 'CPU'} time per operator (ms; share of the forward):")
    print()
    print("| operator | " + " | ".join(names) + " | " + " | ".join(f"float32 / {n}" for n in names[1:]) + " |")
    print("| --- |" + " ---: |" * (2 * len(names) - 1))
    for key in [*top, "total"]:
        cells, ratios = [], []
        for dtype, times in profiles.items():
            value = totals[dtype] if key == "total" else times.get(key, 0.0)
            cells.append(f"{value:.1f} ({value / totals[dtype]:.0%})")
            if dtype != torch.float32:
                base = totals[torch.float32] if key == "total" else reference.get(key, 0.0)
                ratios.append(f"{base / value:.2f}" if value else "-")
        print(f"| {key} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


def compare(reference: list, own: list, given: list) -> dict:
    cosines, max_ratios, differences, magnitudes, same_class = [], [], [], [], 0
    for ref, ours in zip(reference, given, strict=True):
        cosines.append(torch.nn.functional.cosine_similarity(ref.features, ours.features, dim=1).min().item())
        difference = (ref.features - ours.features).abs()
        max_ratios.append((difference.max() / ref.features.abs().max()).item())
        differences.append(difference.mean().item())
        magnitudes.append(ref.features.abs().mean().item())
        same_class += int((ref.object_ids == ours.object_ids).sum())
    best = torch.cat(
        [box_iou(ref.boxes, ours.boxes).max(dim=1).values for ref, ours in zip(reference, own, strict=True)]
    )
    return {
        "cosine": min(cosines),
        "max": max(max_ratios),
        "mean": sum(differences) / sum(magnitudes),
        "same_class": same_class,
        "iou50": int((best >= 0.5).sum()),
        "iou90": int((best >= 0.9).sum()),
    }


if __name__ == "__main__":
    main()
