"""One writer at a time (output_lock, StoreBusyError), symlinked outputs, and the writer's close check.

The other writers are real processes: a child started with subprocess (or forked with multiprocessing)
that holds a StoreWriter or the lock while this process tries to overwrite, resume or merge into the store.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import SUPPORT, assert_record_equal, metadata, record, write_store

from extract.store import FeatureStore, StoreBusyError, StoreError, StoreWriter, merge, output_lock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX locks and fork")

CHILD = """
import os, sys, time
sys.path.insert(0, {tests!r})
from helpers import metadata, record
from extract.store import StoreWriter, output_lock

path, mode = sys.argv[1], sys.argv[2]
if mode == "writer":  # commits records 0-5 in two batches, waits, commits 6-7, closes
    with StoreWriter(path, metadata=metadata(), resume=True) as writer:
        writer.append([record(i) for i in range(3)])
        writer.append([record(i) for i in range(3, 6)])
        print("ready", flush=True)
        sys.stdin.readline()
        writer.append([record(i) for i in range(6, 8)])
    print("closed", flush=True)
elif mode == "lock":
    with output_lock(path):
        print("ready", flush=True)
        sys.stdin.readline()
elif mode == "lock-and-fork":  # a job whose DataLoader worker outlives it
    with output_lock(path):
        worker = os.fork()
        if worker == 0:
            time.sleep(60)
            os._exit(0)
        print(worker, flush=True)
        sys.stdin.readline()
