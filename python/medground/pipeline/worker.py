"""The CPU work of one case, as one plain function: load → anchors → views → cues →
references → template queries → verification → 8-bit PNGs.

It returns everything the case produced (images as PNG bytes, accepted and rejected
records, skips, its verification funnel, or its error); it writes nothing, so it runs the
same in-process, in a Ray task on any node, or twice after a crash.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np

from medground.generate import CaseDrafts, draft_case, verify_drafts
from medground.io.case import load_case
from medground.io.discover import CaseFiles
from medground.io.errors import CaseError
from medground.io.schema import DatasetSpec
from medground.io.volume import Volume
from medground.pipeline.budget import OverBudget, case_budget, memory_budget_text
from medground.pipeline.store import CaseResult
from medground.records import Sample, StageResult, dumps
from medground.refer import Reference
from medground.settings import SynthesisSettings, VerificationSettings, VisualSettings
from medground.synth import Synthesis, Synthesizer, make_synthesizer
from medground.verify import JudgeItem, Verifier, make_judge
from medground.views import View

__all__ = ["ModelActor", "RemoteJudge", "RemoteSynthesizer", "process_case"]

T = TypeVar("T")


def process_case(
    spec: DatasetSpec,
    files: CaseFiles,
    *,
    seed: int = 0,
    verification: VerificationSettings | None = None,
    synthesis: SynthesisSettings | None = None,
    models: dict[str, Any] | None = None,
    budget: tuple[float | None, int | None] = (None, None),
) -> CaseResult:
    """Runs one case through every stage; a bad case becomes ``error``, never an exception.

    ``synthesis``/``verification`` are the run config's settings. ``models`` holds Ray actor
    handles of the GPU models (``synthesizer``, ``judge``) when they run in actors; without
    them a model backend is built in this process (openai: a client; vllm: the model).
    ``budget`` is (seconds, bytes) the case may take (:func:`medground.pipeline.budget.case_budget`):
    over either, the case's error says so and this process goes on."""
    seconds, memory = budget
    try:
        with case_budget(seconds, memory):
            return _process_case(spec, files, seed, verification, synthesis, models)
    except OverBudget as error:  # raised between statements of the case, or just after it
        failed = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality, node=_ray_node())
        failed.error = {"case_id": files.case_id, "stage": "budget", "error": f"{files.image}: {error}"}
        return failed


def _process_case(
    spec: DatasetSpec,
    files: CaseFiles,
    seed: int,
    verification: VerificationSettings | None,
    synthesis: SynthesisSettings | None,
    models: dict[str, Any] | None,
) -> CaseResult:
    result = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality, node=_ray_node())
    memory_budget = memory_budget_text()
    synthesis = synthesis or SynthesisSettings()
    verification = verification or VerificationSettings()
    models = models or {}
    started = time.perf_counter()
    stage = "load"
    try:
        case = load_case(spec, files)
        result.warnings = list(case.warnings)
        result.seconds["load"] = time.perf_counter() - started
        stage = "draft"
        drafts = draft_case(case, spec, seed=seed, synthesizer=_synthesizer(synthesis, seed, models.get("synthesizer")))
        result.seconds["draft"] = time.perf_counter() - started - result.seconds["load"]
        stage = "verify"
        verifier = _verifier(verification.visual, models.get("judge"), seed)
        accepted, rejected, funnel = verify_drafts(drafts, spec, verifier)
        result.seconds["verify"] = time.perf_counter() - started - sum(result.seconds.values())
        stage = "render"
        used = {s.image for s in accepted} | {r["image"] for r in rejected}
        for view in drafts.views:
            if view.image_file in used:
                result.images[view.image_file] = view.encoded()
        result.seconds["render"] = time.perf_counter() - started - sum(result.seconds.values())
        result.accepted = [s.to_dict() for s in accepted]
        result.rejected = rejected
        result.skipped = drafts.skipped + _uncovered(drafts, accepted, rejected)
        result.checks = drafts.checks
        result.funnel = funnel.to_dict()
    except CaseError as error:
        result.error = error.for_case(files.case_id).to_record()
    except OverBudget:
        raise
    except MemoryError:
        result.images, result.accepted, result.rejected = {}, [], []
        detail = f"over the case memory budget{memory_budget}" if memory_budget else "out of memory"
        result.error = {"case_id": files.case_id, "stage": stage, "error": f"{files.image}: {detail}"}
    except Exception as error:  # noqa: BLE001 - one broken case must not stop the run
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        result.error = {"case_id": files.case_id, "stage": stage, "error": f"{files.image}: {detail}"}
    return result


