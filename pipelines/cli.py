"""The `lxmert` command: `lxmert ask IMAGE QUESTION` prints the top answers; `lxmert regions IMAGE` shows
the regions the detector finds (a list, JSON, or a picture with --draw); `lxmert train` and `lxmert evaluate`
fine-tune and score models (tasks.cli).

Nothing heavy is imported before the arguments are parsed (`--help` answers at once), and what is cheap
to check (the image, the output file, whether the checkpoints can be had) is checked before the models load.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from extract.options import integer_at_least
from tasks.cli import add_evaluate_parser, add_train_parser, run_evaluate, run_train

PROG = "lxmert ask"
EXAMPLES = """\
examples:
  lxmert ask cat.jpg "What color is the cat?"
  lxmert ask cat.jpg "What color is the cat?" --top-k 3 --json
  lxmert ask cat.jpg "What color is the cat?" --draw why.png   # and where the question looked
  lxmert ask photo.png "Where is the dog?" --device cuda
  lxmert ask cat.jpg "What is on the table?" --task gqa
  # offline, with local copies of the checkpoints (any format the loaders read)
  lxmert ask cat.jpg "How many cats?" --model ./lxmert-vqa-uncased --detector ./frcnn-vg-finetuned

The defaults download unc-nlp/lxmert-vqa-uncased (or -gqa-uncased) and unc-nlp/frcnn-vg-finetuned
from the Hugging Face hub once (then they come from its cache; offline, only from its cache).
"""
REGIONS_PROG = "lxmert regions"
REGIONS_EXAMPLES = """\
examples:
  lxmert regions cat.jpg                     # one line per region: index, box, attribute object score
  lxmert regions cat.jpg --draw regions.png  # the 20 best-scoring regions drawn on the image
  lxmert regions cat.jpg --draw regions.jpg --top 5 --captions objects
  lxmert regions cat.jpg --min-score 0.5 --json --num-boxes 10-100
  lxmert regions cat.jpg --draw regions.png --detector ./frcnn-vg-finetuned   # offline, a local copy
