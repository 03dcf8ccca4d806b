"""Volume samples' drafts: references over every object of a volume, worded by the template.

The scene (:mod:`medground.volumes`) gives every object's 3D facts; the incremental
algorithm (:func:`medground.refer.refer_scene`) singles each target out among all the
objects of the volume; the template words it. A volume is worded by the template whatever
the run's synthesizer: the vision-language models medground drives read 2D images, and a
query must only say what its facts say. The image is "this volume", not "this image".
"""

from __future__ import annotations

from typing import Any

from medground.records import Sample, Target, sample_id
from medground.refer import Scene, Skip, refer_scene
from medground.synth.base import query_type_of
from medground.synth.template import DEFAULT_TEMPLATES, TemplateSynthesizer, word
from medground.volumes import VolumeScene

__all__ = ["volume_drafts"]

#: How the template's phrasings name the image, and how a volume sample names its volume.
_MEDIUM = (("on this image", "in this volume"), ("in this image", "in this volume"))


def _in_volume(query: str) -> str:
    for said, meant in _MEDIUM:
        query = query.replace(said, meant)
    return query


def volume_drafts(
    scene: VolumeScene,
    *,
    seed: int,
    modality: str,
    body_region: str | None,
    exhaustive: tuple[str, ...] = (),
    template: str = DEFAULT_TEMPLATES,
    source: str | None = None,
) -> tuple[list[Sample], list[Skip]]:
    """The drafts of a case's volume samples (``verification`` empty) and the targets no
    expression could single out in the whole volume. ``source`` is the volume's path
    relative to the dataset folder (provenance)."""
    case = scene.case
    view = scene.view_record()
    facts = Scene(scene.facts, scene.width, scene.height, body_region)
    references, skips = refer_scene(facts, scene.targets, {}, exhaustive=exhaustive)
    synthesizer = TemplateSynthesizer(seed, template)
    drafts: list[Sample] = []
    counters: dict[tuple[tuple[int, ...], str], int] = {}
    said: set[tuple[tuple[int, ...], str]] = set()
    for reference in references:
        query_type = query_type_of(reference)
        index = counters.get((reference.targets, query_type), 0)
        counters[(reference.targets, query_type)] = index + 1
        identifier = sample_id(case.dataset, case.case_id, view, reference.targets, query_type, index)
        query, expression = word(
            reference,
            parts=1,
            body_region=body_region,
            oriented=case.image.oriented,
            pick=synthesizer.picker(identifier),
            template=template,
        )
        query = _in_volume(query)
        if (reference.targets, query.lower()) in said:
            continue  # two query types worded the same for one target: keep one
        said.add((reference.targets, query.lower()))
        drafts.append(
            Sample(
                id=identifier,
                dataset=case.dataset,
                case_id=case.case_id,
                patient_id=case.patient_id,
                split=None,
                image=scene.image_file,
                width=scene.width,
                height=scene.height,
                modality=modality,
                view=view,
                query=query,
                referring_expression=expression,
                query_type=query_type,
                targets=[_target(scene, object_id) for object_id in reference.targets],
                referring_attributes=dict(reference.attributes),
                subset=reference.subset,
                distractors=[dict(d) for d in reference.distractors],
                synthesis={
                    "backend": "template",
                    "model": None,
                    "prompt_version": synthesizer.version,
                    "seed": seed,
                    "implicit": reference.query_type == "implicit",
                },
                provenance=_provenance(scene, source),
            )
        )
    return drafts, skips


def _target(scene: VolumeScene, object_id: int) -> Target:
    anchor = scene.objects.anchors[object_id]
    low, high = scene.box(object_id)
    return Target(
        label_id=anchor.label_id,
        label=anchor.label,
        object_id=object_id,
        bbox_xyxy=None,
        area_px=anchor.voxel_count,
        mask_rle=None,
        bbox_3d=[low, high],
        bbox_3d_ras=scene.facts[object_id]["bbox_ras"],
        mask_3d={"file": scene.objects_file, "value": object_id},
        cues=scene.cues[object_id],
    )


def _provenance(scene: VolumeScene, source: str | None) -> dict[str, Any]:
    """Where the volume comes from and how it was turned to RAS+: the stored file's axis
    codes, and for each canonical axis the stored axis and whether it was flipped."""
    image = scene.case.image
    return {
        "image_path": source if source is not None else str(image.path),
        "reorientation": {
            "stored_axcodes": list(image.axcodes or ()),
            "stored_shape": list(image.shape),
            "order": list(scene.reorientation.order),
            "flips": list(scene.reorientation.flips),
        },
    }
