"""Cases in a supervised worker process: what ``--no-ray`` runs on.

A case that kills its process (an allocation failure that aborts native code, a segfault
in a decoder) or hangs in a native call that the in-case timer cannot interrupt must not
take the run, or every ``--resume``, with it. The driver starts one worker process that
runs the cases one at a time and sends each result back; when the worker dies, or has
not answered a grace period after the case's time budget, the case becomes an error
(``stage = "worker"``) and a fresh worker takes the next case. A worker that exits before
it can take a case at all (a script without a main guard, which the spawned process
re-runs) stops the run with that reason: every case would fail alike.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from medground.io.discover import CaseFiles
from medground.io.schema import DatasetSpec
from medground.pipeline.budget import keep_freed_memory, settle_collector
from medground.pipeline.store import CaseResult

__all__ = ["CaseWorker", "WorkerStartError"]

#: Seconds the supervisor waits past a case's time budget before it kills the worker.
GRACE_S = 30.0
#: Seconds a worker may take to start (its imports) before the run gives up on it.
START_S = 300.0

Call = Callable[[DatasetSpec, CaseFiles], CaseResult]

#: What a worker sends once it has started, before its first case.
_READY = "ready"


class WorkerStartError(RuntimeError):
    """The worker process exited before it could take a case: no case can run, so the run
    stops here rather than record every case as a worker error."""


def _serve(conn: Connection, call: Call) -> None:
    """The worker's loop: a case in, its result out, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    settle_collector()
    keep_freed_memory()
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        spec, files = message
        result = call(spec, files)
        try:
            conn.send(result)
        except Exception as error:  # noqa: BLE001 - a result that cannot be sent is the case's error
            failed = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality)
            failed.error = {"case_id": files.case_id, "stage": "worker", "error": f"{files.image}: {error}"}
            conn.send(failed)


class CaseWorker:
    """One spawned worker process running cases through ``call``; replaced when it dies or
    overruns. Use as a context manager (the worker stops on exit)."""

    def __init__(self, call: Call, *, timeout_s: float | None, grace_s: float = GRACE_S) -> None:
        # spawn, not fork: a forked child inherits the Rust core's thread pool without its
        # threads (and any lock another thread held), and deadlocks on its first parallel call.
        self._context = multiprocessing.get_context("spawn")
        self._call = call
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.restarts = 0
        self._process: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self._start()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self._call), daemon=True)
        self._process.start()
        child.close()
        self._conn, self._ready = parent, False

    def _await_start(self) -> None:
        """Waits for the worker's word that it has started (outside any case's budget);
        raises :class:`WorkerStartError` when it exited first."""
        assert self._conn is not None
        try:
            if not self._conn.poll(START_S):
                self._stop(kill=True)
                raise WorkerStartError(f"the case worker process did not start within {START_S:g} s; killed")
            message = self._conn.recv()
        except (EOFError, OSError):
            ended = self._ended()
            self._stop(kill=True)
            raise WorkerStartError(
                f"the case worker process {ended} before it could take a case. It is a"
                " spawned process that imports the main module, so a script that runs the pipeline at"
                " import runs it again there (what that printed is above, on stderr): start the pipeline"
                ' under `if __name__ == "__main__":`'
            ) from None
        if message != _READY:
            self._stop(kill=True)
            raise WorkerStartError(f"the case worker process sent {message!r} before it took a case")
        self._ready = True

    def _ended(self) -> str:
        """How the worker process that closed its end of the pipe ended, in words."""
        self._process.join(timeout=10)
        code = self._process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (an allocation failure in native code aborts)" if name == "SIGABRT" else ""
            return f"was killed by {name}{hint}"
        return f"exited with status {code}"

    def _stop(self, kill: bool) -> None:
        if self._process is None:
            return
        if kill and self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def run(self, spec: DatasetSpec, files: CaseFiles) -> CaseResult:
        """The case's result, or its error when the worker died or overran."""
        if not self._ready:
            self._await_start()
        assert self._conn is not None
        wait = None if self.timeout_s is None else self.timeout_s + self.grace_s
        try:
            self._conn.send((spec, files))
            if self._conn.poll(wait):
                result: CaseResult = self._conn.recv()
                return result
            problem = f"no result {wait:g} s after it started (time budget {self.timeout_s:g} s + grace); killed"
        except (EOFError, OSError, BrokenPipeError):
            problem = f"its worker process {self._ended()}"
        self._stop(kill=True)
        self.restarts += 1
        self._start()
        failed = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality)
        failed.error = {"case_id": files.case_id, "stage": "worker", "error": f"{files.image}: {problem}"}
        return failed

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        self._stop(kill=False)

    def __enter__(self) -> CaseWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
