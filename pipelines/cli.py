"""The `lxmert` command: `lxmert ask IMAGE QUESTION` prints the top answers; `lxmert train` and
`lxmert evaluate` fine-tune and score models (tasks.cli).

Nothing heavy is imported before the arguments are parsed (`--help` answers at once), and what is cheap
to check (the image, whether the checkpoints can be had) is checked before the models load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence

from tasks.cli import add_evaluate_parser, add_train_parser, run_evaluate, run_train

PROG = "lxmert ask"
EXAMPLES = """\
examples:
  lxmert ask cat.jpg "What color is the cat?"
  lxmert ask cat.jpg "What color is the cat?" --top-k 3 --json
  lxmert ask photo.png "Where is the dog?" --device cuda
  lxmert ask cat.jpg "What is on the table?" --task gqa
  # offline, with local copies of the checkpoints (any format the loaders read)
  lxmert ask cat.jpg "How many cats?" --model ./lxmert-vqa-uncased --detector ./frcnn-vg-finetuned

The defaults download unc-nlp/lxmert-vqa-uncased (or -gqa-uncased) and unc-nlp/frcnn-vg-finetuned
from the Hugging Face hub once (then they come from its cache; offline, only from its cache).
"""
# What a local copy of each checkpoint holds, for the message when neither the hub nor the cache has it.
LOCAL_COPIES = {
    "model": ("--model", "LXMERT model", "config.json + model.safetensors or pytorch_model.bin"),
    "detector": ("--detector", "detector", "config.yaml + model.safetensors, pytorch_model.bin or model_final.pkl"),
}


class CommandError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lxmert",
        description="Answer questions about images with LXMERT; fine-tune and evaluate it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ask = commands.add_parser(
        "ask",
        help="answer a question about an image",
        description="Answer a question about an image: prints the top answers with their scores.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ask.add_argument("image", help="image file (JPEG, PNG, ...) or, with --allow-network, an http(s) URL")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--top-k", type=_positive_int, default=5, help="number of answers to print (default 5)")
    ask.add_argument("--task", choices=["vqa", "gqa"], default="vqa", help="answer head (default vqa)")
    ask.add_argument("--model", help="LXMERT checkpoint: hub id or local folder (default: the task's)")
    ask.add_argument(
        "--detector", help="Faster R-CNN checkpoint: hub id or local folder (default: unc-nlp/frcnn-vg-finetuned)"
    )
    ask.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    ask.add_argument("--json", action="store_true", help='print JSON: [{"score": ..., "answer": ...}, ...]')
    ask.add_argument("--allow-network", action="store_true", help="let IMAGE be a URL")
    add_train_parser(commands)
    add_evaluate_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    command = "ask"
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if args.command == "train":
                return run_train(args)
            if args.command == "evaluate":
                return run_evaluate(args)
            return ask(args)
    except KeyboardInterrupt:
        stopped = " (continue with --resume)" if command == "train" else ""
        print(f"lxmert {command}: interrupted{stopped}", file=sys.stderr)
        return 130


def ask(args: argparse.Namespace) -> int:
    """Run `lxmert ask` on parsed arguments; the exit status."""
    try:
        check_image(args.image, allow_network=args.allow_network)
        # After parsing and the image check: importing torch and the models takes seconds.
        from lxmert.hub import hub_endpoint, hub_reachable

        from .registry import hub_checkpoints, pipeline

        hub = hub_checkpoints(args.task, args.model, args.detector)
        # One quick probe instead of the hub client's retries (five per file, 23 s each, printed).
        offline = bool(hub) and not hub_reachable()
        missing = [checkpoint for checkpoint in hub if not checkpoint.cached]
        if offline and missing:
            raise CommandError(unavailable_message(missing, hub_endpoint()))
        vqa = pipeline(
            args.task,
            model=args.model,
            detector=args.detector,
            device=args.device,
            allow_network=args.allow_network,
            local_files_only=offline,
        )
        answers = vqa(image=args.image, question=args.question, top_k=args.top_k)
    except (CommandError, OSError, ValueError, TypeError, RuntimeError) as error:  # RuntimeError: out of GPU memory
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answers))
    else:
        width = max(len(a["answer"]) for a in answers)
        for a in answers:
            print(f"{a['answer']:<{width}}  {a['score']:.4f}")
    return 0


def check_image(image: str, *, allow_network: bool) -> None:
    """CommandError unless `image` is a readable file, or a URL with --allow-network."""
    # pipelines.base.is_url's test, written out: importing pipelines.base imports torch.
    if image[:8].lower().startswith(("http://", "https://")):
        if not allow_network:
            raise CommandError(f"image {image!r} is a URL: pass --allow-network to download it, or download it first")
        return
    if not os.path.exists(image):
        raise CommandError(f"image {image!r} does not exist")
    if not os.path.isfile(image):
        raise CommandError(f"image {image!r} is not a file")
    try:
        with open(image, "rb") as file:
            file.read(1)
    except OSError as error:
        raise CommandError(f"image {image!r} cannot be read: {error.strerror or error}") from None


def unavailable_message(missing: Sequence, endpoint: str) -> str:
    """One message for every checkpoint that neither the hub (unreachable) nor the local cache has."""
    named = [f"the {LOCAL_COPIES[c.argument][1]} {c.repo_id} ({LOCAL_COPIES[c.argument][0]})" for c in missing]
    downloads = "; ".join(f"huggingface-cli download {c.repo_id}" for c in missing)
    copies = " and ".join(f"{LOCAL_COPIES[c.argument][0]} DIR ({LOCAL_COPIES[c.argument][2]})" for c in missing)
    return (
        f"the Hugging Face hub ({endpoint}) is unreachable (offline, or HF_HUB_OFFLINE is set) and the local "
        f"cache lacks {' and '.join(named)}; download {'them' if len(missing) > 1 else 'it'} once with network "
        f"access ({downloads}), or pass local copies: {copies}"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
