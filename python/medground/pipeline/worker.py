"""The CPU work of one case, as one plain function: load → anchors → views → cues →
references → template queries → verification → 8-bit PNGs.

It returns everything the case produced (images as PNG bytes, accepted and rejected
records, skips, its verification funnel, or its error); it writes nothing, so it runs the
same in-process, in a Ray task on any node, or twice after a crash.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from medground.generate import draft_case, verify_drafts
from medground.io.case import load_case
from medground.io.errors import CaseError
from medground.io.spec import CaseFiles, DatasetSpec
from medground.records import image_path
from medground.render import png_bytes

__all__ = ["CaseResult", "case_key", "process_case"]


def case_key(dataset: str, case_id: str) -> str:
    """The key of a case in shards and the manifest."""
    return f"{dataset}/{case_id}"


@dataclass
class CaseResult:
    """What one case produced."""

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
    seconds: dict[str, float] = field(default_factory=dict)
    node: str | None = None  # the Ray node that ran it (None in-process)

    @property
    def key(self) -> str:
        return case_key(self.dataset, self.case_id)


def process_case(spec: DatasetSpec, files: CaseFiles, *, seed: int = 0, verification: dict[str, Any] | None = None,
                 synthesis: dict[str, Any] | None = None, models: dict[str, Any] | None = None) -> CaseResult:
    """Runs one case through every stage; a bad case becomes ``error``, never an exception.

    ``synthesis``/``verification`` are the run config's sections. ``models`` holds Ray actor
    handles of the GPU models (``synthesizer``, ``judge``) when they run in actors; without
    them a model backend is built in this process (openai: a client; vllm: the model)."""
    result = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality, node=_ray_node())
    started = time.perf_counter()
    stage = "load"
    try:
        case = load_case(spec, files)
        result.warnings = list(case.warnings)
        result.seconds["load"] = time.perf_counter() - started
        stage = "draft"
        drafts = draft_case(case, spec, seed=seed, synthesizer=_synthesizer(synthesis or {}, seed, (models or {}).get("synthesizer")))
        result.seconds["draft"] = time.perf_counter() - started - result.seconds["load"]
        stage = "verify"
        accepted, rejected, funnel = verify_drafts(drafts, spec, _verifier(verification or {}, (models or {}).get("judge"), seed))
        result.seconds["verify"] = time.perf_counter() - started - sum(result.seconds.values())
        stage = "render"
        used = {s.image for s in accepted} | {r["image"] for r in rejected}
        for view in drafts.views:
            path = image_path(spec.name, files.case_id, view.view_record())
            if path in used:
                result.images[path] = png_bytes(view.image)
        result.seconds["render"] = time.perf_counter() - started - sum(result.seconds.values())
        result.accepted = [s.to_dict() for s in accepted]
        result.rejected = rejected
        result.skipped = drafts.skipped
        result.funnel = funnel.to_dict()
    except CaseError as error:
        result.error = error.for_case(files.case_id).to_record()
    except Exception as error:  # noqa: BLE001 - one broken case must not stop the run
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        result.error = {"case_id": files.case_id, "stage": stage, "error": f"{files.image}: {detail}"}
    return result


def _ray_node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - provenance only
        return None


_CACHE: dict[str, Any] = {}


def _cached(key: str, build: Any) -> Any:
    """One model object per process and settings (clients, ONNX sessions, in-process models)."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _synthesizer(settings: dict[str, Any], seed: int, actor: Any) -> Any:
    if actor is not None:
        return RemoteSynthesizer(actor)
    from medground.synth.vlm import make_synthesizer

    return _cached(f"synth|{seed}|{sorted(settings.items())!r}", lambda: make_synthesizer(settings, seed=seed))


def _verifier(settings: dict[str, Any], judge_actor: Any = None, seed: int = 0) -> Any:
    from medground.verify import Verifier

    visual = dict(settings.get("visual", {}))
    visual.setdefault("seed", seed)  # the judge samples reproducibly for the run's seed
    backend = visual.get("backend", "evidence")
    if backend == "vlm":
        if judge_actor is not None:
            return Verifier("vlm", vlm_judge=RemoteJudge(judge_actor))
        from medground.verify.vlm_judge import VlmJudge

        return _cached(f"judge|{sorted(visual.items())!r}", lambda: Verifier("vlm", vlm_judge=VlmJudge.from_config(visual)))
    if backend == "onnx":
        return _cached(f"onnx|{sorted(visual.items())!r}", lambda: Verifier(
            "onnx", onnx_model=visual.get("model"), onnx_threshold=float(visual.get("threshold", 0.5))))
    return _cached("evidence", Verifier)


def _slim(view: Any) -> Any:
    """The view without the case's volumes: what a model actor needs (image, objects, ids)."""
    import dataclasses

    import numpy as np

    from medground.io.volume import Volume

    case = view.case
    image = Volume(np.zeros((1, 1), np.uint8), case.image.affine, case.image.path, case.image.oriented)
    light = dataclasses.replace(case, image=image, labels=np.zeros((1, 1), np.uint8))
    return dataclasses.replace(view, case=light, values=np.zeros((1, 1), np.float32), components=np.zeros((1, 1), np.uint8))


class RemoteSynthesizer:
    """Synthesis by a model held in a Ray actor (one GPU model, many CPU workers)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def synthesize(self, view: Any, cues: Any, references: Any, *, modality: str, body_region: str | None) -> Any:
        import ray

        return ray.get(self.actor.synthesize.remote(_slim(view), cues, references, modality, body_region))


class RemoteJudge:
    """The VLM judge held in a Ray actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __call__(self, sample: Any, image: Any) -> Any:
        return self.judge([sample], [image])[0]

    def judge(self, samples: Any, images: Any) -> Any:
        """A case's surviving drafts in one actor call (one model batch)."""
        import ray

        return ray.get(self.actor.judge.remote(list(samples), list(images)))


class ModelActor:
    """Holds a model for the pipeline's tasks (run as a Ray actor with ``num_gpus``)."""

    def __init__(self, kind: str, settings: dict[str, Any], seed: int = 0) -> None:
        self.kind = kind
        if kind == "synthesizer":
            from medground.synth.vlm import make_synthesizer

            self.model = make_synthesizer(settings, seed=seed)
        else:
            from medground.verify.vlm_judge import VlmJudge

            self.model = VlmJudge.from_config({**settings, "seed": settings.get("seed", seed)})

    def synthesize(self, view: Any, cues: Any, references: Any, modality: str, body_region: str | None) -> Any:
        from medground.synth.vlm import synthesize_view

        return synthesize_view(self.model, view, cues, references, modality=modality, body_region=body_region)

    def judge(self, samples: Any, images: Any) -> Any:
        return self.model.judge(samples, images)
