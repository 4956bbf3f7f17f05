"""One writer at a time: `output_lock`, an OS lock (flock) on ``<store>.lock`` beside a store, held by
every writer of it (a `StoreWriter`, a job, a merge, a TSV import) and released by the OS when its holder
dies, so a lock file left by a killed job blocks no one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StoreBusyError


class _HeldLocks:
    """The output locks this process holds: resolved store path -> [lock file descriptor, lock path, count]."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.held: dict[str, list[Any]] = {}

    def forget_in_child(self) -> None:
        # A forked child (a DataLoader worker, ...) is another process: the parent's locks are not its own.
        # Closing its copies of the descriptors does not release them (an flock is released when its last
        # descriptor closes), and keeps an orphaned child from holding them after the parent was killed.
        for fd, _, _ in self.held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.held.clear()
        self.guard = threading.Lock()  # a thread of the parent may have held it at the fork


_LOCKS = _HeldLocks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LOCKS.forget_in_child)


def resolved(path: str | os.PathLike) -> Path:
    """The file a path names: through symlinks (a symlinked output is written where its link points)."""
    return Path(os.path.realpath(path))


def _lock_path_of(path: str | os.PathLike) -> Path:
    """The lock file of the store at ``path``: ``<store>.lock`` beside the file (beside a symlink's target)."""
    target = resolved(path)
    return target.with_name(target.name + ".lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive write lock of the store at ``path`` (created or not yet); yields the lock file.

    Raises `StoreBusyError` naming the store and the process that holds it, at once (it does not wait).
    Re-entrant within a process (any thread): a job holds it around several writers of one store. The
    lock is an OS lock (flock) on ``<store>.lock``, released by the OS when the holder dies, so a lock
    file left by a killed job blocks no one; the last release removes the file.
    """
    key = str(resolved(path))
    with _LOCKS.guard:
        held = _LOCKS.held.get(key)
        if held is not None:
            held[2] += 1
        else:
            lock_path = _lock_path_of(path)
            _LOCKS.held[key] = [_take_lock(Path(path), lock_path), lock_path, 1]
    try:
        yield _LOCKS.held[key][1]
    finally:
        with _LOCKS.guard:
            held = _LOCKS.held[key]
            held[2] -= 1
            if held[2] == 0:
                del _LOCKS.held[key]
                fd, lock_path, _ = held
                try:  # removed while still locked: an acquirer that opened it sees it is gone, and retries
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock_path)
                finally:
                    os.close(fd)


def _take_lock(path: Path, lock_path: Path) -> int:
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise FileNotFoundError(f"cannot write {path}: the folder {lock_path.parent} does not exist") from None
        except OSError as error:
            raise OSError(
                error.errno, f"cannot create the lock file {lock_path} that a writer of {path} holds: {error.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n", 1)
            os.close(fd)
            known = len(holder) == 2 and holder[0].isdigit()
            who = f"pid {holder[0]}: {holder[1].strip()}" if known else "it has not written its pid yet"
            raise StoreBusyError(
                f"{path} is being written by another process ({who}), which holds its lock {lock_path}: wait for "
                "it to end or stop it; a store takes one writer at a time, and replacing it now would lose what "
                "that process writes"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(fd)):
            break
        os.close(fd)  # its holder removed it as we opened it: lock the file now at the path
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))[:300].replace("\n", " ")
    with contextlib.suppress(OSError):  # only for the message of a refused writer (a full disk may refuse it)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode("utf-8", "replace"), 0)
    return fd
