"""What one case may spend: a wall-clock time budget and a memory budget (``[run]``).

Inside a case the budget is enforced where the case runs, the same way in-process, in a
supervised worker process and in a Ray task: the memory budget as an address-space limit
(``RLIMIT_AS``, set to what the process holds now plus the budget, put back afterwards),
so an allocation past it fails as ``MemoryError`` in that case instead of taking the
machine; the time budget as a timer that interrupts the case between two Python
statements. The supervisor of a worker process adds the backstop the timer cannot give
(a native call that never returns): it kills the worker a grace period later.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medground.io.errors import SpecError

__all__ = ["Budget", "OverBudget", "case_budget", "machine_memory", "memory_budget_text"]

_KEYS = {"case_timeout_s", "case_memory_gb"}


class OverBudget(BaseException):
    """A case ran past its time budget. A ``BaseException``, like ``KeyboardInterrupt``: the
    ``except Exception`` of a library the case is inside must not swallow it."""


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0


@dataclass(frozen=True)
class Budget:
    """``[run]``: ``case_timeout_s`` (wall-clock seconds a case may take, default 1800) and
    ``case_memory_gb`` (memory a case may add to its process; default: 80% of the
    machine's memory shared among the cases that run at once)."""

    case_timeout_s: float = 1800.0
    case_memory_gb: float | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, source: Path | None = None) -> Budget:
        table = dict(table or {})
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise SpecError(
                source, f"unknown key(s) in [run]: {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}"
            )
        values = {}
        for key in sorted(_KEYS & set(table)):
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e7:
                raise SpecError(source, f"[run] {key} must be a positive number, got {value!r}")
            values[key] = float(value)
        return cls(**values)

    def memory_bytes(self, concurrent: int = 1) -> int | None:
        """The memory budget of one case when ``concurrent`` cases share the machine."""
        if self.case_memory_gb is not None:
            return int(self.case_memory_gb * 2**30)
        total = machine_memory()
        return int(0.8 * total / max(1, concurrent)) if total else None

    def to_dict(self) -> dict[str, Any]:
        return {"case_timeout_s": self.case_timeout_s, "case_memory_gb": self.case_memory_gb}


def _address_space() -> int:
    """The bytes of address space this process holds now (``VmSize``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


_ACTIVE: list[int] = []


def memory_budget_text() -> str:
    """`` (N GB)`` for the memory budget in force in this process, or an empty string."""
    return f" ({_ACTIVE[-1] / 2**30:.3g} GB)" if _ACTIVE else ""


@contextlib.contextmanager
def case_budget(seconds: float | None, memory_bytes: int | None) -> Iterator[None]:
    """Runs the block within ``seconds`` (raising :class:`OverBudget` when they are out;
    only on the main thread, where signals arrive) and ``memory_bytes`` more address space
    than the process holds on entry (``MemoryError`` past it). Both are put back on exit."""
    deadline = seconds if threading.current_thread() is threading.main_thread() else None
    timer = deadline is not None
    previous_handler: Any = None
    if deadline is not None:

        def expire(signum: int, frame: Any) -> None:
            raise OverBudget(f"over the case time budget ({seconds:g} s)")

        previous_handler = signal.signal(signal.SIGALRM, expire)
        # Fires again every 0.1 s past the deadline: where Python cannot raise (a __del__,
        # a weakref callback) the exception is dropped, and the next one lands.
        signal.setitimer(signal.ITIMER_REAL, float(deadline), 0.1)
    previous_limit = resource.getrlimit(resource.RLIMIT_AS)
    held = _address_space()
    budget = memory_bytes if held > 0 else None
    limited = budget is not None
    if budget is not None:
        soft = held + int(budget)
        hard = previous_limit[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        _ACTIVE.append(int(budget))
    try:
        yield
    finally:
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, previous_limit)
            _ACTIVE.pop()
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
