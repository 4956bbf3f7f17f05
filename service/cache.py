"""The region features of recent images, so that a second question about the same photo skips the detector.

Keys are (sha256 of the image bytes, num_boxes): the bytes, not a name, decide what the detector sees.
Least recently used entries go first once `max_entries` are held. The request handlers look up from the
event loop's thread pool and the device worker adds from its thread, hence the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class RegionCache:
    """A thread-safe LRU map of at most `max_entries` values (0: nothing is kept), counting hits and misses."""

    def __init__(self, max_entries: int):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
            raise ValueError(f"max_entries={max_entries!r}: expected a whole number >= 0 (0: no cache)")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value of `key` (now the most recently used), or None; counted as a hit or a miss."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if self.max_entries == 0:
                return
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
