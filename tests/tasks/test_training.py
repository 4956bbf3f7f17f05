"""Fine-tuning end to end on the synthetic tasks of conftest.py: learning, outputs, resume, refusals,
evaluation and the command line. (Each synthetic run takes about 15 s on two CPU cores; timing is not
asserted here.)"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import transformers

import tasks.training
from lxmert import LxmertForQuestionAnswering
from pipelines.cli import main as lxmert_main
from tasks import TrainConfig, TrainingError, evaluate, train

from .conftest import CLASSES

# The tiny model learns this task in a few hundred steps with AdamW at 1e-3 (LXMERT's BertAdam at 5e-5 is
# the recipe for the full-size model, whose head starts from pretrained answers).
FAST = dict(epochs=8, batch_size=16, lr=1e-3, optimizer="adamw", progress=False)


def config(vqa_task, output, init, **changes) -> TrainConfig:
    folder = vqa_task["folder"]
    settings = dict(
        train=[str(folder / "train.json")],
        valid=str(folder / "valid.json"),
        features=[str(folder / "features.h5")],
        output=str(output),
        init=str(init),
    )
    return TrainConfig("vqa", **(settings | FAST | changes))


def test_learns_the_synthetic_task_to_over_90_percent_and_writes_a_loadable_run(vqa_task, tiny_qa, tmp_path):
    summary = train(config(vqa_task, tmp_path / "run", tiny_qa))
    assert summary.best_score >= 0.9, summary.valid_scores
    assert summary.steps == 8 * (480 // 16) and summary.epochs == 8
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines if "valid" in line] == list(range(1, 9))
    step_lines = [line for line in lines if "loss" in line]
    assert step_lines and all({"step", "epoch", "loss", "lr", "samples_per_second"} <= set(line) for line in step_lines)
    written = json.loads((run / "run.json").read_text())
    assert written["config"]["lr"] == 1e-3 and written["train_examples"] == 480 and written["answers"] == len(CLASSES)
    for folder in ("best", "last"):
        ours = LxmertForQuestionAnswering.from_pretrained(run / folder)
        assert [ours.config.id2label[i] for i in range(len(CLASSES))] == CLASSES
        theirs = transformers.LxmertForQuestionAnswering.from_pretrained(run / folder)
        assert theirs.config.num_qa_labels == len(CLASSES)
        assert (run / folder / "vocab.txt").is_file()
    scores = evaluate(
        "vqa",
        run / "best",
        vqa_task["folder"] / "valid.json",
        [vqa_task["folder"] / "features.h5"],
        predictions=tmp_path / "predict.json",
    )
    assert scores["metric"] == "lxmert" and scores["score"] == round(100 * summary.best_score, 2)
    submitted = json.loads((tmp_path / "predict.json").read_text())
    assert len(submitted) == 120 and set(submitted[0]) == {"question_id", "answer"}


def test_a_pretraining_head_is_remapped_to_the_answer_list_by_string(vqa_task, tiny_pretrained, tmp_path):
    summary = train(config(vqa_task, tmp_path / "run", tiny_pretrained, epochs=1))
    written = json.loads((tmp_path / "run" / "run.json").read_text())
    assert written["answers_carried_over"] == len(CLASSES)  # cat, dog, car, tree, cup are pretraining answers
    assert summary.steps == 30


def test_resume_after_an_interruption_ends_with_the_same_weights(vqa_task, tiny_qa, tmp_path, monkeypatch):
    settings = dict(epochs=2, save_steps=4, log_steps=1)
    train(config(vqa_task, tmp_path / "whole", tiny_qa, **settings))

    real = tasks.training._append_metrics

    def interrupted(output, line):  # after optimizer step 39 (epoch 2), two steps past the state of step 36
        real(output, line)
        if line.get("step") == 39 and "loss" in line:
            raise KeyboardInterrupt

    monkeypatch.setattr(tasks.training, "_append_metrics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config(vqa_task, tmp_path / "resumed", tiny_qa, **settings))
    monkeypatch.setattr(tasks.training, "_append_metrics", real)
    assert torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)["step"] == 36
    train(config(vqa_task, tmp_path / "resumed", tiny_qa, resume=True, **settings))
    whole = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)["model"]
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name


def test_accumulated_micro_batches_make_the_steps_of_whole_batches(vqa_task, tiny_qa_without_dropout, tmp_path):
    # Batches of 16 as one forward pass, or as 4 accumulated micro-batches of 4: the same optimizer steps. The
    # gradient is a mean of four means instead of one mean (sums in another order): after 30 AdamW steps at 1e-3
    # the weights agree within 1e-5 (measured here: bit for bit), except the attention key biases, whose true
    # gradient is 0 (a shift shared by all keys does not change a softmax), so that Adam would scale any rounding
    # difference to full steps.
    settings = dict(epochs=1, log_steps=1, valid=None)
    whole = train(config(vqa_task, tmp_path / "whole", tiny_qa_without_dropout, **settings))
    split = train(config(vqa_task, tmp_path / "split", tiny_qa_without_dropout, grad_accum=4, **settings))
    assert whole.steps == split.steps == 30
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("whole", "split")
    ]
    assert len(losses[0]) == 30 and losses[1] == pytest.approx(losses[0], abs=2e-6)  # the loss of all 16
    ours = torch.load(tmp_path / "split" / "state.pt", weights_only=True)["model"]
    theirs = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)["model"]
    for name, weight in theirs.items():
        if not name.endswith("key.bias"):
            torch.testing.assert_close(ours[name], weight, rtol=0, atol=1e-5, msg=name)


def test_resume_with_other_settings_is_refused_naming_them(vqa_task, tiny_qa, tmp_path):
    train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1))
    with pytest.raises(TrainingError, match=r"batch_size: the run has 16, now 32"):
        train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1, batch_size=32, resume=True))


def test_an_output_holding_a_run_is_refused_without_resume_or_overwrite(vqa_task, tiny_qa, tmp_path):
    train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1))
    with pytest.raises(TrainingError, match=r"holds another run .*--resume .*--overwrite"):
        train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1))
    (tmp_path / "run" / "notes.txt").write_text("mine")
    train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1, overwrite=True))
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # --overwrite removes the run's files only
    with pytest.raises(TrainingError, match="holds no training state"):
        train(config(vqa_task, tmp_path / "empty", tiny_qa, epochs=1, resume=True))


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_state(vqa_task, tiny_qa, tmp_path, monkeypatch):
    real = tasks.training._loss
    calls = []

    def poisoned(task, logits, target):
        calls.append(1)
        loss = real(task, logits, target)
        return loss * math.nan if len(calls) == 7 else loss

    monkeypatch.setattr(tasks.training, "_loss", poisoned)
    with pytest.raises(TrainingError, match=r"the loss became nan at optimizer step 7 \(epoch 1\); the last good"):
        train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1, save_steps=5))
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=True)["step"] == 5


def test_answers_of_a_head_of_another_size_need_a_source_list(vqa_task, tmp_path):
    from helpers import TINY_LXMERT

    from lxmert import LxmertConfig

    folder = tmp_path / "unlabelled"
    LxmertForQuestionAnswering(LxmertConfig(**dict(TINY_LXMERT, vocab_size=30522, num_qa_labels=3))).save_pretrained(
        folder
    )
    with pytest.raises(ValueError, match=r"3"):
        train(config(vqa_task, tmp_path / "run", folder, epochs=1))


def test_the_lxmert_command_trains_and_evaluates(vqa_task, tiny_qa, tmp_path, capsys):
    folder = vqa_task["folder"]
    common = ["--features", str(folder / "features.h5")]
    status = lxmert_main(
        [
            "train",
            "vqa",
            "--train",
            str(folder / "train.json"),
            "--valid",
            str(folder / "valid.json"),
            *common,
            "--init",
            str(tiny_qa),
            "--output",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--optimizer",
            "adamw",
            "--lr",
            "1e-3",
            "--no-progress",
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert "1 epochs, 30 steps" in capsys.readouterr().out
    status = lxmert_main(
        [
            "evaluate",
            "vqa",
            "--model",
            str(tmp_path / "run" / "best"),
            "--data",
            str(folder / "valid.json"),
            *common,
            "--predictions",
            str(tmp_path / "p.json"),
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0 and json.loads(out)["examples"] == 120
    status = lxmert_main(
        ["train", "vqa", "--train", str(folder / "missing.json"), *common, "--output", str(tmp_path / "x")]
    )
    assert status == 1 and "missing.json" in capsys.readouterr().err


def test_learns_the_synthetic_nlvr2_task_to_over_90_percent(nlvr2_task, tiny_qa, tmp_path):
    folder = nlvr2_task["folder"]
    summary = train(
        TrainConfig(
            "nlvr2",
            train=[str(folder / "train.json")],
            valid=str(folder / "valid.json"),
            features=[str(folder / "features.h5")],
            output=str(tmp_path / "run"),
            init=str(tiny_qa),  # a QA checkpoint: its encoders, a new NLVR2 head
            **(FAST | {"epochs": 6}),
        )
    )
    assert summary.best_score >= 0.9, summary.valid_scores
    scores = evaluate(
        "nlvr2",
        tmp_path / "run" / "best",
        folder / "valid.json",
        [folder / "features.h5"],
        predictions=tmp_path / "predict.csv",
    )
    assert scores["metric"] == "nlvr2" and scores["accuracy"] == pytest.approx(100 * summary.best_score)
    lines = (tmp_path / "predict.csv").read_text().splitlines()
    assert len(lines) == 150 and lines[0].split(",")[1] in ("True", "False")


def test_a_full_disk_while_writing_the_training_state_keeps_the_previous_one(vqa_task, tiny_qa, tmp_path, monkeypatch):
    real = torch.save
    saves = []

    def disk_full(obj, file, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the state of step 10: a few bytes, then ENOSPC
            file.write(b"\x00" * 100)
            raise OSError(28, "No space left on device")
        return real(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1, save_steps=5))
    monkeypatch.setattr(torch, "save", real)
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=True)["step"] == 5
    assert not list((tmp_path / "run").glob("*.partial"))


def test_no_question_left_after_matching_images_is_an_error(vqa_task, tiny_qa, tmp_path):
    from .conftest import write_synthetic_store

    other = write_synthetic_store(tmp_path / "other.h5", {"unrelated": 0})
    with pytest.raises(ValueError, match=r"train: no record left: none of the 480 records has its images"):
        train(config(vqa_task, tmp_path / "run", tiny_qa, features=[str(other)]))


def test_sigkilled_at_two_moments_and_resumed_ends_with_the_weights_of_an_uninterrupted_run(
    vqa_task, tiny_qa, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = vqa_task["folder"]

    def command(output, *extra):
        return [
            sys.executable, "-m", "tasks", "train", "vqa", "--train", str(folder / "train.json"),
            "--features", str(folder / "features.h5"), "--init", str(tiny_qa), "--output", str(output),
            "--epochs", "2", "--batch-size", "16", "--optimizer", "adamw", "--lr", "1e-3", "--save-steps", "3",
            "--log-steps", "1", "--device", "cpu", "--no-progress", *extra,
        ]  # fmt: skip

    assert subprocess.run(command(tmp_path / "whole"), capture_output=True, timeout=300).returncode == 0
    run = tmp_path / "killed"
    for kill_at, extra in ((11, ()), (47, ("--resume",))):  # mid-epoch 1, then mid-epoch 2 of the resumed run
        child = subprocess.Popen(command(run, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            metrics = run / "metrics.jsonl"
            steps = metrics.read_text().count('"loss"') if metrics.exists() else 0
            if steps >= kill_at:
                os.kill(child.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert subprocess.run(command(run, "--resume"), capture_output=True, timeout=300).returncode == 0
    whole = torch.load(tmp_path / "whole" / "state.pt", weights_only=True)
    resumed = torch.load(run / "state.pt", weights_only=True)
    assert resumed["step"] == whole["step"] == 60
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert logged == list(range(1, 61))  # the steps a resumed run does again are logged once
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_trains_on_questions_of_a_datasets_dataset(vqa_task, tiny_qa, tmp_path):
    import datasets

    from tasks.data import read_hf_dataset

    records = vqa_task["records"]
    dataset = datasets.Dataset.from_dict(
        {
            "question": [record["sent"] for record in records],
            "image_id": [record["img_id"] for record in records],
            "answers": [[next(iter(record["label"]))] * 10 for record in records],  # ten annotators agree
        }
    )
    questions = read_hf_dataset(dataset)
    assert questions[0].label == {CLASSES[vqa_task["labels"]["img0000"]]: 1.0}
    summary = train(
        config(vqa_task, tmp_path / "run", tiny_qa, train=[], valid=None, epochs=1),
        train_records=questions[:480],
        valid_records=questions[480:],
    )
    assert summary.steps == 30 and summary.train_examples == 480 and len(summary.valid_scores) == 1
    with pytest.raises(ValueError, match="no training data given"):
        train(config(vqa_task, tmp_path / "none", tiny_qa, train=[]))
    # a resumed run must get records of the same content, however they are given
    changed = [*questions[:479], dataclasses.replace(questions[479], text="what is the smallest thing?")]
    resumed = config(vqa_task, tmp_path / "run", tiny_qa, train=[], valid=None, epochs=1, resume=True)
    with pytest.raises(TrainingError, match="the training records differ from those .* was trained on"):
        train(resumed, train_records=changed)
    assert train(resumed, train_records=questions[:480]).steps == 30  # the same records: nothing left to do


def test_the_command_line_trains_on_questions_of_a_saved_datasets_dataset(vqa_task, tiny_qa, tmp_path, capsys):
    import datasets

    records = vqa_task["records"]

    def split(part):
        return datasets.Dataset.from_dict(
            {
                "q": [record["sent"] for record in part],
                "img": [record["img_id"] for record in part],
                "answers": [next(iter(record["label"])) for record in part],  # one answer a question
                "qid": [f"q{record['question_id']}" for record in part],
            }
        )

    saved = tmp_path / "my_vqa"
    datasets.DatasetDict(train=split(records[:480]), validation=split(records[480:])).save_to_disk(str(saved))
    folder = vqa_task["folder"]
    command = ["train", "vqa", "--features", str(folder / "features.h5"), "--init", str(tiny_qa), "--no-progress"]
    command += ["--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--optimizer", "adamw"]
    columns = ["--question-column", "q", "--image-column", "img", "--question-id-column", "qid"]
    data = ["--train-dataset", str(saved), "--train-split", "train", "--valid-dataset", str(saved)]
    data += ["--valid-split", "validation", *columns]
    assert lxmert_main([*command, *data, "--output", str(tmp_path / "run")]) == 0
    assert "1 epochs, 30 steps, best validation" in capsys.readouterr().out
    written = json.loads((tmp_path / "run" / "run.json").read_text())
    assert written["train_examples"] == 480 and written["config"]["train_dataset"] == str(saved)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines if "valid" in line] == [1]

    def refused(*arguments, code=1) -> str:
        assert lxmert_main([*command, *arguments, "--output", str(tmp_path / "refused")]) == code
        return capsys.readouterr().err

    assert "has the splits train, validation: choose one (--train-split)" in refused("--train-dataset", str(saved))
    error = refused("--train-dataset", str(saved), "--train-split", "train")  # columns left at their defaults
    assert "the dataset has no column 'question' (--question-column); its columns: q, img, answers, qid" in error
    assert "no training data: give --train FILE... or --train-dataset" in refused(code=2)
    with pytest.raises(ValueError, match="NLVR2 reads data files"):
        TrainConfig("nlvr2", train=[], features=["f.h5"], output="out", train_dataset=str(saved))


def test_gqa_evaluation_scores_the_questions_whose_images_the_stores_hold(tiny_qa, tmp_path):
    from helpers import FIXTURES

    from .conftest import write_synthetic_store

    questions = FIXTURES / "tasks" / "gqa" / "testdev_balanced_questions.json"
    first_image = json.loads(questions.read_text())["20968379"]["imageId"]
    store = write_synthetic_store(tmp_path / "gqa.h5", {first_image: 0})  # the other question's image is missing
    with pytest.warns(UserWarning, match="1 of 2 records name images that none of the feature stores holds"):
        scores = evaluate("gqa", tiny_qa, questions, [store], predictions=tmp_path / "p.json")
    assert (scores["metric"], scores["examples"], scores["skipped"]) == ("gqa", 1, 1)
    assert scores["accuracy"] in (0.0, 100.0)
    assert [row["questionId"] for row in json.loads((tmp_path / "p.json").read_text())] == ["20968379"]


def test_bf16_autocast_and_compile_run_on_the_cpu(vqa_task, tiny_qa, tmp_path, monkeypatch):
    # What a GPU run turns on (bf16 autocast, torch.compile), on the CPU: the forward passes run in bfloat16, the
    # loss stays float32, the compiled module is the one trained, and best/ and last/ keep the plain names. The
    # compiler backend is "eager" here (dynamo's graph capture without inductor's C++ build, which CI lacks).
    dtypes, compiled = [], []
    forward, compile_ = tasks.training._forward, torch.compile

    def recorded(model, batch):
        logits = forward(model, batch)
        dtypes.append((model.training, logits.dtype))
        return logits

    def eager_compile(model, **options):
        compiled.append(compile_(model, backend="eager", **options))
        return compiled[-1]

    monkeypatch.setattr(tasks.training, "_forward", recorded)
    monkeypatch.setattr(tasks.training.torch, "compile", eager_compile)
    summary = train(config(vqa_task, tmp_path / "run", tiny_qa, epochs=1, bf16=True, compile=True))
    assert summary.steps == 30 and math.isfinite(summary.valid_scores[0])
    assert set(dtypes) == {(True, torch.bfloat16), (False, torch.bfloat16)}  # training and validation passes
    assert len(compiled) == 1
    saved = LxmertForQuestionAnswering.from_pretrained(tmp_path / "run" / "last")  # no "_orig_mod." prefix
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["model"]
    assert saved.state_dict().keys() == state.keys()
    assert all(torch.equal(saved.state_dict()[name], tensor) for name, tensor in state.items())
