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
import gc
import os
import resource
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medground.io.errors import SpecError

__all__ = [
    "Budget",
    "OverBudget",
    "case_budget",
    "fewer_collections",
    "keep_freed_memory",
    "machine_memory",
    "memory_budget_text",
    "settle_collector",
    "small_pages",
]

_KEYS = {"case_timeout_s", "case_memory_gb", "cases_per_worker"}


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
    """``[run]``: ``case_timeout_s`` (wall-clock seconds a case may take, default 1800),
    ``case_memory_gb`` (memory a case may add to its process; default: 80% of the
    machine's memory shared among the cases that run at once) and ``cases_per_worker``
    (cases each CPU worker runs at once on Ray; default 1 without a model stage, else
    sized to keep the model engines' batches full: ``runner.cases_per_worker``)."""

    case_timeout_s: float = 1800.0
    case_memory_gb: float | None = None
    cases_per_worker: int | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, source: Path | None = None) -> Budget:
        table = dict(table or {})
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise SpecError(
                source, f"unknown key(s) in [run]: {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}"
            )
        values: dict[str, Any] = {}
        if "cases_per_worker" in table:
            value = table.pop("cases_per_worker")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
                raise SpecError(source, f"[run] cases_per_worker must be an integer in 1..256, got {value!r}")
            values["cases_per_worker"] = value
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
        out: dict[str, Any] = {"case_timeout_s": self.case_timeout_s, "case_memory_gb": self.case_memory_gb}
        if self.cases_per_worker is not None:
            out["cases_per_worker"] = self.cases_per_worker
        return out


