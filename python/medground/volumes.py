"""The whole volume as one image: the scene of volume samples (``[render] axes = ["volume"]``).

A volume sample's image is the case's volume itself, stored once per case in its closest
RAS+ orientation (array axis 0 toward the patient's right, 1 anterior, 2 superior; the
affine kept, so millimetres and sides are the file's own) as ``volume.nii.gz``, beside the
objects' ids on the same grid (``volume_objects.nii.gz``: the 3D masks, referenced by every
sample of the case). Its boxes are in that file's voxel indices (half-open) and in patient
RAS+ millimetres.

Its cues are of whole structures, not of a slice: the patient side of the whole object
(the case's 3D laterality), containment and contact in 3D (shares of the object's voxel
faces on each other object; within one structure from :data:`CONTAINED_SHARE_3D`), the
direction to the nearest structure a reader can name without doubt
(:func:`medground.cues.world_direction` on the two boxes in millimetres), size against the
adult priors (organs whole in the volume), and counts and size ranks of instances over the
whole volume (ranks only when every one of them is whole in the volume). Every object of
the volume is a candidate for every reference: uniqueness is decided over the volume,
never a slice. Places in an image and in-plane shape or brightness do not apply to a
volume and are never said.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import render
from medground.anchors import Anchor, Objects
from medground.boxes import voxel_box_to_ras
from medground.cues import CaseContext, category_of, organ_size_class, shared_faces, world_direction
from medground.io.case import Case
from medground.io.volume import Reorientation, to_ras
from medground.records import image_path

__all__ = ["VOLUME", "VolumeScene", "volume_scene"]

#: The ``[render] axes`` entry, and the ``view.axis`` of a volume sample.
VOLUME = "volume"
#: The objects file beside a case's volume.
OBJECTS_SUFFIX = "_objects.nii.gz"
#: Share of an object's outer boundary (voxel faces) one other structure must cover for the
#: object to lie within it in 3D. Stricter than a slice's: a structure sandwiched between
#: two others (an intervertebral disc between vertebral bodies) touches them over half its
#: surface without lying inside either.
CONTAINED_SHARE_3D = 0.8
#: A structure is "nearby" (a landmark a relation may name) when the gap between the two
#: boxes is at most this many millimetres: farther ones are true directions a reader would
#: not use ("the stomach to the left of the right kidney").
NEARBY_MM = 20.0


@dataclass(frozen=True, eq=False)
class VolumeScene:
    """A case's volume as the image of its volume samples, and its objects' facts.

    Attributes:
        case: the case.
        objects: its objects (the object map on the stored grid, the anchors).
        reorientation: stored grid → closest RAS+ grid.
        facts: object id → the facts the referring step and the rules reason with (the 2D
            facts' keys: ``bbox_xyxy``, ``position``, ``shape`` and ``intensity`` are None;
            ``bbox_3d`` and ``bbox_ras`` hold the boxes).
        cues: object id → the cue record a target carries.
        targets: every object of the volume.
    """

    case: Case
    objects: Objects
    reorientation: Reorientation
    facts: dict[int, dict[str, Any]]
    cues: dict[int, dict[str, Any]]
    targets: tuple[int, ...]

    plane = VOLUME

    @cached_property
    def affine(self) -> NDArray[np.float64]:
        """The canonical grid's index → RAS+ affine."""
        return self.reorientation.affine(self.case.image.affine)

    @property
    def array(self) -> NDArray[Any]:
        """The volume on the canonical grid (a view of the stored array)."""
        return self.reorientation.array(self.case.image.array)

    @property
    def object_map(self) -> NDArray[Any]:
        """The objects' ids on the canonical grid (a view of the stored object map)."""
        return self.reorientation.array(self.objects.map)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.reorientation.shape

    @property
    def width(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1]

    @cached_property
    def image_file(self) -> str:
        """``images/DATASET/CASE/volume.nii.gz``, relative to the output folder."""
        return image_path(self.case.dataset, self.case.case_id, {"axis": VOLUME}, ".nii.gz")

    @cached_property
    def objects_file(self) -> str:
        """``images/DATASET/CASE/volume_objects.nii.gz``: the 3D masks."""
        return self.image_file.removesuffix(".nii.gz") + OBJECTS_SUFFIX

    def view_record(self) -> dict[str, Any]:
        """The ``view`` field of a volume sample."""
        return {
            "axis": VOLUME,
            "orientation": "RAS",
            "shape": list(self.shape),
            "spacing_mm": [round(float(s), 4) for s in np.linalg.norm(self.affine[:3, :3], axis=0)],
            "objects": self.objects_file,
        }

    def encoded(self) -> bytes:
        """The volume file's bytes (NIfTI, the stored type, the canonical affine)."""
        return render.nifti_bytes(self.array, self.affine)

    def encoded_objects(self) -> bytes:
        """The objects file's bytes (object ids, the smallest unsigned type that holds them)."""
        ids = self.object_map
        top = int(max(self.objects.anchors, default=0))
        dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
        return render.nifti_bytes(ids.astype(dtype, copy=False), self.affine)

    def files(self) -> dict[str, bytes]:
        """Both files of the case's volume samples, by path."""
        return {self.image_file: self.encoded(), self.objects_file: self.encoded_objects()}

    def box(self, object_id: int) -> tuple[list[int], list[int]]:
        """An object's box in the volume file's voxel indices (``[min, max)``)."""
        anchor = self.objects.anchors[object_id]
        low, high = self.reorientation.box(anchor.bbox_min, anchor.bbox_max)
        return list(low), list(high)


