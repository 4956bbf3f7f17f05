"""Feature store vs LXMERT TSV: write speed, read speed and size per image, same synthetic records.

Records: 36 boxes x 2048 features (the obj36 format) with random values, written to a float16 store, a
float32 store and an LXMERT TSV file. Write: `StoreWriter.append` in batches of 64, `encode_line`; the
time includes getting the data to disk (os.sync), and the three are written in 5 alternating rounds.
Random read: the records in a random order, `store[id]` for the store; for the TSV the best it allows,
a seek to the line (from an offset index built beforehand, not timed) and `decode_line` (LXMERT's own
loaders cannot do this: they decode the whole file into memory). In-order read: iteration over the
store, `read_tsv`. "cold": the file's pages are first dropped from the OS page cache (posix_fadvise),
so the disk is read; "warm": read again at once, from memory. DataLoader: `store.as_dataset()` in
random order, batch 64, 2 workers. Size: bytes allocated on disk per image (the file's apparent size,
which includes the room a store keeps for growth, in parentheses). Prints a markdown table; ratio =
TSV time / store time (TSV size / store size).

    python benchmarks/bench_store.py                  # 10,000 images in a temporary directory
    python benchmarks/bench_store.py --images 2000 --dir /data/scratch
    python benchmarks/bench_store.py --chunks         # adaptive stores: random reads by chunk rows
    python benchmarks/bench_store.py --checksums      # the cost of the records' checksums (layout 1.1)

--checksums: 2,000 records of 36 x 2048, float16 and float32 stores written with the checksums and without
(the checksum function replaced by a constant, in alternating rounds), then read with verification and
without (``FeatureStore(path, verify_checksums=False)``), random reads cold and warm and in-order reads
warm. Ratio = time without / time with (below 1: what the checksums cost).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import extract.store.store as store_module  # defines ADAPTIVE_CHUNK_BOXES and _record_checksum, patched below
from extract.store import FeatureRecord, FeatureStore, StoreMetadata, StoreWriter, read_tsv
from extract.store.store import batched
from extract.store.tsv import decode_line, encode_line


def synthetic_records(count: int, boxes: int | None = 36, dim: int = 2048, start: int = 0):
    """Records of images ``start`` to ``start + count``; ``boxes=None``: 10 to 100 boxes (adaptive).
    64 feature arrays, reused."""
    rng = np.random.default_rng(start)
    pool = np.random.default_rng(0).uniform(0, 10, (64, 100, dim)).astype(np.float32)
    for i in range(start, start + count):
        k = boxes or 10 + (i * 37) % 91
        xy = rng.uniform(0, 300, (k, 2)).astype(np.float32)
        yield FeatureRecord(
            f"COCO_train2014_{i:012d}",
            480,
            640,
            features=pool[i % 64, :k],
            boxes=np.concatenate([xy, xy + 50], axis=1),
            normalized_boxes=None,
            object_ids=rng.integers(0, 1600, k),
            object_scores=rng.random(k, dtype=np.float32),
            attribute_ids=rng.integers(0, 400, k),
            attribute_scores=rng.random(k, dtype=np.float32),
        )


def drop_from_page_cache(path: Path) -> None:
    os.sync()  # dirty pages cannot be dropped
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rate(count: int, seconds: float) -> float:
    return count / seconds


def timed(function, sync: bool = False) -> float:
    start = time.perf_counter()
    function()
    if sync:  # writes: until the data is on disk, so that one write's backlog does not slow the next
        os.sync()
    return time.perf_counter() - start


def write_store(
    path: Path, count: int, feature_dtype: str, boxes: int | None = 36, start: int = 0, resume: bool = False
) -> float:
    num_boxes = "36" if boxes else "10-100"
    metadata = StoreMetadata(num_boxes=num_boxes, rule="caffe", detector_config={}, checkpoint_sha256="bench")

    def write():
        with StoreWriter(
            path, metadata=metadata, feature_dtype=feature_dtype, resume=resume, overwrite=not resume
        ) as writer:
            for batch in batched(synthetic_records(count, boxes, start=start), 64):
                writer.append(batch)

    return rate(count, timed(write, sync=True))


def write_tsv_lines(path: Path, count: int, start: int) -> float:
    def write():
        with open(path, "ab") as file:
            for record in synthetic_records(count, start=start):
                file.write(encode_line(record))

    return rate(count, timed(write, sync=True))


def write_interleaved(tsv: Path, stores: dict[str, Path], count: int, rounds: int = 5) -> dict[str, float]:
    """Write speed of each format, written in turns: this disk slows down after some GB written, and
    whichever format came last would pay for it."""
    seconds = dict.fromkeys(["tsv", *stores], 0.0)
    per_round = count // rounds
    for round_ in range(rounds):
        start = round_ * per_round
        seconds["tsv"] += per_round / write_tsv_lines(tsv, per_round, start)
        for dtype, path in stores.items():
            seconds[dtype] += per_round / write_store(path, per_round, dtype, start=start, resume=round_ > 0)
    return {name: rate(per_round * rounds, total) for name, total in seconds.items()}


def read_store_random(path: Path, order: list[str], cold: bool, verify: bool = True) -> float:
    if cold:
        drop_from_page_cache(path)
    with FeatureStore(path, verify_checksums=verify) as store:
        return rate(len(order), timed(lambda: [store[image_id] for image_id in order]))


def read_store_in_order(path: Path, verify: bool = True) -> float:
    with FeatureStore(path, verify_checksums=verify) as store:
        return rate(len(store), timed(lambda: sum(1 for _ in store)))


def read_with_dataloader(path: Path, order: list[str]) -> float:
    with FeatureStore(path) as store:
        dataset = store.as_dataset(order)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=2)
    return rate(len(order), timed(lambda: sum(len(batch["id"]) for batch in loader)))


def read_tsv_random(path: Path, order: list[str], offsets: dict[str, int], cold: bool) -> float:
    if cold:
        drop_from_page_cache(path)

    def read():
        with open(path, "rb") as file:
            for image_id in order:
                file.seek(offsets[image_id])
                decode_line(file.readline())

    return rate(len(order), timed(read))


def read_tsv_in_order(path: Path, count: int) -> float:
    return rate(count, timed(lambda: sum(1 for _ in read_tsv(path))))


def line_offsets(path: Path) -> dict[str, int]:
    offsets, position = {}, 0
    with open(path, "rb") as file:
        for line in file:
            offsets[line.split(b"\t", 1)[0].decode()] = position
            position += len(line)
    return offsets


def size_per_image(path: Path, count: int) -> str:
    stat = path.stat()
    return f"{stat.st_blocks * 512 / count / 1024:.1f} ({stat.st_size / count / 1024:.1f})"


def compare(directory: Path, count: int) -> None:
    order = [f"COCO_train2014_{i:012d}" for i in np.random.default_rng(1).permutation(count)]
    tsv = directory / "features.tsv"
    stores = {dtype: directory / f"features_{dtype}.h5" for dtype in ("float16", "float32")}
    rows: dict[str, dict[str, float | str]] = {}

    os.sync()
    rows["write (images/s)"] = write_interleaved(tsv, stores, count)
    offsets = line_offsets(tsv)
    for cold in (True, False):
        name = f"random read, {'cold' if cold else 'warm'} (images/s)"
        rows[name] = {"tsv": read_tsv_random(tsv, order, offsets, cold)}
        rows[name] |= {dtype: read_store_random(path, order, cold) for dtype, path in stores.items()}
    rows["in-order read, warm (images/s)"] = {"tsv": read_tsv_in_order(tsv, count)}
    rows["in-order read, warm (images/s)"] |= {dtype: read_store_in_order(path) for dtype, path in stores.items()}
    rows["DataLoader, random order, warm (images/s)"] = {"tsv": "-"}
    rows["DataLoader, random order, warm (images/s)"] |= {
        dtype: read_with_dataloader(path, order) for dtype, path in stores.items()
    }
    rows["size per image, KiB on disk (apparent)"] = {"tsv": size_per_image(tsv, count)}
    rows["size per image, KiB on disk (apparent)"] |= {
        dtype: size_per_image(path, count) for dtype, path in stores.items()
    }

    print(f"\n{count} images, 36 boxes x 2048 features\n")
    print("| what | TSV (reference) | store float16 | store float32 | ratio float16 | ratio float32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in rows.items():
        cells = [
            f"{v:.0f}" if isinstance(v, float) else v for v in (values["tsv"], values["float16"], values["float32"])
        ]
        ratios = ["-", "-"]
        if isinstance(values["tsv"], float):  # speeds: TSV time / store time = store rate / TSV rate
            ratios = [f"{values[dtype] / values['tsv']:.2f}" for dtype in ("float16", "float32")]
        elif name.startswith("size"):  # sizes: TSV bytes / store bytes
            tsv_size = float(values["tsv"].split()[0])
            ratios = [f"{tsv_size / float(values[dtype].split()[0]):.2f}" for dtype in ("float16", "float32")]
        print(f"| {name} | {' | '.join(cells)} | {' | '.join(ratios)} |")


def chunk_sizes(directory: Path, count: int) -> None:
    print(f"\nAdaptive stores (10-100 boxes, float16), {count} images: speed by chunk rows of the per-box datasets\n")
    print("| chunk rows | write (images/s) | random read, cold (images/s) | random read, warm (images/s) |")
    print("| ---: | ---: | ---: | ---: |")
    order = [f"COCO_train2014_{i:012d}" for i in np.random.default_rng(1).permutation(count)]
    default = store_module.ADAPTIVE_CHUNK_BOXES
    try:
        for rows in (16, 32, 64, 128, 256):
            store_module.ADAPTIVE_CHUNK_BOXES = rows
            path = directory / f"adaptive_{rows}.h5"
            written = write_store(path, count, "float16", boxes=None)
            cold, warm = read_store_random(path, order, True), read_store_random(path, order, False)
            print(f"| {rows} | {written:.0f} | {cold:.0f} | {warm:.0f} |")
            path.unlink()
    finally:
        store_module.ADAPTIVE_CHUNK_BOXES = default


@contextlib.contextmanager
def no_record_checksums():
    """Writers compute no record checksum (they store 0): the write cost without them."""
    original = store_module._record_checksum
    store_module._record_checksum = lambda *fields: 0
    try:
        yield
    finally:
        store_module._record_checksum = original


def checksum_cost(directory: Path, count: int, rounds: int = 4) -> None:
    order = [f"COCO_train2014_{i:012d}" for i in np.random.default_rng(1).permutation(count)]
    rows: dict[str, dict[str, float]] = {}
    for dtype in ("float16", "float32"):
        paths = {checked: directory / f"{dtype}_{'with' if checked else 'without'}.h5" for checked in (False, True)}
        seconds = dict.fromkeys(paths, 0.0)
        per_round = count // rounds
        for round_ in range(rounds):  # alternating: this disk slows down after some GB written
            for checked, path in paths.items():
                with contextlib.nullcontext() if checked else no_record_checksums():
                    written = write_store(path, per_round, dtype, start=round_ * per_round, resume=round_ > 0)
                seconds[checked] += per_round / written
        rows[f"{dtype}: write (images/s)"] = {checked: per_round * rounds / total for checked, total in seconds.items()}
        store = paths[True]  # both reads of the same file: with and without verification
        for cold in (True, False):
            rows[f"{dtype}: random read, {'cold' if cold else 'warm'} (images/s)"] = {
                checked: read_store_random(store, order, cold, verify=checked) for checked in (False, True)
            }
        rows[f"{dtype}: in-order read, warm (images/s)"] = {
            checked: read_store_in_order(store, verify=checked) for checked in (False, True)
        }
        for path in paths.values():
            path.unlink()

    print(f"\n{count} images, 36 boxes x 2048 features: the cost of the records' checksums\n")
    print("| what | without checksums (reference) | with checksums | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in rows.items():
        print(f"| {name} | {values[False]:.0f} | {values[True]:.0f} | {values[True] / values[False]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--images", type=int, default=None, help="default: 10,000 (3,000 with --chunks, 2,000 with --checksums)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files (default: a temp dir)")
    parser.add_argument("--chunks", action="store_true", help="compare chunk sizes of adaptive stores instead")
    parser.add_argument("--checksums", action="store_true", help="measure the cost of the checksums instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        if args.chunks:
            chunk_sizes(Path(directory), args.images or 3000)
        elif args.checksums:
            checksum_cost(Path(directory), args.images or 2000)
        else:
            compare(Path(directory), args.images or 10_000)


if __name__ == "__main__":
    main()