def small_pages() -> bool:
    """Puts this process's large numpy arrays on ordinary pages; returns whether they are.

    numpy asks Linux for transparent huge pages for every array of 4 MB and more
    (``madvise``). A case allocates and frees volumes of hundreds of MB, and a huge page the
    process has not had before is slow to fault in where its memory is fresh to the kernel
    (a virtual machine's guest memory in particular): measured on the CI machine, filling a
    new 157 MB array took 1.9 s on huge pages and 0.07 s on ordinary ones, and one core ran
    the real-size CT case in 6.9 s against 4.9 s (``bench/README.md``). The setting is the
    process's; a ``NUMPY_MADVISE_HUGEPAGE`` the user set (numpy's own switch, read when
    numpy starts) is left as it is."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    import importlib

    import numpy

    where = "numpy._core.multiarray" if hasattr(numpy, "_core") else "numpy.core.multiarray"  # numpy 2 / 1
    importlib.import_module(where)._set_madvise_hugepage(False)
    return True


_SETTLED: list[bool] = []


def settle_collector() -> bool:
    """In a worker process of the run's own (a Ray case actor, a supervised worker), before
    its first case: collects, then moves every object alive then (the imported modules:
    about 90,000 objects) out of the garbage collector's passes (``gc.freeze``); once per
    process, returns whether this call did it. Python's full collection walks every tracked
    object, and a case makes enough long-lived objects to start two of them: on the
    real-size CT case they took 0.11 s against 0.007 s with the imports set aside. Set-aside
    objects are still freed when their last reference goes; only a reference cycle among
    them is never collected, and the collection first leaves none. Not for a process the
    run does not own: frozen objects are hidden from ``gc.get_referrers``, so
    :func:`~medground.pipeline.worker.process_case` called in-process leaves the collector
    alone."""
    if _SETTLED:
        return False
    _SETTLED.append(True)
    gc.collect()
    gc.freeze()
    return True


#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: Free memory at the top of the heap glibc keeps rather than hand back (a C int: 2 GiB - 1).
_KEEP_BYTES = (1 << 31) - 1
_KEPT: list[bool] = []


def keep_freed_memory() -> bool:
    """In a worker process of the run's own, before its first case: memory the process
    frees stays with it for the next case (glibc's heap for every allocation, none given
    back); once per process, returns whether this call set it.

    By default glibc maps each allocation of 32 MB or more (a case's volumes, object maps,
    views' stacks) fresh from the kernel and unmaps it when freed, so every case faults
    its memory in again page by page: ≈ 93,000 faults and 0.25 s of kernel time for the
    real-size CT case, and more when both CPUs' workers fault at once. Kept, the next case
    reuses the pages (≈ 2,000 faults); the worker's resident memory stays near its largest
    case's peak (540 MB after CT, 50-lesion CT and nuclei cases in turn, against a 498 MB
    peak). glibc only (elsewhere nothing changes); ``MALLOC_MMAP_MAX_``,
    ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` set by the user are left as they are.
    Not for a process the run does not own (:func:`settle_collector`'s rule)."""
    if _KEPT:
        return False
    _KEPT.append(True)
    if any(k in os.environ for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


#: Allocations between two collections of the youngest generation while a case runs
#: (Python's default is 700).
CASE_GEN0_THRESHOLD = 10_000

_COLLECTOR_LOCK = threading.Lock()
_COLLECTOR_DEPTH: list[tuple[int, int, int]] = []


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Runs the body with the youngest generation collected every
    :data:`CASE_GEN0_THRESHOLD` allocations instead of every 700, then puts the collector's
    thresholds back (the outermost of nested or concurrent cases does). A case allocates
    hundreds of thousands of short-lived containers (cues, references, records) and keeps
    many of them to its end: at the default the collector started about 570 collections on
    the real-size CT with 50 lesions, four of them full ones over every object alive,
    0.37–0.67 s of a case on one core; at 10,000, 23 collections and 0.08 s. Reference
    cycles are still collected, a little later."""
    with _COLLECTOR_LOCK:
        if not _COLLECTOR_DEPTH:
            before = gc.get_threshold()
            gc.set_threshold(max(before[0], CASE_GEN0_THRESHOLD), before[1], before[2])
        else:
            before = _COLLECTOR_DEPTH[0]
        _COLLECTOR_DEPTH.append(before)
    try:
        yield
    finally:
        with _COLLECTOR_LOCK:
            before = _COLLECTOR_DEPTH.pop()
            if not _COLLECTOR_DEPTH:
                gc.set_threshold(*before)


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


class _Watchdog(threading.Thread):
    """The time budget of a case that runs on another thread than the main one (a case
    thread of a CPU worker actor), where no signal arrives: past the deadline it raises
    :class:`OverBudget` in that thread (between two of its Python statements, like the
    timer), again every 0.1 s until the block is left (at most :attr:`FIRES` times: past
    that the supervisor's hard kill is the backstop)."""

    FIRES = 100

    def __init__(self, target: int, seconds: float) -> None:
        super().__init__(daemon=True, name="medground-case-budget")
        self.target, self.seconds = target, seconds
        self._done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        import ctypes

        if self._done.wait(self.seconds):
            return
        for _ in range(self.FIRES):
            with self._lock:
                if self._done.is_set():
                    return
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), ctypes.py_object(OverBudget))
            if self._done.wait(0.1):
                return

    def stop(self) -> None:
        with self._lock:  # once this returns, no exception is raised in the thread any more
            self._done.set()
        # One raised just before the lock may still be pending in the thread: clear it.
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target), ctypes.c_void_p(0))

    def stop_from_target(self) -> None:
        """:meth:`stop`, called by the watched thread itself: an :class:`OverBudget` that
        lands while it stops is swallowed, so the watchdog is always stopped."""
        while True:
            try:
                self.stop()
                return
            except OverBudget:
                continue


@contextlib.contextmanager
def case_budget(seconds: float | None, memory_bytes: int | None) -> Iterator[None]:
    """Runs the block within ``seconds`` (raising :class:`OverBudget` when they are out: by a
    signal timer on the main thread, by a watchdog on any other) and ``memory_bytes`` more address space
    than the process holds on entry (``MemoryError`` past it). Both are put back on exit."""
    on_main = threading.current_thread() is threading.main_thread()
    deadline = seconds if on_main else None
    timer = deadline is not None
    previous_handler: Any = None
    watchdog = _Watchdog(threading.get_ident(), float(seconds)) if seconds is not None and not on_main else None
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
        if watchdog is not None:
            watchdog.start()
        yield
    finally:
        if watchdog is not None:
            watchdog.stop_from_target()
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, previous_limit)
            _ACTIVE.pop()
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