"""
# extract.draw.CAPTIONS and extract.extractor.SHOWN_BOXES, written out: importing either imports torch.
CAPTIONS = ("attributes", "objects", "none")
DRAWN_BOXES = 20
# What a local copy of each checkpoint holds, for the message when neither the hub nor the cache has it.
LOCAL_COPIES = {
    "model": ("--model", "LXMERT model", "config.json + model.safetensors or pytorch_model.bin"),
    "detector": ("--detector", "detector", "config.yaml + model.safetensors, pytorch_model.bin or model_final.pkl"),
}


class CommandError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


def build_parser(extra_commands: Sequence[Callable[[Any], Any]] = ()) -> argparse.ArgumentParser:
    """The `lxmert` parser: ask, regions, train and evaluate, then the subcommands `extra_commands` add (each
    is called with the subparsers action and sets its parser's `run` default: service.cli's `serve`)."""
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
    ask.add_argument("--top-k", type=integer_at_least(1), default=5, help="number of answers to print (default 5)")
    ask.add_argument("--task", choices=["vqa", "gqa"], default="vqa", help="answer head (default vqa)")
    ask.add_argument("--model", help="LXMERT checkpoint: hub id or local folder (default: the task's)")
    ask.add_argument(
        "--detector", help="Faster R-CNN checkpoint: hub id or local folder (default: unc-nlp/frcnn-vg-finetuned)"
    )
    ask.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    ask.add_argument("--json", action="store_true", help='print JSON: [{"score": ..., "answer": ...}, ...]')
    ask.add_argument("--allow-network", action="store_true", help="let IMAGE be a URL")
    why = ask.add_argument_group("where the question looked (docs/visualization.md)")
    why.add_argument(
        "--draw",
        metavar="OUT",
        help="also write the image with the heat map of the question's attention over the regions, the question "
        "and the top answers (format from the extension: .png, .jpg, ...)",
    )
    why.add_argument("--per-word", action="store_true", help="with --draw: a panel per word of the question")
    why.add_argument(
        "--attention-layer",
        type=_attention_layer,
        default=-1,
        metavar="LAYER",
        help="a cross-modality layer (default -1: the last), mean (of all) or rollout",
    )
    add_regions_parser(commands)
    add_train_parser(commands)
    add_evaluate_parser(commands)
    for add_command in extra_commands:
        add_command(commands)
    return parser


def add_regions_parser(commands) -> None:
    regions = commands.add_parser(
        "regions",
        help="show the regions the detector finds in an image",
        description="Run the detector alone on an image: print its regions (one line each: index, box in "
        "pixels x1 y1 x2 y2, attribute, object and object score), or with --draw write them drawn on the image.",
        epilog=REGIONS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    regions.add_argument("image", help="image file (JPEG, PNG, ...) or, with --allow-network, an http(s) URL")
    regions.add_argument(
        "--draw",
        metavar="OUT.png",
        help="write the image with the regions drawn on it, in the format of the file's extension (.png, .jpg, ...)",
    )
    regions.add_argument(
        "--top",
        type=integer_at_least(1),
        metavar="N",
        help=f"only the N best-scoring regions (default: all; with --draw: {DRAWN_BOXES})",
    )
    regions.add_argument("--min-score", type=_score, metavar="S", help="only regions whose object score is >= S")
    regions.add_argument(
        "--captions",
        choices=CAPTIONS,
        default="attributes",
        help='of the drawn boxes: "black cat 0.93" (attributes, the default), "cat 0.93" (objects) or none',
    )
    regions.add_argument(
        "--detector", help="Faster R-CNN checkpoint: hub id or local folder (default: unc-nlp/frcnn-vg-finetuned)"
    )
    regions.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    regions.add_argument(
        "--num-boxes",
        default="36",
        metavar="N|MIN-MAX",
        help="regions the detector keeps: 36 (the default, what LXMERT reads) or a range like 10-100 (adaptive)",
    )
    regions.add_argument(
        "--json",
        action="store_true",
        help='print JSON: {"image", "height", "width", "regions": [{"index", "box", "object", "object_score", '
        '"attribute", "attribute_score"}, ...]}',
    )
    regions.add_argument("--allow-network", action="store_true", help="let IMAGE be a URL")


def main(argv: Sequence[str] | None = None, *, extra_commands: Sequence[Callable[[Any], Any]] = ()) -> int:
    """Run the `lxmert` command line; the exit status. extra_commands: as build_parser's; an added subcommand
    runs through the `run` default it set."""
    command = "ask"
    try:
        args = build_parser(extra_commands).parse_args(argv)
        command = args.command
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, f"lxmert {command}")
            run = getattr(args, "run", None)
            if run is not None:
                return run(args)
            if args.command == "train":
                return run_train(args)
            if args.command == "evaluate":
                return run_evaluate(args)
            if args.command == "regions":
                return regions(args)
            return ask(args)
    except KeyboardInterrupt:
        stopped = " (continue with --resume)" if command == "train" else ""
        print(f"lxmert {command}: interrupted{stopped}", file=sys.stderr)
        return 130


def ask(args: argparse.Namespace) -> int:
    """Run `lxmert ask` on parsed arguments; the exit status."""
    try:
        check_image(args.image, allow_network=args.allow_network)
        if args.per_word and args.draw is None:
            raise CommandError("--per-word goes with --draw OUT")
        picture_format = None if args.draw is None else check_picture_output(args.draw, example="why.png")
        vqa = load_pipeline(
            args.task, model=args.model, detector=args.detector, device=args.device, allow_network=args.allow_network
        )
        if args.draw is None:
            answers = vqa(image=args.image, question=args.question, top_k=args.top_k)
        else:
            explanation = vqa(
                image=args.image,
                question=args.question,
                top_k=args.top_k,
                explain=True,
                attention_layer=args.attention_layer,
            )
            answers = explanation.answers
            picture = explanation.draw(per_word=args.per_word)
            picture.save(args.draw, format=picture_format)
    except (CommandError, OSError, ValueError, TypeError, RuntimeError) as error:  # RuntimeError: out of GPU memory
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answers))
    else:
        width = max(len(a["answer"]) for a in answers)
        for a in answers:
            print(f"{a['answer']:<{width}}  {a['score']:.4f}")
    if args.draw is not None:  # on stderr: stdout stays the answers (or their JSON)
        print(f"{args.draw}: the question's attention drawn ({picture.width}x{picture.height})", file=sys.stderr)
    return 0


def regions(args: argparse.Namespace) -> int:
    """Run `lxmert regions` on parsed arguments; the exit status."""
    top = DRAWN_BOXES if args.top is None and args.draw is not None else args.top
    try:
        check_image(args.image, allow_network=args.allow_network)
        picture_format = None if args.draw is None else check_picture_output(args.draw)
        # After the cheap checks: importing torch and the detector takes seconds.
        from extract.draw import kept_boxes
        from extract.options import parse_box_range

        from .base import region_dicts

        try:
            low, high = parse_box_range(args.num_boxes)
        except ValueError:
            raise CommandError(
                f"--num-boxes {args.num_boxes}: expected a count like 36 or a range like 10-100"
            ) from None
        detector = load_pipeline(
            "feature-extraction", detector=args.detector, device=args.device, allow_network=args.allow_network
        )
        found = detector(args.image, num_boxes=low if low == high else (low, high))
        scores = found.object_scores.cpu().numpy()
        shown = kept_boxes(len(found), scores, top, args.min_score)
        if args.draw is not None:
            # Drawn on found.source: the file, or for a URL the bytes downloaded once for the detector.
            picture = found.draw(captions=args.captions, top=top, min_score=args.min_score)
            picture.save(args.draw, format=picture_format)
    except (CommandError, OSError, ValueError, TypeError, RuntimeError) as error:  # RuntimeError: out of GPU memory
        print(f"{REGIONS_PROG}: error: {error}", file=sys.stderr)
        return 2
    listed = [{"index": i} | region for i, region in zip(shown, region_dicts(found, shown), strict=True)]
    height, width = found.image_size
    if args.json:
        print(json.dumps({"image": args.image, "height": height, "width": width, "regions": listed}))
    elif args.draw is not None:
        print(f"{args.draw}: {len(shown)} of {len(found)} regions drawn on the {width}x{height} image")
    else:
        digits = len(str(len(found) - 1))
        for region in listed:
            box = ", ".join(f"{value:.1f}" for value in region["box"])
            words = [region["attribute"], region["object"], f"{region['object_score']:.2f}"]
            print(f"{region['index']:>{digits}}  [{box}]  {' '.join(word for word in words if word is not None)}")
    return 0


def load_pipeline(
    task: str,
    *,
    model: str | None = None,
    detector: Any = None,
    device: str | None,
    allow_network: bool,
    **options: Any,
):
    """pipeline(task, ...) for a command, with one CommandError naming every checkpoint that neither the hub
    (unreachable) nor the local cache has, in flag terms. detector: a hub id, a folder or a RegionFeatureExtractor
    already loaded (shared by several pipelines); options: pipeline()'s others."""
    # After parsing and the cheap checks: importing torch and the models takes seconds.
    from .registry import HubUnreachableError, pipeline

    try:
        return pipeline(task, model=model, detector=detector, device=device, allow_network=allow_network, **options)
    except HubUnreachableError as error:
        raise CommandError(unavailable_message(error.missing, error.endpoint)) from None


def check_picture_output(path: str, *, example: str = "regions.png") -> str:
    """The Pillow format that --draw PATH is written in (from its extension); CommandError for a path that
    cannot be written: an unknown extension, a folder, a missing or read-only folder."""
    from PIL import Image

    if os.path.isdir(path):
        raise CommandError(f"--draw {path!r} is a folder; give a file name, e.g. {os.path.join(path, example)}")
    extension = os.path.splitext(path)[1].lower()
    picture_format = Image.registered_extensions().get(extension)  # ".jpg" -> "JPEG"
    if picture_format not in Image.SAVE:
        problem = f"Pillow writes no picture format with the extension {extension!r}" if extension else "no extension"
        raise CommandError(f"--draw {path!r}: {problem}; end the name in .png or .jpg (or .bmp, .gif, .tif, .webp)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"--draw {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CommandError(f"--draw {path!r}: permission denied (cannot write there)")
    return picture_format


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


def _attention_layer(text: str) -> int | str:
    if text in ("mean", "rollout"):  # pipelines.explain.ATTENTION_MODES, written out: importing it imports torch
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a layer number, mean or rollout, got {text!r}") from None


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a score from 0 to 1, got {value}")
    return value


def _show_warning(prog, message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{prog}: warning: {message}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
