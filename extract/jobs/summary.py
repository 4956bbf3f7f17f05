"""What a job reports: `JobSummary`, and `JobError` when it stops part-way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class JobError(RuntimeError):
    """The job stopped part-way (a failed write); the store keeps every committed batch and can be resumed."""


@dataclass
class JobSummary:
    """What a job did. ``total`` = ``done + skipped + failed + failed_before`` (the inputs of this shard,
    or of every shard under torchrun)."""

    output: Path  # the store written: a shard file with shard=, the merged store under torchrun
    total: int
    done: int  # extracted and committed by this run
    skipped: int  # already in the store (resume)
    failed: int  # could not be used in this run: now in the store's error table
    failed_before: int  # in the error table from an earlier run and not retried
    repeated_rows: int = 0  # dataset rows whose id an earlier row has: extracted once, from the first row
    seconds: float = 0.0  # the extraction loop (decode, detector, write), without start-up
    failures: dict[str, str] = field(default_factory=dict)  # id -> reason, this run's failures
    shards: list[Path] = field(default_factory=list)  # under torchrun: the shard files merged into output
    previews: list[Path] = field(default_factory=list)  # preview files written (under torchrun: by every rank)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Every input is in the store (nothing failed, now or before)."""
        return self.failed == 0 and self.failed_before == 0
