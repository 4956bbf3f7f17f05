"""`lxmert serve` under load: latency and throughput with dynamic batching and without, and what the region
cache saves on a second question about a photo.

The server runs as its own process on 127.0.0.1 (as users run it), with the tiny test models (the fixture
detector in the tests' cheap setting and a tiny LXMERT reading its 256-d features; `--full-size`: the full-size
detector and LXMERT with random weights). Every request sends a different image (the eight test images, each
request's copy changed in one pixel and sent as PNG, so the cache never answers), one question, as JSON with
the image in base64. For each --concurrency c, --requests requests are sent by c client threads (each waits for
its answer before sending the next); reported: requests/s, p50 and p99 latency. First with batching (the
server's --max-batch-size, default 8), then a second server with --max-batch-size 1. Last, on the batching
server, 20 photos asked twice: the first question (detector + LXMERT) against the second (cached regions, LXMERT
only), medians.

    python benchmarks/bench_serve.py                                  # CPU, tiny models
    python benchmarks/bench_serve.py --device cuda --full-size        # GPU, full size
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((ROOT / "tests" / "fixtures" / "images").glob("*.jpg"))
QUESTION = "what is the man holding?"
READY_TIMEOUT = 300  # seconds for the server to load its models


def make_models(folder: Path, full_size: bool) -> tuple[Path, Path]:
    """A detector and an LXMERT VQA checkpoint in `folder`: the tests' tiny ones, or full size with random
    weights."""
    from extract import DetectorConfig, VGDetector
    from extract.checkpoints import read_checkpoint, save_pretrained
    from lxmert import LxmertConfig, LxmertForQuestionAnswering, load_answers

    torch.manual_seed(0)
    answers = load_answers("vqa")
    if full_size:
        detector = VGDetector(DetectorConfig())
        save_pretrained(detector.config, detector.state_dict(), folder / "detector")
        config = LxmertConfig(num_qa_labels=len(answers), id2label=dict(enumerate(answers)))
    else:
        checkpoint = read_checkpoint(ROOT / "tests" / "fixtures" / "detectron2-vg-tiny")
        cheap = dataclasses.replace(checkpoint.config, min_size_test=300, max_size_test=500, rpn_post_nms_topk_test=100)
        save_pretrained(cheap, checkpoint.state_dict, folder / "detector")
        config = LxmertConfig(
            hidden_size=64,
            num_attention_heads=4,
            intermediate_size=128,
            l_layers=2,
            x_layers=2,
            r_layers=1,
            visual_feat_dim=cheap.pooled_dim,
            num_qa_labels=len(answers),
            id2label=dict(enumerate(answers)),
        )
    LxmertForQuestionAnswering(config).save_pretrained(folder / "vqa")
    return folder / "detector", folder / "vqa"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`lxmert serve` in a child process, ready when /readyz answers 200."""

    def __init__(self, detector: Path, model: Path, device: str, max_batch_size: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-c", "from service.cli import main; main()", "serve"]
        command += ["--model", str(model), "--detector", str(detector), "--device", device]
        command += ["--port", str(self.port), "--max-batch-size", str(max_batch_size)]
        command += ["--queue-size", "1024", "--cache-size", "4096"]
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped (exit {self.process.returncode}); its log: {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server was not ready after {READY_TIMEOUT} s; its log: {log}")

    def ask(self, image: bytes, question: str = QUESTION) -> tuple[float, dict]:
        body = json.dumps({"image": base64.b64encode(image).decode(), "question": question}).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/vqa", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as answer:
            result = json.loads(answer.read())
        return time.perf_counter() - start, result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def distinct_images(count: int) -> list[bytes]:
    """`count` PNGs of the test images, each changed in one pixel (distinct bytes: no cache hits)."""
    pictures = [np.asarray(Image.open(path).convert("RGB")) for path in IMAGES]
    made = []
    for index in range(count):
        pixels = pictures[index % len(pictures)].copy()
        pixels[0, 0] = (index % 256, (index // 256) % 256, 7)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        made.append(buffer.getvalue())
    return made


def load(server: Server, images: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Requests/s and each request's latency, `concurrency` clients sending `images` one request each."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock, position = threading.Lock(), [0]

    def client() -> None:
        while True:
            with lock:
                if position[0] >= len(images) or errors:
                    return
                image = images[position[0]]
                position[0] += 1
            try:
                seconds, _ = server.ask(image)
            except BaseException as error:  # stop every client, report it
                errors.append(error)
                return
            with lock:
                latencies.append(seconds)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a request failed: {errors[0]}")
    return len(images) / (time.perf_counter() - start), latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share / 100 * len(ordered)))) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--requests", type=int, default=200, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch-size", type=int, default=8, help="of the batching server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        detector, model = make_models(folder, args.full_size)
        images = distinct_images(args.requests * len(args.concurrency) * 2 + 40)
        print(
            f"torch {torch.__version__}, server on {args.device}, "
            f"{'full-size models, random weights' if args.full_size else 'tiny test models'}, "
            f"{args.requests} requests per row, one question each, a different image each"
        )
        print()
        print("| max batch | concurrency | requests/s | p50 (ms) | p99 (ms) |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        rates: dict[tuple[int, int], float] = {}
        used = 0
        for batch in (args.max_batch_size, 1):
            server = Server(detector, model, args.device, batch, folder / f"server-{batch}.log")
            try:
                server.ask(images[-1])  # warm-up
                for concurrency in args.concurrency:
                    chunk = images[used : used + args.requests]
                    used += args.requests
                    rate, latencies = load(server, chunk, concurrency)
                    rates[batch, concurrency] = rate
                    print(
                        f"| {batch} | {concurrency} | {rate:.1f} | {percentile(latencies, 50) * 1e3:.1f} | "
                        f"{percentile(latencies, 99) * 1e3:.1f} |"
                    )
                if batch == args.max_batch_size:
                    first, second = [], []
                    for image in images[used : used + 20]:
                        seconds, answer = server.ask(image)
                        assert not answer["cached"], "a new image was a cache hit"
                        first.append(seconds)
                        seconds, answer = server.ask(image, "is it raining?")
                        assert answer["cached"], "the second question about an image missed the cache"
                        second.append(seconds)
                    used += 20
            finally:
                server.stop()
        print()
        for concurrency in args.concurrency:
            ratio = rates[args.max_batch_size, concurrency] / rates[1, concurrency]
            print(f"concurrency {concurrency}: batching gives {ratio:.2f}x the requests/s of --max-batch-size 1")
        print()
        print("| one photo, two questions (median of 20) | ms |")
        print("| --- | ---: |")
        print(f"| first question (detector + LXMERT) | {statistics.median(first) * 1e3:.1f} |")
        print(f"| second question (cached regions) | {statistics.median(second) * 1e3:.1f} |")
        print(f"| second / first | {statistics.median(second) / statistics.median(first):.3f} |")


if __name__ == "__main__":
    main()
