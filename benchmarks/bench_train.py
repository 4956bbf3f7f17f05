"""Fine-tuning speed: the training step of tasks/training.py against a plain loop around transformers', and
what reading the features from a store costs it.

Synthetic VQA data: `--images` images of `--boxes` x `--feature-dim` random region features in a float16
feature store (written to a temporary folder and read back warm, from the page cache), `--questions-per-image`
questions of 4 to 12 words each, soft answer scores over `--answers` answers. The models: our
LxmertForQuestionAnswering built by tasks.models.build_model from a checkpoint of transformers' (random
weights, the same in both), and that transformers model; both in training mode, AdamW at the same learning rate
(tasks.optim.build_optimizer "adamw": the same parameter groups), the same loss (binary cross-entropy with
logits on the soft scores, times the number of answers), gradient norm clipped at 5, bf16 autocast on a GPU.

The loops, each run for `--steps` timed steps per repetition, in rotating order within a repetition:

- transformers: a plain loop (forward, loss, backward, clip, AdamW step) over batches collated beforehand from
  the in-memory features and held in memory: no data loading, the model and optimizer step only.
- ours, same batches: our step over those same batches (the model and optimizer step against theirs).
- ours, memory, N workers: our step over our DataLoader (the epoch's seeded order, `Batches` tokenizing in the
  collate) over QuestionExamples whose features are a dict of pre-built tensors (read from the store once).
- ours, store, N workers: the same over QuestionExamples reading RegionFeatures from the store, as train() does.

"Our step" is the body of the loop of tasks.training.train with its own pieces (_forward, _loss, the loss
check and its .item(), clip_grad_norm_, optimizer.step, schedule.step, zero_grad); train() itself is not
timed because its setup, validation and saving would dominate a short run and its loop cannot be interleaved.
Every repetition starts a fresh DataLoader (train() starts one per epoch) and its first step is not timed
(worker start-up, first allocations). Reported: median steps/s over the repetitions; ratio = ours / transformers
steps/s (above 1: ours is faster); store cost = 1 - (store steps/s) / (memory steps/s).

    python benchmarks/bench_train.py                              # CPU, small model: about 2 minutes on 2 cores
    python benchmarks/bench_train.py --device cuda                # GPU, bf16 autocast, full size
    python benchmarks/bench_train.py --sizes base --workers 0 --steps 3 --repeats 3
                                        # full size on a CPU: 30-50 s a step on 2 cores, about half an hour
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn

import lxmert
from extract.store import StoreMetadata, StoreWriter
from tasks.data import Question
from tasks.examples import Batches, QuestionExamples
from tasks.features import RegionFeatures
from tasks.models import build_model
from tasks.optim import build_optimizer, build_schedule
from tasks.training import _epoch_order, _forward, _loss, _Order

# Model sizes: LxmertConfig fields. "base" is LXMERT's (unc-nlp/lxmert-base-uncased).
SIZES = {
    "small": dict(hidden_size=128, num_attention_heads=4, intermediate_size=512, l_layers=2, x_layers=2, r_layers=1),
    "base": dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, l_layers=9, x_layers=5, r_layers=5),
}
WORDS = (
    "what color is the man woman dog cat car on left right of table how many people are there in picture this "
    "a an wearing holding does have kind animal shown room sign say where sitting standing next to"
).split()


# ---------------------------------------------------------------------------------------------------
# Data


def write_store(path: Path, images: int, boxes: int, dim: int) -> list[str]:
    """A float16 store of `images` random records; their ids."""
    rng = np.random.default_rng(0)
    metadata = StoreMetadata(
        num_boxes=str(boxes), rule="synthetic", detector_config={}, checkpoint_sha256="-", feature_dim=dim
    )
    pool = rng.normal(0, 1, (16, boxes, dim)).astype(np.float32)  # features reused: writing speed is not measured
    ids = [f"COCO_train2014_{i:012d}" for i in range(images)]
    with StoreWriter(path, metadata=metadata, feature_dtype="float16") as writer:
        for start in range(0, images, 256):
            records = []
            for i in range(start, min(start + 256, images)):
                corners = rng.uniform(0, 400, (boxes, 2)).astype(np.float32)
                records.append(
                    {
                        "id": ids[i],
                        "height": 480,
                        "width": 640,
                        "features": pool[i % len(pool)] + np.float32(i % 7),
                        "boxes": np.concatenate([corners, corners + 60], axis=1),
                        "object_ids": rng.integers(0, 1600, boxes),
                        "object_scores": rng.random(boxes, dtype=np.float32),
                        "attribute_ids": rng.integers(0, 400, boxes),
                        "attribute_scores": rng.random(boxes, dtype=np.float32),
                    }
                )
            writer.append(records)
    return ids


def make_questions(image_ids: list[str], per_image: int, answers: int) -> list[Question]:
    rng = np.random.default_rng(1)
    questions = []
    for image_id in image_ids:
        for _ in range(per_image):
            text = " ".join(rng.choice(WORDS, rng.integers(4, 13))) + "?"
            chosen = rng.choice(answers, rng.integers(1, 5), replace=False)
            label = {f"answer{a}": float(rng.choice([0.3, 0.6, 0.9, 1.0])) for a in chosen}
            questions.append(Question(len(questions), image_id, text, label))
    return questions


# ---------------------------------------------------------------------------------------------------
# The loops


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class OurLoop:
    """The body of tasks.training.train's loop (grad_accum 1, one rank), over any iterable of batches."""

    def __init__(self, model: nn.Module, lr: float, total_steps: int, device: torch.device, bf16: bool):
        self.model, self.device, self.bf16 = model, device, bf16
        self.optimizer = build_optimizer(model, "adamw", lr, 0.01)
        self.schedule = build_schedule(self.optimizer, total_steps, 0.1)

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        device = self.device
        batch = {name: value.to(device) for name, value in batch.items()}
        with torch.autocast(device.type, torch.bfloat16, enabled=self.bf16):
            logits = _forward(self.model, batch)
        loss = _loss("vqa", logits, batch["target"])
        loss.backward()
        mean_loss = torch.stack([loss.detach()]).mean()
        if not math.isfinite(mean_loss.item()):
            raise RuntimeError(f"the loss became {mean_loss.item()}")
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.schedule.get_last_lr()
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean_loss.item()  # train() reads it a second time for the progress bar


