"""Region feature extraction with the full-size VG Faster R-CNN (ResNet-101 C4): speed, memory, FLOPs.

Random weights (the timing does not depend on them; the model still yields 300 proposals per image).
On the real test images (tests/fixtures/images):

- images/s of RegionFeatureExtractor (decode, preprocess, network, Caffe selection of 36 boxes) at
  batch 1 and batch 8, and the peak memory one call allocates;
- the same images through a plain forward of the network alone (preprocessed beforehand, no
  selection): the extractor's time per image over the plain forward's is its overhead;
- FLOPs of one 600 x 1000 image, split into backbone, RPN and ROI heads (torch.utils.flop_counter);
- with --same-size N: N random 600 x 1000 images (one network input size, so a batch of 8 is one pass of 8),
  the throughput the GPU target is stated in (extraction at 600 x 1000, images/s).

--dtype sets the convolutions' dtype (RegionFeatureExtractor's dtype; features stay float32).

    python benchmarks/bench_extract.py                  # CPU, torch's thread count
    python benchmarks/bench_extract.py --threads 2
    python benchmarks/bench_extract.py --device cuda    # the same tables on the GPU
    python benchmarks/bench_extract.py --device cuda --dtype bfloat16 --same-size 64 --batch-sizes 1 8 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from extract import DetectorConfig, RegionFeatureExtractor, VGDetector, load_image, preprocess

IMAGES = sorted((Path(__file__).parent.parent / "tests" / "fixtures" / "images").glob("*.jpg"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bytes(fn, device: torch.device) -> int:
    """Peak bytes allocated during one call, beyond what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def flops_by_stage(detector: VGDetector, device: torch.device) -> dict[str, int]:
    """FLOPs of one 600 x 1000 image (its network input is 600 x 1000 too), per top-level stage."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (600, 1000, 3), dtype=torch.uint8, generator=generator).numpy()
    item = preprocess(image, min_size=600, max_size=1000, device=device)
    assert item.resized_size == (600, 1000)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        detector([item])
    per_module = counter.get_flop_counts()
    stages = {
        "backbone": "VGDetector.backbone",
        "RPN": "VGDetector.proposal_generator",
        "ROI heads": "VGDetector.roi_heads",
    }
    counts = {name: sum(per_module.get(key, {}).values()) for name, key in stages.items()}
    counts["total"] = counter.get_total_flops()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per measurement (median)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--same-size", type=int, default=0, metavar="N", help="also N random 600 x 1000 images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    detector = VGDetector(DetectorConfig()).to(device).eval()
    extractor = RegionFeatureExtractor(detector, device=device, dtype=getattr(torch, args.dtype))
    paths = [str(p) for p in IMAGES]
    print(
        f"torch {torch.__version__}, {device}, {args.dtype}, {torch.get_num_threads()} threads, full-size VG R101 "
        f"(random weights), {len(paths)} real images, caffe rule, 36 boxes"
    )

    flops = flops_by_stage(detector, device)
    print()
    print("| FLOPs of one 600 x 1000 image | GFLOP | share |")
    print("| --- | ---: | ---: |")
    for name, count in flops.items():
        print(f"| {name} | {count / 1e9:.1f} | {count / flops['total']:.0%} |")

    preprocessed = [preprocess(load_image(p), device=device) for p in paths]
    print()
    print("| batch | extractor images/s | plain forward images/s | extractor / plain time | peak MiB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for batch in args.batch_sizes:
            print(measure(extractor, detector, paths, preprocessed, batch, device, args.repeats))
    if args.same_size:
        generator = torch.Generator().manual_seed(0)
        same = [
            torch.randint(0, 256, (600, 1000, 3), dtype=torch.uint8, generator=generator).numpy()
            for _ in range(args.same_size)
        ]
        items = [preprocess(image, device=device) for image in same]
        print()
        print(f"{args.same_size} random 600 x 1000 images:")
        print()
        print("| batch | extractor images/s | plain forward images/s | extractor / plain time | peak MiB |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        with torch.inference_mode():
            for batch in args.batch_sizes:
                print(measure(extractor, detector, same, items, batch, device, args.repeats))


def measure(extractor, detector, paths, preprocessed, batch: int, device: torch.device, repeats: int) -> str:
    """One table row: the extractor and the plain network on the same images, `batch` at a time.

    The two alternate chunk by chunk (extractor, network, extractor, ...) so that a slower moment of
    the machine hits both; each chunk's time is the median of `repeats` runs.
    """
    full = plain = 0.0
    for start in range(0, len(paths), batch):
        chunk, items = paths[start : start + batch], preprocessed[start : start + batch]
        extractor(chunk, batch_size=batch)  # warm-up of this shape
        full_runs, plain_runs = [], []
        for _ in range(repeats):
            full_runs.append(timed(lambda chunk=chunk: extractor(chunk, batch_size=batch), device, 1))
            plain_runs.append(timed(lambda items=items: detector(items), device, 1))
        full += statistics.median(full_runs)
        plain += statistics.median(plain_runs)
    peak = peak_bytes(lambda: extractor(paths[:batch], batch_size=batch), device)
    return f"| {batch} | {len(paths) / full:.3f} | {len(paths) / plain:.3f} | {full / plain:.3f} | {peak / 2**20:.0f} |"


if __name__ == "__main__":
    main()
