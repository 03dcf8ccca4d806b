"""Views: the images a model is shown, and every object in each.

A :class:`View` is one rendered image (a slice of a volume, or a 2D image as stored) with
every object visible in it, each with its exact box in the image, its mask as COCO RLE,
its 2D descriptors, the share of its largest cross-section the slice shows, and whether
the image border cuts it. Slices are chosen per component by the spec's slice rule
(:func:`select_slices`); each view lists all objects on that slice, so a target's
distractors are complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry, render, rle
from medground.anchors import Anchor
from medground.io.case import Case
from medground.io.schema import AnchorFilters, RenderSpec

__all__ = ["View", "ViewObject", "build_views", "component_slices", "select_slices"]


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


def build_views(
    case: Case,
    components: NDArray[Any],
    anchors: dict[int, Anchor],
    render_spec: RenderSpec,
    modality: str,
    *,
    radiological: bool = True,
    filters: AnchorFilters | None = None,
) -> list[View]:
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
        area_rows = {int(c): row for c, row in zip(ids, areas, strict=True)}
        chosen: dict[int, list[int]] = {}
        for component in sorted(anchors):
            row = area_rows.get(component)
            if row is None:
                continue
            picks = select_slices(
                row,
                render_spec.slices,
                max_slices=render_spec.max_slices,
                min_area_fraction=render_spec.min_area_fraction,
            )
            for index in picks:
                chosen.setdefault(index, []).append(component)
        for index in sorted(chosen):
            smap = render.slice_map(
                image.shape, image.spacing, axcodes, plane, index, square_pixels=render_spec.square_pixels
            )
            view = _make_view(case, smap, components, anchors, tuple(chosen[index]), intensity, area_rows, filters)
            if view.targets:
                views.append(view)
    return views


def _pixel_mm(smap: render.SliceMap, spacing: tuple[float, ...]) -> tuple[float, float]:
    rows = spacing[smap.row_axis] * smap.volume_shape[smap.row_axis] / smap.height
    cols = spacing[smap.col_axis] * smap.volume_shape[smap.col_axis] / smap.width
    return float(rows), float(cols)


def _make_view(
    case: Case,
    smap: render.SliceMap,
    components: NDArray[Any],
    anchors: dict[int, Anchor],
    targets: tuple[int, ...],
    intensity: render.Intensity,
    area_rows: dict[int, NDArray[np.int64]] | None,
    filters: AnchorFilters,
) -> View:
    image = case.image
    stored = smap.render(image.array)
    values = render.luminance(stored) if stored.ndim == 3 else stored.astype(np.float32)
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
            if area_px < filters.get("min_area_px", anchor.label) or area_px * pixel_area < filters.get(
                "min_area_mm2", anchor.label
            ):
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
    return View(
        case,
        smap,
        render.to_uint8(stored, intensity),
        values,
        view_components,
        objects,
        tuple(t for t in targets if t in objects),
        pixel_mm,
        intensity,
    )


def select_slices(
    areas: NDArray[np.integer[Any]], rule: str, *, max_slices: int = 16, min_area_fraction: float = 0.5
) -> list[int]:
    """Slices to render for one component, from its area on each slice.

    Args:
        areas: the component's voxel count on each slice along the plane's axis.
        rule: ``max_area`` (the slice of largest cross-section; among ties the middle one),
            ``spread:K`` (K slices evenly spread over those with area ≥ ``min_area_fraction``
            of the max), or ``all`` (every slice it appears on).
        max_slices: cap for ``all`` and ``spread:K`` (evenly subsampled).

    Returns:
        Ascending slice indices; empty for an empty component.
    """
    areas = np.asarray(areas)
    if areas.ndim != 1:
        raise ValueError(f"areas must be one value per slice, got shape {areas.shape}")
    peak = int(areas.max()) if areas.size else 0
    if peak == 0:
        return []
    if rule == "max_area":
        ties = np.flatnonzero(areas == peak)
        return [int(ties[(ties.size - 1) // 2])]
    if rule == "all":
        candidates = np.flatnonzero(areas > 0)
        limit = max_slices
    elif rule.startswith("spread:") and rule[7:].isdigit() and int(rule[7:]) >= 1:
        candidates = np.flatnonzero(areas >= min_area_fraction * peak)
        limit = min(int(rule[7:]), max_slices)
    else:
        raise ValueError(f"slice rule must be 'max_area', 'spread:K' or 'all', got {rule!r}")
    if candidates.size <= limit:
        return [int(c) for c in candidates]
    if limit == 1:
        return [int(candidates[(candidates.size - 1) // 2])]
    picks = np.unique(np.rint(np.linspace(0, candidates.size - 1, limit)).astype(np.intp))
    return [int(candidates[p]) for p in picks]


def component_slices(
    components: NDArray[np.integer[Any]], axis: int, rule: str, *, max_slices: int = 16, min_area_fraction: float = 0.5
) -> dict[int, list[int]]:
    """Slices to render for every component of a label map, along one array axis.

    One pass over the volume (:func:`medground.geometry.slice_areas`), then
    :func:`select_slices` on each component's areas.

    Returns:
        component id → ascending slice indices along ``axis``.
    """
    ids, table = geometry.slice_areas(components, axis, return_labels=True)
    return {
        int(component): select_slices(row, rule, max_slices=max_slices, min_area_fraction=min_area_fraction)
        for component, row in zip(ids, table, strict=True)
    }
