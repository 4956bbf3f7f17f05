"""StoreWriter survives SIGKILL: a job killed at any moment leaves a readable store of complete records,
and resuming it ends with the same store as a job that was never killed.

The job runs in a forked child (a real process, really killed with SIGKILL). Two kinds of kill points:
- exact ones: the child counts its h5py calls (dataset resize, each half of every column write, flush,
  attribute write) and stops itself (SIGSTOP) at the chosen one; the parent then kills it. Column writes
  are split in two halves so that a kill can fall in the middle of a column;
- timed ones: the parent kills after a random delay, which also lands inside HDF5's own flushes.
"""

from __future__ import annotations

import collections
import os
import signal
import time
import traceback

import h5py
import numpy as np
import pytest

from extract.store import FeatureStore, StoreMetadata, StoreWriter
from extract.store.store import BOX_COLUMNS

METADATA = StoreMetadata(
    num_boxes="10-100", rule="caffe", detector_config={"test": "crash"}, checkpoint_sha256="0" * 64
)
NUM_IMAGES, BATCH, DIM = 160, 4, 2048
# Kinds of kill points, with the occurrences to pick from (at most about two batches into a run, so that
# every run is killed before the job ends): per batch 12 writes, 11 half-writes, 2 flushes, 1 attribute
# write, and a resize of the datasets that need to grow (a few per run).
KILL_KINDS = {"resize": 6, "write": 24, "half-written": 22, "flush": 4, "attribute": 3}
TIMED_KILLS = 6

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def image_id(i: int) -> str:
    return f"COCO_crash_{i:06d}"


def fails(i: int) -> bool:
    return i % 10 == 7  # these images go to the error table instead


def expected_record(i: int) -> dict:
    rng = np.random.default_rng(i)
    count = 10 + (i * 37) % 91  # 10 to 100 boxes: boxes of one image share chunks with its neighbours
    boxes = np.sort(rng.uniform(0, 400, (count, 4)).astype(np.float32), axis=1)
    return {
        "id": image_id(i),
        "height": 400 + i,
        "width": 500 + i,
        "features": rng.uniform(0, 20, (count, DIM)).astype(np.float32),
        "boxes": boxes,
        "object_ids": rng.integers(0, 1600, count),
        "object_scores": rng.random(count, dtype=np.float32),
        "attribute_ids": rng.integers(0, 400, count),
        "attribute_scores": rng.random(count, dtype=np.float32),
    }


def run_job(path) -> None:
    """The extraction job, minus the detector: resume, skip what is done, write the rest in batches."""
    with StoreWriter(path, metadata=METADATA, feature_dtype="float16", resume=True) as writer:
        done = writer.completed_ids() | writer.failed_ids()
        todo = [i for i in range(NUM_IMAGES) if image_id(i) not in done]
        for first in range(0, len(todo), BATCH):
            batch = todo[first : first + BATCH]
            for i in batch:
                if fails(i):
                    writer.add_error(image_id(i), f"cannot decode image {i}")
            writer.append([expected_record(i) for i in batch if not fails(i)])


def stop_at(kind: str, occurrence: int) -> None:
    """In the child: SIGSTOP itself just before its ``occurrence``-th h5py call of ``kind`` (one of
    KILL_KINDS; see tests/support/crash_points.py)."""
    from crash_points import count_h5py_calls, stop_this_thread

    seen: collections.Counter[str] = collections.Counter()

    def tick(event: str) -> None:
        seen[event] += 1
        if event == kind and seen[event] == occurrence:
            stop_this_thread()

    count_h5py_calls(tick)