def volume_scene(case: Case, objects: Objects, context: CaseContext) -> VolumeScene | None:
    """The volume scene of a 3D case (None for a 2D image or a case without objects)."""
    if case.image.is_2d or not objects.anchors:
        return None
    reorientation = to_ras(case.image.shape, case.image.affine)
    affine = reorientation.affine(case.image.affine)
    anchors = objects.anchors
    sided = case.image.oriented and context.midline is not None and not context.laterality.withheld
    categories = {oid: category_of(a, context.body_region, sided=sided) for oid, a in anchors.items()}
    boxes = {oid: reorientation.box(a.bbox_min, a.bbox_max) for oid, a in anchors.items()}
    ras = {oid: voxel_box_to_ras(low, high, affine) for oid, (low, high) in boxes.items()}
    faces = shared_faces(objects.map)
    by_category: dict[str, list[Anchor]] = defaultdict(list)
    for object_id, anchor in anchors.items():
        by_category[categories[object_id]].append(anchor)
    alone = [oid for oid in anchors if len(by_category[categories[oid]]) == 1]
    facts: dict[int, dict[str, Any]] = {}
    cues: dict[int, dict[str, Any]] = {}
    for object_id, anchor in anchors.items():
        same = by_category[categories[object_id]]
        counted = anchor.is_instance and len(same) > 1
        extreme = _size_extreme(anchor, same) if counted else None
        relations = _relations(object_id, categories, faces, ras, alone, sided)
        measurable = context.spacing_known and anchor.complete and anchor.size is not None
        volume_ml = round(float(anchor.size), 3) if measurable and anchor.size is not None else None
        size = organ_size_class(anchor) if anchor.kind == "organ" else None
        side = context.laterality.side(object_id) if sided else None
        clinical = dict(context.clinical.get(object_id, {}))
        nearest = relations["nearest"]
        facts[object_id] = {
            "label": anchor.label,
            "category": categories[object_id],
            "kind": anchor.kind,
            "bbox_xyxy": None,
            "bbox_3d": [list(boxes[object_id][0]), list(boxes[object_id][1])],
            "bbox_ras": ras[object_id],
            "area_px": anchor.voxel_count,
            "pieces": anchor.pieces,
            "directions": None,
            "position": None,
            "nearest": f"{nearest['direction']}:{nearest['label']}" if nearest and nearest["direction"] else None,
            "laterality": side,
            "midline_offset_mm": None,
            "centroid_world": None if anchor.centroid_world is None else [round(c, 2) for c in anchor.centroid_world],
            "shape": None,
            "intensity": None,
            "size_class": size,
            "size_rank": extreme,
            "diameter_mm": None,
            "volume_ml": volume_ml,
            "within": relations["within"],
            "touches": list(relations["touches"]),
            "boundary_shares": dict(relations["boundary_shares"]),
            "cross_section_share": 1.0,
            "cut_by_border": not anchor.complete,
            "plane": VOLUME,
            "clinical": {name: item["value"] for name, item in clinical.items()},
            "clinical_roles": {name: item["role"] for name, item in clinical.items()},
        }
        cues[object_id] = {
            "kind": anchor.kind,
            "laterality": side,
            "centroid_world": facts[object_id]["centroid_world"],
            "complete": anchor.complete,
            "relations": relations,
            "size": {"volume_ml": volume_ml, "size_class": size},
            "count": {
                "category": categories[object_id],
                "same_label": len(same) if anchor.is_instance else 1,
                "size_extreme": extreme,
            },
            "pieces": anchor.pieces,
            "clinical": clinical,
        }
    return VolumeScene(case, objects, reorientation, facts, cues, tuple(sorted(anchors)))


