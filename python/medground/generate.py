"""One case from masks to query drafts: anchors → views → cues → references → samples.

Plain functions chained in order; the pipeline places them on workers. Nothing here reads
files other than through the case already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medground import render
from medground.anchors import find_anchors
from medground.cues import case_context, compute_cues, full_scale
from medground.facts import object_facts
from medground.io.case import Case
from medground.io.schema import DatasetSpec
from medground.records import Sample, image_path, reject
from medground.refer import refer_view
from medground.synth import Synthesizer, TemplateSynthesizer
from medground.verify import Draft, Funnel, Verifier
from medground.views import View, build_views

__all__ = ["CaseDrafts", "draft_case", "verify_drafts"]


@dataclass
class CaseDrafts:
    """The drafts of one case, the views they are on, and what was skipped and why.

    Attributes:
        samples: the drafts.
        views: the views they are on.
        skipped: ``skipped.jsonl`` records: labels that are not objects, objects that could
            not be targets on any view, and targets no expression could single out.
        facts: per view (``image`` path), the checkable facts of every object in it, which
            verification matches claims against.
        failures: synthesis rejections (model backends).
        checks: the case's self-checks (midline source, laterality witnessed by side-named labels).
        labels: the declared labels present in the case (id → name).
    """

    samples: list[Sample] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    case_id: str = ""


def draft_case(case: Case, spec: DatasetSpec, *, seed: int = 0, synthesizer: Synthesizer | None = None) -> CaseDrafts:
    """Objects, views, cues and references of one case, worded by ``synthesizer`` (the
    template by default, or a :class:`medground.synth.VlmSynthesizer`; its failures are
    kept in ``failures``)."""
    synthesizer = synthesizer or TemplateSynthesizer(seed)
    objects = find_anchors(case, spec)
    body = None if case.image.is_2d or not objects.anchors else render.body_mask(case.image, spec.modality)
    views, view_skips = build_views(case, objects, spec, body)
    context = case_context(case, objects, spec.modality, body, spec.body_region)
    drafts = CaseDrafts(
        views=views,
        checks=context.checks,
        case_id=case.case_id,
        labels={i: case.label_names[i] for i in case.present if i in spec.labels},
    )
    drafts.skipped.extend({"case_id": case.case_id, **dropped.to_record()} for dropped in objects.dropped)
    for skip in view_skips:
        anchor = objects.anchors[skip.object_id]
        drafts.skipped.append(
            {
                "case_id": case.case_id,
                "label_id": anchor.label_id,
                "label": skip.label,
                "object_id": skip.object_id,
                "view": skip.view,
                "reason": skip.reason,
                "detail": skip.detail,
            }
        )
    # Provenance names the source file relative to the dataset folder: portable, and the
    # same wherever the data is mounted.
    source = _relative(case.image.path, spec.root)
    for view in views:
        cues = compute_cues(view, context)
        references, skips = refer_view(view, cues, spec.body_region)
        samples, failures = synthesizer.synthesize(
            view, cues, references, modality=spec.modality, body_region=spec.body_region
        )
        drafts.failures.extend(failures)
        drafts.samples.extend(replace(s, provenance={**s.provenance, "image_path": source}) for s in samples)
        drafts.facts[image_path(case.dataset, case.case_id, view.view_record())] = object_facts(view, cues)
        for unsaid in skips:
            labels = sorted({view.objects[t].anchor.label for t in unsaid.targets})
            drafts.skipped.append(
                {
                    "case_id": case.case_id,
                    "label": labels[0] if len(labels) == 1 else None,
                    "labels": labels,
                    "view": view.view_record(),
                    "query_type": unsaid.query_type,
                    "targets": list(unsaid.targets),
                    "reason": unsaid.reason,
                    "detail": unsaid.detail,
                }
            )
    return drafts


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


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
