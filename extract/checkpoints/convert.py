"""lxmert-convert-detector: any checkpoint of the VG detector -> our format (config.yaml + model.safetensors).

The source is read by `extract.checkpoints.read_checkpoint` (every format it accepts, hub ids
included) and written by `save_pretrained`, so the result loads with `read_checkpoint(DST)` and holds
the same tensors under our names. Run `lxmert-convert-detector --help` or `python -m extract.checkpoints.convert`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import CheckpointError
from .names import CONFIG_NAME, SAFETENSORS_NAME

PROG = "lxmert-convert-detector"

EXAMPLES = """\
examples:
  # py-bottom-up-attention / detectron2: a folder with a YAML config and model_final.pkl
  lxmert-convert-detector ~/models/vg-detectron2 ~/models/vg-r101

  # a lone .pkl (or .pth) with its detectron2 YAML (without --config and no YAML next to the file:
  # the full VG ResNet-101 config)
  lxmert-convert-detector faster_rcnn_from_caffe_attr.pkl vg-r101 \\
      --config VG-Detection/faster_rcnn_R_101_C4_attr_caffemaxpool.yaml

  # the transformers port, from the Hugging Face hub (or a local copy of it)
  lxmert-convert-detector unc-nlp/frcnn-vg-finetuned vg-r101-port

sources: a folder of ours (config.yaml + model.safetensors); a detectron2 / py-bottom-up-attention
folder (a YAML + model_final.pkl or a .pth); a .pkl / .pth / .bin / .safetensors file; the
transformers port (its config.yaml + pytorch_model.bin); a Hugging Face hub id of any of these.
Pickles are never allowed to run code: .pkl files are read by a restricted unpickler, .bin / .pth
with torch.load(weights_only=True).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Convert a Visual Genome Faster R-CNN checkpoint (detectron2 / py-bottom-up-attention .pkl or "
            f".pth, the transformers FRCNN port, or ours) into {CONFIG_NAME} + {SAFETENSORS_NAME} in DST."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="folder, weights file or Hugging Face hub id to convert")
    parser.add_argument("dst", metavar="DST", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument(
        "--config",
        metavar="YAML",
        help="config to use instead of the one found with SRC (detectron2 or transformers port layout)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"write into a non-empty DST (replaces {CONFIG_NAME} and {SAFETENSORS_NAME}, keeps other files)",
    )
    hub = parser.add_argument_group("Hugging Face hub (SRC given as an id; a token comes from HF_TOKEN or a login)")
    hub.add_argument("--revision", help="branch, tag or commit of the hub repository")
    hub.add_argument("--cache-dir", metavar="DIR", help="huggingface_hub cache folder")
    hub.add_argument("--local-files-only", action="store_true", help="use the cache only, never the network")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns the exit status (0 done, 1 an error, reported on stderr)."""
    args = build_parser().parse_args(argv)
    # After parsing: --help answers at once, reading a checkpoint imports torch and the network (seconds).
    from ..model.config import ConfigError
    from .pretrained import read_checkpoint, save_pretrained

    dst = Path(args.dst).expanduser()
    try:
        if dst.exists() and not dst.is_dir():
            raise NotADirectoryError(f"DST {dst} exists and is not a folder")
        if dst.is_dir() and any(dst.iterdir()) and not args.overwrite:
            raise FileExistsError(
                f"DST {dst} is not empty; pass --overwrite to write {CONFIG_NAME} and {SAFETENSORS_NAME} into it"
            )
        loaded = read_checkpoint(
            args.src,
            config=args.config,
            revision=args.revision,
            cache_dir=args.cache_dir,
            local_files_only=True if args.local_files_only else None,
        )
        save_pretrained(loaded.config, loaded.state_dict, dst)
    except (CheckpointError, ConfigError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    cfg = loaded.config
    print(
        f"converted {loaded.weights} ({loaded.format}; config: {loaded.config_source})\n"
        f"  -> {dst / CONFIG_NAME}, {dst / SAFETENSORS_NAME}: {len(loaded.state_dict)} tensors, "
        f"ResNet-{cfg.resnet_depth} C4, {cfg.num_classes} classes, "
        f"{cfg.num_attributes if cfg.attribute_head else 'no'} attributes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
