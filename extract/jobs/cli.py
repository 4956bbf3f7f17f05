"""lxmert-extract: extract region features of an image collection into a feature store; merge shards; TSV.

    lxmert-extract INPUT... --output STORE [options]       extraction job (extract.jobs.run)
    lxmert-extract --dataset NAME_OR_PATH --output STORE   the images of a `datasets` dataset
    lxmert-extract merge SHARD... --output STORE           one store from shard stores
    lxmert-extract tsv-import FILE.tsv --output STORE      an LXMERT TSV file into a store
    lxmert-extract tsv-export STORE --output FILE.tsv      and back
    lxmert-extract verify STORE                            read every record of a store, report damage

docs/extraction-jobs.md describes every option and the exit statuses. The subcommands never replace an
output that another job is writing, and replace one (--overwrite) only once the new one is complete.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..options import (
    COMPUTE_DTYPES,
    DEFAULT_DETECTOR,
    DEFAULT_MAX_IMAGE_PIXELS,
    FEATURE_DTYPES,
    RULES,
    integer_at_least,
    parse_box_range,
)
from .inputs import ID_FROM, IMAGE_EXTENSIONS, InputError, load_dataset_split
from .preview import PREVIEW_COUNT

PROG = "lxmert-extract"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_IMAGES_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SUBCOMMANDS = ("merge", "tsv-import", "tsv-export", "verify")
SHOWN_FAILURES = 10
SHOWN_DAMAGED = 20

USAGE = f"""\
{PROG} INPUT... --output STORE [options]
       {PROG} --dataset NAME_OR_PATH [--split SPLIT] --output STORE [options]
       {PROG} merge SHARD... --output STORE [--overwrite]
       {PROG} tsv-import FILE.tsv --output STORE [--feature-dtype float32] [--num-boxes 10-100]
                 [--resume | --overwrite]
       {PROG} tsv-export STORE --output FILE.tsv [--overwrite]
       {PROG} verify STORE"""

EXAMPLES = f"""\
examples:
  {PROG} images/ --output coco_val.h5 --batch-size 8 --device cuda --num-workers 8
  {PROG} 'train2014/*.jpg' more_images.txt --output train.h5 --num-boxes 10-100 --feature-dtype float16
  {PROG} --dataset ./my_vqa_dataset --split validation --image-column image --id-column image_id \\
      --output val.h5 --resume
  {PROG} images/ --output coco.h5 --shard 3/8          # writes coco.shard-00003-of-00008.h5
  {PROG} merge coco.shard-*-of-00008.h5 --output coco.h5
  torchrun --nnodes 4 --nproc_per_node 8 ... -m extract.jobs images/ --output coco.h5 --device cuda
  {PROG} tsv-import train2014_obj36.tsv --output train2014.h5
  {PROG} verify train2014.h5

