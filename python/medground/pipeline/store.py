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

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medground.pipeline.worker import CaseResult

__all__ = ["OutputFolder", "atomic_write"]

RUN_FILE = "run.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class OutputFolder:
    """One run's output folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"

    def prepare(self, fingerprint: str, description: dict[str, Any], *, resume: bool, allowed: tuple[str, ...] = ()) -> None:
        """Starts a run here, or checks that ``--resume`` continues the same run.

        Raises:
            ValueError: the folder holds another run, or a run without ``--resume``.
        """
        marker = self.root / RUN_FILE
        if marker.exists():
            previous = json.loads(marker.read_text())
            if not resume:
                raise ValueError(f"{self.root} already holds a run; pass --resume to continue it or choose another --out")
            if previous.get("fingerprint") != fingerprint:
                raise ValueError(f"{self.root} holds a run with different settings (fingerprint {previous.get('fingerprint')} "
                                 f"vs {fingerprint}); resume with the same config and seed, or choose another --out")
            return
        if self.root.exists() and any(p.name not in allowed for p in self.root.iterdir()):
            raise ValueError(f"{self.root} is not empty and holds no medground run; choose another --out")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, json.dumps({"fingerprint": fingerprint, "config": description}, indent=2, default=str).encode())

    def _shard_path(self, key: str) -> Path:
        return self.shards / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"

    def finished(self) -> set[str]:
        """Keys of the cases finished without an error (failed cases are tried again on resume)."""
        return {shard["key"] for shard in self.read_shards() if shard.get("error") is None}

    def write(self, result: CaseResult) -> None:
        """Images first, then the shard that marks the case finished."""
        for relative, data in sorted(result.images.items()):
            atomic_write(self.root / relative, data)
        shard = {
            "key": result.key, "dataset": result.dataset, "case_id": result.case_id, "patient_id": result.patient_id,
            "modality": result.modality, "images": sorted(result.images), "accepted": result.accepted,
            "rejected": result.rejected, "skipped": result.skipped, "funnel": result.funnel, "error": result.error,
            "warnings": result.warnings, "seconds": result.seconds, "node": result.node,
        }
        atomic_write(self._shard_path(result.key), json.dumps(shard, separators=(",", ":")).encode())

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


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """A JSON-lines file, written atomically (keys in a stable order)."""
    atomic_write(path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode())
