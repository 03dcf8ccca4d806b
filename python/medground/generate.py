"""One case from masks to query drafts: anchors → views → cues → references → samples.

Plain functions chained in order; the pipeline places them on workers. Nothing here reads
files other than through the case already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medground.anchors import find_anchors
from medground.cues import case_context, compute_cues, full_scale
from medground.facts import object_facts
from medground.io.case import Case
from medground.io.schema import AnchorFilters, DatasetSpec
from medground.records import Sample, image_path, reject
from medground.refer import Skip, refer_view
from medground.synth import Synthesizer, TemplateSynthesizer
from medground.verify import Draft, Funnel, Verifier
from medground.views import View, build_views

__all__ = ["CaseDrafts", "draft_case", "verify_drafts"]


@dataclass
class CaseDrafts:
    """The drafts of one case, the views they are on, and what was skipped and why.

    ``facts`` holds, per view (``image`` path), the checkable facts of every object in it,
    which verification matches claims against."""

    samples: list[Sample] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # synthesis rejections (VLM backends)


def draft_case(
    case: Case,
    spec: DatasetSpec,
    *,
    seed: int = 0,
    filters: AnchorFilters | None = None,
    synthesizer: Synthesizer | None = None,
) -> CaseDrafts:
    """Anchors, views, cues and references of one case, worded by ``synthesizer`` (the
    template by default, or a :class:`medground.synth.VlmSynthesizer`; its failures are
    kept in ``failures``).

    ``filters`` default to the spec's ``[anchors]`` table (minimum sizes, per label)."""
    synthesizer = synthesizer or TemplateSynthesizer(seed)
    if filters is None:
        filters = spec.anchors
    components, anchors = find_anchors(case, filters)
    views = build_views(
        case, components, anchors, spec.render, spec.modality, radiological=spec.is_radiological, filters=filters
    )
    context = case_context(case, components, anchors, spec.modality)
    drafts = CaseDrafts(views=views)
    for view in views:
        cues = compute_cues(view, anchors, context, spec.modality)
        references, skips = refer_view(view, cues, spec.body_region)
        samples, failures = synthesizer.synthesize(
            view, cues, references, modality=spec.modality, body_region=spec.body_region
        )
        drafts.failures.extend(failures)
        # Provenance names the source file relative to the dataset folder: portable, and the
        # same wherever the data is mounted.
        source = _relative(case.image.path, spec.root)
        samples = [replace(s, provenance={**s.provenance, "image_path": source}) for s in samples]
        drafts.samples.extend(samples)
        drafts.facts[image_path(case.dataset, case.case_id, view.view_record())] = object_facts(view, cues)
        drafts.skipped.extend(_skip_record(view, skip) for skip in skips)
    return drafts


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _skip_record(view: View, skip: Skip) -> dict[str, Any]:
    return {
        "case_id": view.case.case_id,
        "view": view.view_record(),
        "query_type": skip.query_type,
        "targets": list(skip.targets),
        "reason": skip.reason,
    }


def verify_drafts(
    drafts: CaseDrafts, spec: DatasetSpec, verifier: Verifier | None = None
) -> tuple[list[Sample], list[dict[str, Any]], Funnel]:
    """Runs verification on a case's drafts.

    Returns:
        accepted samples (with ``verification``), rejected records (with ``rejection``; the
        synthesis failures first) and the case's :class:`medground.verify.Funnel`.
    """
    verifier = verifier or Verifier()
    views = {image_path(v.case.dataset, v.case.case_id, v.view_record()): v for v in drafts.views}
    accepted: list[Sample] = []
    rejected, funnel = list(drafts.failures), Funnel()
    for failure in drafts.failures:
        funnel.add_failure(failure["rejection"]["stage"], failure["rejection"]["reason"])
    batch = []
    for sample in drafts.samples:
        view = views[sample.image]
        batch.append(
            Draft(
                sample,
                drafts.facts[sample.image],
                view.image,
                view.values,
                spec.body_region,
                view.case.image.oriented,
                tuple(view.case.label_names.values()),
                full_scale(view.case.image.array, view.values),
            )
        )
    for checked, failed, results in verifier.verify_many(batch):
        funnel.add(results)
        if failed is None:
            accepted.append(checked)
        else:
            rejected.append(reject(checked, failed))
    return accepted, rejected, funnel