exit status: 0 every input is in the store; 1 the job could not start or stopped (message on stderr;
a stopped job resumes with --resume); 2 bad command line; 3 images failed (recorded in the store's
error table; --allow-errors makes this 0); 130 interrupted (Ctrl-C; resumes with --resume).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description="Extract the region features of images with the Visual Genome Faster R-CNN into a feature store.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help=f"an image, a folder (recursive: {' '.join(IMAGE_EXTENSIONS)}), a glob in quotes, or a .txt file "
        "of image paths, one per line (relative to the list's folder)",
    )
    parser.add_argument("--output", "-o", required=True, metavar="STORE", help="feature store to write (.h5)")
    source = parser.add_argument_group("a `datasets` dataset instead of files")
    source.add_argument("--dataset", metavar="NAME_OR_PATH", help="hub dataset name, or a folder from save_to_disk")
    source.add_argument("--split", help="split to read (needed when the dataset has several)")
    source.add_argument("--image-column", default="image", help="column holding the images (default: image)")
    source.add_argument("--id-column", help="column holding the image ids (default: the row index)")
    parser.add_argument(
        "--id-from",
        choices=ID_FROM,
        default="stem",
        help="ids of files: stem (file name without extension, the default) or path (relative to the folder "
        "given, with extension)",
    )
    model = parser.add_argument_group("detector")
    model.add_argument(
        "--detector", default=DEFAULT_DETECTOR, help=f"hub id or local folder (default: {DEFAULT_DETECTOR})"
    )
    model.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available; cuda:LOCAL_RANK under torchrun)"
    )
    model.add_argument(
        "--dtype",
        choices=COMPUTE_DTYPES,
        default="float32",
        help="of the convolutions (default: float32)",
    )
    model.add_argument(
        "--num-boxes", metavar="N|MIN-MAX", help="regions per image: 36 (the default) or a range like 10-100 (adaptive)"
    )
    model.add_argument(
        "--rule",
        choices=RULES,
        default="caffe",
        help="box selection (default: caffe, what LXMERT was trained on; see docs/extract.md)",
    )
    run = parser.add_argument_group("the job")
    run.add_argument(
        "--batch-size", type=integer_at_least(1), default=8, help="images per detector call and per commit (default: 8)"
    )
    run.add_argument(
        "--num-workers", type=integer_at_least(0), default=2, help="processes decoding images (default: 2; 0: none)"
    )
    run.add_argument(
        "--feature-dtype",
        choices=FEATURE_DTYPES,
        default="float32",
        help="of the stored features (default: float32)",
    )
    run.add_argument("--resume", action="store_true", help="continue an existing store, skipping the images it holds")
    run.add_argument("--overwrite", action="store_true", help="replace an existing store")
    run.add_argument(
        "--retry-failed", action="store_true", help="with --resume: try the images of the error table again"
    )
    run.add_argument("--shard", metavar="I/N", help="extract shard I of N (0 <= I < N) into STORE's shard file")
    run.add_argument(
        "--max-image-pixels",
        type=integer_at_least(0),
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help="refuse images of more pixels, before decoding (decompression bombs; default: "
        f"{DEFAULT_MAX_IMAGE_PIXELS}, Pillow's limit; 0: no limit)",
    )
    run.add_argument("--allow-errors", action="store_true", help="exit 0 even when images failed")
    run.add_argument(
        "--preview",
        metavar="DIR",
        help="write the drawn regions of the first images this process extracts to DIR as PNG files, as the job "
        "runs (DIR is created; names like 0003-<id>.png, shard-00001-0003-<id>.png per torchrun rank or shard; "
        "a preview that fails warns once and the job goes on)",
    )
    run.add_argument(
        "--preview-count",
        type=integer_at_least(1),
        metavar="N",
        help=f"with --preview: how many images to preview (default: {PREVIEW_COUNT}; per process under torchrun)",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def build_subcommand_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} {command}")
    if command == "merge":
        parser.description = "Copy shard stores (one per process or machine) into one store."
        parser.add_argument("shards", nargs="+", metavar="SHARD", help="shard stores, in the order to copy them")
        parser.add_argument("--output", "-o", required=True, metavar="STORE", help="the merged store")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing STORE")
    elif command == "tsv-import":
        parser.description = "Copy an LXMERT TSV file of region features into a feature store."
        parser.add_argument("tsv", metavar="FILE.tsv")
        parser.add_argument("--output", "-o", required=True, metavar="STORE")
        parser.add_argument(
            "--feature-dtype",
            choices=FEATURE_DTYPES,
            help="of the stored features (default: float32; with --resume: the store's)",
        )
        parser.add_argument(
            "--num-boxes",
            metavar="N|MIN-MAX",
            help="boxes per image the store takes (default: the first line's count; with --resume: the store's)",
        )
        parser.add_argument("--resume", action="store_true", help="continue an interrupted import")
        parser.add_argument(
            "--overwrite", action="store_true", help="replace an existing STORE, once the whole file is imported"
        )
    elif command == "tsv-export":
        parser.description = "Write a feature store as an LXMERT TSV file."
        parser.add_argument("store", metavar="STORE")
        parser.add_argument("--output", "-o", required=True, metavar="FILE.tsv")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE.tsv")
    else:
        parser.description = (
            "Read every record and error line of a feature store and report those that cannot be read "
            "(exit status 0: none, 1: some, or the file is not a store)."
        )
        parser.add_argument("store", metavar="STORE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see EXAMPLES)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        command, args = argv[0], build_subcommand_parser(argv[0]).parse_args(argv[1:])
    else:
        command, args = "extract", build_parser().parse_args(argv)
    from ..checkpoints.errors import CheckpointError
    from ..model.config_yaml import ConfigError
    from ..store.errors import StoreError
    from ..store.tsv import TSVFormatError
    from .summary import JobError

    name = PROG if command == "extract" else f"{PROG} {command}"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(f"{name}: warning: {message}", file=sys.stderr)
            return _run_command(command, args)
    except (InputError, JobError, StoreError, CheckpointError, ConfigError, TSVFormatError, OSError) as error:
        # the system's errors in one line (HDF5's span lines); ours may list items on purpose
        message = " ".join(str(error).split()) if type(error).__module__ == "builtins" else str(error)
        print(f"{name}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{name}: interrupted; {_after_interrupt(command, args)}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run_command(command: str, args: argparse.Namespace) -> int:
    if command == "extract":
        return _run_job(args)
    if command == "merge":
        return _merge(args)
    if command == "tsv-import":
        return _tsv_import(args)
    if command == "tsv-export":
        return _tsv_export(args)
    return _verify(args)


def _after_interrupt(command: str, args: argparse.Namespace) -> str:
    if command == "extract" or (command == "tsv-import" and not args.overwrite):
        return "every committed batch is in the store: run again with --resume"
    if command == "verify":
        return "nothing was changed"
    return f"{args.output} is as it was"  # written aside and moved into place at the end


def _run_job(args: argparse.Namespace) -> int:
    from .distributed import torchrun_launch
    from .run import run_extraction

    if bool(args.inputs) == bool(args.dataset):
        raise InputError("give INPUT files / folders / globs / lists, or --dataset, not both (one is needed)")
    if args.retry_failed and not args.resume:
        raise InputError("--retry-failed goes with --resume (a new store has no failed images)")
    if args.preview_count is not None and args.preview is None:
        raise InputError("--preview-count goes with --preview DIR")
    if args.dataset:
        inputs = load_dataset_split(args.dataset, args.split)
    elif args.split or args.id_column or args.image_column != "image":
        raise InputError("--split, --image-column and --id-column go with --dataset")
    else:
        inputs = args.inputs
    summary = run_extraction(
        inputs,
        args.output,
        detector=args.detector,
        num_boxes=args.num_boxes,
        rule=args.rule,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        feature_dtype=args.feature_dtype,
        resume=args.resume,
        overwrite=args.overwrite,
        retry_failed=args.retry_failed,
        shard=args.shard,
        id_from=args.id_from,
        image_column=args.image_column,
        id_column=args.id_column,
        max_image_pixels=args.max_image_pixels or None,
        progress=False if args.quiet else None,
        preview=args.preview,
        preview_count=PREVIEW_COUNT if args.preview_count is None else args.preview_count,
    )
    launch = torchrun_launch()
    if launch is not None and launch.rank != 0:
        return EXIT_OK  # rank 0 reports for the whole job (and gives torchrun the job's status)
    failed = summary.failed + summary.failed_before
    notes = []
    if summary.failed_before:
        notes.append(f"{summary.failed_before} of them failed in an earlier run (--retry-failed tries them again)")
    if summary.repeated_rows:
        notes.append(f"{summary.repeated_rows} dataset rows share an earlier row's id: each id is extracted once")
    if summary.shards:
        notes.append(f"merged {len(summary.shards)} shards ({summary.shards[0].name}, ...)")
    if args.preview is not None:
        notes.append(f"{len(summary.previews)} previews in {args.preview}")
    print(
        f"{PROG}: {summary.done} done, {summary.skipped} skipped (already in the store), {failed} failed -> "
        f"{summary.output} ({summary.images_per_second:.2f} images/s)" + "".join(f"; {note}" for note in notes)
    )
    for image_id, reason in list(summary.failures.items())[:SHOWN_FAILURES]:
        print(f"  failed {image_id}: {reason}", file=sys.stderr)
    if len(summary.failures) > SHOWN_FAILURES:
        print(f"  ... and {len(summary.failures) - SHOWN_FAILURES} more: FeatureStore(...).errors()", file=sys.stderr)
    if failed and not args.allow_errors:
        print(
            f"{PROG}: {failed} image(s) failed (reasons in the store's error table); exit status "
            f"{EXIT_IMAGES_FAILED} (--allow-errors: 0)",
            file=sys.stderr,
        )
        return EXIT_IMAGES_FAILED
    return EXIT_OK


def _output_file(output: str) -> Path:
    """The file that --output names: a symlink's target (the link stays); its folder must exist."""

    path = Path(os.path.realpath(output))
    if path.is_dir():
        raise InputError(f"--output {output} is a folder; give a file name")
    if not path.parent.is_dir():
        raise InputError(f"--output {output}: the folder {path.parent} does not exist")
    return path


def _merge(args: argparse.Namespace) -> int:
    from ..store.lock import output_lock
    from ..store.merge import merge
    from ..store.store import FeatureStore

    output = _output_file(args.output)
    with output_lock(output):  # merge takes it too; held here so that the checks below stay true
        if output.exists() and not args.overwrite:
            raise InputError(f"{args.output} already exists; pass --overwrite to replace it")
        for shard in args.shards:
            if output.exists() and os.path.exists(shard) and os.path.samefile(shard, output):
                raise InputError(f"--output {args.output} is also one of the shards ({shard}): merge into a new file")
        merge(args.shards, output, overwrite=args.overwrite)
        with FeatureStore(output) as store:
            images, errors = len(store), len(store.errors())
    print(f"{PROG} merge: {len(args.shards)} shards, {images} images, {errors} errors -> {args.output}")
    return EXIT_OK


def _tsv_import(args: argparse.Namespace) -> int:
    from ..store.lock import output_lock
    from ..store.store import FeatureStore
    from ..store.tsv import TSVFormatError, import_tsv

    if args.resume and args.overwrite:
        raise InputError("pass --resume or --overwrite, not both")
    if args.num_boxes is not None:
        try:
            parse_box_range(args.num_boxes)
        except ValueError:
            raise InputError(f"--num-boxes {args.num_boxes}: expected a count like 36 or a range like 10-100") from None
    output = _output_file(args.output)
    with output_lock(output):  # import_tsv takes it too; held here so that the checks below stay true
        if output.exists() and not (args.resume or args.overwrite):
            raise InputError(f"{args.output} already exists; pass --resume to continue it or --overwrite to replace it")
        num_boxes, feature_dtype = args.num_boxes, args.feature_dtype or "float32"
        if args.resume and output.exists():  # continue with the store's settings unless told otherwise
            with FeatureStore(output) as store:
                num_boxes = num_boxes or store.metadata.num_boxes
                feature_dtype = args.feature_dtype or store.feature_dtype
        try:
            count = import_tsv(
                args.tsv,
                output,
                num_boxes=num_boxes,
                feature_dtype=feature_dtype,
                resume=args.resume,
                overwrite=args.overwrite,
            )
        except TSVFormatError as error:
            if args.overwrite or not output.exists():
                raise
            raise TSVFormatError(
                f"{error}; {args.output} keeps the lines before it: fix the file and run again with --resume"
            ) from None
    print(f"{PROG} tsv-import: {count} images -> {args.output}")
    return EXIT_OK


def _tsv_export(args: argparse.Namespace) -> int:
    from ..store.store import FeatureStore
    from ..store.tsv import export_tsv

    output = _output_file(args.output)
    if output.exists() and not args.overwrite:
        raise InputError(f"{args.output} already exists; pass --overwrite to replace it")
    with FeatureStore(args.store) as store:
        feature_dtype = store.feature_dtype
    if output.exists() and os.path.samefile(args.store, output):
        raise InputError(f"--output {args.output} is the store {args.store} itself; give another file name")
    if feature_dtype == "float16":
        print(
            f"{PROG} tsv-export: note: {args.store} keeps float16 features; the TSV holds them as float32, with "
            "the float16 rounding (a store imported as float32 gives the original file back byte for byte)",
            file=sys.stderr,
        )
    count = export_tsv(args.store, output)
    print(f"{PROG} tsv-export: {count} images -> {args.output}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from ..store.store import FeatureStore, verify

    # Opened once first, so that a file that is no store (or one too damaged to open, or missing, or being
    # written) is one error line, like every other refusal; verify() then reads every record.
    FeatureStore(args.store).close()
    report = verify(args.store)
    checked = f"{report.images_checked} images and {report.errors_checked} error lines"
    how = "against their checksums" if report.checksums else "for readability (a layout 1.0 store has no checksums)"
    if report.ok:
        print(f"{PROG} verify: {args.store}: {checked} checked {how}: no damage found")
        return EXIT_OK
    print(
        f"{PROG} verify: {args.store}: {checked} checked {how}: {len(report.damaged)} damaged record(s), "
        f"{len(report.problems)} other problem(s)"
    )
    for image_id, reason in list(report.damaged.items())[:SHOWN_DAMAGED]:
        print(f"  damaged {image_id}: {reason}")
    if len(report.damaged) > SHOWN_DAMAGED:
        print(f"  ... and {len(report.damaged) - SHOWN_DAMAGED} more damaged records")
    for problem in report.problems[:SHOWN_DAMAGED]:
        print(f"  problem: {problem}")
    if len(report.problems) > SHOWN_DAMAGED:
        print(f"  ... and {len(report.problems) - SHOWN_DAMAGED} more problems")
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
