"""Run configuration: the datasets of a run and the settings of its stages.

A run config lists dataset specs (``datasets = [...]``) and adds ``[synthesis]``,
``[verification]`` and ``[split]``; a bare dataset spec is a run config too, with those
sections in it or their defaults (docs/RECORDS.md, "Run config").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medground import __version__
from medground.io.errors import SpecError
from medground.io.schema import DatasetSpec
from medground.io.spec import load_preset, load_specs, read_toml
from medground.pipeline.budget import Budget
from medground.pipeline.splits import read_split_file
from medground.records import dumps
from medground.settings import SynthesisSettings, VerificationSettings

__all__ = ["RunConfig", "SplitConfig", "load_run_config"]

_RUN_KEYS = {"datasets", "synthesis", "verification", "split", "run"}


@dataclass(frozen=True)
class SplitConfig:
    """Patient-level split: ``ratios`` (train, val, test) or a user's ``file`` (CSV/JSON
    patient → split), stratified by dataset and modality."""

    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    file: Path | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, base: Path, source: Path | None) -> SplitConfig:
        table = dict(table or {})
        unknown = sorted(set(table) - {"ratios", "file"})
        if unknown:
            raise SpecError(source, f"unknown key(s) in [split]: {', '.join(unknown)}; allowed: file, ratios")
        ratios = table.get("ratios", [0.8, 0.1, 0.1])
        if (
            not isinstance(ratios, list)
            or len(ratios) != 3
            or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in ratios)
            or abs(sum(ratios) - 1.0) > 1e-6
        ):
            raise SpecError(source, f"[split] ratios must be three non-negative numbers summing to 1, got {ratios!r}")
        file = table.get("file")
        if file is not None:
            path = (base / file).resolve()
            if not path.is_file():
                raise SpecError(source, f"[split] file {path} not found")
            read_split_file(path)  # a bad split file fails now, not after the run
            file = path
        train, val, test = (float(r) for r in ratios)
        return cls((train, val, test), file)


#: Settings that decide how the work is scheduled, never what it makes (how requests are
#: batched and how many run at once): left out of the manifest and the fingerprint, so
#: outputs are byte-identical whatever they are and a run may resume with others.
SCHEDULING_KEYS = frozenset(
    {"max_batch", "batch_wait_s", "max_batch_wait_s", "num_replicas", "concurrency", "cases_per_worker"}
)


def _outputs_only(table: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _outputs_only(value) if isinstance(value, dict) else value
        for key, value in table.items()
        if key not in SCHEDULING_KEYS
    }


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; ``fingerprint`` identifies it for ``--resume``."""

    datasets: tuple[DatasetSpec, ...]
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    split: SplitConfig = field(default_factory=SplitConfig)
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    source: Path | None = None

    def describe(self) -> dict[str, Any]:
        """What made the run (for the manifest and the dataset card)."""
        return {
            "source": None if self.source is None else str(self.source),
            "datasets": [
                {
                    "name": d.name,
                    "modality": d.modality,
                    "body_region": d.body_region,
                    "root": str(d.root),
                    "preset": d.preset,
                    "labels": {str(k): v for k, v in d.labels.items()},
                }
                for d in self.datasets
            ],
            "synthesis": _outputs_only(self.synthesis.to_dict()),
            "verification": _outputs_only(self.verification.to_dict()),
            "split": {
                "ratios": list(self.split.ratios),
                "file": None if self.split.file is None else str(self.split.file),
            },
            "seed": self.seed,
            "run": _outputs_only(self.budget.to_dict()),
        }

    @property
    def fingerprint(self) -> str:
        """A hash of everything that changes the output: every dataset's spec (cases,
        labels, render, anchors…; not where the data lives), the stage settings, the seed
        and the medground version."""
        datasets = []
        for spec in self.datasets:
            fields = asdict(spec)
            for where in ("root", "source", "preset"):
                fields.pop(where, None)
            datasets.append(fields)
        description = {
            "datasets": datasets,
            "synthesis": _outputs_only(self.synthesis.to_dict()),
            "verification": _outputs_only(self.verification.to_dict()),
            "split": self.describe()["split"],
            "seed": self.seed,
            "version": __version__,
        }
        return hashlib.sha256(dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_run_config(
    path: Path | None = None, *, preset: str | None = None, data: Path | None = None, seed: int = 0
) -> RunConfig:
    """A run config from a run-config file, a bare dataset spec, or a preset with its data.

    Raises:
        SpecError: naming the file and the key.
    """
    if preset is not None:
        return RunConfig(datasets=(load_preset(preset, data),), seed=seed)
    if path is None:
        raise SpecError(None, "give a dataset spec or run config, or a preset with its data")
    path = Path(path)
    specs = load_specs(path, data=data)
    document = read_toml(path)
    if "datasets" in document:
        unknown = sorted(set(document) - _RUN_KEYS)
        if unknown:
            raise SpecError(
                path, f"unknown key(s) in the run config: {', '.join(unknown)}; allowed: {', '.join(sorted(_RUN_KEYS))}"
            )
    synthesis = SynthesisSettings.from_table(document.get("synthesis"), path)
    verification = VerificationSettings.from_table(document.get("verification"), path, path.parent)
    split = SplitConfig.from_table(document.get("split"), path.parent, path)
    budget = Budget.from_table(document.get("run"), path)
    return RunConfig(
        datasets=tuple(specs),
        synthesis=synthesis,
        verification=verification,
        split=split,
        budget=budget,
        seed=seed,
        source=path.resolve(),
    )
