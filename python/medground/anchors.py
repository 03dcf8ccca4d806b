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
from medground.io.case import Case, LabelWork
from medground.io.schema import DatasetSpec
from medground.render import luminance

__all__ = ["Anchor", "Dropped", "LabelObjects", "Objects", "find_anchors", "label_objects", "objects_ahead"]


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
        return _slice_areas(self.map)


def _slice_areas(object_map: NDArray[Any]) -> dict[int, tuple[NDArray[Any], NDArray[np.int64]]]:
    """:attr:`Objects.slice_areas` of an object map."""
    ids, tables = geometry.slice_areas_along(object_map)
    return {axis: (ids, table) for axis, table in enumerate(tables)}


def _policy(present: tuple[int, ...], names: dict[int, str], spec: DatasetSpec) -> tuple[dict[int, int], list[Dropped]]:
    """What the components of each declared label present become
    (:func:`geometry.object_components`: 1, an organ is one object in however many pieces;
    2, an instance label gives an object per component), and the labels the spec does not
    declare (never objects, whatever their ids)."""
    policy: dict[int, int] = {}
    dropped = []
    for label_id in sorted(present):
        name = names[label_id]
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


@dataclass(frozen=True, eq=False)
class LabelObjects:
    """What a label map alone says of a case's objects (no intensities): the object map with
    the objects under the ``[anchors]`` minimum sizes erased, each kept object's region row
    (without intensity statistics unless they were asked for), its label and pieces, and what
    was dropped. :func:`label_objects` makes it; with two cores, on the thread that read the
    label map while the image is still being read (:func:`medground.io.load_case`'s ``then``)."""

    map: NDArray[Any]
    rows: dict[int, dict[str, Any]]
    label_of: dict[int, int]
    pieces: dict[int, int]
    dropped: tuple[Dropped, ...]
    spacing: tuple[float, ...]
    intensities: bool
    slice_areas: dict[int, tuple[NDArray[Any], NDArray[np.int64]]] | None = None


def label_objects(
    labels: NDArray[Any],
    present: tuple[int, ...],
    names: dict[int, str],
    spec: DatasetSpec,
    spacing: tuple[float, ...],
    intensity: NDArray[Any] | None = None,
    *,
    slice_areas: bool = False,
) -> LabelObjects:
    """The objects of a label map (organs whole, instances per connected component) measured
    on a grid of ``spacing``, with ``intensity``'s statistics when given; ``slice_areas``:
    also every object's area on every slice (:attr:`Objects.slice_areas`)."""
    filters = spec.anchors
    is_2d = labels.ndim == 2
    policy, dropped = _policy(present, names, spec)
    # The object map straight from the labelling pass, in the smallest unsigned type that
    # holds every object id (a volume's worth of uint32 would be four times the label map).
    object_map, values, owners = geometry.object_components(labels, policy)
    pieces: dict[int, int] = defaultdict(int)  # object id → its components
    label_of: dict[int, int] = {}
    for owner, label_id in zip(owners.tolist(), values.tolist(), strict=True):
        if owner:
            pieces[owner] += 1
            label_of[owner] = int(label_id)
    table = geometry.regionprops(object_map, spacing, intensity=intensity)
    voxel_volume = float(np.prod(spacing))
    rows: dict[int, dict[str, Any]] = {}
    erase: list[int] = []
    too_small: dict[int, int] = defaultdict(int)
    for row in table:
        object_id = int(row["label"])
        label_id = label_of[object_id]
        name = names[label_id]
        count = int(row["voxel_count"])
        physical = count * voxel_volume
        if is_2d:
            keep = count >= filters.get("min_area_px", name) and physical >= filters.get("min_area_mm2", name)
        else:
            keep = count >= filters.get("min_voxels", name) and physical >= filters.get("min_volume_mm3", name)
        if keep:
            rows[object_id] = row
        else:
            erase.append(object_id)
            too_small[label_id] += 1
    for label_id, count in sorted(too_small.items()):
        name = names[label_id]
        dropped.append(
            Dropped(label_id, name, "too_small", f"{count} object(s) of {name} under the [anchors] minimum size")
        )
    if erase:
        kept = np.arange(max(label_of, default=0) + 1, dtype=object_map.dtype)  # the ids are 1..len(label_of)
        kept[erase] = 0
        object_map = geometry.relabel(object_map, kept)
    areas = _slice_areas(object_map) if slice_areas and rows else None
    return LabelObjects(
        object_map, rows, label_of, dict(pieces), tuple(dropped), tuple(spacing), intensity is not None, areas
    )


def objects_ahead(spec: DatasetSpec) -> LabelWork:
    """:func:`medground.io.load_case`'s ``then`` for :func:`find_anchors`: a volume's objects,
    their regions and slice areas measured from the label map while the image is still being
    read (the intensity statistics wait for the image)."""

    def work(
        labels: NDArray[Any], present: tuple[int, ...], names: dict[int, str], spacing: tuple[float, ...]
    ) -> LabelObjects:
        return label_objects(labels, present, names, spec, spacing, slice_areas=True)

    return work


def find_anchors(case: Case, spec: DatasetSpec) -> Objects:
    """The objects of a case (organs whole, instances per connected component) and their anchors.

    Objects under the spec's ``[anchors]`` minimum sizes are erased from the object map and
    reported as dropped. What the label map alone gives may have been measured while the
    image was read (``case.ahead``, a :class:`LabelObjects` on the image's spacing): then
    only the intensity statistics are measured here.
    """
    image = case.image
    if not case.present:
        return Objects(np.zeros(case.labels.shape, np.uint32), {}, ())
    intensity = image.array if not image.is_2d else luminance(image.array)
    found = case.ahead
    if not isinstance(found, LabelObjects) or found.spacing != image.spacing:
        found = label_objects(case.labels, case.present, case.label_names, spec, image.spacing, intensity)
    rows = found.rows
    if not found.intensities and rows:
        # The intensity statistics of the kept objects (the others are erased from the map).
        measured = geometry.regionprops(found.map, image.spacing, intensity=intensity, contours=False)
        means, spreads = measured["intensity_mean"], measured["intensity_std"]
        rows = {
            object_id: {**row, "intensity_mean": means[i].item(), "intensity_std": spreads[i].item()}
            for i, (object_id, row) in enumerate(rows.items())
        }
    voxel_volume = float(np.prod(image.spacing))
    shape = np.asarray(case.labels.shape)
    anchors = {
        object_id: _anchor(
            case, spec, row, object_id, found.label_of[object_id], found.pieces[object_id], shape, voxel_volume
        )
        for object_id, row in rows.items()
    }
    objects = Objects(found.map, anchors, found.dropped)
    if found.slice_areas is not None:
        objects.__dict__["slice_areas"] = found.slice_areas  # measured beside the image's read
    return objects


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
