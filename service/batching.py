"""The device worker: one thread per device runs every detector and LXMERT pass of the server, on batches
gathered from concurrent requests, so that the event loop never waits on the device.

A request hands the worker a `Work` (the decoded image, or the regions the cache or the store already has,
and the texts for LXMERT) and awaits it. The worker has a queue per stage. It takes the stage whose oldest
work has waited longest, waits until `max_batch_size` units are queued there (images for the detector,
(image, text) pairs for LXMERT) or the oldest has waited `max_wait_ms`, and runs one call of the stage
function on them. A detected work moves on to the LXMERT queue within the thread; a finished one resolves
its asyncio future on the request's loop (`loop.call_soon_threadsafe`). When a batch fails, its works run
again one at a time, so that one bad request fails alone.

At most `queue_size` works wait (both queues together); one more raises QueueFull (the server's 503).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

STAGES = ("detector", "lxmert")


class QueueFull(Exception):
    """The worker already holds queue_size waiting requests."""


class WorkerStopped(Exception):
    """The worker was stopped (the server is shutting down) before this work ran."""


@dataclass(eq=False)
class Work:
    """One request's work on the device. The detector stage sets `regions` (when it is None); the LXMERT stage
    (when `task` is set) sets `results`, one per text. timings: seconds waited in the queues ("queue") and
    taken by the batch each stage ran in ("detector", "lxmert")."""

    image: Any = None  # (H, W, 3) uint8 RGB pixels, for the detector
    regions: Any = None  # RegionFeatures or FeatureRecord: known already, or found by the detector
    num_boxes: int | tuple[int, int] = 36
    cache_key: Hashable | None = None  # where the detector's regions go in the cache
    task: str | None = None  # "vqa", "gqa" or "match"; None: the detector alone
    texts: list[str] = field(default_factory=list)
    top_k: int = 5
    explain: bool = False
    attention_layer: int | str = -1
    results: list[Any] | None = None
    timings: dict[str, float] = field(default_factory=lambda: {"queue": 0.0, "detector": 0.0, "lxmert": 0.0})


# A stage function: works in, one output per work out (in order); it may raise for the whole batch.
StageFunction = Callable[[list[Work]], list[Any]]


@dataclass(eq=False)
class _Job:
    work: Work
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = 0.0
    cancelled: bool = False  # the request gave up (timeout): skipped when batches are gathered


class DeviceWorker:
    """The thread that runs `detect` (works -> RegionFeatures) and `answer` (works -> results) in batches.

    on_detected(work): called in the worker thread with each work the detector stage completed (the cache
    keeps its regions). on_batch(stage, works, seconds): called after each stage call (metrics). Both are
    optional. The stage functions are read at each call: a test may wrap `worker.detect` / `worker.answer`.
    """

    def __init__(
        self,
        detect: StageFunction,
        answer: StageFunction,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        on_detected: Callable[[Work], None] | None = None,
        on_batch: Callable[[str, int, float], None] | None = None,
        name: str = "lxmert-device",
    ):
        self.detect = detect
        self.answer = answer
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue_size = queue_size
        self.on_detected = on_detected
        self.on_batch = on_batch
        self._queues: dict[str, deque[_Job]] = {stage: deque() for stage in STAGES}
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Fail the waiting works with WorkerStopped, let the running batch finish, end the thread."""
        with self._condition:
            self._stopping = True
            waiting = [job for queue in self._queues.values() for job in queue]
            for queue in self._queues.values():
                queue.clear()
            self._condition.notify_all()
        for job in waiting:
            _settle_later(job, error=WorkerStopped("the server is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout)

    def depth(self, stage: str) -> int:
        """Works waiting for `stage` (not counting the batch running now)."""
        return len(self._queues[stage])

    async def run(self, work: Work) -> Work:
        """Run `work` through its stages (the detector unless its regions are known, then LXMERT if it has a
        task) and return it. QueueFull when queue_size works wait already; WorkerStopped when stopped."""
        loop = asyncio.get_running_loop()
        job = _Job(work, loop, loop.create_future())
        with self._condition:
            if self._stopping:
                raise WorkerStopped("the server is shutting down")
            waiting = sum(len(queue) for queue in self._queues.values())
            if waiting >= self.queue_size:
                raise QueueFull(f"{waiting} requests wait for the device already (--queue-size {self.queue_size})")
            self._enqueue("detector" if work.regions is None else "lxmert", job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    # -- the thread ------------------------------------------------------------------------------

    def _enqueue(self, stage: str, job: _Job) -> None:  # with the condition held
        job.enqueued = time.monotonic()
        self._queues[stage].append(job)
        self._condition.notify_all()

    def _serve(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and not any(self._queues.values()):
                    self._condition.wait()
                if self._stopping:
                    return
                stage = min((queue[0].enqueued, stage) for stage, queue in self._queues.items() if queue)[1]
                batch = self._gather(stage)
            if batch:
                self._execute(stage, batch)

    def _gather(self, stage: str) -> list[_Job]:
        """Up to max_batch_size units of `stage`'s queue, once that many wait or the oldest has waited
        max_wait (with the condition held; waiting releases it)."""
        queue = self._queues[stage]
        while True:
            while queue and queue[0].cancelled:
                queue.popleft()
            if not queue or self._stopping:
                return []
            if sum(_units(stage, job) for job in queue if not job.cancelled) >= self.max_batch_size:
                break
            remaining = queue[0].enqueued + self.max_wait - time.monotonic()
            if remaining <= 0:
                break
            self._condition.wait(remaining)
        batch, units = [], 0
        while queue and (not batch or units + _units(stage, queue[0]) <= self.max_batch_size):
            job = queue.popleft()
            if not job.cancelled:
                batch.append(job)
                units += _units(stage, job)
        return batch

    def _execute(self, stage: str, batch: list[_Job]) -> None:
        started = time.monotonic()
        for job in batch:
            job.work.timings["queue"] += started - job.enqueued
        outputs = self._outputs(self.detect if stage == "detector" else self.answer, [job.work for job in batch])
        seconds = time.monotonic() - started
        if self.on_batch is not None:
            self.on_batch(stage, len(batch), seconds)
        for job, output in zip(batch, outputs, strict=True):
            job.work.timings[stage] = seconds
            if isinstance(output, Exception):
                _settle_later(job, error=output)
            elif stage == "detector":
                job.work.regions = output
                if self.on_detected is not None:
                    self.on_detected(job.work)
                self._next(job)
            else:
                job.work.results = output
                _settle_later(job, result=job.work)

    def _next(self, job: _Job) -> None:
        """A detected work: on to LXMERT if it has a task, else done."""
        if job.work.task is None:
            _settle_later(job, result=job.work)
            return
        with self._condition:
            if not self._stopping:
                self._enqueue("lxmert", job)
                return
        _settle_later(job, error=WorkerStopped("the server is shutting down"))

    @staticmethod
    def _outputs(function: StageFunction, works: list[Work]) -> list[Any]:
        """function(works), or when that raises, each work alone: its output or its exception."""
        try:
            outputs = function(works)
            if len(outputs) != len(works):
                raise RuntimeError(f"a stage function gave {len(outputs)} outputs for {len(works)} inputs")
            return list(outputs)
        except Exception as error:
            if len(works) == 1:
                return [error]
        outputs = []
        for work in works:
            try:
                outputs.append(function([work])[0])
            except Exception as error:
                outputs.append(error)
        return outputs


def _units(stage: str, job: _Job) -> int:
    """A work's share of a batch: an image for the detector, its (image, text) pairs for LXMERT."""
    return 1 if stage == "detector" else max(1, len(job.work.texts))


def _settle_later(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    try:
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)
    except RuntimeError:  # the loop is closed: nobody waits for the answer any more
        pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile (a timeout)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
