"""`lxmert train TASK ...` and `lxmert evaluate TASK ...`: fine-tuning and the official scores.

The parsers are built from tasks.config without loading torch, so `--help` answers at once; training and
evaluation (and torch) are imported once the arguments are parsed. Under torchrun, run
`torchrun --nproc-per-node N -m tasks train TASK ...` (tasks/__main__.py): the same flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from extract.options import integer_at_least

from .config import DEFAULT_INIT, DEFAULT_LR, OPTIMIZERS, TASKS, TrainConfig

TRAIN_EXAMPLES = """\
examples:
  lxmert train vqa --train train.json nominival.json --valid minival.json \\
      --features train2014.h5 val2014.h5 --init unc-nlp/lxmert-base-uncased --output runs/vqa
  lxmert train gqa --train train.json --valid testdev.json --features gqa.h5 --output runs/gqa
  lxmert train nlvr2 --train train.json --valid valid.json --features nlvr2.h5 --output runs/nlvr2
  lxmert train vqa --train-dataset ./my_vqa --train-split train --valid-dataset ./my_vqa \
      --valid-split validation --image-column image_id --features my_images.h5 --output runs/mine
  lxmert train vqa ... --output runs/vqa --resume        # continue a stopped run
  torchrun --nproc-per-node 8 -m tasks train vqa ...     # the same run on 8 GPUs

The output folder gets best/ and last/ (load them with `lxmert ask --model runs/vqa/best` or
pipeline("vqa", model="runs/vqa/best")), metrics.jsonl, run.json and the training state.
"""

EVALUATE_EXAMPLES = """\
examples:
  lxmert evaluate vqa --model runs/vqa/best --data minival.json --features val2014.h5 \\
      --predictions minival_predict.json
  lxmert evaluate vqa --model runs/vqa/best --data v2_mscoco_val2014_annotations.json --features val2014.h5
  lxmert evaluate nlvr2 --model runs/nlvr2/best --data test1.json --features nlvr2.h5 --predictions test1.csv
