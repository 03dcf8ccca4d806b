"""Spatial anchors: the objects of a case, as anatomy has them, measured on the volume's grid.

A label is either an organ or structure (one object per case, however many pieces its mask
has: a liver in two pieces is one liver), an instance class (one object per connected
component: every lesion, nodule or polyp counts), or a member of a numbered series (a rib
or vertebra by level: one object per label). :func:`medground.io.schema.DatasetSpec.kind_of`
says which. An :class:`Anchor` is one object: voxel box, world centroid, size, shape
descriptors and whether it lies entirely inside the imaged field. Objects below the spec's
minimum sizes (``[anchors]``) and labels the spec does not declare are not objects; each
is reported (:class:`Dropped`), never dropped silently. How anchors are shown is
:mod:`medground.views`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry
from medground.io.case import Case
from medground.io.schema import DatasetSpec
from medground.render import luminance

__all__ = ["Anchor", "Dropped", "Objects", "find_anchors"]


@dataclass(frozen=True)
class Anchor:
    """One object of a case, measured on the volume's grid.

    Attributes:
        object_id: 1..N, in (label id, first voxel) order: the object's value in the object map.
        label_id, label: its label.
        kind: ``organ``, ``instance`` or ``series``.
        voxel_count: voxels (pixels for 2D images).
        bbox_min, bbox_max: index box, max exclusive.
        centroid_index: mean voxel index.
        centroid_world: RAS+ mm of the centroid, None without patient orientation.
        size: volume in mL (3D) or area in mm² (2D), None without physical spacing.
        complete: the object does not touch the border of the volume (or image): its size
            and shape are its own, not the field of view's.
        pieces: connected components of the object in the volume.
        descriptors: 3D (or 2D) shape and intensity descriptors.
    """

    object_id: int
    label_id: int
    label: str
    kind: str
    voxel_count: int
    bbox_min: tuple[int, ...]
    bbox_max: tuple[int, ...]
    centroid_index: tuple[float, ...]
    centroid_world: tuple[float, float, float] | None
    size: float | None
    complete: bool
    pieces: int
    descriptors: dict[str, Any]

    @property
    def is_instance(self) -> bool:
        """Whether objects of its label are counted (instances and series members)."""
        return self.kind != "organ"


@dataclass(frozen=True)
class Dropped:
    """A label (or one of its objects) that is not an object, and why: ``too_small``
    (under the ``[anchors]`` minimum) or ``undeclared_label`` (an id the spec does not name)."""

    label_id: int
    label: str
    reason: str
    detail: str

    def to_record(self) -> dict[str, Any]:
        return {"label_id": self.label_id, "label": self.label, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, eq=False)
class Objects:
    """The objects of a case: the object map (same grid as the label map; 0 = none), the
    anchors by object id, and what was not made an object."""

    map: NDArray[Any]
    anchors: dict[int, Anchor]
    dropped: tuple[Dropped, ...]

    @functools.cached_property
    def slice_areas(self) -> dict[int, tuple[NDArray[Any], NDArray[np.int64]]]:
        """Array axis → (object ids, each one's voxels on every slice along it), for every
        axis in one pass over the map in the core; the views choose slices from it and
        verification measures cross-sections from it."""
        ids, tables = geometry.slice_areas_along(self.map)
        return {axis: (ids, table) for axis, table in enumerate(tables)}


def _policy(case: Case, spec: DatasetSpec) -> tuple[dict[int, int], list[Dropped]]:
    """What the components of each declared label present become
    (:func:`geometry.object_components`: 1, an organ is one object in however many pieces;
    2, an instance label gives an object per component), and the labels the spec does not
    declare (never objects, whatever their ids)."""
    policy: dict[int, int] = {}
    dropped = []
    for label_id in sorted(case.present):
        name = case.label_names[label_id]
        if label_id not in spec.labels:
            dropped.append(
                Dropped(
                    label_id,
                    name,
                    "undeclared_label",
                    f"mask id {label_id} is not in the spec's labels; it is never named or related to",
                )
            )
            continue
        policy[label_id] = 2 if spec.kind_of(name) == "instance" else 1
    return policy, dropped


def find_anchors(case: Case, spec: DatasetSpec) -> Objects:
    """The objects of a case (organs whole, instances per connected component) and their anchors.

    Objects under the spec's ``[anchors]`` minimum sizes are erased from the object map and
    reported as dropped.
    """
    filters = spec.anchors
    image = case.image
    if not case.present:
        return Objects(np.zeros(case.labels.shape, np.uint32), {}, ())
    policy, dropped = _policy(case, spec)
    # The object map straight from the labelling pass, in the smallest unsigned type that
    # holds every object id (a volume's worth of uint32 would be four times the label map).
    object_map, values, owners = geometry.object_components(case.labels, policy)
    groups: dict[int, list[int]] = defaultdict(list)  # object id → its components, ascending
    label_of: dict[int, int] = {}
    for component, (owner, label_id) in enumerate(zip(owners.tolist(), values.tolist(), strict=True)):
        if owner:
            groups[owner].append(component)
            label_of[owner] = int(label_id)
    intensity = image.array if not image.is_2d else luminance(image.array)
    table = geometry.regionprops(object_map, image.spacing, intensity=intensity)
    voxel_volume = float(np.prod(image.spacing))
    shape = np.asarray(case.labels.shape)
    anchors: dict[int, Anchor] = {}
    erase: list[int] = []
    too_small: dict[int, int] = defaultdict(int)
    for row in table:
        object_id = int(row["label"])
        label_id = label_of[object_id]
        name = case.label_names[label_id]
        count = int(row["voxel_count"])
        physical = count * voxel_volume
        if image.is_2d:
            keep = count >= filters.get("min_area_px", name) and physical >= filters.get("min_area_mm2", name)
        else:
            keep = count >= filters.get("min_voxels", name) and physical >= filters.get("min_volume_mm3", name)
        if not keep:
            erase.append(object_id)
            too_small[label_id] += 1
            continue
        anchors[object_id] = _anchor(case, spec, row, object_id, label_id, len(groups[object_id]), shape, voxel_volume)
    for label_id, count in sorted(too_small.items()):
        name = case.label_names[label_id]
        dropped.append(
            Dropped(label_id, name, "too_small", f"{count} object(s) of {name} under the [anchors] minimum size")
        )
    if erase:
        kept = np.arange(max(groups, default=0) + 1, dtype=object_map.dtype)  # the ids are 1..len(groups)
        kept[erase] = 0
        object_map = geometry.relabel(object_map, kept)
    return Objects(object_map, anchors, tuple(dropped))


def _anchor(
    case: Case,
    spec: DatasetSpec,
    row: dict[str, Any],
    object_id: int,
    label_id: int,
    pieces: int,
    shape: NDArray[Any],
    voxel_volume: float,
) -> Anchor:
    image = case.image
    name = case.label_names[label_id]
    centroid = tuple(float(c) for c in row["centroid"])
    world: tuple[float, float, float] | None = None
    if image.oriented:
        x, y, z = (float(c) for c in image.world(centroid))
        world = (x, y, z)
    bbox_min = tuple(int(v) for v in row["bbox_min"])
    bbox_max = tuple(int(v) for v in row["bbox_max"])
    complete = bool(min(bbox_min) > 0 and all(hi < n for hi, n in zip(bbox_max, shape, strict=True)))
    descriptors: dict[str, Any] = {
        "axis_lengths_mm": [round(float(a), 3) for a in row["axis_lengths"]],
        "elongation": round(float(row["elongation"]), 4),
        "intensity_mean": round(float(row["intensity_mean"]), 3),
        "intensity_std": round(float(row["intensity_std"]), 3),
    }
    keys = (
        ("perimeter", "circularity", "solidity", "eccentricity", "feret_diameter_max")
        if image.is_2d
        else ("flatness", "surface_area", "sphericity")
    )
    for key in keys:
        descriptors[key] = round(float(row[key]), 4)
    size = None
    if image.spacing_known:
        physical = int(row["voxel_count"]) * voxel_volume
        size = physical if image.is_2d else physical / 1000.0
    return Anchor(
        object_id=object_id,
        label_id=label_id,
        label=name,
        kind=spec.kind_of(name),
        voxel_count=int(row["voxel_count"]),
        bbox_min=bbox_min,
        bbox_max=bbox_max,
        centroid_index=centroid,
        centroid_world=world,
        size=size,
        complete=complete,
        pieces=pieces,
        descriptors=descriptors,
    )
