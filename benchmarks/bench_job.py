"""The extraction job end to end against the detector alone: does the job keep the detector busy?

Images: the eight test images (tests/fixtures/images) copied under distinct names until there are
--images of them, in a temporary folder. The same extractor settings in both:

- detector alone (the reference): `RegionFeatureExtractor` called on batches of images decoded
  beforehand (decoding not timed), results left on the device: the ceiling of the job's speed;
- the job: `run_extraction` (extract/jobs/run.py) on the folder, a new store each time: listing, decoding in
  DataLoader workers, the detector, copying results to the host and committing every batch. Its rate
  is JobSummary.images_per_second (the extraction loop; start-up, i.e. loading the detector, hashing
  its weights and listing the folder, is shown apart).

One untimed run of each comes first (one-time costs: kernel selection, allocator warm-up, worker start),
then --repeats alternating timed runs; medians. Target: the job at 90% of the detector alone or better.

    python benchmarks/bench_job.py                                   # tiny fixture detector, CPU
    python benchmarks/bench_job.py --detector unc-nlp/frcnn-vg-finetuned --device cuda --images 256 \\
        --batch-size 8 --num-workers 8
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from extract.images import load_image
from extract.jobs.records import box_setting, load_extractor
from extract.jobs.run import run_extraction

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "tests" / "fixtures" / "images").glob("*.jpg"))


def make_folder(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"image_{i:06d}.jpg"
        shutil.copy(IMAGES[i % len(IMAGES)], path)
        paths.append(path)
    return paths


def detector_alone(extractor, decoded, batch_size: int, num_boxes) -> float:
    """images/s of the extractor on decoded images, batch by batch."""
    start = time.perf_counter()
    for first in range(0, len(decoded), batch_size):
        extractor(decoded[first : first + batch_size], num_boxes=num_boxes, batch_size=batch_size)
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    return len(decoded) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default=str(ROOT / "tests" / "fixtures" / "detectron2-vg-tiny"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--num-boxes", default="36")
    parser.add_argument("--feature-dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_job_") as scratch:
        scratch = Path(scratch)
        paths = make_folder(scratch / "images", args.images)
        make_folder(scratch / "warm-up", min(args.images, 2 * args.batch_size))
        start = time.perf_counter()
        extractor, _ = load_extractor(args.detector, device=args.device, dtype=args.dtype)
        load_seconds = time.perf_counter() - start
        _, num_boxes = box_setting(args.num_boxes, "caffe", extractor.config.detections_per_image)
        decoded = [load_image(path) for path in paths]
        options = dict(
            detector=args.detector,
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            num_boxes=args.num_boxes,
            feature_dtype=args.feature_dtype,
            progress=False,
        )
        detector_alone(extractor, decoded[: 2 * args.batch_size], args.batch_size, num_boxes)  # warm-up
        run_extraction(scratch / "warm-up", scratch / "warm-up.h5", **options)
        alone, job, startups = [], [], []
        for repeat in range(args.repeats):
            alone.append(detector_alone(extractor, decoded, args.batch_size, num_boxes))
            start = time.perf_counter()
            summary = run_extraction(scratch / "images", scratch / f"job-{repeat}.h5", **options)
            startups.append(time.perf_counter() - start - summary.seconds)
            assert summary.done == args.images, summary
            job.append(summary.images_per_second)

    reference, ours = statistics.median(alone), statistics.median(job)
    startup = statistics.median(startups)
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    command = " ".join(["python benchmarks/bench_job.py", *sys.argv[1:]])
    print(
        f"\n{args.images} images, batch {args.batch_size}, {args.num_workers} workers, {args.num_boxes} boxes, "
        f"{args.dtype} convolutions, {args.feature_dtype} store; {device}; torch {torch.__version__}; "
        f"median of {args.repeats}\n"
    )
    print("| what | detector alone (reference) | job | ratio | command |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| images/s | {reference:.2f} | {ours:.2f} | {ours / reference:.2f} | `{command}` |")
    print(
        f"| start-up, s (load, hash the weights; the job also lists, opens the store) | {load_seconds:.2f} | "
        f"{startup:.2f} | - | |"
    )
    print(
        "\nper repeat, images/s (detector alone, job): "
        + ", ".join(f"({a:.2f}, {j:.2f})" for a, j in zip(alone, job, strict=True))
    )


if __name__ == "__main__":
    main()
