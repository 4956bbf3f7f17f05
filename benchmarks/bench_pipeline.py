"""pipeline("vqa") latency by stage and throughput, full-size models with random weights.

Stages of one (image, question), timed one after the other as the pipeline runs them: decode
(Pillow), preprocess (resize + normalize, upload), detector (network + Caffe selection of 36 boxes),
LXMERT (tokenize + forward of the full-size VQA model), post-processing (sigmoid, top 5, to Python).
Then the pipeline itself: latency at batch 1, throughput at batch 8 (8 real images, one question
each), and what a second question about the same image costs: the detector reads the image once,
so only the LXMERT part grows. Last, the latency distribution of --latency-runs calls (one image and one
question, the images in turn): p50 and p99; and a second question about an image whose regions are kept
(`vqa(regions=...)`, what a service's cache does): p50 and p99.

    python benchmarks/bench_pipeline.py                  # CPU
    python benchmarks/bench_pipeline.py --device cuda    # GPU, where one is present
    python benchmarks/bench_pipeline.py --device cuda --dtype bfloat16 --latency-runs 200
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from extract import DetectorConfig, RegionFeatureExtractor, VGDetector, load_image, preprocess
from lxmert import LxmertConfig, LxmertForQuestionAnswering, LxmertTokenizerFast, load_answers
from pipelines import pipeline

IMAGES = sorted((Path(__file__).parent.parent / "tests" / "fixtures" / "images").glob("*.jpg"))
QUESTION = "what is the man holding?"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(fn, device: torch.device):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def stages(vqa, image: Path, device: torch.device) -> dict[str, float]:
    """Seconds per stage for one image and one question, the pipeline's steps done by hand."""
    extractor: RegionFeatureExtractor = vqa.reader.extractor
    cfg = extractor.config
    times = {}
    pixels, times["decode"] = clock(lambda: load_image(image), device)
    item, times["preprocess"] = clock(
        lambda: preprocess(
            pixels, min_size=cfg.min_size_test, max_size=cfg.max_size_test, resize=extractor.resize, device=device
        ),
        device,
    )
    regions, times["detector"] = clock(lambda: extractor.detector.detect([item])[0], device)

    def lxmert():
        encoded = vqa.tokenizer([QUESTION], padding=True, return_tensors="pt").to(device)
        boxes = regions.boxes.clone()
        boxes[:, 0::2] /= regions.image_size[1]
        boxes[:, 1::2] /= regions.image_size[0]
        return vqa.model(**encoded, visual_feats=regions.features[None], visual_pos=boxes[None])

    output, times["LXMERT"] = clock(lxmert, device)

    def post():
        values, indices = output.question_answering_score.float().sigmoid().topk(5)
        return [(vqa.answers[i], s) for i, s in zip(indices[0].tolist(), values[0].tolist(), strict=True)]

    _, times["post-processing"] = clock(post, device)
    return times


class TimedExtractor:
    """Wraps the pipeline's extractor: counts the images it reads and the seconds it takes."""

    def __init__(self, extractor: RegionFeatureExtractor, device: torch.device):
        self.extractor, self.device, self.seconds, self.images = extractor, device, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.extractor, name)

    def __call__(self, images, **kwargs):
        result, seconds = clock(lambda: self.extractor(images, **kwargs), self.device)
        self.seconds += seconds
        self.images += len(images)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--latency-runs", type=int, default=10, help="calls timed for p50 / p99")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    # The pipeline's own default: resize on the device on a GPU, with Pillow on the CPU.
    resize = "fast" if device.type == "cuda" else "exact"
    extractor = RegionFeatureExtractor(VGDetector(DetectorConfig()), device=device, resize=resize)
    answers = load_answers("vqa")
    model = LxmertForQuestionAnswering(LxmertConfig(num_qa_labels=len(answers), id2label=dict(enumerate(answers))))
    vqa = pipeline(
        "vqa", model=model, detector=extractor, tokenizer=LxmertTokenizerFast(), device=device, dtype=args.dtype
    )
    print(
        f"torch {torch.__version__}, {device}, {args.dtype}, {torch.get_num_threads()} threads, full-size detector "
        "and LXMERT"
    )

    with torch.inference_mode():
        vqa(image=str(IMAGES[0]), question=QUESTION)  # warm-up
        runs = [stages(vqa, IMAGES[i % len(IMAGES)], device) for i in range(max(args.repeats, 1))]
    print()
    print("| stage (one image, one question) | ms | share |")
    print("| --- | ---: | ---: |")
    median = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    total = sum(median.values())
    for name, seconds in median.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / total:.1%} |")
    print(f"| sum | {total * 1e3:.1f} | |")

    timer = TimedExtractor(extractor, device)
    vqa.reader.extractor = timer
    single, one_call = clock(lambda: vqa(image=str(IMAGES[1]), question=QUESTION), device)
    one_detector, timer.seconds, timer.images = timer.seconds, 0.0, 0
    _, two_calls = clock(lambda: vqa(image=str(IMAGES[1]), question=[QUESTION, "is it raining?"]), device)
    two_detector, two_images = timer.seconds, timer.images
    vqa.reader.extractor = extractor
    batch = [{"image": str(image), "question": QUESTION} for image in IMAGES[:8]]
    _, batch_one = clock(lambda: vqa(batch, batch_size=1), device)
    _, batch_eight = clock(lambda: vqa(batch, batch_size=8), device)
    print()
    print("| pipeline | value |")
    print("| --- | ---: |")
    print(f"| latency, one image and one question (ms) | {one_call * 1e3:.0f} |")
    print(f"| two questions on one image: images through the detector | {two_images} |")
    calls = (("one question", one_call, one_detector), ("two questions", two_calls, two_detector))
    for label, total, detector in calls:
        print(f"| {label}: detector / the rest (ms) | {detector * 1e3:.0f} / {(total - detector) * 1e3:.0f} |")
    print(f"| throughput, batch_size=1 (pairs/s) | {len(batch) / batch_one:.3f} |")
    print(f"| throughput, batch_size=8 (pairs/s) | {len(batch) / batch_eight:.3f} |")
    assert len(single) == 5

    calls = [
        clock(lambda i=i: vqa(image=str(IMAGES[i % len(IMAGES)]), question=QUESTION), device)[1]
        for i in range(args.latency_runs)
    ]
    kept = vqa.reader.extractor([str(IMAGES[0])])[0]
    seconds = [clock(lambda: vqa(regions=kept, question="is it raining?"), device)[1] for _ in range(args.latency_runs)]
    print()
    print(f"| latency over {args.latency_runs} calls (ms) | p50 | p99 |")
    print("| --- | ---: | ---: |")
    for label, values in (("one image, one question", calls), ("a second question, regions kept", seconds)):
        print(f"| {label} | {percentile(values, 50) * 1e3:.1f} | {percentile(values, 99) * 1e3:.1f} |")


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share / 100 * len(ordered)))) - 1]


if __name__ == "__main__":
    main()
