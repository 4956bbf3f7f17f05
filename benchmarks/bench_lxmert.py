"""Our LxmertForQuestionAnswering vs transformers', same random weights, one process.

Default config (full size), 20 tokens, 36 boxes. For each batch size, two rows: "full" (every example
20 real tokens) and "real" (questions of real VQA length: 6 to 20 real tokens, seeded, padded to 20: mean
about 13): median forward time over interleaved runs (ours, theirs, ours, ...), and the peak tensor memory one
forward allocates on top of the weights (CPU: the torch profiler's allocation events; GPU:
max_memory_allocated). Prints a markdown table; `ratio` is reference / ours (above 1: ours is faster or
smaller).

    python benchmarks/bench_lxmert.py                      # CPU, fp32, batch 1 and 32
    python benchmarks/bench_lxmert.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

import lxmert


def make_inputs(batch: int, length: int, boxes: int, device: str, dtype: torch.dtype, real: bool = False) -> dict:
    generator = torch.Generator().manual_seed(batch)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    if real:  # 6 to `length` real tokens each, then padding
        for row, count in enumerate(torch.randint(6, length + 1, (batch,), generator=generator).tolist()):
            attention_mask[row, count:] = 0
    inputs = {
        "input_ids": torch.randint(1000, 30000, (batch, length), generator=generator) * attention_mask,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        "visual_feats": torch.randn(batch, boxes, 2048, generator=generator).to(dtype),
        "visual_pos": torch.rand(batch, boxes, 4, generator=generator).to(dtype),
    }
    return {k: v.to(device) for k, v in inputs.items()}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_models(models: dict, inputs: dict, device: str, repeats: int) -> dict[str, float]:
    times = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(**inputs)
            model(**inputs)
        for _ in range(repeats):
            for name, model in models.items():
                sync(device)
                start = time.perf_counter()
                model(**inputs)
                sync(device)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(model, inputs: dict, device: str) -> float:
    """Peak bytes allocated by one forward pass, beyond what was allocated before it."""
    with torch.inference_mode():
        if device == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            model(**inputs)
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(**inputs)
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--boxes", type=int, default=36)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(0)
    reference = transformers.LxmertForQuestionAnswering(transformers.LxmertConfig())
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = lxmert.LxmertForQuestionAnswering.from_pretrained(folder)
    models = {"ours": ours.to(args.device, dtype).eval(), "transformers": reference.to(args.device, dtype).eval()}

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {args.device}, {args.dtype}, "
        f"{torch.get_num_threads()} threads, {args.length} tokens, {args.boxes} boxes"
    )
    print()
    print(
        "| batch | tokens | transformers (ms) | ours (ms) | speed ratio "
        "| transformers peak (MiB) | ours peak (MiB) | memory ratio |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch, real in ((batch, real) for batch in args.batch_sizes for real in (False, True)):
        inputs = make_inputs(batch, args.length, args.boxes, args.device, dtype, real)
        mean = inputs["attention_mask"].sum().item() / batch
        times = time_models(models, inputs, args.device, args.repeats)
        memory = {name: peak_memory(model, inputs, args.device) for name, model in models.items()}
        print(
            f"| {batch} | {'real, mean ' + format(mean, '.1f') if real else 'full'} | "
            f"{times['transformers'] * 1e3:.1f} | {times['ours'] * 1e3:.1f} | "
            f"{times['transformers'] / times['ours']:.2f} | {memory['transformers'] / 2**20:.1f} | "
            f"{memory['ours'] / 2**20:.1f} | {memory['transformers'] / memory['ours']:.2f} |"
        )


if __name__ == "__main__":
    main()
