"""The CPU work of one case, as one plain function: load → anchors → views → cues →
references → template queries → verification → 8-bit PNGs.

It returns everything the case produced (images as PNG bytes, accepted and rejected
records, skips, its verification funnel, or its error); it writes nothing, so it runs the
same in-process, in a Ray task on any node, or twice after a crash.
"""

from __future__ import annotations

import io
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from medground.generate import draft_case, verify_drafts
from medground.io.case import load_case
from medground.io.errors import CaseError
from medground.io.spec import CaseFiles, DatasetSpec
from medground.records import image_path
from medground.synth.template import TemplateSynthesizer

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


def _png(image: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def process_case(spec: DatasetSpec, files: CaseFiles, *, seed: int = 0, verification: dict[str, Any] | None = None) -> CaseResult:
    """Runs one case through every CPU stage; a bad case becomes ``error``, never an exception."""
    result = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality, node=_ray_node())
    started = time.perf_counter()
    stage = "load"
    try:
        case = load_case(spec, files)
        result.warnings = list(case.warnings)
        result.seconds["load"] = time.perf_counter() - started
        stage = "draft"
        drafts = draft_case(case, spec, seed=seed, synthesizer=TemplateSynthesizer(seed))
        result.seconds["draft"] = time.perf_counter() - started - result.seconds["load"]
        stage = "verify"
        accepted, rejected, funnel = verify_drafts(drafts, spec, _verifier(verification or {}))
        result.seconds["verify"] = time.perf_counter() - started - sum(result.seconds.values())
        stage = "render"
        used = {s.image for s in accepted} | {r["image"] for r in rejected}
        for view in drafts.views:
            path = image_path(spec.name, files.case_id, view.view_record())
            if path in used:
                result.images[path] = _png(view.image)
        result.seconds["render"] = time.perf_counter() - started - sum(result.seconds.values())
        result.accepted = [s.to_dict() for s in accepted]
        result.rejected = rejected
        result.skipped = drafts.skipped
        result.funnel = funnel.to_dict()
    except CaseError as error:
        result.error = {"case_id": files.case_id, "stage": error.stage, "error": str(error)}
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


_VERIFIERS: dict[str, Any] = {}


def _verifier(settings: dict[str, Any]) -> Any:
    """One verifier per process and settings (an ONNX session is worth keeping)."""
    from medground.verify import Verifier

    visual = dict(settings.get("visual", {}))
    backend = visual.get("backend", "evidence")
    key = repr(sorted(visual.items()))
    if key not in _VERIFIERS:
        if backend == "onnx":
            _VERIFIERS[key] = Verifier("onnx", onnx_model=visual.get("model"),
                                       onnx_threshold=float(visual.get("threshold", 0.5)))
        elif backend == "evidence":
            _VERIFIERS[key] = Verifier()
        else:
            raise ValueError(f"[verification.visual] backend {backend!r} is not available in this release")
    return _VERIFIERS[key]
