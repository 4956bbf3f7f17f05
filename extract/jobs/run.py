"""Extraction jobs: a whole image collection -> one feature store, resumable, sharded, on any number of GPUs.

    inputs (folders, globs, lists of paths, a `datasets` Dataset) -> (id, source) items -> this shard's
    items, minus those already in the store -> DataLoader workers decode -> the extractor, one batch at
    a time in the main process (which draws the first images' previews, extract.jobs.preview) -> a writer
    thread commits each batch to the StoreWriter

`run_extraction` is the job; `extract.jobs.cli` (the `lxmert-extract` command) parses its options into it.
Under `torchrun` every process extracts its shard into its own file, and rank 0 merges the shards.
docs/extraction-jobs.md describes the options, ids, shards, resume, the error table and exit codes.

Decoding runs in DataLoader worker processes and writing on a thread, so both overlap the detector.
The workers are started before the store is opened for the run (an HDF5 file handle inherited by a
worker would keep the file locked after a kill of the main process, until the orphan worker exits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..checkpoints.pretrained import locate_checkpoint
from ..devices import resolve_device, torch_dtype
from ..extractor import SHOWN_BOXES, RegionFeatureExtractor, RegionFeatures
from ..images import check_max_image_pixels
from ..options import DEFAULT_DETECTOR, DEFAULT_MAX_IMAGE_PIXELS, FEATURE_DTYPES, check_rule, parse_box_range
from ..store.lock import output_lock
from ..store.store import FeatureStore, StoreMetadata, StoreWriter
from .distributed import (
    Launch,
    finish_distributed,
    join_process_group,
    parse_shard,
    shard_of,
    shard_path,
    torchrun_launch,
)
from .inputs import (
    InputError,
    dataset_images,
    list_images,
    undecoded,
)
from .preview import PREVIEW_COUNT, PreviewWriter
from .records import (
    DecodedImages,
    box_setting,
    check_resumable,
    file_sha256,
    job_metadata,
    keep_list,
    load_extractor,
    regions_to_record,
)
from .summary import JobError, JobSummary

# ---------------------------------------------------------------------------------------------------
# Writing on a thread


class _BackgroundWriter:
    """Commits batches on a thread, in order, so that copying results to the host and writing overlap the
    next batch's compute. A batch: its error records (one commit each), then its records (one append)."""

    def __init__(self, writer: StoreWriter, depth: int = 2):
        self.writer = writer
        self.done = 0
        self.failures: dict[str, str] = {}
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="feature-store-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.error is None:  # after a failure, batches are dropped (the job is stopping)
                try:
                    self._write(*batch)
                except BaseException as error:
                    self.error = error

    def _write(self, results: list[tuple[str, RegionFeatures]], errors: list[tuple[str, str]]) -> None:
        for image_id, reason in errors:
            self.writer.add_error(image_id, reason)
            self.failures[image_id] = reason
        records = [regions_to_record(image_id, regions) for image_id, regions in results]
        self.writer.append(records)
        self.done += len(records)

    def submit(self, results: list[tuple[str, RegionFeatures]], errors: list[tuple[str, str]]) -> None:
        self.raise_if_failed()
        self._queue.put((results, errors))

    def close(self) -> None:
        """Wait until every submitted batch is written (or dropped after a failure)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            path = self.writer.path
            reason = " ".join(str(self.error).split())  # HDF5's messages span lines
            raise JobError(
                f"writing {path} failed: {reason}. The store keeps its {len(self.writer)} complete images and "
                "stays readable; fix the cause (disk space?) and run the same job again with --resume (resume=True)"
            ) from self.error


# ---------------------------------------------------------------------------------------------------
# The job


def run_extraction(
    inputs: Any,
    output: str | os.PathLike,
    *,
    detector: str | os.PathLike = DEFAULT_DETECTOR,
    num_boxes: int | str | tuple[int, int] | None = None,
    rule: str = "caffe",
    device: str | torch.device | None = None,
    dtype: str = "float32",
    batch_size: int = 8,
    num_workers: int = 2,
    feature_dtype: str = "float32",
    resume: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    shard: str | tuple[int, int] | None = None,
    id_from: str = "stem",
    image_column: str = "image",
    id_column: str | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    progress: bool | None = None,
    preview: str | os.PathLike | None = None,
    preview_count: int = PREVIEW_COUNT,
) -> JobSummary:
    """Extract the region features of every input image into the feature store ``output``.

    inputs: image files, folders, globs or .txt lists of paths (`list_images`; ids by ``id_from``), or a
    `datasets.Dataset` (`dataset_images`: images in ``image_column``, ids from ``id_column`` or row indices).
    detector: hub id or folder (`RegionFeatureExtractor.from_pretrained`); device (default: cuda when
    available), dtype (of the convolutions). num_boxes: 36, "36", (10, 100) or "10-100" (default 36; none
    for rule "d2"). batch_size: images per detector call and per committed batch. num_workers: DataLoader
    processes decoding images (0: in this process). feature_dtype: of the stored features.
    max_image_pixels: images with more pixels are refused before decoding (an error record; None: no limit).

    resume: continue an existing store (same settings), skipping the ids it holds and those in its error
    table (``retry_failed``: try those again); overwrite: replace it; neither: an existing output is
    refused (FileExistsError). shard: "I/N" writes shard I of N (split by a hash of the ids) to
    `shard_path(output, I, N)`. Launched by torchrun, each process takes its shard from the launcher and
    rank 0 merges the shards into ``output`` once all are done. progress: a tqdm bar (None: when stderr is
    a terminal; only rank 0 under torchrun). preview: a folder (created if missing) for PNG pictures of the
    regions of the first ``preview_count`` images this process extracts, written as the job runs
    (extract.jobs.preview: names, and why a failed preview only warns); `JobSummary.previews` lists them.

    Unreadable images are recorded in the store's error table and counted in the summary; an error of the
    detector itself (e.g. out of GPU memory) stops the job, which can then be resumed. Raises InputError
    for bad inputs or options, StoreError for a store that cannot be resumed, JobError for a failed write.
    """
    output = Path(output)
    _check_options(rule, dtype, feature_dtype, batch_size, num_workers, resume, overwrite)
    if isinstance(preview_count, bool) or not isinstance(preview_count, int) or preview_count < 0:
        raise InputError(f"preview_count={preview_count!r}: expected an integer >= 0 (--preview-count)")
    try:
        check_max_image_pixels(max_image_pixels)
    except ValueError as error:
        raise InputError(str(error)) from None
    launch = torchrun_launch()
    if launch is not None:
        if shard is not None:
            raise InputError("under torchrun each process takes its shard from the launcher: drop shard (--shard)")
        shard, progress = (launch.rank, launch.world_size), progress if launch.rank == 0 else False
    shard = None if shard is None else parse_shard(shard)
    path = output if shard is None else shard_path(output, *shard)
    # Held for the whole job, so that no other job resumes or overwrites this output (or, under torchrun,
    # the merged output) while this one loads the detector, writes, or merges.
    with contextlib.ExitStack() as locks:
        for locked in (path, output) if launch is not None and launch.rank == 0 else (path,):
            locks.enter_context(output_lock(locked))
        return _run_locked(
            inputs, output, path, launch, shard, detector=detector, num_boxes=num_boxes, rule=rule, device=device,
            dtype=dtype, batch_size=batch_size, num_workers=num_workers, feature_dtype=feature_dtype, resume=resume,
            overwrite=overwrite, retry_failed=retry_failed, id_from=id_from, image_column=image_column,
            id_column=id_column, max_image_pixels=max_image_pixels, progress=progress, preview=preview,
            preview_count=preview_count,
        )  # fmt: skip


def _run_locked(
    inputs: Any,
    output: Path,
    path: Path,
    launch: Launch | None,
    shard: tuple[int, int] | None,
    *,
    detector: str | os.PathLike,
    num_boxes: int | str | tuple[int, int] | None,
    rule: str,
    device: str | torch.device | None,
    dtype: str,
    batch_size: int,
    num_workers: int,
    feature_dtype: str,
    resume: bool,
    overwrite: bool,
    retry_failed: bool,
    id_from: str,
    image_column: str,
    id_column: str | None,
    max_image_pixels: int | None,
    progress: bool | None,
    preview: str | os.PathLike | None,
    preview_count: int,
) -> JobSummary:
    for existing in {path, output} if launch is not None else {path}:
        if existing.exists() and not (resume or overwrite):
            raise FileExistsError(
                f"{existing} already exists; pass --resume to continue it or --overwrite to replace it"
            )

    is_dataset = _is_hf_dataset(inputs)
    if is_dataset:
        items, repeated_rows = dataset_images(inputs, image_column=image_column, id_column=id_column)
        id_scheme = "dataset-row" if id_column is None else f"dataset-column:{id_column}"
    else:
        items, repeated_rows, id_scheme = list_images(inputs, id_from=id_from), 0, id_from
    if shard is not None:
        items = [item for item in items if shard_of(item[0], shard[1]) == shard[0]]

    group = join_process_group() if launch is not None else None
    device = _job_device(device, launch)
    extractor, weights = load_extractor(detector, device=device, dtype=dtype)
    spec, extractor_boxes = box_setting(num_boxes, rule, extractor.config.detections_per_image)
    if resume and path.exists():
        weights = _legacy_weights_hash(path, weights, detector)
    metadata = job_metadata(extractor, spec, rule, weights, id_scheme=id_scheme)
    if resume and path.exists():
        check_resumable(path, metadata, feature_dtype)
    with StoreWriter(path, metadata=metadata, feature_dtype=feature_dtype, resume=resume, overwrite=overwrite) as w:
        completed, failed_ids = w.completed_ids(), w.failed_ids()
    failed_before = set() if retry_failed else failed_ids - completed
    todo = [item for item in items if item[0] not in completed and item[0] not in failed_before]
    summary = JobSummary(
        output=path,
        total=len(items),
        done=0,
        skipped=sum(image_id in completed for image_id, _ in items),
        failed=0,
        failed_before=sum(image_id in failed_before for image_id, _ in items),
        repeated_rows=repeated_rows,
    )
    previews = None if preview is None else PreviewWriter(preview, preview_count, top=SHOWN_BOXES, shard=shard)
    if todo:
        images = DecodedImages(
            todo,
            min_size=extractor.config.min_size_test,
            max_size=extractor.config.max_size_test,
            rows=_image_rows(inputs, image_column) if is_dataset else None,
            column=image_column,
            max_image_pixels=max_image_pixels,
        )
        start = time.perf_counter()
        summary.done, summary.failures = _extract_into_store(
            images, path, metadata, feature_dtype, extractor, rule=rule, num_boxes=extractor_boxes,
            spec=spec, batch_size=batch_size, num_workers=num_workers, progress=progress, previews=previews,
        )  # fmt: skip
        summary.seconds = time.perf_counter() - start
        summary.failed = len(summary.failures)
        summary.previews = [] if previews is None else previews.written
    if launch is None:
        return summary
    return finish_distributed(launch, group, summary, output, overwrite=resume or overwrite)


def _legacy_weights_hash(path: Path, weights: str, detector: str | os.PathLike) -> str:
    """The weights hash to resume ``path`` with: stores of earlier versions hold the SHA-256 of the weights
    file instead of `weights_sha256`; when that is the file this job loaded, the store's value is kept."""
    with FeatureStore(path) as store:
        theirs = store.metadata.checkpoint_sha256
    if theirs == weights:
        return weights
    weights_file, _ = locate_checkpoint(detector, {}, need_config=False)
    return theirs if file_sha256(weights_file) == theirs else weights


