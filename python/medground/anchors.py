"""Spatial anchors: the objects of a case, measured on the volume's grid.

An :class:`Anchor` is one connected component of one label, measured in 3D (or in 2D for
images): voxel box, world centroid, size, shape descriptors. Components below the spec's
minimum sizes (``[anchors]``, :class:`medground.io.schema.AnchorFilters`) are not objects.
How anchors are shown is :mod:`medground.views`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry
from medground.io.case import Case
from medground.io.schema import AnchorFilters
from medground.render import luminance

__all__ = ["Anchor", "find_anchors"]


@dataclass(frozen=True)
class Anchor:
    """One connected component of one label, measured on the volume's grid.

    ``size`` is the volume in mL for 3D objects and the area in mm² (pixels² without a
    pixel spacing) for 2D ones. ``centroid_world`` is RAS+ mm, None without orientation.
    """

    component_id: int
    label_id: int
    label: str
    voxel_count: int
    bbox_min: tuple[int, ...]
    bbox_max: tuple[int, ...]
    centroid_index: tuple[float, ...]
    centroid_world: tuple[float, float, float] | None
    size: float
    descriptors: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "component_id": self.component_id,
            "label_id": self.label_id,
            "label": self.label,
            "voxel_count": self.voxel_count,
            "bbox_min": list(self.bbox_min),
            "bbox_max": list(self.bbox_max),
            "centroid_index": [round(c, 3) for c in self.centroid_index],
            "centroid_world": None if self.centroid_world is None else [round(c, 2) for c in self.centroid_world],
            "size": round(self.size, 4),
            "descriptors": self.descriptors,
        }


def find_anchors(case: Case, filters: AnchorFilters | None = None) -> tuple[NDArray[Any], dict[int, Anchor]]:
    """Connected components of every label (26/8-connected) and their anchors.

    Components below the filters' minimum sizes are erased from the returned map.

    Returns:
        The component map (same grid as ``case.labels``) and component id → anchor.
    """
    filters = filters or AnchorFilters()
    image = case.image
    components = geometry.connected_components(case.labels)
    if not case.present:
        return components, {}
    intensity = image.array if not image.is_2d else luminance(image.array)
    table = geometry.regionprops(components, image.spacing, intensity=intensity)
    pairs = geometry.overlap(components, case.labels)
    label_of = {int(a): int(b) for a, b in zip(pairs.a, pairs.b, strict=True)}
    voxel_mm3 = float(np.prod(image.spacing))
    anchors: dict[int, Anchor] = {}
    dropped = []
    for row in table:
        component = int(row["label"])
        label_id = label_of[component]
        name = case.label_names[label_id]
        count = int(row["voxel_count"])
        physical = count * voxel_mm3
        if image.is_2d:
            keep = count >= filters.get("min_area_px", name) and physical >= filters.get("min_area_mm2", name)
        else:
            keep = count >= filters.get("min_voxels", name) and physical >= filters.get("min_volume_mm3", name)
        if not keep:
            dropped.append(component)
            continue
        centroid = tuple(float(c) for c in row["centroid"])
        world: tuple[float, float, float] | None = None
        if image.oriented:
            x, y, z = (float(c) for c in image.world(centroid))
            world = (x, y, z)
        descriptors: dict[str, Any] = {
            "axis_lengths_mm": [round(float(a), 3) for a in row["axis_lengths"]],
            "elongation": round(float(row["elongation"]), 4),
            "intensity_mean": round(float(row["intensity_mean"]), 3),
            "intensity_std": round(float(row["intensity_std"]), 3),
        }
        if image.is_2d:
            for key in ("perimeter", "circularity", "solidity", "eccentricity", "feret_diameter_max"):
                descriptors[key] = round(float(row[key]), 4)
        else:
            for key in ("flatness", "surface_area", "sphericity"):
                descriptors[key] = round(float(row[key]), 4)
        anchors[component] = Anchor(
            component_id=component,
            label_id=label_id,
            label=name,
            voxel_count=count,
            bbox_min=tuple(int(v) for v in row["bbox_min"]),
            bbox_max=tuple(int(v) for v in row["bbox_max"]),
            centroid_index=centroid,
            centroid_world=world,
            size=physical / 1000.0 if not image.is_2d else physical,
            descriptors=descriptors,
        )
    if dropped:
        keep_mask = np.isin(components, np.asarray(dropped, dtype=components.dtype), invert=True)
        components = np.where(keep_mask, components, 0).astype(components.dtype)
    return components, anchors