"""


def add_train_parser(commands) -> argparse.ArgumentParser:
    """The `train` subcommand on an argparse subparsers object."""
    defaults = TrainConfig(task="vqa", train=["-"], features=["-"], output="-")
    parser = commands.add_parser(
        "train",
        help="fine-tune LXMERT on VQA, GQA or NLVR2 from feature stores",
        description="Fine-tune LXMERT on VQA, GQA or NLVR2 from feature stores (LXMERT's recipe by default).",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=TASKS)
    data = parser.add_argument_group("data and model")
    data.add_argument("--train", nargs="+", default=[], metavar="FILE", help="training data files")
    data.add_argument("--valid", metavar="FILE", help="validation data, scored after every epoch")
    hf = parser.add_argument_group(
        "questions of a `datasets` dataset (vqa, gqa; besides or instead of --train / --valid)",
        "A hub dataset name or a save_to_disk folder; the split is needed when it has several.\n"
        "Answers: a list of annotator answers (soft scores as VQA's), one answer, or answer -> score.",
    )
    hf.add_argument("--train-dataset", metavar="NAME_OR_DIR", help="training questions")
    hf.add_argument("--train-split", metavar="SPLIT")
    hf.add_argument("--valid-dataset", metavar="NAME_OR_DIR", help="validation questions")
    hf.add_argument("--valid-split", metavar="SPLIT")
    hf.add_argument("--question-column", default=defaults.question_column, metavar="NAME")
    hf.add_argument("--image-column", default=defaults.image_column, metavar="NAME", help="the store ids")
    hf.add_argument("--answers-column", default=defaults.answers_column, metavar="NAME")
    hf.add_argument("--question-id-column", metavar="NAME", help="default: the row index")
    data.add_argument("--features", nargs="+", required=True, metavar="STORE", help="feature stores of the images")
    data.add_argument("--init", default=DEFAULT_INIT, metavar="CHECKPOINT", help=f"start from (default {DEFAULT_INIT})")
    data.add_argument("--answers", metavar="FILE", help="JSON list of answers (index = label); default: the init's own")
    data.add_argument("--output", required=True, metavar="DIR", help="the run's folder")
    data.add_argument("--strict", action="store_true", help="records whose images are missing are an error")
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--epochs", type=integer_at_least(1), default=defaults.epochs)
    recipe.add_argument(
        "--batch-size", type=integer_at_least(1), default=defaults.batch_size, help="per optimizer step"
    )
    recipe.add_argument("--grad-accum", type=integer_at_least(1), default=defaults.grad_accum, help="batches per step")
    lrs = ", ".join(f"{task} {lr:g}" for task, lr in DEFAULT_LR.items())
    recipe.add_argument("--lr", type=float, help=f"peak learning rate (default: {lrs})")
    recipe.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    recipe.add_argument("--warmup", type=float, default=defaults.warmup, help="share of the steps (default 0.1)")
    recipe.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    recipe.add_argument("--max-length", type=integer_at_least(3), default=defaults.max_length, help="tokens per text")
    recipe.add_argument("--seed", type=int, default=defaults.seed)
    run = parser.add_argument_group("the run")
    run.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    run.add_argument("--bf16", action=argparse.BooleanOptionalAction, help="bfloat16 autocast (default: on GPUs)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument(
        "--num-workers", type=integer_at_least(0), default=defaults.num_workers, help="feature-reading processes"
    )
    run.add_argument(
        "--save-steps", type=integer_at_least(0), default=0, help="a training state every N steps (0: per epoch)"
    )
    run.add_argument(
        "--log-steps", type=integer_at_least(1), default=defaults.log_steps, help="a metrics line every N steps"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --output")
    run.add_argument("--overwrite", action="store_true", help="replace the run in --output")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    return parser


def add_evaluate_parser(commands) -> argparse.ArgumentParser:
    """The `evaluate` subcommand on an argparse subparsers object."""
    parser = commands.add_parser(
        "evaluate",
        help="score a model with each benchmark's official metric",
        description="Answer every question of a data file and print the benchmark's official scores.",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--model", required=True, metavar="DIR", help="a fine-tuned checkpoint (e.g. runs/vqa/best)")
    parser.add_argument("--data", required=True, metavar="FILE", help="questions (with answers, for scores)")
    parser.add_argument("--features", nargs="+", required=True, metavar="STORE", help="feature stores of the images")
    parser.add_argument("--predictions", metavar="FILE", help="write the predictions in the submission format")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--batch-size", type=integer_at_least(1), default=256)
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    return parser


def train_config(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from parsed `train` arguments."""
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in names})


def run_train(args: argparse.Namespace) -> int:
    if not args.train and args.train_dataset is None:
        print("lxmert train: error: no training data: give --train FILE... or --train-dataset", file=sys.stderr)
        return 2
    from .training import TrainingError, train  # after parsing: torch takes seconds to import

    try:
        summary = train(train_config(args))
    except (TrainingError, ValueError, OSError) as error:
        print(f"lxmert train: error: {error}", file=sys.stderr)
        return 1
    best = (
        ""
        if summary.best_score is None
        else f", best validation {100 * summary.best_score:.2f} (epoch {summary.best_epoch})"
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        print(f"lxmert train: {summary.epochs} epochs, {summary.steps} steps{best} -> {summary.output}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, format_scores  # after parsing: torch takes seconds to import

    try:
        scores = evaluate(
            args.task,
            args.model,
            args.data,
            args.features,
            predictions=args.predictions,
            device=args.device,
            batch_size=args.batch_size,
        )
    except (ValueError, OSError) as error:
        print(f"lxmert evaluate: error: {error}", file=sys.stderr)
        return 1
    print(format_scores(scores, as_json=args.json))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tasks train|evaluate ...` (what torchrun runs)."""
    parser = argparse.ArgumentParser(prog="python -m tasks", description="Fine-tune and evaluate LXMERT.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(commands)
    add_evaluate_parser(commands)
    args = parser.parse_args(argv)
    try:
        return run_train(args) if args.command == "train" else run_evaluate(args)
    except KeyboardInterrupt:
        print(f"lxmert {args.command}: interrupted (continue with --resume)", file=sys.stderr)
        return 130