class TheirLoop:
    """A plain loop around transformers' LxmertForQuestionAnswering: same optimizer, loss and clipping."""

    def __init__(self, model: nn.Module, lr: float, device: torch.device, bf16: bool):
        self.model, self.device, self.bf16 = model, device, bf16
        self.optimizer = build_optimizer(model, "adamw", lr, 0.01)

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        batch = {name: value.to(self.device) for name, value in batch.items()}
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            scores = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
                visual_feats=batch["visual_feats"],
                visual_pos=batch["visual_pos"],
                visual_attention_mask=batch["visual_attention_mask"],
            ).question_answering_score.float()
        loss = nn.functional.binary_cross_entropy_with_logits(scores, batch["target"]) * scores.size(1)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def timed_steps(loop, batches, steps: int, device: torch.device) -> float:
    """Seconds for `steps` steps over `batches`, after one untimed step."""
    batches = iter(batches)
    loop.step(next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loop.step(next(batches))
    sync(device)
    return time.perf_counter() - start


def loader(examples, order: list[list[int]], tokenizer, workers: int) -> torch.utils.data.DataLoader:
    """As train() builds it."""
    return torch.utils.data.DataLoader(
        examples,
        batch_sampler=_Order(order),
        collate_fn=Batches(tokenizer, 20),
        num_workers=workers,
        generator=torch.Generator().manual_seed(9595),
    )


# ---------------------------------------------------------------------------------------------------
# One model size


def bench_size(args, size: str, store: Path, questions: list[Question], device: torch.device) -> dict:
    bf16 = device.type == "cuda"
    answers = [f"answer{i}" for i in range(args.answers)]
    config = dict(SIZES[size], visual_feat_dim=args.feature_dim, num_qa_labels=args.answers)
    torch.manual_seed(0)
    reference = transformers.LxmertForQuestionAnswering(
        transformers.LxmertConfig(**config, id2label=dict(enumerate(answers)))
    )
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours, _ = build_model("vqa", folder, answers, args.feature_dim)  # as train() builds it
    parameters = sum(p.numel() for p in ours.parameters())
    ours.to(device).train()
    reference.to(device).train()

    features = RegionFeatures(store)
    in_memory = {image_id: features[image_id] for image_id in dict.fromkeys(q.image_id for q in questions)}
    features.close()
    from_store = QuestionExamples(questions, RegionFeatures(store), answers)
    from_memory = QuestionExamples(questions, in_memory, answers)  # the same items, features a dict lookup
    tokenizer = lxmert.LxmertTokenizerFast()

    per_loop = args.steps + 1
    orders = [_epoch_order(len(questions), args.batch_size, 9595, epoch) for epoch in range(args.repeats)]
    if len(orders[0]) < per_loop:
        raise SystemExit(
            f"{len(questions)} questions make {len(orders[0])} batches of {args.batch_size}, fewer than the "
            f"{per_loop} steps a loop takes: raise --images or --questions-per-image"
        )
    total_steps = args.repeats * per_loop * (2 + 2 * len(args.workers))
    our_loop = OurLoop(ours, args.lr, total_steps, device, bf16)
    their_loop = TheirLoop(reference, args.lr, device, bf16)

    names = ["transformers", "ours, same batches"]
    names += [f"ours, {where}, {w} workers" for w in args.workers for where in ("memory", "store")]
    times = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = orders[repeat][:per_loop]
        # the batches of the two plain loops: this repetition's order, collated from the in-memory features
        prebuilt = list(loader(from_memory, order, tokenizer, 0))
        runs = {"transformers": (their_loop, prebuilt), "ours, same batches": (our_loop, prebuilt)}
        for w in args.workers:
            runs[f"ours, memory, {w} workers"] = (our_loop, loader(from_memory, order, tokenizer, w))
            runs[f"ours, store, {w} workers"] = (our_loop, loader(from_store, order, tokenizer, w))
        shift = repeat % len(names)  # a different loop goes first in each repetition
        for name in names[shift:] + names[:shift]:
            loop, batches = runs[name]
            times[name].append(timed_steps(loop, batches, args.steps, device))
        print(
            f"  {size} repetition {repeat + 1}/{args.repeats}: "
            + json.dumps({k: round(v[-1], 3) for k, v in times.items()})
        )
    rates = {name: args.steps / statistics.median(values) for name, values in times.items()}
    spread = {name: (args.steps / max(values), args.steps / min(values)) for name, values in times.items()}
    return {"size": size, "parameters": parameters, "rates": rates, "spread": spread}


# ---------------------------------------------------------------------------------------------------
# Report


def print_tables(args, results: list[dict], device: torch.device) -> None:
    print()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {device.type}"
        f"{' bf16 autocast' if device.type == 'cuda' else ', float32'}, {torch.get_num_threads()} threads, "
        f"batch {args.batch_size}, {args.boxes} boxes x {args.feature_dim}, 20 tokens, {args.answers} answers, "
        f"{args.steps} steps x {args.repeats} repetitions"
    )
    print()
    print("| model | transformers steps/s | ours, same batches | ratio | ours, from the store (0 workers) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        rates = result["rates"]
        theirs, same = rates["transformers"], rates["ours, same batches"]
        store = rates.get("ours, store, 0 workers")
        full = f"{store:.3f} | {store / theirs:.2f}" if store else "- | -"
        print(
            f"| {result['size']} ({result['parameters'] / 1e6:.0f} M) | {theirs:.3f} | {same:.3f} | "
            f"{same / theirs:.2f} | {full} |"
        )
    print()
    print("| model | workers | ours, features in memory steps/s | ours, from the store steps/s | store cost |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for result in results:
        rates = result["rates"]
        for w in args.workers:
            memory, store = rates[f"ours, memory, {w} workers"], rates[f"ours, store, {w} workers"]
            print(f"| {result['size']} | {w} | {memory:.3f} | {store:.3f} | {100 * (1 - store / memory):.1f}% |")
    print()
    print("Range over the repetitions (slowest - fastest steps/s):")
    for result in results:
        for name, (low, high) in result["spread"].items():
            print(f"- {result['size']}, {name}: {low:.3f} - {high:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--sizes",
        nargs="+",
        choices=list(SIZES),
        default=None,
        help="model sizes (default: small on a CPU, base on a GPU)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="LXMERT's fine-tuning batch")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per loop and repetition (default: 8 CPU, 50 GPU)"
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers (num_workers)")
    parser.add_argument("--images", type=int, default=None, help="images in the store (default: 1000 CPU, 4000 GPU)")
    parser.add_argument("--questions-per-image", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=36)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--answers", type=int, default=3129, help="VQA's answer list has 3,129")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--dir", default=None, help="folder for the temporary store (default: the system's)")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU here (torch.cuda.is_available() is False)")
    args.sizes = args.sizes or (["base"] if gpu else ["small"])
    args.steps = args.steps or (50 if gpu else 8)
    args.images = args.images or (4000 if gpu else 1000)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        store = Path(folder) / "features.h5"
        started = time.perf_counter()
        image_ids = write_store(store, args.images, args.boxes, args.feature_dim)
        questions = make_questions(image_ids, args.questions_per_image, args.answers)
        print(f"store of {args.images} images written in {time.perf_counter() - started:.1f} s")
        load = os.getloadavg()[0]
        results = [bench_size(args, size, store, questions, device) for size in args.sizes]
    print_tables(args, results, device)
    # other processes on the machine show in the timings: say how busy it was
    print(f"\nload average (1 min) at the start and the end: {load:.2f}, {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
