"""Multi-stage verification: format → rules → visual judge, every rejection with its reason.

:class:`Verifier` runs the stages on a draft and returns it with ``verification`` filled,
plus the failing stage's result (None when accepted); :class:`Funnel` counts what each
stage let through and why it rejected the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from medground.records import Sample
from medground.verify.claims import Claims, extract_claims
from medground.verify.stages import (
    EvidenceSettings,
    RuleSettings,
    StageResult,
    check_format,
    check_rules,
    judge_evidence,
    object_facts,
    reject,
    with_verification,
)

__all__ = [
    "Claims",
    "EvidenceSettings",
    "Funnel",
    "RuleSettings",
    "StageResult",
    "Verifier",
    "check_format",
    "check_rules",
    "extract_claims",
    "judge_evidence",
    "object_facts",
    "reject",
]

STAGES = ("format", "rules", "visual")


@dataclass
class Funnel:
    """Drafts in, passed per stage, and rejection reasons per stage."""

    drafts: int = 0
    passed: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in STAGES})

    def add(self, results: list[StageResult]) -> None:
        self.drafts += 1
        for result in results:
            if result.passed:
                self.passed[result.stage] += 1
            else:
                self.reasons.setdefault(result.stage, Counter())[result.reason or "unknown"] += 1

    def add_failure(self, stage: str, reason: str) -> None:
        """A draft that failed before the verification stages (synthesis)."""
        self.drafts += 1
        self.reasons.setdefault(stage, Counter())[reason] += 1

    @property
    def accepted(self) -> int:
        return self.passed[STAGES[-1]]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Funnel:
        """The inverse of :meth:`to_dict`."""
        funnel = cls(drafts=int(data["drafts"]))
        funnel.passed.update(data.get("passed", {}))
        for stage, reasons in data.get("rejected", {}).items():
            funnel.reasons.setdefault(stage, Counter()).update(reasons)
        return funnel

    def merge(self, other: Funnel) -> None:
        self.drafts += other.drafts
        self.passed.update(other.passed)
        for stage, reasons in other.reasons.items():
            self.reasons.setdefault(stage, Counter()).update(reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"drafts": self.drafts, "passed": {s: self.passed[s] for s in STAGES},
                "accepted": self.accepted,
                "rejected": {s: dict(sorted(r.items())) for s, r in self.reasons.items() if r}}


class Verifier:
    """Runs the three stages on drafts.

    Args:
        judge: ``evidence`` (default, no model), ``onnx`` (``onnx_model`` path) or ``vlm``
            (``vlm_judge``: a :class:`medground.verify.vlm_judge.VlmJudge` or any callable
            ``(sample, image) -> StageResult``).
        onnx_model: path of the ONNX judge (see :mod:`medground.verify.onnx_judge`).
        onnx_threshold: minimum score to accept.
    """

    def __init__(self, judge: str = "evidence", *, onnx_model: Path | str | None = None, onnx_threshold: float = 0.5,
                 vlm_judge: Callable[[Sample, NDArray[Any]], StageResult] | None = None,
                 rules: RuleSettings | None = None, evidence: EvidenceSettings | None = None) -> None:
        if judge not in ("evidence", "onnx", "vlm"):
            raise ValueError(f"judge must be 'evidence', 'onnx' or 'vlm', got {judge!r}")
        if judge == "vlm" and vlm_judge is None:
            raise ValueError("the vlm judge needs vlm_judge = VlmJudge.from_config([verification.visual])")
        self._vlm = vlm_judge
        self.judge = judge
        self.rules = rules or RuleSettings()
        self.evidence = evidence or EvidenceSettings()
        self._onnx = None
        if judge == "onnx":
            if onnx_model is None:
                raise ValueError("the onnx judge needs onnx_model = path to the .onnx file")
            from medground.verify.onnx_judge import OnnxJudge

            self._onnx = OnnxJudge(onnx_model, threshold=onnx_threshold)

    def verify(self, sample: Sample, facts: dict[int, dict[str, Any]], image: NDArray[Any], values: NDArray[Any], *,
               body_region: str | None, oriented: bool, labels: Iterable[str] = (),
               full_scale: float | None = None) -> tuple[Sample, StageResult | None]:
        """The sample with its stage results, and the failing result (None if accepted).

        ``image`` is the stored 8-bit image, ``values`` the stored intensities on its grid,
        ``labels`` the dataset's label names, ``full_scale`` the intensity range of
        photographs (255 for 8-bit images).
        """
        results = [check_format(sample)]
        if results[-1].passed:
            results.append(check_rules(sample, facts, body_region=body_region, oriented=oriented, settings=self.rules,
                                       labels=labels))
        if results[-1].passed:
            if self._vlm is not None:
                results.append(self._vlm(sample, image))
            elif self._onnx is not None:
                results.append(self._onnx(sample, image))
            else:
                results.append(judge_evidence(sample, values, self.evidence, full_scale))
        checked = with_verification(sample, results)
        failed = next((r for r in results if not r.passed), None)
        return checked, failed

    def results_of(self, sample: Sample) -> list[StageResult]:
        return [StageResult(stage, bool(v["passed"]), v.get("reason"), v.get("detail"))
                for stage, v in sample.verification.items()]
