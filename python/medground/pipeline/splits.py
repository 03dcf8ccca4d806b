"""Patient-level train/val/test splits, stratified by dataset and modality.

Every sample of a patient lands on one side: the split is a function of the patient id
(a seeded hash decides the order within each dataset × modality stratum, and the ratios
are met by largest remainder), or comes from a user's split file.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from medground.io.errors import SpecError

__all__ = ["SPLITS", "assign_splits", "check_splits", "read_split_file"]

SPLITS = ("train", "val", "test")


def read_split_file(path: Path) -> dict[str, str]:
    """patient id → split from a CSV/TSV (``patient_id,split``; a header row is skipped) or
    a JSON object."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, f"unreadable split file ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(path, f"invalid JSON ({exc})") from exc
        except RecursionError:  # json reads nested arrays by recursion: [[[…]]] 100,000 deep
            raise SpecError(path, "invalid JSON (arrays or objects nested too deeply to read)") from None
        if not isinstance(data, dict):
            raise SpecError(path, 'expected a JSON object {"patient": "train", ...}')
        mapping = {str(k): str(v) for k, v in data.items()}
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r and r[0].strip()]
        short = next((n for n, r in enumerate(rows, start=1) if len(r) < 2), None)
        if short is not None:
            raise SpecError(path, f"row {short} has no split column; expected patient_id{delimiter}split")
        if rows and rows[0][1].strip().lower() not in SPLITS:
            rows = rows[1:]
        mapping = {row[0].strip(): row[1].strip() for row in rows}
    bad = sorted({v for v in mapping.values() if v not in SPLITS})
    if bad:
        raise SpecError(path, f"unknown split name(s) {bad}; use {', '.join(SPLITS)}")
    return mapping


def _largest_remainder(n: int, ratios: tuple[float, float, float]) -> list[int]:
    exact = [n * r for r in ratios]
    counts = [int(e) for e in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign_splits(
    patients: Iterable[tuple[str, str, str]],
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    fixed: dict[str, str] | None = None,
) -> dict[str, str]:
    """patient id → split for ``(dataset, modality, patient_id)`` triples.

    A patient seen in several strata is placed once, in the first stratum it appears in
    (sorted), so it can never be on two sides. ``fixed`` (a split file) wins where it names
    the patient.
    """
    fixed = fixed or {}
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    placed: set[str] = set()
    for dataset, modality, patient in sorted(set(patients)):
        if patient in placed or patient in fixed:
            continue
        placed.add(patient)
        strata[(dataset, modality)].append(patient)
    splits = dict(fixed)
    for (dataset, modality), members in sorted(strata.items()):
        members.sort(key=lambda p: hashlib.sha256(f"{seed}|{dataset}|{modality}|{p}".encode()).hexdigest())
        counts = _largest_remainder(len(members), ratios)
        bounds = [counts[0], counts[0] + counts[1]]
        for position, patient in enumerate(members):
            splits[patient] = SPLITS[0] if position < bounds[0] else SPLITS[1] if position < bounds[1] else SPLITS[2]
    return splits


def check_splits(records: Iterable[dict[str, object]]) -> dict[str, object]:
    """Counts per split and the patients found on more than one side (must be none)."""
    sides: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        sides[str(record["patient_id"])].add(str(record["split"]))
        counts[str(record["split"])] += 1
    leaking = sorted(p for p, s in sides.items() if len(s) > 1)
    return {
        "samples": dict(sorted(counts.items())),
        "patients": {s: sum(1 for v in sides.values() if s in v) for s in SPLITS},
        "patients_on_two_sides": leaking,
    }
