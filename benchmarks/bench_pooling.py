"""ROIPool on the CPU: torchvision's kernel (one thread, float32 only) against extract.model.pooling (same values).

1. The pooling alone: the res4 map of a 600 x 1000 image (1024 x 38 x 63) and 300 boxes inside the image
   (sides log-uniform between 16 and 1000 pixels) to 14 x 14, at 1 thread and at torch's thread count; in
   float32, and in bfloat16, where torchvision's route (the detector's before) pools a float32 copy and rounds
   the result back.
2. The whole full-size detector forward (random weights, one 600 x 1000 image, 300 proposals), with each
   pooling in the ROI head: what the pooling's speed-up is worth end to end (--no-detector skips it).

Both sides run in this process, interleaved; times are medians. The values are checked equal first.

    python benchmarks/bench_pooling.py
    python benchmarks/bench_pooling.py --threads 16 --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.ops import roi_pool as torchvision_roi_pool

import extract.model.roi_heads as roi_heads
from extract import DetectorConfig, VGDetector, preprocess
from extract.model.pooling import roi_pool

SCALE = 1 / 16


def torchvision_route(features: torch.Tensor, rois: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """What the ROI head did before: torchvision's kernel on a float32 copy, the result in the map's dtype."""
    return torchvision_roi_pool(features.float(), rois, (size, size), scale).to(features.dtype)


def proposals(count: int, generator: torch.Generator) -> torch.Tensor:
    sides = torch.exp(torch.empty(count, 2).uniform_(torch.log(torch.tensor(16.0)), torch.log(torch.tensor(1000.0))))
    sides = torch.minimum(sides, torch.tensor([999.0, 599.0]))
    corner = torch.rand(count, 2, generator=generator) * (torch.tensor([999.0, 599.0]) - sides)
    return torch.cat([torch.zeros(count, 1), corner, corner + sides], dim=1)


def interleaved(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in functions}
    for fn in functions.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="the 'all threads' rows (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of the pooling alone (median)")
    parser.add_argument("--detector-repeats", type=int, default=3, help="timed forwards of the detector (median)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--no-detector", action="store_true", help="time the pooling alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    all_threads = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    rois = proposals(300, generator)
    print(f"torch {torch.__version__}, CPU ({torch.backends.cpu.get_cpu_capability()}), 300 boxes, 14 x 14 bins")
    print()
    print("| dtype | threads | torchvision (ms) | ours (ms) | speed ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for name in args.dtypes:
            dtype = getattr(torch, name)
            features = torch.rand(1, 1024, 38, 63, generator=generator).to(dtype)
            if not torch.equal(roi_pool(features, rois, 14, SCALE), torchvision_route(features, rois, 14, SCALE)):
                raise SystemExit(f"the two poolings differ in {name}")
            for threads in sorted({1, all_threads}):
                torch.set_num_threads(threads)
                times = interleaved(
                    {
                        "torchvision": lambda features=features: torchvision_route(features, rois, 14, SCALE),
                        "ours": lambda features=features: roi_pool(features, rois, 14, SCALE),
                    },
                    args.repeats,
                )
                ratio = times["torchvision"] / times["ours"]
                print(
                    f"| {name} | {threads} | {times['torchvision'] * 1e3:.1f} | {times['ours'] * 1e3:.1f} | "
                    f"{ratio:.2f} |"
                )
        torch.set_num_threads(all_threads)
        if args.no_detector:
            return
        torch.manual_seed(0)
        detector = VGDetector(DetectorConfig()).eval()
        image = torch.randint(0, 256, (600, 1000, 3), dtype=torch.uint8, generator=generator).numpy()
        item = preprocess(image)
        print()
        print(f"The full-size detector's forward, one 600 x 1000 image, float32, {all_threads} threads:")
        print()
        print("| ROIPool | forward (s) | speed ratio |")
        print("| --- | ---: | ---: |")
        routes = {"torchvision": torchvision_route, "ours": roi_pool}

        def forward_with(route: Callable) -> Callable[[], object]:
            def run() -> object:
                roi_heads.roi_pool = route
                try:
                    return detector([item])
                finally:
                    roi_heads.roi_pool = roi_pool

            return run

        outputs = {name: forward_with(route)()[0] for name, route in routes.items()}
        if not torch.equal(outputs["torchvision"].pooled_features, outputs["ours"].pooled_features):
            raise SystemExit("the detector's pooled features differ between the two poolings")
        times = interleaved({name: forward_with(route) for name, route in routes.items()}, args.detector_repeats)
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.2f} | {times['torchvision'] / seconds:.2f} |")


if __name__ == "__main__":
    main()
