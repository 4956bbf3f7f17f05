"""Fine-tuning LXMERT on VQA, GQA or NLVR2 from feature stores: `train(TrainConfig(...))`, `lxmert train`.

    data files -> records (tasks.data) -> records whose images the stores hold -> examples (tasks.examples)
    -> batches in the epoch's seeded order -> the model -> loss -> an optimizer step every `grad_accum`
    batches -> per epoch, the validation score -> best/ and last/

The recipe defaults to LXMERT's (docs/training.md): 4 epochs of batch 32, BertAdam, a linear warmup over
the first 10% of the steps and a linear decay to 0, gradient norm clipped at 5; VQA and GQA minimize
binary cross-entropy on soft answer scores multiplied by the number of answers (lr 5e-5 and 1e-5), NLVR2
cross-entropy (lr 5e-5). The output folder holds `run.json` (the configuration), `metrics.jsonl`, `best/`
and `last/` (save_pretrained folders with the tokenizer) and `state.pt` (what `resume` continues from:
model, optimizer, schedule, every random generator, the position in the epoch), each replaced atomically.

Under torchrun every rank trains on its share of each epoch's order (DistributedDataParallel: gradients are
averaged once per optimizer step, not per accumulated micro-batch) and predicts its share of the validation set
(the predictions are gathered, so every rank knows the score); rank 0 alone writes. Each rank draws its own
dropout masks (seed + rank) and the state keeps every rank's generators: a run resumed on as many ranks
continues exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from extract.devices import resolve_device
from extract.jobs.inputs import check_columns, load_dataset_split
from lxmert import LxmertTokenizerFast

from .config import METRICS_NAME, RESUME_KEYS, RUN_FILES, RUN_NAME, STATE_NAME, TrainConfig
from .data import Question, Statement, read_answer_list, read_hf_dataset, read_task_data
from .examples import Batches, QuestionExamples, StatementExamples, match_images
from .features import RegionFeatures
from .files import write_atomically
from .metrics import evaluate_lxmert
from .models import build_model, model_answers
from .optim import build_optimizer, build_schedule


class TrainingError(RuntimeError):
    """A run that cannot start or had to stop (the message says why, and what was kept)."""


@dataclass
class TrainSummary:
    """What a run did."""

    output: Path
    epochs: int
    steps: int  # optimizer steps
    train_examples: int
    valid_scores: list[float] = field(default_factory=list)  # per epoch (empty without valid)
    best_score: float | None = None
    best_epoch: int | None = None
    stopped: str | None = None  # why it stopped early, if it did


# ---------------------------------------------------------------------------------------------------
# Setup


@dataclass
class _Rank:
    index: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.index == 0


def _rank() -> _Rank:
    if dist.is_initialized():  # a caller's process group, however it was launched
        return _Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return _Rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    return _Rank()


def _device(name: str | None, rank: _Rank) -> torch.device:
    """This process's device: `name` (None: CUDA when available, else the CPU); under torchrun a CUDA device
    without an index is GPU LOCAL_RANK, so that each rank of a node has its own."""
    device = resolve_device(name)
    if rank.world > 1 and device.type == "cuda" and device.index is None:
        device = resolve_device(f"cuda:{rank.local}")
    return device


def _prepare_output(config: TrainConfig) -> Path:
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise TrainingError(f"--output {output} is a file; give a folder")
    held = [name for name in RUN_FILES if (output / name).exists()]
    if held and not (config.resume or config.overwrite):
        raise TrainingError(
            f"{output} holds another run ({', '.join(held)}): pass --resume to continue it or --overwrite to replace it"
        )
    if config.resume and not (output / STATE_NAME).is_file():
        raise TrainingError(f"--resume: {output} holds no training state ({STATE_NAME}) to continue from")
    output.mkdir(parents=True, exist_ok=True)
    if config.overwrite:
        for name in held:
            path = output / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return output


def _prepare_output_on_rank_0(config: TrainConfig, rank: _Rank) -> Path:
    """_prepare_output on rank 0 while the others wait; a refusal stops every rank with its message (rather than
    leaving them waiting for a rank that has gone)."""
    refusal = None
    if rank.main:
        try:
            _prepare_output(config)
        except (TrainingError, OSError) as error:
            refusal = error
    message = [None if refusal is None else str(refusal)]
    dist.broadcast_object_list(message)
    if refusal is not None:
        raise refusal
    if message[0] is not None:
        raise TrainingError(message[0])
    return Path(config.output)


def _load_records(task: str, paths: Sequence[str]) -> list[Question] | list[Statement]:
    records: list = []
    for path in paths:
        records.extend(read_task_data(task, path))
    return records


def _dataset_questions(config: TrainConfig, which: str) -> list[Question]:
    """The questions of config.train_dataset or valid_dataset (`which`: "train" or "valid"); none when not set."""
    name = getattr(config, f"{which}_dataset")
    if name is None:
        return []
    split_flag = f"--{which}-split"
    dataset = load_dataset_split(name, getattr(config, f"{which}_split"), split_flag=split_flag)
    columns = {
        "--question-column": config.question_column,
        "--image-column": config.image_column,
        "--answers-column": config.answers_column or None,
        "--question-id-column": config.question_id_column,
    }
    check_columns(dataset, **columns)  # the messages name the flags, where read_hf_dataset's name its arguments
    return read_hf_dataset(
        dataset,
        question=config.question_column,
        image_id=config.image_column,
        answers=config.answers_column or None,
        question_id=config.question_id_column,
    )


def records_digest(records: Sequence[Question | Statement]) -> str:
    """SHA-256 of the records' content, in order (ids, images, text, labels): what a resumed run must train on
    again, however it was read (files, a dataset, records given from Python)."""
    digest = hashlib.sha256()
    for record in records:
        if isinstance(record, Question):
            label = None if record.label is None else sorted(record.label.items())
            fields = (record.question_id, record.image_id, record.text, label)
        else:
            fields = (record.identifier, record.image_ids, record.text, record.label)
        digest.update(repr(fields).encode("utf-8"))
    return digest.hexdigest()


def _answers_of(config: TrainConfig, records: Sequence[Question]) -> list[str] | None:
    """The answer list: --answers, else the init checkpoint's own (a fine-tuned model), else every answer the
    training labels give, in sorted order."""
    if config.task == "nlvr2":
        return None
    if config.answers is not None:
        return read_answer_list(config.answers)
    own = model_answers(config.init)
    if own is not None:
        return own
    return sorted({answer for record in records for answer in (record.label or {})})


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values (the state file loads with weights_only)."""
    version, keys, position, has_gauss, gauss = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    states = {
        "python": [python_version, torch.tensor(python_state, dtype=torch.int64), python_gauss],
        "numpy": [version, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    python_version, python_state, python_gauss = states["python"]
    random.setstate((python_version, tuple(python_state.tolist()), python_gauss))
    version, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((version, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _epoch_order(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches: a permutation seeded by (seed, epoch), cut into full batches (the last partial
    batch is dropped, as LXMERT's training loader does)."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    return [order[start : start + batch_size] for start in range(0, size - batch_size + 1, batch_size)]


class _Order(torch.utils.data.Sampler):
    """Yields the given batches of indices (this rank's share), from the one to resume at."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# ---------------------------------------------------------------------------------------------------
# Writing


def _save_model(model: nn.Module, tokenizer: LxmertTokenizerFast, folder: Path) -> None:
    """save_pretrained into a side folder that replaces `folder` once complete."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)


def _append_metrics(output: Path, line: dict[str, Any]) -> None:
    with open(output / METRICS_NAME, "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------------------------------------------
# The loop


def _loss(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    if task == "nlvr2":
        return nn.functional.cross_entropy(logits, target)
    # LXMERT: the mean binary cross-entropy over answers, times their number
    return nn.functional.binary_cross_entropy_with_logits(logits, target) * logits.size(1)


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {name: batch[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
    inputs |= {name: batch[name] for name in ("visual_feats", "visual_pos", "visual_attention_mask")}
    output = model(**inputs, return_dict=True)
    return output.question_answering_score if hasattr(output, "question_answering_score") else output.logits


def predict(
    model: nn.Module,
    examples: QuestionExamples | StatementExamples,
    tokenizer: LxmertTokenizerFast,
    *,
    device: torch.device,
    batch_size: int = 256,
    max_length: int = 20,
    num_workers: int = 0,
    bf16: bool = False,
    indices: Sequence[int] | None = None,
) -> list[int]:
    """The predicted label of every example (an answer index, or 1 / 0 for a true / false statement); with
    `indices`, of those examples only (the others' entries stay 0)."""
    loader = torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        sampler=indices,
        collate_fn=Batches(tokenizer, max_length),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),  # the global generator (dropout's) stays untouched
    )
    predictions = [0] * len(examples)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for batch in loader:
            batch = {name: value.to(device) for name, value in batch.items()}
            labels = _forward(model, batch).argmax(dim=-1).tolist()
            for index, label in zip(batch["index"].tolist(), labels, strict=True):
                predictions[index] = label
    model.train(was_training)
    return predictions


def _validate(model, examples, tokenizer, config: TrainConfig, device, bf16: bool, rank: _Rank) -> list[int]:
    """The predictions for every validation example: each rank predicts every world-th one, then the ranks
    exchange them (so no rank waits through a whole validation in a collective, and each knows the score)."""
    mine = range(rank.index, len(examples), rank.world)
    predictions = predict(
        model,
        examples,
        tokenizer,
        device=device,
        batch_size=config.valid_batch_size,
        max_length=config.max_length,
        num_workers=config.num_workers,
        bf16=bf16,
        indices=mine,
    )
    if rank.world > 1:
        shares: list = [None] * rank.world
        dist.all_gather_object(shares, [predictions[index] for index in mine])
        for index, share in enumerate(shares):
            predictions[index :: rank.world] = share
    return predictions


def validation_score(task: str, examples, predictions: list[int], answers: list[str] | None) -> float:
    """VQA / GQA: LXMERT's evaluator (the mean label score of the predicted answers); NLVR2: accuracy."""
    if task == "nlvr2":
        right = sum(
            int(statement.label) == label for statement, label in zip(examples.statements, predictions, strict=True)
        )
        return right / len(predictions)
    chosen = {
        question.question_id: answers[label] for question, label in zip(examples.questions, predictions, strict=True)
    }
    records = [{"question_id": question.question_id, "label": question.label or {}} for question in examples.questions]
    return evaluate_lxmert(chosen, records)


def train(
    config: TrainConfig,
    *,
    train_records: Sequence[Question | Statement] | None = None,
    valid_records: Sequence[Question | Statement] | None = None,
) -> TrainSummary:
    """Run (or, with `config.resume`, continue) a fine-tuning run; see the module docstring. Under torchrun
    it joins the process group, or sets one up from torchrun's environment (NCCL on GPUs, gloo on the CPU)
    and takes it down at the end.

    train_records / valid_records: records read by the caller (e.g. `tasks.data.read_hf_dataset` of a
    `datasets.Dataset`), used besides the files and datasets of the config. A resumed run must train on records
    of the same content (a digest of them is in the state), however they are given."""
    rank = _rank()
    device = _device(config.device, rank)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # before the first collective: NCCL runs it on the current device
    created = rank.world > 1 and not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(config, rank, device, train_records, valid_records)
    finally:
        if created:
            dist.destroy_process_group()


def _train(config: TrainConfig, rank: _Rank, device: torch.device, train_records, valid_records) -> TrainSummary:
    if not config.train and config.train_dataset is None and train_records is None:
        raise ValueError("no training data given (--train FILE..., --train-dataset, or train_records= in Python)")
    if config.batch_size % (rank.world * config.grad_accum):
        raise ValueError(
            f"batch_size={config.batch_size} must be a multiple of ranks x grad_accum ({rank.world} x "
            f"{config.grad_accum})"
        )
    output = _prepare_output(config) if rank.world == 1 else _prepare_output_on_rank_0(config, rank)
    state = _read_state(output / STATE_NAME) if config.resume else None
    if state is not None:
        _check_resumable(state["config"], config)

    bf16 = device.type == "cuda" if config.bf16 is None else config.bf16
    _seed_everything(config.seed + rank.index)  # each rank its own dropout draws (the data order has its own seed)

    features = RegionFeatures(config.features)
    given = list(train_records) if train_records is not None else []
    everything = given + _dataset_questions(config, "train") + _load_records(config.task, config.train)
    digest = records_digest(everything)
    if state is not None and state.get("train_digest", digest) != digest:
        raise TrainingError(
            f"--resume: the training records differ from those {config.output} was trained on (same settings, other "
            "content: a data file or dataset changed, or other train_records); resume on the same data, or start a "
            "new run in another folder"
        )
    records = match_images(everything, features, strict=config.strict, what="train")
    answers = _answers_of(config, records.records)
    model, carried = build_model(config.task, config.init, answers, features.feature_dim)
    model.to(device)
    tokenizer = LxmertTokenizerFast()
    if config.task == "nlvr2":
        train_examples = StatementExamples(records.records, features)
    else:
        train_examples = QuestionExamples(records.records, features, answers)
    valid_examples = None
    if config.valid is not None or config.valid_dataset is not None or valid_records is not None:
        read = read_task_data(config.task, config.valid) if config.valid is not None else []
        read = list(valid_records or []) + _dataset_questions(config, "valid") + read
        valid = match_images(read, features, strict=config.strict, what="valid")
        valid_examples = (
            StatementExamples(valid.records, features)
            if config.task == "nlvr2"
            else QuestionExamples(valid.records, features, answers)
        )

    per_rank = config.batch_size // (rank.world * config.grad_accum)  # batch of one forward pass on one rank
    batches_per_epoch = len(train_examples) // config.batch_size  # optimizer steps per epoch
    if batches_per_epoch == 0:
        raise TrainingError(
            f"{len(train_examples)} training examples make no batch of {config.batch_size}: lower --batch-size"
        )
    total_steps = batches_per_epoch * config.epochs
    trained = ddp = model
    if rank.world > 1:
        # DistributedDataParallel averages the ranks' gradients; the vision branch of the last cross-modality
        # layer feeds no output the heads read, hence find_unused_parameters (their gradients stay None, as
        # in one process). It starts every rank from rank 0's weights (the heads' new rows are random).
        trained = ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if config.compile:
        trained = torch.compile(trained)  # over DistributedDataParallel, as torch recommends
    optimizer = build_optimizer(model, config.optimizer, config.lr, config.weight_decay)
    schedule = build_schedule(optimizer, total_steps, config.warmup)

    step = epoch = position = 0  # optimizer steps done; epoch; optimizer steps done in the epoch
    best_score = best_epoch = None
    valid_scores: list[float] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, epoch, position = state["step"], state["epoch"], state["position"]
        best_score, best_epoch, valid_scores = state["best_score"], state["best_epoch"], state["valid_scores"]
        saved_rngs = state.get("rank_rngs", [state["rng"]])
        if len(saved_rngs) == rank.world:
            _set_rng_states(saved_rngs[rank.index])
        elif rank.main:  # the run had another number of ranks: the others keep their freshly seeded generators
            _set_rng_states(state["rng"])
    if rank.main:
        _write_run(output, config, train_examples, records, answers, carried, features)
        if state is not None:
            _forget_metrics_after(output, step)

    def save_state() -> None:  # called by every rank: each one's random generators go into the state
        rngs = _rng_states()
        if rank.world > 1:
            rank_rngs = [None] * rank.world
            dist.all_gather_object(rank_rngs, rngs)
        if not rank.main:
            return
        snapshot = {
            "config": dataclasses.asdict(config),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "step": step,
            "epoch": epoch,
            "position": position,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "valid_scores": valid_scores,
            "train_digest": digest,
            "rng": rngs,
        }
        if rank.world > 1:
            snapshot["rank_rngs"] = rank_rngs
        write_atomically(output / STATE_NAME, lambda file: torch.save(snapshot, file))

    collate = Batches(tokenizer, config.max_length)
    bar = tqdm(
        total=total_steps,
        initial=step,
        unit="step",
        desc=f"{config.task} {output.name}",
        disable=not rank.main or (None if config.progress is None else not config.progress),
    )
    stopped = None
    trained.train()
    try:
        while epoch < config.epochs:
            order = _epoch_order(len(train_examples), config.batch_size, config.seed, epoch)
            # this rank's forward batches: each optimizer batch split over ranks, then over accumulation steps
            mine = [
                chunk[start : start + per_rank]
                for chunk in order[position:]
                for start in range(
                    rank.index * per_rank * config.grad_accum, (rank.index + 1) * per_rank * config.grad_accum, per_rank
                )
            ]
            loader = torch.utils.data.DataLoader(
                train_examples,
                batch_sampler=_Order(mine),
                collate_fn=collate,
                num_workers=config.num_workers,
                generator=torch.Generator().manual_seed(config.seed),  # the global generator stays untouched
            )
            started, seen, losses = time.perf_counter(), 0, []
            for micro, batch in enumerate(loader):
                batch = {name: value.to(device) for name, value in batch.items()}
                # a micro-batch before the last of an optimizer step keeps its gradients on its rank
                accumulating = rank.world > 1 and (micro + 1) % config.grad_accum != 0
                with ddp.no_sync() if accumulating else nullcontext():
                    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                        logits = _forward(trained, batch)
                    loss = _loss(config.task, logits, batch["target"])
                    (loss / config.grad_accum).backward()
                losses.append(loss.detach())
                seen += len(batch["index"])
                if (micro + 1) % config.grad_accum:
                    continue
                mean_loss = torch.stack(losses).mean()
                if rank.world > 1:
                    dist.all_reduce(mean_loss)
                    mean_loss /= rank.world
                loss_value = mean_loss.item()  # one host sync per optimizer step
                if not math.isfinite(loss_value):
                    stopped = (
                        f"the loss became {loss_value} at optimizer step {step + 1} (epoch {epoch + 1}); the "
                        f"last good training state is {output / STATE_NAME}: lower --lr, or check the data"
                    )
                    raise TrainingError(stopped)
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                lr = schedule.get_last_lr()[0]
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses = []
                step, position = step + 1, position + 1
                bar.update(1)
                if not bar.disable:
                    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
                if rank.main and step % config.log_steps == 0:
                    elapsed = time.perf_counter() - started
                    _append_metrics(
                        output,
                        {
                            "step": step,
                            "epoch": epoch + position / batches_per_epoch,
                            "loss": round(loss_value, 6),
                            "lr": lr,
                            "samples_per_second": round(seen * rank.world / elapsed, 2) if elapsed > 0 else None,
                        },
                    )
                if config.save_steps and step % config.save_steps == 0 and position < batches_per_epoch:
                    save_state()
            epoch, position = epoch + 1, 0
            if valid_examples is not None:
                predictions = _validate(model, valid_examples, tokenizer, config, device, bf16, rank)
                score = validation_score(config.task, valid_examples, predictions, answers)
                valid_scores.append(score)
                if rank.main:
                    _append_metrics(output, {"epoch": epoch, "step": step, "valid": round(100 * score, 4)})
                if best_score is None or score > best_score:
                    best_score, best_epoch = score, epoch
                    if rank.main:
                        _save_model(model, tokenizer, output / "best")
            if rank.main:
                _save_model(model, tokenizer, output / "last")
            save_state()
    finally:
        bar.close()
        features.close()
    if rank.main and best_epoch is None:
        _save_model(model, tokenizer, output / "best")  # no validation: the last epoch is the best known
    if rank.world > 1:
        dist.barrier()  # no rank returns before the run's files are complete
    return TrainSummary(output, epoch, step, len(train_examples), valid_scores, best_score, best_epoch, stopped)


def _forget_metrics_after(output: Path, step: int) -> None:
    """Drop the metrics lines of steps past `step` (a resumed run does them again, so each step is logged once)."""
    path = output / METRICS_NAME
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) > step:
                continue
        except ValueError:  # a line cut short by a kill
            continue
        kept.append(line)
    if len(kept) != len(lines):
        write_atomically(path, lambda file: file.write("".join(kept).encode("utf-8")))


def _write_run(output: Path, config: TrainConfig, examples, records, answers, carried, features) -> None:
    run = {
        "config": dataclasses.asdict(config),
        "train_examples": len(examples),
        "train_records_without_images": records.dropped,
        "answers": len(answers) if answers is not None else None,
        "answers_carried_over": carried,
        "unknown_answers": getattr(examples, "unknown_answers", None),
        "feature_stores": [str(path) for path in features.paths],
        "feature_dim": features.feature_dim,
        "max_boxes": features.max_boxes,
        "command": sys.argv,
    }
    write_atomically(output / RUN_NAME, lambda file: file.write(json.dumps(run, indent=2).encode() + b"\n"))


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, objects that are not tensors or plain values
        raise TrainingError(
            f"--resume: cannot read the training state {path} ({type(error).__name__}: {error}); start the run "
            "again with --overwrite"
        ) from None


def _check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    now = dataclasses.asdict(config)
    differences = [
        f"{key}: the run has {saved[key]!r}, now {now[key]!r}"
        for key in RESUME_KEYS
        if key in saved and saved[key] != now[key]  # a key newer than the state: nothing to compare
    ]
    if differences:
        raise TrainingError(
            f"--resume: {config.output} was trained with other settings ({'; '.join(differences)}); resume with "
            "the same ones, or start a new run in another folder"
        )
