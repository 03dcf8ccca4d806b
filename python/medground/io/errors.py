"""Errors of the dataset layer: a bad spec stops before any work; a bad case costs only itself."""

from __future__ import annotations

import errno
from pathlib import Path


class SpecError(ValueError):
    """A dataset spec or run config that cannot be used; names the file and the key."""

    def __init__(self, path: Path | str | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class CaseError(Exception):
    """One case cannot be read or is inconsistent.

    The runner records it in ``errors.jsonl`` (``case_id``, ``stage``, ``error``) and goes
    on with the other cases. ``str(error)`` names the file and the problem.
    """

    def __init__(
        self, path: Path | str | None, problem: str, *, stage: str = "load", case_id: str | None = None
    ) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.stage = stage
        self.case_id = case_id
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

    def for_case(self, case_id: str) -> CaseError:
        """The same error, tagged with the case it belongs to."""
        error = CaseError(self.path, self.problem, stage=self.stage, case_id=case_id)
        error.__cause__ = self.__cause__
        return error

    def to_record(self) -> dict[str, str | None]:
        """The ``errors.jsonl`` line for this failure."""
        return {"case_id": self.case_id, "stage": self.stage, "error": str(self)}


def unreadable(path: Path | str, exc: BaseException, what: str = "unreadable") -> Exception:
    """The error to raise for a file a library failed on: the case's :class:`CaseError`
    naming the file, except when the library ran out of memory (``MemoryError``, or an
    ``ENOMEM`` from ``mmap``), which is the case's memory budget, not the file's fault."""
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
        return MemoryError(f"{path}: out of memory while reading ({type(exc).__name__}: {exc})")
    return CaseError(path, f"{what} ({type(exc).__name__}: {exc})")
