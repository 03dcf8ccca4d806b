"""The run folder: the files ``medground run`` writes and every output reads.

=================  ==========================================================================
file               what it holds (docs/RECORDS.md has every field)
=================  ==========================================================================
``samples.jsonl``  accepted samples, one :class:`~medground.records.Sample` a line
``rejected.jsonl`` rejected drafts: a sample plus ``rejection`` {stage, reason, detail}
``errors.jsonl``   cases that failed: {dataset, case_id, stage, error}
``skipped.jsonl``  targets and labels that gave no sample, with the reason
``manifest.json``  what made the run, counts, the verification funnel, splits
``README.md``      the dataset card (plots under ``plots/``)
``images/``        the stored images the samples point at
``run.json``       the run's fingerprint (``--resume`` checks it); ``shards/``: per-case results
=================  ==========================================================================

Every file is written whole through a temporary file and a rename (:func:`atomic_write`),
so a run killed at any moment never leaves half a file. Readers go through
:class:`RunFolder`; a line that cannot be read is a :class:`RecordFileError` naming the
file and the line.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medground.records import Sample, dumps

__all__ = [
    "ERRORS",
    "MANIFEST",
    "REJECTED",
    "SAMPLES",
    "SKIPPED",
    "RecordFileError",
    "RunFolder",
    "SPLIT_ALIASES",
    "atomic_write",
    "read_jsonl",
    "split_name",
    "write_jsonl",
]

#: Other names of a split that every command accepts (the Hub says "validation").
SPLIT_ALIASES = {"validation": "val"}


def split_name(split: str | None) -> str | None:
    """A split as samples record it: ``validation`` is ``val``."""
    return None if split is None else SPLIT_ALIASES.get(split, split)


SAMPLES = "samples.jsonl"
REJECTED = "rejected.jsonl"
ERRORS = "errors.jsonl"
SKIPPED = "skipped.jsonl"
MANIFEST = "manifest.json"


class RecordFileError(ValueError):
    """A JSON-lines file (samples, predictions) that cannot be read; names the file and line."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc``);
    elsewhere set and restored at once under a lock."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode a plain ``open`` would give it (``0666`` less the umask: ``0644``
    under umask 022), not the ``0600`` of a temporary file, so other users and containers
    can read a run folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:  # a read-only folder: name the file being written, not a temporary name
        raise type(error)(error.errno, error.strerror, str(path)) from error
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """A JSON-lines file, written atomically (keys in the order the records hold them)."""
    atomic_write(path, "".join(dumps(r, separators=(",", ":")) + "\n" for r in records).encode())


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line.

    Raises:
        RecordFileError: for an unreadable file, a line that is not JSON or not an object.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise RecordFileError(path, None, f"cannot read: {error.strerror or error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RecordFileError(path, number, f"not valid JSON ({error.msg} at column {error.colno})") from error
        if not isinstance(record, dict):
            raise RecordFileError(path, number, f"expected a JSON object, got {type(record).__name__}")
        yield number, record


class RunFolder:
    """A run folder as its readers see it.

    Args:
        root: the folder ``medground run --out`` wrote, or (for readers of one file) the
            folder holding a ``samples.jsonl``.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, path: Path | str) -> RunFolder:
        """The run folder of ``path``: the folder itself, or the folder of a ``samples.jsonl``."""
        path = Path(path)
        return cls(path if path.is_dir() else path.parent)

    def path(self, name: str) -> Path:
        """A file of the run (``samples.jsonl``, ``images/…``)."""
        return self.root / name

    @property
    def samples_path(self) -> Path:
        return self.root / SAMPLES

    def require(self, name: str = SAMPLES, *, reader: str = "this command") -> Path:
        """The path of a file the caller needs.

        Raises:
            FileNotFoundError: naming the file and saying which command writes it.
        """
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {reader} reads a run folder written by `medground run`")
        return path

    def records(self, name: str = SAMPLES) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line, record)`` of a JSON-lines file of the run; nothing when it is absent."""
        path = self.root / name
        if path.is_file():
            yield from read_jsonl(path)

    def samples(self, *, split: str | None = None, name: str = SAMPLES) -> Iterator[tuple[int, Sample]]:
        """``(line, sample)`` of every sample (of one split when ``split`` is given).

        Raises:
            RecordFileError: for a line that is not a sample (naming the field).
        """
        path = self.root / name
        split = split_name(split)
        for line, record in self.records(name):
            try:
                sample = Sample.from_dict(record)
            except (TypeError, ValueError) as error:
                raise RecordFileError(path, line, str(error)) from error
            if split is None or sample.split == split:
                yield line, sample

    def manifest(self) -> dict[str, Any]:
        """The run's manifest (empty when the run has none yet)."""
        path = self.root / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
