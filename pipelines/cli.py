"""The `lxmert` command: `lxmert ask IMAGE QUESTION` prints the top answers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

EXAMPLES = """\
examples:
  lxmert ask cat.jpg "What color is the cat?"
  lxmert ask cat.jpg "What color is the cat?" --top-k 3 --json
  lxmert ask photo.png "Where is the dog?" --device cuda
  lxmert ask cat.jpg "What is on the table?" --task gqa
  # offline, with local copies of the checkpoints (any format the loaders read)
  lxmert ask cat.jpg "How many cats?" --model ./lxmert-vqa-uncased --detector ./frcnn-vg-finetuned

The defaults download unc-nlp/lxmert-vqa-uncased (or -gqa-uncased) and unc-nlp/frcnn-vg-finetuned
from the Hugging Face hub once (then they come from its cache).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lxmert",
        description="Answer questions about images with LXMERT.",
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
    ask.add_argument("--top-k", type=int, default=5, help="number of answers to print (default 5)")
    ask.add_argument("--task", choices=["vqa", "gqa"], default="vqa", help="answer head (default vqa)")
    ask.add_argument("--model", help="LXMERT checkpoint: hub id or local folder (default: the task's)")
    ask.add_argument(
        "--detector", help="Faster R-CNN checkpoint: hub id or local folder (default: unc-nlp/frcnn-vg-finetuned)"
    )
    ask.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    ask.add_argument("--json", action="store_true", help='print JSON: [{"score": ..., "answer": ...}, ...]')
    ask.add_argument("--allow-network", action="store_true", help="let IMAGE be a URL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .registry import pipeline  # after parsing: --help stays fast

    try:
        vqa = pipeline(
            args.task, model=args.model, detector=args.detector, device=args.device, allow_network=args.allow_network
        )
        answers = vqa(image=args.image, question=args.question, top_k=args.top_k)
    except (OSError, ValueError, TypeError, RuntimeError) as error:  # RuntimeError: e.g. out of GPU memory
        print(f"lxmert ask: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answers))
    else:
        width = max(len(a["answer"]) for a in answers)
        for a in answers:
            print(f"{a['answer']:<{width}}  {a['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
