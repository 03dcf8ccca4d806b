"""Hard negatives: queries about a structure that is absent from the image (``[synthesis]
negatives = true``; off by default).

A model that must answer "not present" (MedGrounder's 0/1/many formulation) needs queries
whose answer is no box. Each view may get one: ``query_type = "absent"``, no target, and a
query worded from a declared label's clinical term exactly as a direct query about a
present structure is ("Locate the liver lesion."), so the wording says nothing of the
answer. Which label, decided from the case's label map as loaded, never from names alone:

* a label of the dataset's spec with no voxel in the view: anywhere in a 2D image, or on
  the slice and within :func:`medground.anatomy.absent_margin` slices of it (the whole
  slice, whatever part the image shows; a structure too small to be an object still
  counts as present);
* not a label whose name covers, or is covered by, one present in the view
  (:func:`medground.anatomy.names_overlap`: no "kidney" where only "kidney tumor" is
  labelled on the slice);
* not a sided label ("left kidney") where the image has no patient orientation;
* preferably one present elsewhere in the case (``absent_from = "view"``: the liver lesion
  on a slice below it), else one the case lacks (``absent_from = "case"``);
* one per view at most (:data:`PER_VIEW`), chosen by a hash of the run's seed and the view's
  image, never by arrival order, so the same inputs and seed give the same negatives.

The rules stage checks the absence again from the view's label map with code of its own
(:meth:`medground.verify.measure.Measurements.labels_in_view`). A model synthesizer leaves
negatives to this template: a model shown the image cannot be held to a structure it
cannot see, and the query needs no more words than the term.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from medground import geometry
from medground.anatomy import absent_margin, names_overlap
from medground.io.case import Case
from medground.records import Sample, sample_id
from medground.synth.template import DEFAULT_TEMPLATES, noun_phrase, templates
from medground.terms import clinical_term
from medground.views import View

__all__ = ["ABSENT", "PER_VIEW", "CaseLabels", "absent_drafts", "absent_labels"]

#: The ``query_type`` of a query about a structure absent from the image.
ABSENT = "absent"
#: Absent queries per view, at most.
PER_VIEW = 1


class CaseLabels:
    """Which labels of a case lie on which slices: one pass over the label map per axis in
    the core (:func:`medground.geometry.slice_areas`), done when first asked for."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self._tables: dict[int, tuple[list[int], Any]] = {}

    def in_view(self, view: View) -> set[int]:
        """The label ids with a voxel in the view (its slice and the margin around it, or a
        2D image's whole label map)."""
        case, smap = self.case, view.map
        if case.image.is_2d or smap.axis is None or smap.slice_index is None:
            return set(case.present)
        axis, index = smap.axis, smap.slice_index
        if axis not in self._tables:
            found, areas = geometry.slice_areas(case.labels, axis, return_labels=True)
            self._tables[axis] = ([int(i) for i in found], areas)
        ids, table = self._tables[axis]
        image = case.image
        margin = absent_margin(float(image.spacing[axis]) if image.spacing_known else None)
        low, high = max(0, index - margin), index + margin + 1
        return {label for row, label in enumerate(ids) if label and table[row, low:high].any()}


def absent_labels(
    case: Case,
    declared: Mapping[int, str],
    in_view: set[int],
    *,
    body_region: str | None,
    oriented: bool,
    key: str,
    seed: int,
) -> list[tuple[int, str]]:
    """The labels a view's absent queries name (at most :data:`PER_VIEW`), each with where it
    is absent from: ``view`` (present elsewhere in the case) or ``case``.

    Args:
        case: the case.
        declared: the spec's labels (id → name): only these are named.
        in_view: the label ids with a voxel in the view (:meth:`CaseLabels.in_view`).
        body_region: the dataset's, for the clinical terms.
        oriented: the view shows patient sides (a sided label may be named).
        key: the view's identity (its image path), hashed with ``seed`` for the choice.
        seed: the run's seed.
    """
    present = [case.label_names.get(i, f"unknown_{i}") for i in sorted(in_view)]
    elsewhere: list[int] = []
    unseen: list[int] = []
    for label_id, name in sorted(declared.items()):
        if label_id in in_view or any(names_overlap(name, p, body_region) for p in present):
            continue
        if clinical_term(name, body_region).side is not None and not oriented:
            continue
        (elsewhere if label_id in case.present else unseen).append(label_id)
    group, where = (elsewhere, "view") if elsewhere else (unseen, "case")
    if not group:
        return []
    digest = hashlib.sha256(f"{seed}|{key}|absent".encode()).digest()
    start = int.from_bytes(digest[:8], "big") % len(group)
    chosen = [group[(start + k) % len(group)] for k in range(min(PER_VIEW, len(group)))]
    return [(label_id, where) for label_id in chosen]


def absent_drafts(
    view: View,
    labels: list[tuple[int, str]],
    *,
    seed: int,
    modality: str,
    body_region: str | None,
    oriented: bool,
    template: str = DEFAULT_TEMPLATES,
) -> list[Sample]:
    """The drafts of a view's absent queries (``verification`` empty): no target, the
    label's clinical term in a direct query's phrasing picked by a hash of ``seed`` and
    the sample id, and the view's objects as distractors."""
    case = view.case
    record = view.view_record()
    loaded = templates(template)
    drafts = []
    for label_id, where in labels:
        name = case.label_names[label_id]
        identifier = sample_id(case.dataset, case.case_id, record, (), ABSENT, label_id)
        attributes: dict[str, Any] = {"category": name}
        phrase = noun_phrase(attributes, body_region=body_region, oriented=oriented, template=template)
        options = list(loaded["phrasings"]["direct"])
        digest = hashlib.sha256(f"{seed}|{identifier}|phrasing".encode()).digest()
        phrasing = options[int.from_bytes(digest[:8], "big") % len(options)]
        query = phrasing.format(np=phrase.text, **{"is": "are" if phrase.plural else "is"})
        drafts.append(
            Sample(
                id=identifier,
                dataset=case.dataset,
                case_id=case.case_id,
                patient_id=case.patient_id,
                split=None,
                image=view.image_file,
                width=view.width,
                height=view.height,
                modality=modality,
                view=record,
                query=query[0].upper() + query[1:],
                referring_expression=phrase.text,
                query_type=ABSENT,
                targets=[],
                referring_attributes={**attributes, "absent_from": where},
                subset=None,
                distractors=[
                    {
                        "object_id": object_id,
                        "label": obj.anchor.label,
                        "bbox_xyxy": list(obj.bbox_xyxy),
                        "values": {"category": obj.anchor.label},
                    }
                    for object_id, obj in sorted(view.objects.items())
                ],
                synthesis={
                    "backend": "template",
                    "model": None,
                    "prompt_version": str(loaded["version"]),
                    "seed": seed,
                    "implicit": False,
                },
                provenance={
                    "image_path": str(case.image.path),
                    "map": view.map.to_dict(),
                    "intensity": view.intensity.to_dict(),
                },
            )
        )
    return drafts
