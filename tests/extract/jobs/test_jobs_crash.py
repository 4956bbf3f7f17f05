"""The extraction job survives SIGKILL: the real job (lxmert-extract on real images, the tiny detector)
runs in a subprocess killed at a dozen moments; after each kill the store opens and holds only complete
records, and the resumed job ends with every input present exactly once and the features of a job that
was never killed.

Kill points. The subprocess is this file run as a script: it installs counters on the calls the job makes
and stops itself (SIGSTOP) at the chosen one, and the test then kills it (SIGKILL). Points: a dataset
growth, a column write starting, a column half written (the write is split in two), a flush, an attribute
change, the commit counter about to change (every row of the batch written and flushed: the kill leaves
rows that readers must not see), and "timer": a SIGKILL at a random delay after the n-th detector call has started (the
writer thread may be anywhere in a commit then). One more kill falls during start-up. Occurrences are
drawn so that no run can finish the job (at most three commits of progress, fewer near the end).

The job runs with --batch-size 1, so every image is detected alone in every run and the features of the
resumed store equal the uninterrupted run's bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
from helpers import FIXTURES, SUPPORT

NAMES = ("000456", "000542", "001150", "COCO_train2014_000000132417", "COCO_train2014_000000207647", "input")
CORRUPT = "0005_corrupt"  # sorts third: the error record is committed between images
COMMITS = len(NAMES) + 1  # one per image (batches of one) and one for the error record
# Events of one commit of an image: 12 column writes, 8 of them split in two (the 1-row ones are not),
# 2 flushes, 1 counter change; a growth adds resizes, flushes and counter changes before its commit.
PER_COMMIT = {"write": 12, "half-written": 8, "flush": 2, "attribute": 1, "commit": 1, "timer": 1}
PLAN = [
    "write", "write", "half-written", "half-written", "flush", "flush", "attribute", "commit", "commit",
    "timer", "timer", "timer",
]  # fmt: skip


def job_arguments(images: Path, output: Path, detector: Path) -> list[str]:
    return [
        str(images),
        "--output", str(output),
        "--detector", str(detector),
        "--device", "cpu",
        "--num-boxes", "10-100",
        "--batch-size", "1",
        "--num-workers", "1",
        "--resume",
        "--allow-errors",
        "--quiet",
    ]  # fmt: skip


def install_stops(kind: str, occurrence: int, delay: float) -> None:
    """In the child: SIGSTOP itself just before its ``occurrence``-th event of ``kind`` (for "timer": a
    SIGKILL ``delay`` seconds after the ``occurrence``-th detector call starts)."""
    from crash_points import before, count_h5py_calls, stop_this_thread

    from extract.extractor import RegionFeatureExtractor

    seen: dict[str, int] = {}
    lock = threading.Lock()  # the job commits on a writer thread while the main thread detects

    def tick(event: str) -> None:
        with lock:
            seen[event] = seen.get(event, 0) + 1
            hit = event == kind and seen[event] == occurrence
        if hit and kind == "timer":
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        elif hit:
            stop_this_thread()

    count_h5py_calls(tick)
    RegionFeatureExtractor.__call__ = before(RegionFeatureExtractor.__call__, lambda: tick("timer"))


# The child runs this file as a script: it imports helpers and crash_points from tests/support.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))}


def run_job(arguments: list[str], log: Path, *, stop: str | None = None, kill_after: float | None = None) -> str:
    """Run the job in a subprocess; returns "finished", "stopped+killed" or "killed"."""
    command = [sys.executable, "-m", "extract.jobs"] if stop is None else [sys.executable, __file__, stop]
    with open(log, "ab") as output:
        child = subprocess.Popen([*command, *arguments], stdout=output, stderr=output, env=CHILD_ENV)
    if kill_after is not None:
        time.sleep(kill_after)
        child.kill()
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        os.kill(child.pid, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        child.returncode = -signal.SIGKILL
        return "stopped+killed"
    child.returncode = os.waitstatus_to_exitcode(status)
    if os.WIFSIGNALED(status):
        return "killed"
    assert child.returncode == 0, f"the job failed (not a kill): {log.read_text()[-3000:]}"
    return "finished"


def check_complete_records(path: Path, reference: dict) -> tuple[int, bool]:
    """The store opens; every record and error it shows is the uninterrupted run's. Returns (commits,
    whether rows of an uncommitted batch lie after the committed ones)."""
    from extract.store import FeatureStore
    from extract.store.store import BOX_COLUMNS

    with FeatureStore(path) as store:
        for record in store:
            expected = reference["records"][record.id]
            assert (record.height, record.width) == (expected.height, expected.width)
            for name in BOX_COLUMNS:
                np.testing.assert_array_equal(getattr(record, name), getattr(expected, name), err_msg=name)
        errors = store.errors()
        assert errors.items() <= reference["errors"].items()
        commits = len(store) + len(errors)
    with h5py.File(path, "r") as raw:
        tails = []
        for counter, name in (("committed_images", "images/ids"), ("committed_errors", "errors")):
            count = int(raw.attrs[counter])
            text = raw[name][:].tobytes()
            tails.append(text.split(b"\n", count)[-1] if count else text)
    return commits, any(tail.strip(b"\0") for tail in tails)


def test_sigkill_at_many_points_then_resume_equals_uninterrupted_run(tmp_path):
    from extract.checkpoints import read_checkpoint, save_pretrained
    from extract.store import FeatureStore

    checkpoint = read_checkpoint(FIXTURES / "detectron2-vg-tiny")
    config, state_dict = checkpoint.config, checkpoint.state_dict
    config = dataclasses.replace(config, min_size_test=300, max_size_test=500, rpn_post_nms_topk_test=100)
    save_pretrained(config, state_dict, tmp_path / "detector")
    images = tmp_path / "images"
    images.mkdir()
    for name in NAMES:
        shutil.copy(FIXTURES / "images" / f"{name}.jpg", images / f"{name}.jpg")
    (images / f"{CORRUPT}.jpg").write_bytes(b"\xff\xd8\xff\xe0 a JPEG header and nothing else")
    log = tmp_path / "jobs.log"

    uninterrupted = tmp_path / "uninterrupted.h5"
    assert run_job(job_arguments(images, uninterrupted, tmp_path / "detector"), log) == "finished"
    with FeatureStore(uninterrupted) as store:
        reference = {"records": {record.id: record for record in store}, "errors": store.errors()}
    assert sorted(reference["records"]) == sorted(NAMES) and list(reference["errors"]) == [CORRUPT]

    crashed = tmp_path / "crashed.h5"
    arguments = job_arguments(images, crashed, tmp_path / "detector")
    rng = np.random.default_rng(7)
    outcomes, tails, points = [], [], []  # a point: (the stop, the commits in the store before the run)
    # The plan, then more of it in case a drawn stop lies beyond the job's remaining work on this machine
    # (the run then finishes: not a kill, and the store starts over so that later stops have work left).
    for kind in ["resize", "start-up", *rng.permutation(PLAN), *rng.permutation(PLAN)]:
        if outcomes.count("stopped+killed") + outcomes.count("killed") >= 2 + len(PLAN):
            break
        if outcomes and outcomes[-1] == "finished":
            crashed.unlink()
        commits = check_complete_records(crashed, reference)[0] if crashed.exists() else 0
        remaining = COMMITS - commits
        if kind == "start-up":  # the parent kills the child while it imports, loads the detector ...
            stop = kind
            outcomes.append(run_job(arguments, log, kill_after=float(rng.uniform(0.2, 1.0))))
        else:
            if kind == "resize":  # the first run: its first commit grows the 12 datasets an image writes to
                occurrence, delay = int(rng.integers(1, 13)), 0.0
            elif remaining >= 5:  # up to two image commits and the error record's before the kill
                occurrence, delay = int(rng.integers(1, 2 * PER_COMMIT[kind] + 1)), float(rng.uniform(0.0, 0.15))
            else:  # the error record is in (it sorts third): inside the next image's commit
                occurrence, delay = int(rng.integers(1, PER_COMMIT[kind] + 1)), float(rng.uniform(0.0, 0.15))
                delay = delay if remaining >= 2 else 0.0
            stop = f"{kind}:{occurrence}" + (f":{delay:.3f}" if kind == "timer" else "")
            outcomes.append(run_job(arguments, log, stop=stop))
        points.append((stop, commits))
        tails.append(crashed.exists() and check_complete_records(crashed, reference)[1])

    killed = {point for point, outcome in zip(points, outcomes, strict=True) if outcome != "finished"}
    assert len(killed) >= 10, list(zip(points, outcomes, strict=True))
    # Kills between a batch's rows and its commit leave rows in the file that readers must not see; the
    # "commit" stops always do (the other kinds may, depending on timing).
    assert all(tail for (stop, _), tail in zip(points, tails, strict=True) if stop.startswith("commit")), list(
        zip(points, tails, strict=True)
    )
    assert sum(tails) >= 2, list(zip(points, tails, strict=True))
    assert check_complete_records(crashed, reference)[0] < COMMITS  # the kills left work for the last run

    assert run_job(arguments, log) == "finished"
    assert check_complete_records(crashed, reference)[0] == COMMITS
    with FeatureStore(crashed) as store:
        ids = store.ids()
        assert len(ids) == len(set(ids)) and sorted(ids) == sorted(NAMES)
        assert store.errors() == reference["errors"] and not set(ids) & set(store.errors())
    assert not list(tmp_path.glob("*.creating")) and not list(tmp_path.glob("*.rebuilding"))


if __name__ == "__main__":  # the child: python test_jobs_crash.py KIND:N[:DELAY] JOB_ARGUMENTS...
    kind, occurrence, *delay = sys.argv[1].split(":")
    install_stops(kind, int(occurrence), float(delay[0]) if delay else 0.0)
    from extract.jobs.cli import main

    sys.exit(main(sys.argv[2:]))
