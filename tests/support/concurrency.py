"""How many threads are inside a block at once (and the most at any time), for tests of
scheduling: ``with meter: ...`` in each thread, then read ``meter.most``."""

from __future__ import annotations

import threading


class Concurrency:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> Concurrency:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1
