"""Shards and torchrun: which images a shard takes, where it writes, and how the ranks of a torchrun job
meet to merge their shards into one store on rank 0.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..store.merge import merge
from .inputs import (
    InputError,
)
from .summary import JobError, JobSummary

# The ranks of a torchrun job wait for the slowest shard before rank 0 merges: that wait may be long.
DISTRIBUTED_TIMEOUT = timedelta(days=7)


def parse_shard(spec: str | tuple[int, int]) -> tuple[int, int]:
    """ "I/N" (or (I, N)) -> (I, N): shard I of N, 0 <= I < N."""
    if isinstance(spec, str):
        index, _, count = spec.partition("/")
        try:
            spec = (int(index), int(count))
        except ValueError:
            raise InputError(f"shard {spec!r}: expected I/N with integers, e.g. 0/4 (the first of 4 shards)") from None
    index, count = spec
    if count < 1:
        raise InputError(f"shard {index}/{count}: the shard count N must be at least 1")
    if not 0 <= index < count:
        raise InputError(f"shard {index}/{count}: the index must be 0 to {count - 1} (shards are numbered from 0)")
    return index, count


def shard_of(image_id: str, count: int) -> int:
    """The shard an id belongs to: a hash of the id, so the split does not depend on the order of the
    inputs or on which other images there are (adding images never moves one to another shard)."""
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_path(output: str | os.PathLike, index: int, count: int) -> Path:
    """The file shard ``index`` of ``count`` is written to: coco.h5 -> coco.shard-00003-of-00008.h5."""
    output = Path(output)
    return output.with_name(f"{output.stem}.shard-{index:05d}-of-{count:05d}{output.suffix}")


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_launch() -> Launch | None:
    """The rank, world size and local rank torchrun gives this process, or None when not launched by it."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if not all(name in os.environ for name in names):
        return None
    return Launch(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))


def join_process_group() -> Any:
    """The gloo group the ranks coordinate over (None: the default group, which this job created). It only
    exchanges a few small Python objects, once, so it needs no GPU, and its wait for the slowest shard
    is bounded by DISTRIBUTED_TIMEOUT only (NCCL's watchdog would stop ranks that wait long)."""

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=DISTRIBUTED_TIMEOUT)
        return None
    return dist.new_group(backend="gloo", timeout=DISTRIBUTED_TIMEOUT)  # the caller's own group stays theirs


def finish_distributed(launch: Launch, group: Any, summary: JobSummary, output: Path, *, overwrite: bool) -> JobSummary:
    """Wait for every shard, merge them on rank 0, and give every rank the whole job's summary."""

    summaries: list[JobSummary | None] = [None] * launch.world_size
    dist.all_gather_object(summaries, summary, group=group)  # also the barrier: every shard is done
    shards = [shard_path(output, rank, launch.world_size) for rank in range(launch.world_size)]
    total = JobSummary(
        output=output,
        total=sum(s.total for s in summaries),
        done=sum(s.done for s in summaries),
        skipped=sum(s.skipped for s in summaries),
        failed=sum(s.failed for s in summaries),
        failed_before=sum(s.failed_before for s in summaries),
        repeated_rows=summary.repeated_rows,
        seconds=max(s.seconds for s in summaries),
        failures={image_id: reason for s in summaries for image_id, reason in s.failures.items()},
        shards=shards,
        previews=[path for s in summaries for path in s.previews],
    )
    error = None
    if launch.rank == 0:
        try:
            merge(shards, output, overwrite=overwrite)
        except Exception as caught:
            error = f"{type(caught).__name__}: {caught}"
    outcome = [error]
    dist.broadcast_object_list(outcome, src=0, group=group)  # the other ranks wait for the merge
    dist.destroy_process_group(group)  # None: the default group, which this job created
    if outcome[0] is not None:
        raise JobError(
            f"merging the shards into {output} failed ({outcome[0]}); the shards are complete: merge them with "
            f"`lxmert-extract merge {' '.join(map(str, shards))} --output {output}`"
        )
    return total