def _check_options(rule, dtype, feature_dtype, batch_size, num_workers, resume, overwrite) -> None:
    if resume and overwrite:
        raise InputError(
            "pass --resume (resume=True: continue the store) or --overwrite (overwrite=True: replace it), not both"
        )
    try:
        check_rule(rule)
        torch_dtype(dtype)
    except ValueError as error:
        raise InputError(str(error)) from None
    if feature_dtype not in FEATURE_DTYPES:
        raise InputError(f"feature_dtype={feature_dtype!r}: expected one of {', '.join(FEATURE_DTYPES)}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise InputError(f"batch_size={batch_size!r}: expected an integer >= 1")
    if not (isinstance(num_workers, int) and num_workers >= 0):
        raise InputError(f"num_workers={num_workers!r}: expected an integer >= 0")


def _job_device(device: str | torch.device | None, launch: Launch | None) -> torch.device:
    """The device asked for (default: cuda when available); under torchrun "cuda" is cuda:LOCAL_RANK."""
    try:
        device = resolve_device(device)
        if device.type == "cuda" and device.index is None:
            index = launch.local_rank if launch is not None else torch.cuda.current_device()
            device = resolve_device(torch.device("cuda", index))
    except ValueError as error:
        raise InputError(str(error)) from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _extract_into_store(
    images: DecodedImages,
    path: Path,
    metadata: StoreMetadata,
    feature_dtype: str,
    extractor: RegionFeatureExtractor,
    *,
    rule: str,
    num_boxes: Any,
    spec: str,
    batch_size: int,
    num_workers: int,
    progress: bool | None,
    previews: PreviewWriter | None,
) -> tuple[int, dict[str, str]]:
    """The loop: decoded batches in, committed batches out (and the first images' previews, drawn here
    from the decoded pixels the workers sent). Returns (images written, failures)."""
    low, high = parse_box_range(spec)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers, collate_fn=keep_list)
    batches = iter(loader)  # starts (forks) the workers before the store is opened: see the module docstring
    bar = tqdm(total=len(images), unit="img", desc=path.name, disable=None if progress is None else not progress)
    failed = 0
    try:
        with (
            _worker_deaths_explained(num_workers),
            StoreWriter(path, metadata=metadata, feature_dtype=feature_dtype, resume=True) as writer,
        ):
            background = _BackgroundWriter(writer)
            try:
                for batch in batches:
                    errors = [(image_id, value) for image_id, value in batch if isinstance(value, str)]
                    decoded = [(image_id, value.numpy()) for image_id, value in batch if not isinstance(value, str)]
                    regions = extractor(
                        [pixels for _, pixels in decoded], rule=rule, num_boxes=num_boxes, batch_size=batch_size
                    )
                    results = []
                    for (image_id, _), region in zip(decoded, regions, strict=True):
                        if low <= len(region) <= high:
                            if previews is not None:
                                previews.add(image_id, region)
                            # Its source is the decoded image: not for the writer's queue to keep alive.
                            results.append((image_id, dataclasses.replace(region, source=None)))
                        else:
                            errors.append(
                                (image_id, f"the {rule} rule gave {len(region)} regions; the store takes {spec}")
                            )
                    background.submit(results, errors)
                    failed += len(errors)
                    bar.update(len(batch))
                    if errors:
                        bar.set_postfix(failed=failed, refresh=False)
            finally:
                background.close()
            background.raise_if_failed()
            return background.done, background.failures
    finally:
        bar.close()
        batches = None  # shuts the workers down now, also when an error is on its way up


@contextlib.contextmanager
def _worker_deaths_explained(num_workers: int) -> Iterator[None]:
    """A decoding worker that dies (killed by a signal, out of memory) stops the job with a JobError that says
    so, instead of the loader's bare RuntimeError (raised by its SIGCHLD handler wherever the main thread is)."""
    try:
        yield
    except RuntimeError as error:
        if not str(error).startswith("DataLoader worker"):
            raise
        raise JobError(
            f"an image-decoding worker process died ({error}); it was most likely killed by the system for "
            f"memory (a very large image?) or by a signal. Every committed batch is in the store: run the job "
            f"again with --resume (resume=True), with fewer --num-workers than {num_workers} or 0 to decode in "
            "the main process"
        ) from None


def _is_hf_dataset(inputs: Any) -> bool:
    datasets = sys.modules.get("datasets")  # a Dataset argument means the library is imported
    if datasets is not None and isinstance(inputs, datasets.DatasetDict):
        raise InputError(f"pass one split of the DatasetDict (its splits: {', '.join(inputs)}), e.g. dataset['train']")
    return datasets is not None and isinstance(inputs, datasets.Dataset)


def _image_rows(dataset: Any, image_column: str) -> Any:
    return undecoded(dataset.select_columns([image_column]), image_column)
