"""The CPU work of one case, as one plain function: load → anchors → views → cues →
references → template queries → verification → 8-bit PNGs.

It returns everything the case produced (images as PNG bytes, accepted and rejected
records, skips, its verification funnel, or its error); it writes nothing, so it runs the
same in-process, in a Ray task on any node, or twice after a crash.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

from medground import geometry
from medground.anchors import objects_ahead
from medground.generate import PART_VIEW_BYTES, CaseDrafts, draft_parts, verify_drafts
from medground.io.case import load_case
from medground.io.discover import CaseFiles
from medground.io.errors import CaseError
from medground.io.schema import DatasetSpec
from medground.pipeline.batching import CpuTurns, QueuedBackend
from medground.pipeline.budget import (
    OverBudget,
    case_budget,
    fewer_collections,
    keep_freed_memory,
    memory_budget_text,
    settle_collector,
    small_pages,
)
from medground.pipeline.store import CaseResult
from medground.records import Sample, dumps
from medground.settings import SynthesisSettings, VerificationSettings, VisualSettings
from medground.synth import Synthesizer, make_synthesizer
from medground.verify import Funnel, Verifier, make_judge

__all__ = ["OFFLINE_PART_VIEW_BYTES", "CaseActor", "case_actor_class", "part_bytes", "process_case"]

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
    view_bytes: int | None | Literal["auto"] = "auto",
) -> CaseResult:
    """Runs one case through every stage; a bad case becomes ``error``, never an exception.

    ``synthesis``/``verification`` are the run config's settings. ``models`` holds Ray actor
    handles of the GPU models (``synthesizer``, ``judge``) when they run in actors; without
    them a model backend is built in this process (openai: a client; vllm: the model).
    ``budget`` is (seconds, bytes) the case may take (:func:`medground.pipeline.budget.case_budget`):
    over either, the case's error says so and this process goes on. The case is drafted and
    verified in parts of about ``view_bytes`` of views (:func:`medground.generate.draft_parts`;
    None: in one part; ``auto``: :func:`part_bytes`); its outputs are the same either way."""
    small_pages()
    seconds, memory = budget
    if view_bytes == "auto":
        view_bytes = part_bytes(synthesis or SynthesisSettings(), verification or VerificationSettings())
    try:
        with case_budget(seconds, memory), fewer_collections():
            return _process_case(spec, files, seed, verification, synthesis, models, view_bytes)
    except OverBudget as error:  # raised between statements of the case, or just after it
        failed = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality, node=_ray_node())
        # The watchdog of a case thread raises the bare class: its message is said here.
        detail = str(error) or f"over the case time budget ({seconds:g} s)"
        failed.error = {"case_id": files.case_id, "stage": "budget", "error": f"{files.image}: {detail}"}
        return failed


#: The views' bytes of a part when no model writes or judges the case's queries: small
#: parts, so that with a second core the views of the next part are made while a part is
#: drafted and verified, from the case's first view to its last (with 64 MB parts the main
#: thread waited for the first part's views and the view thread idled through the last
#: part's drafting and verification: 5.33 → 4.74 s on a real-size CT, two threads).
OFFLINE_PART_VIEW_BYTES = 8 << 20


def part_bytes(synthesis: SynthesisSettings, verification: VerificationSettings) -> int:
    """The views' bytes of a part for these settings: :data:`~medground.generate.PART_VIEW_BYTES`
    when a model (the synthesizer or the visual judge) gets a part's views as one batch,
    else :data:`OFFLINE_PART_VIEW_BYTES` (the template and the evidence judge batch nothing)."""
    models = synthesis.backend != "template" or verification.visual.backend != "evidence"
    return PART_VIEW_BYTES if models else OFFLINE_PART_VIEW_BYTES


def _process_case(
    spec: DatasetSpec,
    files: CaseFiles,
    seed: int,
    verification: VerificationSettings | None,
    synthesis: SynthesisSettings | None,
    models: dict[str, Any] | None,
    view_bytes: int | None,
) -> CaseResult:
    result = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality, node=_ray_node())
    memory_budget = memory_budget_text()
    synthesis = synthesis or SynthesisSettings()
    verification = verification or VerificationSettings()
    models = models or {}
    started = time.perf_counter()
    stage = "load"
    try:
        case = load_case(spec, files, then=objects_ahead(spec))
        result.warnings = list(case.warnings)
        result.seconds["load"] = time.perf_counter() - started
        stage = "draft"
        verifier = _verifier(verification.visual, models.get("judge"), seed)
        # In parts of about PART_VIEW_BYTES of views: each part is drafted, verified and
        # encoded, then let go, so a real-size volume never holds all its views at once.
        parts = draft_parts(
            case,
            spec,
            seed=seed,
            synthesizer=_synthesizer(synthesis, seed, models.get("synthesizer")),
            negatives=synthesis.negatives,
            view_bytes=view_bytes,
        )
        accepted: list[Sample] = []
        records: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        rejections: list[dict[str, Any]] = []
        funnel = Funnel()
        for name in ("draft", "verify", "render"):
            result.seconds[name] = 0.0
        drafts: CaseDrafts | None = None
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            result.seconds[name] += now - clock
            clock = now

        while True:
            stage = "draft"
            part = next(parts, None)
            lap("draft")
            if part is None:
                break
            if geometry.get_num_threads() > 1:  # a second core: images encode while verification runs
                part.encode_ahead()
            stage = "verify"
            kept, rejected, part_funnel = verify_drafts(part, spec, verifier)
            funnel.merge(part_funnel)
            # verify_drafts puts the part's synthesis failures first: the case's go first too.
            failures.extend(rejected[: len(part.failures)])
            rejections.extend(rejected[len(part.failures) :])
            accepted.extend(kept)
            # The records as each part is verified: with a second core this overlaps the
            # next part's views, where at the case's end the other core would stand idle.
            records.extend(sample.to_dict() for sample in kept)
            lap("verify")
            stage = "render"
            result.images.update(part.images({s.image for s in kept} | {r["image"] for r in rejected}))
            lap("render")
            drafts, part = part, None  # the last part has the case's skips; the others go
            drafts.views = []
        assert drafts is not None, "draft_parts gives at least one part"
        result.accepted = records
        result.rejected = failures + rejections
        result.skipped = drafts.skipped + _uncovered(drafts, accepted, result.rejected)
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


def _synthesizer(settings: SynthesisSettings, seed: int, queue: Any) -> Synthesizer:
    if queue is not None:  # on Ray: the requests go to the stage's batching queue
        return _cached(
            f"queued|{queue}|{_key('synth', settings.table, seed)}",
            lambda: make_synthesizer(settings, seed=seed, backend=QueuedBackend(queue)),
        )
    return _cached(_key("synth", settings.table, seed), lambda: make_synthesizer(settings, seed=seed))


def _verifier(settings: VisualSettings, queue: Any = None, seed: int = 0) -> Verifier:
    if queue is not None:
        return _cached(
            f"queued|{queue}|{_key('judge', settings.table, seed)}",
            lambda: Verifier(make_judge(settings, seed=seed, backend=QueuedBackend(queue))),
        )
    return _cached(_key("judge", settings.table, seed), lambda: Verifier(make_judge(settings, seed=seed)))


class CaseActor:
    """A CPU worker on Ray (an actor with ``max_concurrency`` threads): runs several cases
    at once, so that while one waits for its model answers the next is prepared. The memory
    budget of all its cases is set once on the process (``RLIMIT_AS``); each case keeps its
    own time budget.

    Turns: one case computes at a time; a case gives its turn up while it waits for model
    answers (:class:`~medground.pipeline.batching.CpuTurns`).

    Admission: a case starts at once when no other case runs here or the process's resident
    memory is under :attr:`ADMIT_SHARE` of the budget; otherwise it waits (at most its time
    budget) for running cases to finish, so that many cases in flight never mean many
    real-size volumes in memory at once.

    Watch: :meth:`status` says which cases hold the turn and how long each has run; on Ray it
    answers from its own thread (:func:`case_actor_class`), so the driver can tell the case
    stuck in a native call from the cases it starves."""

    ADMIT_SHARE = 0.5

    def __init__(self, memory_bytes: int | None) -> None:
        settle_collector()  # a worker process of the run's own: its imports are set aside
        keep_freed_memory()  # and the memory one case frees is the next one's
        self._memory = memory_bytes
        self._limit = case_budget(None, memory_bytes)
        self._limit.__enter__()  # held for the actor's life
        self._running = 0
        self._turn = threading.Condition()
        self._turns = CpuTurns()
        self._started: dict[str, float] = {}

    def _admit(self, patience: float | None) -> None:
        deadline = None if patience is None else time.monotonic() + patience
        with self._turn:
            while self._running > 0 and self._memory and _resident() > self.ADMIT_SHARE * self._memory:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._turn.wait(timeout=0.5 if left is None else min(0.5, left))
            self._running += 1

    def process(self, spec: DatasetSpec, files: CaseFiles, **kwargs: Any) -> CaseResult:
        name = case_name(spec, files)
        self._admit(kwargs.get("budget", (None, None))[0])
        try:
            with self._turns.computing(name):
                self._started[name] = time.monotonic()
                try:
                    return process_case(spec, files, **kwargs)
                finally:
                    self._started.pop(name, None)
        finally:
            with self._turn:
                self._running -= 1
                self._turn.notify_all()

    def status(self) -> dict[str, Any]:
        """The cases that hold the CPU turn now, the seconds each running case has run
        (from when it first took the turn; cases waiting to start are not listed), and the
        threads the core's kernels use here."""
        now = time.monotonic()
        return {
            "holders": sorted(self._turns.holders),
            "running": {name: now - started for name, started in list(self._started.items())},
            "threads": geometry.get_num_threads(),
        }


def case_name(spec: DatasetSpec, files: CaseFiles) -> str:
    """A case's name within a run (dataset and case id: unique, duplicates being errors)."""
    return f"{spec.name}/{files.case_id}"


def case_actor_class(ray: Any) -> Any:
    """:class:`CaseActor` as a Ray actor class whose :meth:`~CaseActor.status` runs in a
    ``control`` thread of its own, answering while every case thread is busy or stuck."""

    class WatchedCaseActor(CaseActor):
        def __init__(self, memory_bytes: int | None) -> None:
            super().__init__(memory_bytes)
            # The core's kernels (and the image encoder ahead of verification) use the CPUs
            # Ray gave this actor, not every core of the node its neighbours share.
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                geometry.set_num_threads(max(1, int(cpus)))

        @ray.method(concurrency_group="control")
        def status(self) -> dict[str, Any]:
            return super().status()

    return ray.remote(concurrency_groups={"control": 1})(WatchedCaseActor)


def _resident() -> int:
    """This process's resident memory in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