def _size_extreme(anchor: Anchor, same: list[Anchor]) -> str | None:
    """``largest``/``smallest`` by voxels among the objects of its category, when no other
    is as large (small) — and only when every one of them is whole in the volume: the size
    of a structure the field of view cuts is the field of view's, not its own."""
    if not all(a.complete for a in same):
        return None
    others = [a.voxel_count for a in same if a.object_id != anchor.object_id]
    if anchor.voxel_count > max(others):
        return "largest"
    if anchor.voxel_count < min(others):
        return "smallest"
    return None


def _gap_mm(a: list[list[float]], b: list[list[float]]) -> float:
    gaps = [max(0.0, max(a[0][k], b[0][k]) - min(a[1][k], b[1][k])) for k in range(3)]
    return float(np.sqrt(sum(g * g for g in gaps)))


def _relations(
    object_id: int,
    categories: dict[int, str],
    faces: dict[int, dict[int, int]],
    ras: dict[int, list[list[float]]],
    alone: list[int],
    sided: bool,
) -> dict[str, Any]:
    """Containing and touching structures in 3D, and the nearest structure a reader can
    name without doubt (the only one of its category in the volume) with the direction to
    it in the patient."""
    mine = faces.get(object_id, {})
    total = sum(mine.values())
    name = categories[object_id]
    by_name: dict[str, int] = defaultdict(int)
    for neighbour, count in mine.items():
        if neighbour in categories and categories[neighbour] != name:
            by_name[categories[neighbour]] += count
    within = None
    if total and by_name:
        container, count = max(by_name.items(), key=lambda kv: (kv[1], kv[0]))
        # Within one structure (never "within the vertebrae"), nearly enclosed by it.
        single = sum(1 for c in categories.values() if c == container) == 1
        if single and count / total >= CONTAINED_SHARE_3D:
            within = container
    # The nearest structure that lies clearly one way of it: touching ones first, then by
    # the gap between the boxes (a structure wrapped around it lies no one way).
    others = sorted(
        (o for o in alone if categories[o] != name),
        key=lambda o: (-by_name.get(categories[o], 0), _gap_mm(ras[object_id], ras[o]), o),
    )
    nearest = None
    for other in others:
        if _gap_mm(ras[object_id], ras[other]) > NEARBY_MM:
            break  # sorted by contact then gap: nothing nearer remains
        direction = world_direction(ras[object_id], ras[other])
        if direction is None or (not sided and direction in ("left", "right")):
            continue
        nearest = {
            "label": categories[other],
            "object_id": other,
            "gap_mm": round(_gap_mm(ras[object_id], ras[other]), 2),
            "direction": direction,
        }
        break
    return {
        "within": within,
        "touches": sorted(by_name, key=lambda n: (-by_name[n], n)),
        "boundary_shares": {k: round(v / total, 4) for k, v in sorted(by_name.items())} if total else {},
        "nearest": nearest,
    }
