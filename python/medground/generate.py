"""One case from masks to query drafts: anchors → views → cues → references → samples.

Plain functions chained in order; the pipeline places them on workers. Nothing here reads
files other than through the case already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medground.anchors import AnchorFilters, View, build_views, find_anchors
from medground.cues import case_context, compute_cues
from medground.io.case import Case
from medground.io.spec import DatasetSpec
from medground.records import Sample
from medground.refer import Skip, refer_view
from medground.synth.template import TemplateSynthesizer

__all__ = ["CaseDrafts", "draft_case"]


@dataclass
class CaseDrafts:
    """The drafts of one case, the views they are on, and what was skipped and why."""

    samples: list[Sample] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def draft_case(case: Case, spec: DatasetSpec, *, seed: int = 0, filters: AnchorFilters | None = None,
               synthesizer: TemplateSynthesizer | None = None) -> CaseDrafts:
    """Anchors, views, cues and references of one case, worded by the template synthesizer."""
    synthesizer = synthesizer or TemplateSynthesizer(seed)
    components, anchors = find_anchors(case, filters)
    views = build_views(case, components, anchors, spec.render, spec.modality,
                        radiological=spec.is_radiological, filters=filters)
    context = case_context(case, components, anchors, spec.modality)
    drafts = CaseDrafts(views=views)
    for view in views:
        cues = compute_cues(view, anchors, context, spec.modality)
        references, skips = refer_view(view, cues)
        drafts.samples.extend(synthesizer.synthesize(view, cues, references, modality=spec.modality,
                                                     body_region=spec.body_region))
        drafts.skipped.extend(_skip_record(view, skip) for skip in skips)
    return drafts


def _skip_record(view: View, skip: Skip) -> dict[str, Any]:
    return {"case_id": view.case.case_id, "view": view.view_record(), "query_type": skip.query_type,
            "targets": list(skip.targets), "reason": skip.reason}
