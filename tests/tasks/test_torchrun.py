"""Fine-tuning under torchrun: two CPU processes (gloo) on the synthetic VQA task of conftest.py.

The first test runs `torchrun -m tasks train` with two accumulated micro-batches per rank and compares it with
one process: same steps, same logged losses and validation scores, the same weights within float tolerance, files
written by rank 0 alone. The second runs this file under torchrun (the `__main__` part below): in one launch, a
whole run, the same run interrupted (Ctrl-C reaches every rank) and resumed, a refused run, and a run with
accumulation and validation (gradients synchronized once per optimizer step; each rank validates its share);
the resumed run ends with the whole run's weights and random generators, bit for bit.

Tolerance. The ranks' gradients are averaged by an all-reduce of per-rank gradients where one process sums all
micro-batches itself: the sums run in another order. After 60 AdamW steps at lr 1e-3 the weights differ by at most
~1e-6 (measured 9.4e-7; bound 1e-5), except the attention key biases: their true gradient is 0 (softmax ignores
a shift shared by all keys), so what they get is rounding noise that Adam scales to full steps (measured
1.8e-3 apart). They change no output: the answer scores agree within 1.4e-6 (bound 1e-4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import tasks.training
from lxmert import LxmertForQuestionAnswering, LxmertTokenizerFast
from tasks import TrainConfig, train
from tasks.cli import main as tasks_main
from tasks.data import read_task_data
from tasks.examples import Batches, QuestionExamples
from tasks.features import RegionFeatures

LAUNCHER = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
RECIPE = dict(epochs=2, batch_size=16, lr=1e-3, optimizer="adamw", save_steps=7, log_steps=1, seed=9595)
WEIGHTS_TOLERANCE = 1e-5
SCORES_TOLERANCE = 1e-4
INTERRUPT_AT = 15  # the second launch's interrupted run stops in the forward pass of optimizer step 15

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun's c10d rendezvous on a POSIX host")


def flags(settings: dict) -> list[str]:
    return [text for name, value in settings.items() for text in (f"--{name.replace('_', '-')}", str(value))]


def launch(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*LAUNCHER, *command], env=env, capture_output=True, text=True, timeout=240)


def state(run: Path) -> dict:
    return torch.load(run / "state.pt", weights_only=True)


def answer_scores(model_folder: Path, folder: Path) -> torch.Tensor:
    """The model's answer scores for every validation question: (120, 5)."""
    model = LxmertForQuestionAnswering.from_pretrained(model_folder).eval()
    features = RegionFeatures([folder / "features.h5"])
    answers = json.loads((folder / "answers.json").read_text())
    examples = QuestionExamples(read_task_data("vqa", folder / "valid.json"), features, answers)
    batch = Batches(LxmertTokenizerFast())([examples[i] for i in range(len(examples))])
    with torch.inference_mode():
        scores = tasks.training._forward(model, batch)
    features.close()
    return scores