def run_child(path, *, stop: tuple[str, int] | None = None, kill_after: float | None = None) -> str:
    """Run the job in a forked child; return how it ended: "finished", "stopped+killed" or "killed"."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            if stop is not None:
                stop_at(*stop)
            run_job(path)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        return "stopped+killed"
    if os.WIFSIGNALED(status):
        return "killed"
    assert os.WEXITSTATUS(status) == 0, "the job failed in the child (not a kill)"
    return "finished"


def check_complete_records(path) -> tuple[int, bool]:
    """The store opens and every visible record and error is exactly the job's; returns (images, tail left)."""
    with FeatureStore(path) as store:
        for record in store:
            i = int(record.id.rsplit("_", 1)[1])
            expected = expected_record(i)
            np.testing.assert_array_equal(record.features, expected["features"].astype(np.float16))
            for name in ("boxes", "object_ids", "object_scores", "attribute_ids", "attribute_scores"):
                np.testing.assert_array_equal(getattr(record, name), expected[name], err_msg=name)
            assert (record.height, record.width) == (expected["height"], expected["width"])
        assert all(fails(int(k.rsplit("_", 1)[1])) for k in store.errors())
        count = len(store)
    with h5py.File(path, "r") as raw:  # ids after the committed ones: what a kill mid-batch leaves
        text = raw["images/ids"][:].tobytes().split(b"\n", count)[-1] if count else raw["images/ids"][:].tobytes()
        tail = bool(text.strip(b"\0"))
    return count, tail


def test_sigkill_at_many_points_then_resume_equals_uninterrupted_run(tmp_path):
    reference = tmp_path / "uninterrupted.h5"
    assert run_child(reference) == "finished"

    crashed = tmp_path / "crashed.h5"
    rng = np.random.default_rng(2024)
    # Three exact kills of each kind (at an occurrence drawn from KILL_KINDS), timed kills between them.
    plan = [("stop", (kind, int(n))) for kind, top in KILL_KINDS.items() for n in rng.integers(1, top, 3)]
    plan += [("time", float(t)) for t in rng.uniform(0.0, 0.05, TIMED_KILLS)]
    rng.shuffle(plan)
    outcomes, tails = [], []
    for how, value in plan:
        outcome = run_child(crashed, **({"stop": value} if how == "stop" else {"kill_after": value}))
        outcomes.append(outcome)
        if crashed.exists():  # a kill before the empty store was renamed into place leaves no file
            tails.append(check_complete_records(crashed)[1])
    assert outcomes.count("stopped+killed") >= 10, outcomes
    # Kills after a batch's rows were written but before its count was: those rows are in the file, unseen.
    assert sum(tails) >= 3, "too few kills left uncommitted rows: the test would not notice a reader using them"
    assert run_child(crashed) == "finished"
    check_complete_records(crashed)

    with FeatureStore(reference) as expected, FeatureStore(crashed) as resumed:
        assert resumed.ids() == expected.ids()
        assert len(set(resumed.ids())) == len(resumed)
        assert set(resumed.ids()) | set(resumed.errors()) == {image_id(i) for i in range(NUM_IMAGES)}
        assert resumed.errors() == expected.errors()
        for ours, theirs in zip(resumed, expected, strict=True):
            assert (ours.height, ours.width) == (theirs.height, theirs.width)
            for name in BOX_COLUMNS:
                np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)


def killed_during_growth(path) -> bool:
    with h5py.File(path, "r") as file:
        return bool(file.attrs["growth_in_progress"])


@pytest.mark.skipif(
    not os.environ.get("STORE_CRASH_STRESS"),
    reason="the long run: STORE_CRASH_STRESS=<number of kills> (docs/feature-store.md, crash safety)",
)
def test_stress_many_random_kills(tmp_path):
    rng = np.random.default_rng(int(os.environ.get("STORE_CRASH_SEED", "0")))
    path = tmp_path / "stress.h5"
    for _ in range(int(os.environ["STORE_CRASH_STRESS"])):
        # A store killed during a growth is copied when resumed: let that run end, or no run ever would.
        copy = path.exists() and killed_during_growth(path)
        outcome = run_child(path, kill_after=None if copy else float(rng.uniform(0.0, 0.08)))
        if path.exists():
            check_complete_records(path)
        if outcome == "finished":
            path.unlink()  # and start a new job
