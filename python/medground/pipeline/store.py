"""The output folder: images, per-case shards, and the files assembled from them.

A case is finished when its shard exists: images are written first, each through a
temporary file and a rename, then the shard the same way, so a run killed at any moment
leaves only whole files and ``--resume`` redoes exactly the cases without a shard (and
retries those whose shard records a failure). The
canonical outputs (``samples.jsonl``, ``rejected.jsonl``, ``errors.jsonl``,
``manifest.json``) are rebuilt from the shards in case order, so an interrupted and resumed
run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground.records import dumps
from medground.runfolder import atomic_write

__all__ = ["CaseResult", "OutputFolder", "case_key"]

RUN_FILE = "run.json"


def case_key(dataset: str, case_id: str) -> str:
    """The key of a case in shards and the manifest."""
    return f"{dataset}/{case_id}"


@dataclass
class CaseResult:
    """What one case produced (the content of its shard, plus its images)."""

    dataset: str
    case_id: str
    patient_id: str
    modality: str
    images: dict[str, bytes] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    funnel: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    node: str | None = None  # the Ray node that ran it (None in-process)

    @property
    def key(self) -> str:
        return case_key(self.dataset, self.case_id)


class OutputFolder:
    """One run's output folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"
        self._lock: int | None = None

    def lock(self) -> None:
        """Takes the folder for this process (an exclusive ``flock`` on the folder itself,
        released when the process ends, however it ends), after checking that files can be
        made in it: a read-only folder is refused now, before any case runs, rather than
        failing at the first write with a traceback.

        Raises:
            ValueError: the folder cannot be made or written to, or another run holds it.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = os.open(self.root, os.O_RDONLY)
        except OSError as error:
            raise ValueError(
                f"cannot make the output folder {self.root}: {error.strerror or error}; choose another --out"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise ValueError(
                f"{self.root} is in use by another medground run; wait for it or choose another --out"
            ) from None
        try:
            with tempfile.TemporaryFile(dir=self.root):  # made and gone: nothing is left behind
                pass
        except OSError as error:
            os.close(handle)
            raise ValueError(
                f"cannot write to the output folder {self.root}: {error.strerror or error}; "
                "make it writable or choose another --out"
            ) from None
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the last descriptor releases the lock
            self._lock = None

    def remove_partial_files(self) -> list[Path]:
        """Deletes the temporary files a killed run left (``.NAME.*.tmp`` of atomic writes)."""
        found = [p for p in self.root.rglob(".*.tmp") if p.is_file() and not p.is_symlink()]
        for path in found:
            path.unlink(missing_ok=True)
        return found

    def prepare(
        self, fingerprint: str, description: dict[str, Any], *, resume: bool, allowed: tuple[str, ...] = ()
    ) -> None:
        """Starts a run here, or checks that ``--resume`` continues the same run.

        Raises:
            ValueError: the folder holds another run, or a run without ``--resume``.
        """
        marker = self.root / RUN_FILE
        if self.root.is_dir():
            self.remove_partial_files()  # what a killed run was writing; never a finished file
        if marker.exists():
            previous = json.loads(marker.read_text())
            if not resume:
                raise ValueError(
                    f"{self.root} already holds a run; pass --resume to continue it or choose another --out"
                )
            if previous.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"{self.root} holds a run with different settings (fingerprint {previous.get('fingerprint')} "
                    f"vs {fingerprint}); resume with the same config and seed, or choose another --out"
                )
            return
        if self.root.exists() and any(p.name not in allowed for p in self.root.iterdir()):
            raise ValueError(f"{self.root} is not empty and holds no medground run; choose another --out")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, dumps({"fingerprint": fingerprint, "config": description}, indent=2, default=str).encode())

    def _shard_path(self, key: str) -> Path:
        # surrogateescape: a key from an undecodable file name still names one shard
        return self.shards / f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:24]}.json"

    def finished(self) -> set[str]:
        """Keys of the cases finished without an error (failed cases are tried again on resume)."""
        return {shard["key"] for shard in self.read_shards() if shard.get("error") is None}

    def write(self, result: CaseResult) -> None:
        """Images first, then the shard that marks the case finished."""
        for relative, data in sorted(result.images.items()):
            atomic_write(self.root / relative, data)
        shard = {
            "key": result.key,
            "dataset": result.dataset,
            "case_id": result.case_id,
            "patient_id": result.patient_id,
            "modality": result.modality,
            "images": sorted(result.images),
            "accepted": result.accepted,
            "rejected": result.rejected,
            "skipped": result.skipped,
            "funnel": result.funnel,
            "error": result.error,
            "warnings": result.warnings,
            "checks": result.checks,
            "seconds": result.seconds,
            "node": result.node,
        }
        atomic_write(self._shard_path(result.key), dumps(shard, separators=(",", ":")).encode())

    def read_shards(self) -> Iterator[dict[str, Any]]:
        """Every finished case's shard, in case order (dataset, case id)."""
        if not self.shards.is_dir():
            return iter(())
        shards = []
        for path in self.shards.glob("*.json"):
            try:
                shards.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue  # not possible with atomic writes; a damaged shard is redone on resume
        return iter(sorted(shards, key=lambda s: (s["dataset"], s["case_id"])))
