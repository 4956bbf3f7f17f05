"""Exact kill points for the crash tests (test_store_crash.py, test_jobs_crash.py), used in the child
process that the test kills.

`count_h5py_calls(tick)` calls ``tick(event)`` just before each h5py call a store commit is made of:
"resize" (a dataset grows), "write" (a column write starts), "half-written" (multi-row writes are split in
two, so that a kill can fall in the middle of a column), "flush", "attribute" (an attribute changes) and
"commit" (the attribute is a committed_* counter: every row of the batch is written and flushed).
`stop_this_thread()` stops the process right there, for the parent to SIGKILL.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import h5py
import numpy as np


def stop_this_thread() -> None:
    """SIGSTOP the process from the calling thread, which never gets past this point.

    Aimed at this very thread, the stop takes effect on return from the call (a signal to the process may
    let this thread run on first); should it still come late, the thread waits here until the SIGKILL.
    """
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    threading.Event().wait()


def before(function: Callable, call: Callable[[], None]) -> Callable:
    """``function`` with ``call()`` run first."""

    def wrapper(*args, **kwargs):
        call()
        return function(*args, **kwargs)

    return wrapper


def count_h5py_calls(tick: Callable[[str], None]) -> None:
    write, modify = h5py.Dataset.__setitem__, h5py.AttributeManager.modify

    def split_write(dataset, key, values):
        tick("write")
        if isinstance(key, slice) and isinstance(values, np.ndarray) and len(values) > 1:
            half = key.start + len(values) // 2
            write(dataset, slice(key.start, half), values[: half - key.start])
            tick("half-written")
            write(dataset, slice(half, key.stop), values[half - key.start :])
        else:
            write(dataset, key, values)

    def counted_modify(attributes, name, value):
        tick("attribute")
        if name.startswith("committed_"):
            tick("commit")
        return modify(attributes, name, value)

    h5py.Dataset.__setitem__ = split_write
    h5py.Dataset.resize = before(h5py.Dataset.resize, lambda: tick("resize"))
    h5py.File.flush = before(h5py.File.flush, lambda: tick("flush"))
    h5py.AttributeManager.modify = counted_modify
