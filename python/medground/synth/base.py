"""What every synthesizer is: one protocol, and the one way a draft sample is built.

A synthesizer turns the references of one view (the attributes that single out each
target, from :mod:`medground.refer`) into query drafts. It returns the drafts and the
failures (``rejected.jsonl``-shaped records with ``rejection.stage = "synthesis"``); the
template never fails, a model may.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from medground.boxes import voxel_box_to_ras
from medground.records import Sample, Target, sample_id
from medground.refer import Reference
from medground.views import View

__all__ = ["Synthesis", "Synthesizer", "draft_sample", "query_type_of", "synthesize_views"]

#: A view's drafts and its synthesis failures.
Synthesis = tuple[list[Sample], list[dict[str, Any]]]


@runtime_checkable
class Synthesizer(Protocol):
    """What the pipeline needs of a synthesizer: its name (``template``, or the model
    backend's), the version of its phrasings or prompt, and :meth:`synthesize`."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def synthesize(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        *,
        modality: str,
        body_region: str | None,
    ) -> Synthesis:
        """Drafts (``verification`` empty) and failure records for the references of one view."""
        ...


def query_type_of(reference: Reference) -> str:
    """The ``query_type`` a reference's drafts carry (implicit queries are descriptive)."""
    return "descriptive" if reference.query_type == "implicit" else reference.query_type


def draft_sample(
    view: View,
    cues: dict[int, dict[str, Any]],
    reference: Reference,
    index: int,
    query: str,
    synthesis: dict[str, Any],
    *,
    modality: str,
    referring_expression: str | None = None,
) -> Sample:
    """The draft of one query: its targets' boxes, masks and cues in the view, the
    reference's attributes and distractors, and where the image comes from.

    ``index`` numbers the drafts of one (targets, query type) pair, which makes the id;
    ``referring_expression`` is the noun phrase the query refers with.
    """
    case = view.case
    record = view.view_record()
    targets = []
    for object_id in reference.targets:
        obj = view.objects[object_id]
        anchor = obj.anchor
        box_3d = None if record is None else [list(anchor.bbox_min), list(anchor.bbox_max)]
        box_ras = None if record is None else voxel_box_to_ras(anchor.bbox_min, anchor.bbox_max, case.image.affine)
        # One box per visible part: an organ seen in pieces is never boxed across its gaps.
        for part, piece in enumerate(obj.pieces, start=1):
            targets.append(
                Target(
                    label_id=anchor.label_id,
                    label=anchor.label,
                    object_id=object_id,
                    bbox_xyxy=list(piece.bbox_xyxy),
                    area_px=piece.area_px,
                    mask_rle=piece.mask_rle,
                    bbox_3d=box_3d,
                    bbox_3d_ras=box_ras,
                    cues=cues[object_id],
                    part=part,
                    parts=len(obj.pieces),
                )
            )
    query_type = query_type_of(reference)
    return Sample(
        id=sample_id(case.dataset, case.case_id, record, reference.targets, query_type, index),
        dataset=case.dataset,
        case_id=case.case_id,
        patient_id=case.patient_id,
        split=None,
        image=view.image_file,
        width=view.width,
        height=view.height,
        modality=modality,
        view=record,
        query=query,
        referring_expression=referring_expression,
        query_type=query_type,
        targets=targets,
        referring_attributes=dict(reference.attributes),
        subset=reference.subset,
        distractors=[dict(d) for d in reference.distractors],
        synthesis=synthesis,
        provenance={
            "image_path": str(case.image.path),
            "map": view.map.to_dict(),
            "intensity": view.intensity.to_dict(),
        },
    )


def synthesize_views(
    synthesizer: Synthesizer,
    items: Sequence[tuple[View, dict[int, dict[str, Any]], list[Reference]]],
    *,
    modality: str,
    body_region: str | None,
) -> list[Synthesis]:
    """The synthesis of each ``(view, cues, references)`` of a case, in order: in one go
    when the synthesizer batches across views (``synthesize_views``), else view by view."""
    batched = getattr(synthesizer, "synthesize_views", None)
    if batched is not None:
        return list(batched(items, modality=modality, body_region=body_region))
    return [synthesizer.synthesize(v, c, r, modality=modality, body_region=body_region) for v, c, r in items]