def test_two_ranks_share_each_batch_and_end_with_the_weights_of_one_process(
    vqa_task, tiny_qa_without_dropout, tmp_path
):
    folder = vqa_task["folder"]
    files = dict(train="train.json", valid="valid.json", features="features.h5")
    data = {name: str(folder / file) for name, file in files.items()}
    data |= dict(init=str(tiny_qa_without_dropout), device="cpu")
    recipe = RECIPE | dict(grad_accum=2)  # each rank: two micro-batches of 4 per optimizer batch of 16
    ran = launch("-m", "tasks", "train", "vqa", *flags(data | recipe), "--no-progress", "--output", str(tmp_path / "2"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    summaries = [line for line in ran.stdout.splitlines() if line.startswith("lxmert train:")]
    assert len(summaries) == 1 and "2 epochs, 60 steps, best validation" in summaries[0]  # rank 0 prints it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (torchrun's default): the sums then differ by the rank split only
    try:
        one = train(TrainConfig("vqa", **data, **recipe, output=str(tmp_path / "1"), progress=False))
    finally:
        torch.set_num_threads(threads)
    assert one.steps == 60  # 480 examples in optimizer batches of 16, each rank 2 x 4 of every one of them

    two = tmp_path / "2"
    assert sorted(path.name for path in two.iterdir()) == ["best", "last", "metrics.jsonl", "run.json", "state.pt"]
    lines = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "1" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == list(range(1, 61))  # one writer: each step once
    assert [line["epoch"] for line in lines if "valid" in line] == [1, 2]
    for ours, theirs in zip(lines, reference, strict=True):  # the loss of all 16 examples, not of rank 0's 8
        assert ours.get("loss", 0) == pytest.approx(theirs.get("loss", 0), abs=2e-6), ours["step"]
        assert ours.get("valid") == theirs.get("valid")
    assert json.loads((two / "run.json").read_text())["train_examples"] == 480
    for model in ("best", "last"):
        LxmertForQuestionAnswering.from_pretrained(two / model)

    ours, theirs = state(two), state(tmp_path / "1")
    assert ours["step"] == theirs["step"] == 60 and ours["valid_scores"] == theirs["valid_scores"]
    assert len(ours["rank_rngs"]) == 2 and "rank_rngs" not in theirs
    assert ours["model"].keys() == theirs["model"].keys()
    for name, weight in theirs["model"].items():
        if not name.endswith("key.bias"):  # see the module docstring
            torch.testing.assert_close(ours["model"][name], weight, rtol=0, atol=WEIGHTS_TOLERANCE, msg=name)
    scores = answer_scores(two / "last", folder)
    torch.testing.assert_close(scores, answer_scores(tmp_path / "1" / "last", folder), rtol=0, atol=SCORES_TOLERANCE)


def test_a_run_interrupted_under_torchrun_resumes_to_the_weights_of_the_whole_run(vqa_task, tiny_qa, tmp_path):
    folder = vqa_task["folder"]
    (tmp_path / "train.json").write_text(json.dumps(vqa_task["records"][:160]))  # 10 steps per epoch
    (tmp_path / "valid.json").write_text(json.dumps(vqa_task["records"][480:521]))  # for the accumulated run
    settings = dict(train=tmp_path / "train.json", features=folder / "features.h5", init=tiny_qa, device="cpu")
    settings |= RECIPE | dict(save_steps=4)  # states at steps 4, 8, 10 (epoch 1), 12, 16, 20
    ran = launch(__file__, str(tmp_path), "vqa", *flags(settings), "--no-progress")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    ranks = [json.loads((tmp_path / f"rank{index}.json").read_text()) for index in range(2)]
    for rank in ranks:
        assert rank["statuses"] == {"whole": 0, "interrupted": 130, "resumed": 0, "refused": 1, "accumulated": 0}
    assert ran.stderr.count("holds another run") == 2  # rank 0's refusal stops both ranks

    # each rank took its half of every optimizer batch, in the epoch's order
    orders = [tasks.training._epoch_order(160, 16, RECIPE["seed"], epoch) for epoch in range(2)]
    batches = [batch for order in orders for batch in order]
    assert [len(share) for rank in ranks for share in rank["shares"]] == [8] * 40
    assert [zero + one for zero, one in zip(ranks[0]["shares"], ranks[1]["shares"], strict=True)] == batches

    whole, resumed = state(tmp_path / "whole"), state(tmp_path / "resumed")
    assert ranks[0]["interrupted_state_step"] == 12 and whole["step"] == resumed["step"] == 20
    for name, weight in whole["model"].items():
        assert torch.equal(resumed["model"][name], weight), name
    for ours, theirs in zip(resumed["rank_rngs"], whole["rank_rngs"], strict=True):  # each rank's dropout draws
        assert torch.equal(ours["torch"], theirs["torch"])
    assert not torch.equal(whole["rank_rngs"][0]["torch"], whole["rank_rngs"][1]["torch"])  # its own stream
    assert torch.equal(whole["rank_rngs"][0]["torch"], whole["rng"]["torch"])
    for model in ("best", "last"):
        LxmertForQuestionAnswering.from_pretrained(tmp_path / "resumed" / model)

    # --grad-accum 2 for 2 epochs of 10 steps: one micro-batch of each step under no_sync, on each rank
    assert [rank["no_sync"] for rank in ranks] == [20, 20]
    assert [len(share) for rank in ranks for share in rank["accumulated_shares"]] == [4] * 80
    # each rank validated every other question of the 41 (in one batch) and both know the scores of all
    assert [rank["valid_indices"] for rank in ranks] == [[list(range(0, 41, 2))] * 2, [list(range(1, 41, 2))] * 2]
    accumulated = state(tmp_path / "accumulated")
    assert ranks[0]["valid_scores"] == ranks[1]["valid_scores"] == accumulated["valid_scores"]
    lines = [json.loads(line) for line in (tmp_path / "accumulated" / "metrics.jsonl").read_text().splitlines()]
    assert [line["valid"] for line in lines if "valid" in line] == [
        round(100 * score, 4) for score in accumulated["valid_scores"]
    ]  # written once, by rank 0


def run_in_each_rank(folder: Path, arguments: list[str]) -> None:
    """Under torchrun: a whole run, the same run interrupted at INTERRUPT_AT and resumed, a run refused (its
    output holds a run), and a run with --grad-accum 2 and validation; each rank writes what it saw to
    rank{RANK}.json."""
    dist.init_process_group("gloo")  # train() joins it
    rank, forwards, shares, valid_indices, no_syncs = dist.get_rank(), [0], [], [], [0]
    interrupt_at = [None]
    forward = tasks.training._forward
    no_sync = torch.nn.parallel.DistributedDataParallel.no_sync
    score, scores = tasks.training.validation_score, []

    def counted(model, batch):
        if model.training:
            forwards[0] += 1
            shares.append(batch["index"].tolist())
            if forwards[0] == interrupt_at[0]:
                raise KeyboardInterrupt  # on every rank, as torchrun forwards a Ctrl-C to each
        else:
            valid_indices.append(batch["index"].tolist())
        return forward(model, batch)

    def counted_no_sync(self):
        no_syncs[0] += 1
        return no_sync(self)

    def recorded(*arguments):
        scores.append(score(*arguments))
        return scores[-1]

    tasks.training._forward = counted
    tasks.training.validation_score = recorded
    torch.nn.parallel.DistributedDataParallel.no_sync = counted_no_sync
    command = ["train", *arguments]
    statuses = {"whole": tasks_main([*command, "--output", str(folder / "whole")])}
    seen = {"shares": list(shares)}
    interrupt_at[0] = forwards[0] + INTERRUPT_AT
    statuses["interrupted"] = tasks_main([*command, "--output", str(folder / "resumed")])
    seen["interrupted_state_step"] = state(folder / "resumed")["step"]
    statuses["resumed"] = tasks_main([*command, "--output", str(folder / "resumed"), "--resume"])
    statuses["refused"] = tasks_main([*command, "--output", str(folder / "whole")])
    del shares[:]
    no_syncs[0] = 0
    accumulated = [*command, "--grad-accum", "2", "--valid", str(folder / "valid.json")]
    statuses["accumulated"] = tasks_main([*accumulated, "--output", str(folder / "accumulated")])
    seen |= {"accumulated_shares": shares, "no_sync": no_syncs[0], "valid_indices": valid_indices}
    seen["valid_scores"] = scores
    (folder / f"rank{rank}.json").write_text(json.dumps(seen | {"statuses": statuses}))
    dist.destroy_process_group()


if __name__ == "__main__":
    run_in_each_rank(Path(sys.argv[1]), sys.argv[2:])
