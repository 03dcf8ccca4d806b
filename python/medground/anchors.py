"""Spatial anchors: the objects of a case and the views they are shown in.

An :class:`Anchor` is one connected component of one label, measured in 3D (or in 2D for
images): voxel box, world centroid, size, shape descriptors. A :class:`View` is one
rendered image (a slice of a volume, or a 2D image as stored) with every object visible in
it, each with its exact box in the image, its mask as COCO RLE, its 2D descriptors, the
share of its largest cross-section the slice shows, and whether the image border cuts it.
Views are chosen per component by the spec's slice rule; each view lists all objects on
that slice, so a target's distractors are complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry, render, rle
from medground.io.case import Case
from medground.io.spec import RenderSpec

__all__ = ["Anchor", "AnchorFilters", "View", "ViewObject", "build_views", "find_anchors"]


@dataclass(frozen=True)
class AnchorFilters:
    """Minimum sizes below which a component is not an object (``[anchors]`` in a spec).

    ``min_voxels``/``min_volume_mm3`` apply to 3D components, ``min_area_px``/
    ``min_area_mm2`` to an object's footprint in a view. ``per_label`` overrides any of
    them by label name: ``[anchors.labels."kidney tumor"] min_volume_mm3 = 50``.
    """

    min_voxels: int = 10
    min_volume_mm3: float = 0.0
    min_area_px: int = 16
    min_area_mm2: float = 0.0
    per_label: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    _KEYS = ("min_voxels", "min_volume_mm3", "min_area_px", "min_area_mm2")

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> AnchorFilters:
        """Parses an ``[anchors]`` table; unknown keys raise ValueError naming them."""
        table = dict(table or {})
        per_label = table.pop("labels", {})
        unknown = sorted(set(table) - set(cls._KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) in [anchors]: {', '.join(unknown)}; allowed: {', '.join(cls._KEYS)}, labels")
        for name, overrides in per_label.items():
            bad = sorted(set(overrides) - set(cls._KEYS))
            if bad:
                raise ValueError(f"unknown key(s) in [anchors.labels.{name!r}]: {', '.join(bad)}")
        values = {k: table[k] for k in cls._KEYS if k in table}
        for key, value in [*values.items(), *((k, v) for o in per_label.values() for k, v in o.items())]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"[anchors] {key} must be a non-negative number, got {value!r}")
        return cls(**values, per_label=per_label)

    def get(self, key: str, label: str) -> float:
        return float(self.per_label.get(label, {}).get(key, getattr(self, key)))


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
            "component_id": self.component_id, "label_id": self.label_id, "label": self.label,
            "voxel_count": self.voxel_count, "bbox_min": list(self.bbox_min), "bbox_max": list(self.bbox_max),
            "centroid_index": [round(c, 3) for c in self.centroid_index],
            "centroid_world": None if self.centroid_world is None else [round(c, 2) for c in self.centroid_world],
            "size": round(self.size, 4), "descriptors": self.descriptors,
        }


@dataclass(frozen=True)
class ViewObject:
    """An anchor as it appears in one view."""

    anchor: Anchor
    bbox_xyxy: tuple[int, int, int, int]
    area_px: int
    mask_rle: dict[str, Any]
    descriptors: dict[str, float]
    cross_section_share: float
    cut_by_border: bool

    @property
    def component_id(self) -> int:
        return self.anchor.component_id


@dataclass(frozen=True, eq=False)
class View:
    """One rendered image and the objects in it.

    Attributes:
        case: the case it shows.
        map: the exact voxel↔pixel map (plane and slice index included).
        image: the 8-bit image a model sees (no overlays).
        values: the stored intensities on the image grid (luminance for RGB), for cues.
        components: component ids on the image grid (0 = none).
        objects: every object visible in the view, by component id.
        targets: component ids this view was chosen for.
        pixel_mm: millimetres per pixel (rows, columns) after resampling.
        intensity: how ``image`` was made from ``values``.
    """

    case: Case
    map: render.SliceMap
    image: NDArray[np.uint8]
    values: NDArray[np.float32]
    components: NDArray[Any]
    objects: dict[int, ViewObject]
    targets: tuple[int, ...]
    pixel_mm: tuple[float, float]
    intensity: render.Intensity

    @property
    def plane(self) -> str | None:
        return self.map.plane

    @property
    def slice_index(self) -> int | None:
        return self.map.slice_index

    @property
    def width(self) -> int:
        return self.map.width

    @property
    def height(self) -> int:
        return self.map.height

    def view_record(self) -> dict[str, Any] | None:
        """The ``view`` field of a sample: ``{axis, slice_index}`` or None for 2D images."""
        if self.map.plane is None:
            return None
        return {"axis": self.map.plane, "slice_index": self.map.slice_index, "array_axis": self.map.axis}


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
    intensity = image.array if not image.is_2d else _luminance(image.array)
    table = geometry.regionprops(components, image.spacing, intensity=intensity)
    pairs = geometry.overlap(components, case.labels)
    label_of = {int(a): int(b) for a, b in zip(pairs.a, pairs.b)}
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
        world = tuple(float(c) for c in image.world(centroid)) if image.oriented else None
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
            component_id=component, label_id=label_id, label=name, voxel_count=count,
            bbox_min=tuple(int(v) for v in row["bbox_min"]), bbox_max=tuple(int(v) for v in row["bbox_max"]),
            centroid_index=centroid, centroid_world=world,  # type: ignore[arg-type]
            size=physical / 1000.0 if not image.is_2d else physical, descriptors=descriptors,
        )
    if dropped:
        keep_mask = np.isin(components, np.asarray(dropped, dtype=components.dtype), invert=True)
        components = np.where(keep_mask, components, 0).astype(components.dtype)
    return components, anchors


def _luminance(array: NDArray[Any]) -> NDArray[np.float32]:
    if array.ndim == 3:
        rgb = array[..., :3].astype(np.float32)
        return rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return array.astype(np.float32)


def build_views(case: Case, components: NDArray[Any], anchors: dict[int, Anchor], render_spec: RenderSpec,
                modality: str, *, radiological: bool = True, filters: AnchorFilters | None = None) -> list[View]:
    """The views of a case: per plane, the slices the rule picks for any anchor, each
    with every object on it. 2D images give one view."""
    filters = filters or AnchorFilters()
    image = case.image
    if not anchors:
        return []
    intensity = render.intensity_for(image, modality, render_spec.window, render_spec.percentiles)
    if image.is_2d:
        smap = render.image_map(image.shape, image.spacing, square_pixels=False)
        view = _make_view(case, smap, components, anchors, tuple(sorted(anchors)), intensity, None, filters)
        return [view] if view.objects else []
    views = []
    for plane in render_spec.axes:
        axcodes = image.axcodes if radiological else None
        axis = render.plane_axis(axcodes, plane)
        ids, areas = geometry.slice_areas(components, axis, return_labels=True)
        area_rows = {int(c): row for c, row in zip(ids, areas)}
        chosen: dict[int, list[int]] = {}
        for component in sorted(anchors):
            row = area_rows.get(component)
            if row is None:
                continue
            picks = render.select_slices(row, render_spec.slices, max_slices=render_spec.max_slices,
                                         min_area_fraction=render_spec.min_area_fraction)
            for index in picks:
                chosen.setdefault(index, []).append(component)
        for index in sorted(chosen):
            smap = render.slice_map(image.shape, image.spacing, axcodes, plane, index,
                                    square_pixels=render_spec.square_pixels)
            view = _make_view(case, smap, components, anchors, tuple(chosen[index]), intensity, area_rows, filters)
            if view.targets:
                views.append(view)
    return views


def _pixel_mm(smap: render.SliceMap, spacing: tuple[float, ...]) -> tuple[float, float]:
    rows = spacing[smap.row_axis] * smap.volume_shape[smap.row_axis] / smap.height
    cols = spacing[smap.col_axis] * smap.volume_shape[smap.col_axis] / smap.width
    return float(rows), float(cols)


def _make_view(case: Case, smap: render.SliceMap, components: NDArray[Any], anchors: dict[int, Anchor],
               targets: tuple[int, ...], intensity: render.Intensity,
               area_rows: dict[int, NDArray[np.int64]] | None, filters: AnchorFilters) -> View:
    image = case.image
    stored = smap.render(image.array)
    values = _luminance(stored) if stored.ndim == 3 else stored.astype(np.float32)
    view_components = smap.render(components)
    pixel_mm = _pixel_mm(smap, image.spacing)
    objects: dict[int, ViewObject] = {}
    if view_components.any():
        table = geometry.regionprops(view_components, pixel_mm)
        height, width = view_components.shape
        pixel_area = pixel_mm[0] * pixel_mm[1]
        for row in table:
            component = int(row["label"])
            anchor = anchors.get(component)
            if anchor is None:
                continue
            area_px = int(row["voxel_count"])
            if area_px < filters.get("min_area_px", anchor.label) or area_px * pixel_area < filters.get("min_area_mm2", anchor.label):
                continue
            (y0, x0), (y1, x1) = row["bbox_min"], row["bbox_max"]
            share = 1.0
            if area_rows is not None and smap.axis is not None:
                areas = area_rows[component]
                share = float(areas[smap.slice_index]) / float(areas.max())
            objects[component] = ViewObject(
                anchor=anchor,
                bbox_xyxy=(int(x0), int(y0), int(x1), int(y1)),
                area_px=area_px,
                mask_rle=rle.encode(view_components == component),
                descriptors={
                    "area_mm2": round(area_px * pixel_area, 3),
                    "perimeter_mm": round(float(row["perimeter"]), 3),
                    "circularity": round(float(row["circularity"]), 4),
                    "solidity": round(float(row["solidity"]), 4),
                    "eccentricity": round(float(row["eccentricity"]), 4),
                    "elongation": round(float(row["elongation"]), 4),
                    "diameter_mm": round(float(row["feret_diameter_max"]), 3),
                },
                cross_section_share=round(share, 4),
                cut_by_border=bool(x0 == 0 or y0 == 0 or x1 == width or y1 == height),
            )
    return View(case, smap, render.to_uint8(stored, intensity), values, view_components, objects,
                tuple(t for t in targets if t in objects), pixel_mm, intensity)
