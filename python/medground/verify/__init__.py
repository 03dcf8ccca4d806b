"""Multi-stage verification: format → rules → visual judge, every rejection with its reason.

:class:`Verifier` runs the stages on drafts and returns each with ``verification`` filled,
plus the failing stage's result (None when accepted); :class:`Funnel` counts what each
stage let through and why it rejected the rest. The stages live in their own modules
(:mod:`~medground.verify.format`, :mod:`~medground.verify.rules`, and the judges behind
:mod:`~medground.verify.judge`); reason codes are listed in docs/RECORDS.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from medground.records import Sample, StageResult, reject, with_verification
from medground.settings import VisualSettings
from medground.verify.claims import Claims, extract_claims
from medground.verify.evidence import EvidenceJudge, EvidenceSettings, judge_evidence
from medground.verify.format import check_format
from medground.verify.judge import Judge, JudgeItem
from medground.verify.measure import Evidence, Measurements, evidence_of_view
from medground.verify.onnx_judge import OnnxJudge
from medground.verify.rules import RuleSettings, check_rules
from medground.verify.vlm_judge import VlmJudge

__all__ = [
    "ABSENT_SKIP",
    "VOLUME_SKIP",
    "STAGES",
    "Claims",
    "Draft",
    "Evidence",
    "EvidenceJudge",
    "EvidenceSettings",
    "Funnel",
    "Judge",
    "JudgeItem",
    "Measurements",
    "OnnxJudge",
    "RuleSettings",
    "StageResult",
    "Verifier",
    "VlmJudge",
    "check_format",
    "check_rules",
    "evidence_of_view",
    "extract_claims",
    "judge_evidence",
    "make_judge",
    "reject",
]

STAGES = ("format", "rules", "visual")
#: Why an absent query passes the visual stage unjudged (its ``info.skipped``).
ABSENT_SKIP = "absent query: no target to judge; the rules checked the absence in the view's label map"
VOLUME_SKIP = (
    "volume sample: the visual judges read 2D images; the rules measured every claim from the volume and objects files"
)


class Draft(NamedTuple):
    """One draft with what verifying it needs: the cue facts of its view's objects (what the
    synthesizer was told) and the view's measurements (the evidence measured again; share
    one :class:`Measurements` among a view's drafts)."""

    sample: Sample
    facts: dict[int, dict[str, Any]]
    measures: Measurements


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
        return {
            "drafts": self.drafts,
            "passed": {s: self.passed[s] for s in STAGES},
            "accepted": self.accepted,
            "rejected": {s: dict(sorted(r.items())) for s, r in self.reasons.items() if r},
        }


class Verifier:
    """Runs the three stages on drafts.

    Args:
        judge: the visual judge (:func:`medground.verify.judge.make_judge`); the evidence
            judge by default.
        rules: the rules stage's tolerances.
    """

    def __init__(self, judge: Judge | None = None, *, rules: RuleSettings | None = None) -> None:
        self.judge = judge if judge is not None else EvidenceJudge()
        self.rules = rules or RuleSettings()

    def verify(
        self, sample: Sample, facts: dict[int, dict[str, Any]], evidence: Evidence | Measurements
    ) -> tuple[Sample, StageResult | None]:
        """The sample with its stage results, and the failing result (None if accepted).

        ``facts`` are the cue facts of the view's objects; ``evidence`` is what the view
        ships (its stored image, masks, map and volume), measured again by the rules."""
        measures = evidence if isinstance(evidence, Measurements) else Measurements(evidence)
        checked, failed, _ = self.verify_many([Draft(sample, facts, measures)])[0]
        return checked, failed

    def verify_many(self, drafts: Sequence[Draft]) -> list[tuple[Sample, StageResult | None, list[StageResult]]]:
        """Verifies drafts together: format and rules for each, then the visual judge for the
        survivors in one call, so a model judge sees a case's drafts as one batch. Returns
        (checked sample, failing result or None, all results) per draft."""
        results: list[list[StageResult]] = []
        for draft in drafts:
            stages = [check_format(draft.sample)]
            if stages[-1].passed:
                stages.append(check_rules(draft.sample, draft.facts, draft.measures, settings=self.rules))
            results.append(stages)
        passed = [i for i, stages in enumerate(results) if stages[-1].passed]
        # An absent query has nothing to look at, and a volume is not an image a visual judge
        # reads: no judge is asked (the rules measured the absence, or every claim in 3D),
        # and the visual result says so.
        skipped = {i: _unjudged(drafts[i].sample) for i in passed}
        survivors = [i for i in passed if skipped[i] is None]
        for i in passed:
            if skipped[i] is not None:
                info = {"judge": self.judge.name, "skipped": skipped[i]}
                results[i].append(StageResult("visual", True, info=info))
        items = [_judge_item(drafts[i]) for i in survivors]
        verdicts = self.judge.judge(items)
        if len(verdicts) != len(items):
            raise RuntimeError(f"judge {self.judge.name} gave {len(verdicts)} verdicts for {len(items)} drafts")
        for i, verdict in zip(survivors, verdicts, strict=True):
            results[i].append(verdict)
        out = []
        for draft, stages in zip(drafts, results, strict=True):
            failed = next((r for r in stages if not r.passed), None)
            out.append((with_verification(draft.sample, stages), failed, stages))
        return out


def _unjudged(sample: Sample) -> str | None:
    """Why no visual judge looks at a draft (None when one does)."""
    if sample.query_type == "absent":
        return ABSENT_SKIP
    if (sample.view or {}).get("axis") == "volume":
        return VOLUME_SKIP
    return None


def _judge_item(draft: Draft) -> JudgeItem:
    evidence = draft.measures.evidence
    values = evidence.values if evidence.values is not None else evidence.grey
    return JudgeItem(draft.sample, evidence.image, values, evidence.full_scale)


def make_judge(
    settings: VisualSettings | Mapping[str, Any] | None = None, *, seed: int = 0, backend: Any = None
) -> Judge:
    """The judge ``[verification.visual]`` asks for.

    Args:
        settings: the parsed section (a plain mapping is parsed first).
        seed: the run's seed (a vlm judge samples reproducibly from it; a ``seed`` key wins).
        backend: a model backend to use instead of building one (vlm judge only).
    """
    if not isinstance(settings, VisualSettings):
        settings = VisualSettings.from_table(settings)
    if settings.backend == "onnx":
        return OnnxJudge(settings.get("model"), threshold=float(settings.get("threshold", 0.5)))
    if settings.backend == "vlm":
        return VlmJudge.from_config({**settings.table, "seed": settings.get("seed", seed)}, backend=backend)
    return EvidenceJudge()