"""


def start_child(path: Path, mode: str) -> tuple[subprocess.Popen, str]:
    """A child process holding ``path`` (see CHILD); returns it and its first line, once it has printed it."""
    code = CHILD.format(tests=str(SUPPORT))
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    line = child.stdout.readline().strip()
    assert line, f"the child ({mode}) failed before it held {path}"
    return child, line


def identity(path: Path) -> tuple[int, int, bytes]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, path.read_bytes()


def test_a_store_being_written_is_not_overwritten_resumed_or_merged_into(tmp_path):
    path = tmp_path / "s.h5"
    shard = write_store(tmp_path / "shard.h5", [record(20)])
    child, _ = start_child(path, "writer")
    try:
        before = identity(path)
        busy = rf"s\.h5 is being written by another process \(pid {child.pid}: .*\), which holds its lock .*s\.h5\.lock"
        with pytest.raises(StoreBusyError, match=busy):
            StoreWriter(path, metadata=metadata(), overwrite=True)
        with pytest.raises(StoreBusyError, match=busy):
            StoreWriter(path, metadata=metadata(), resume=True)
        with pytest.raises(StoreBusyError, match=busy):
            merge([shard], path, overwrite=True)
        assert identity(path) == before  # nothing touched: same file, same bytes
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "s.h5.lock", "shard.h5"]  # no side file
        out, _ = child.communicate("go\n", timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0 and out.strip() == "closed"
    with FeatureStore(path) as store:  # every record the child committed, before and after the refusals
        assert store.ids() == [record(i)["id"] for i in range(8)]
        for i in range(8):
            assert_record_equal(store[record(i)["id"]], record(i))
    assert not (tmp_path / "s.h5.lock").exists()  # removed by the child's last release


def test_a_process_holding_the_lock_blocks_writers_through_any_path_spelling(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0), record(1)])
    (tmp_path / "link.h5").symlink_to(path)
    child, _ = start_child(path, "lock")
    try:
        before = identity(path)
        for spelling in (path, tmp_path / "link.h5", tmp_path / "." / "s.h5"):
            with pytest.raises(StoreBusyError, match=rf"is being written by another process \(pid {child.pid}"):
                StoreWriter(spelling, metadata=metadata(), overwrite=True)
        assert identity(path) == before
    finally:
        child.communicate("\n", timeout=60)
    with StoreWriter(tmp_path / "link.h5", metadata=metadata(), resume=True) as writer:  # free again
        writer.append([record(2)])
    assert FeatureStore(path).ids() == [record(i)["id"] for i in range(3)]


def test_a_lock_left_by_a_killed_process_blocks_no_one(tmp_path):
    path = write_store(tmp_path / "s.h5", [record(0)])
    child, _ = start_child(path, "lock")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert (tmp_path / "s.h5.lock").read_text().startswith(f"{child.pid}\n")  # left behind, still naming it
    with StoreWriter(path, metadata=metadata(), resume=True) as writer:
        assert (tmp_path / "s.h5.lock").read_text().startswith(f"{os.getpid()}\n")
        writer.append([record(1)])
    assert not (tmp_path / "s.h5.lock").exists()
    assert FeatureStore(path).ids() == [record(0)["id"], record(1)["id"]]


def test_a_forked_child_neither_shares_nor_keeps_the_lock(tmp_path):
    path = tmp_path / "s.h5"
    fork = multiprocessing.get_context("fork")
    with output_lock(path):
        child = fork.Process(target=_try_lock, args=(path,))  # another process: refused
        child.start()
        child.join(60)
        assert child.exitcode == 3
    # A job killed while a worker it forked lives on: the worker does not keep the job's lock.
    job, worker = start_child(path, "lock-and-fork")
    try:
        job.kill()
        job.wait(timeout=60)
        with output_lock(path):
            pass
    finally:
        os.kill(int(worker), signal.SIGKILL)


def _try_lock(path: Path) -> None:
    try:
        with output_lock(path):
            os._exit(0)
    except StoreBusyError:
        os._exit(3)


def test_output_lock_is_reentrant_and_thread_safe_and_removes_its_file(tmp_path):
    path = tmp_path / "s.h5"
    with output_lock(path) as lock_file:
        assert lock_file == tmp_path / "s.h5.lock" and lock_file.exists()
        with output_lock(tmp_path / "." / "s.h5"):
            with StoreWriter(path, metadata=metadata()) as writer:  # takes it once more
                writer.append([record(0)])
        assert lock_file.exists()
    assert not lock_file.exists()

    barrier, failures = threading.Barrier(8), []

    def hold() -> None:
        try:
            barrier.wait(10)
            with output_lock(path):
                barrier.wait(10)  # all eight hold it at once
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and not lock_file.exists()


def test_the_lock_passes_between_processes_one_holder_at_a_time(tmp_path):
    """Two processes take and release the lock in a loop. Each release removes the lock file while still
    holding it; an acquirer that locked a removed file must notice and retry, or two processes would hold
    locks on two different files at once. Each holder creates a marker file exclusively (O_EXCL) and
    removes it before releasing: a second holder would fail to create it."""
    path, marker = tmp_path / "s.h5", tmp_path / "held"
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_take_turns, args=(path, marker, 150)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0]
    assert not marker.exists() and not (tmp_path / "s.h5.lock").exists()


def _take_turns(path: Path, marker: Path, turns: int) -> None:
    taken = 0
    while taken < turns:
        try:
            with output_lock(path):
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # FileExistsError: two holders
                os.unlink(marker)
                taken += 1
        except StoreBusyError:
            continue
        except BaseException:
            os._exit(1)
    os._exit(0)


def open_file_names() -> list[str]:
    return [file_id.name.decode() for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)]


@pytest.mark.parametrize("how", ["replaced", "removed"])
def test_close_fails_loudly_when_the_store_was_replaced_under_the_writer(tmp_path, how):
    path = tmp_path / "s.h5"
    other = write_store(tmp_path / "other.h5", [record(9)])
    with pytest.raises(StoreError) as raised:
        with StoreWriter(path, metadata=metadata()) as writer:
            writer.append([record(0), record(1)])
            writer.add_error("broken.jpg", "cannot decode")
            if how == "replaced":
                os.replace(other, path)
            else:
                path.unlink()
    expected = "replaced by another file" if how == "replaced" else "removed"
    assert str(raised.value) == (
        f"{path} was {expected} while this writer had it open: the 2 images and 1 errors it wrote are not at "
        "that path any more (they went into the file that was there before)"
    )
    assert str(path) not in open_file_names()  # the HDF5 file was closed all the same
    assert not (tmp_path / "s.h5.lock").exists()  # and the lock released
    writer.close()  # a second close does nothing
    if how == "replaced":
        assert FeatureStore(path).ids() == [record(9)["id"]]


def test_overwrite_writes_through_a_symlink_and_keeps_the_link(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    target = write_store(data / "real.h5", [record(0)])
    link = tmp_path / "link.h5"
    link.symlink_to(target)
    with StoreWriter(link, metadata=metadata(), overwrite=True) as writer:
        assert (data / "real.h5.lock").exists() and not (tmp_path / "link.h5.lock").exists()
        writer.append([record(5)])
    assert link.is_symlink() and link.resolve() == target
    assert FeatureStore(target).ids() == [record(5)["id"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "link.h5"]  # no side file beside the link
    assert sorted(p.name for p in data.iterdir()) == ["real.h5"]

    dangling = tmp_path / "new.h5"  # a link to a store not made yet: created where it points
    dangling.symlink_to(data / "new.h5")
    write_store(dangling, [record(1)])
    assert dangling.is_symlink() and FeatureStore(data / "new.h5").ids() == [record(1)["id"]]

    merge([data / "new.h5"], link, overwrite=True)
    assert link.is_symlink() and FeatureStore(target).ids() == [record(1)["id"]]


def test_a_store_killed_during_a_growth_is_rebuilt_through_a_symlink(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    target = write_store(data / "real.h5", [record(i) for i in range(3)])
    link = tmp_path / "link.h5"
    link.symlink_to(target)
    with h5py.File(target, "a") as file:  # the mark a kill during a growth leaves
        file.attrs.modify("growth_in_progress", np.int64(1))
    with pytest.warns(UserWarning, match="were copied into a new file"):
        writer = StoreWriter(link, metadata=metadata(), resume=True)
    with writer:
        writer.append([record(3)])
    assert link.is_symlink() and link.resolve() == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "link.h5"]
    with FeatureStore(link) as store:
        assert store.ids() == [record(i)["id"] for i in range(4)]


def test_merge_refuses_an_output_that_is_one_of_its_shards(tmp_path):
    shard = write_store(tmp_path / "a.h5", [record(0)])
    before = identity(shard)
    with pytest.raises(ValueError, match=r"the merge output .*a\.h5 is also one of its shards"):
        merge([shard], tmp_path / "a.h5", overwrite=True)
    assert identity(shard) == before