def _uncovered(drafts: CaseDrafts, accepted: list[Sample], rejected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``no_sample`` record per declared label of the case that gave no accepted sample,
    saying why (the reasons of its skip and rejection records, most frequent first)."""
    covered = {t.label for s in accepted for t in s.targets}
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for record in drafts.skipped:
        for label in record.get("labels") or [record.get("label")]:
            if label is not None:
                reasons[label][record["reason"]] += 1
    for record in rejected:
        rejection = record["rejection"]
        for label in {t["label"] for t in record["targets"]}:
            reasons[label][f"rejected at {rejection['stage']}: {rejection['reason']}"] += 1
    out = []
    for label_id, label in sorted(drafts.labels.items()):
        if label in covered:
            continue
        found = reasons.get(label)
        detail = ", ".join(f"{r} ×{n}" for r, n in found.most_common()) if found else "no view showed it as a target"
        out.append(
            {"case_id": drafts.case_id, "label_id": label_id, "label": label, "reason": "no_sample", "detail": detail}
        )
    return out


def _ray_node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - provenance only
        return None


_CACHE: dict[str, Any] = {}


def _cached(key: str, build: Callable[[], T]) -> T:
    """One model object per process and settings (clients, ONNX sessions, in-process models)."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return cast(T, _CACHE[key])


def _key(kind: str, table: Any, seed: int) -> str:
    return f"{kind}|{seed}|{dumps(dict(table), sort_keys=True, default=str)}"


def _synthesizer(settings: SynthesisSettings, seed: int, actor: Any) -> Synthesizer:
    if actor is not None:
        return RemoteSynthesizer(actor)
    return _cached(_key("synth", settings.table, seed), lambda: make_synthesizer(settings, seed=seed))


def _verifier(settings: VisualSettings, judge_actor: Any = None, seed: int = 0) -> Verifier:
    if judge_actor is not None:
        return Verifier(RemoteJudge(judge_actor))
    return _cached(_key("judge", settings.table, seed), lambda: Verifier(make_judge(settings, seed=seed)))


def _slim(view: View) -> View:
    """The view without the case's volumes: what a model actor needs (image, objects, ids)."""
    case = view.case
    image = Volume(np.zeros((1, 1), np.uint8), case.image.affine, case.image.path, case.image.oriented)
    light = dataclasses.replace(case, image=image, labels=np.zeros((1, 1), np.uint8))
    return dataclasses.replace(view, case=light, object_map=np.zeros((1, 1), np.uint32))


class RemoteSynthesizer:
    """Synthesis by a model held in a Ray actor (one GPU model, many CPU workers)."""

    name = "remote"
    version = "remote"

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def synthesize(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        *,
        modality: str,
        body_region: str | None,
    ) -> Synthesis:
        import ray

        answer = ray.get(self.actor.synthesize.remote(_slim(view), cues, references, modality, body_region))
        return cast(Synthesis, answer)


class RemoteJudge:
    """The VLM judge held in a Ray actor; a case's surviving drafts go in one actor call."""

    name = "remote"

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def judge(self, items: Sequence[JudgeItem]) -> list[StageResult]:
        import ray

        pairs = [(item.sample, item.image) for item in items]  # the stored intensities stay here
        return cast(list[StageResult], ray.get(self.actor.judge.remote(pairs)))


class ModelActor:
    """Holds a model for the pipeline's tasks (run as a Ray actor with ``num_gpus``)."""

    def __init__(self, kind: str, settings: SynthesisSettings | VisualSettings, seed: int = 0) -> None:
        self.kind = kind
        if isinstance(settings, SynthesisSettings):
            self.synthesizer = make_synthesizer(settings, seed=seed)
        else:
            self.judge_model = make_judge(settings, seed=seed)

    def synthesize(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        modality: str,
        body_region: str | None,
    ) -> Synthesis:
        return self.synthesizer.synthesize(view, cues, references, modality=modality, body_region=body_region)

    def judge(self, pairs: list[tuple[Sample, Any]]) -> list[StageResult]:
        return self.judge_model.judge([JudgeItem(sample, image, image) for sample, image in pairs])
