"""Facts measured a second time, from what a sample ships, for the rules stage.

The rules stage does not take the cue record's word for anything. It measures every fact
a query can claim from the evidence of the sample's view: the stored 8-bit image, the
objects' masks in it, the voxel↔pixel map and the volume (its geometry, the objects' voxels
and, for sagittal views, the body), with code of its own (numpy and scipy here; the cues
use the Rust core and a 3D midline). A claim is checked against these measurements, and a
cue that a query relies on is compared with them: where the two computations disagree,
the sample is rejected (``facts_disagree``) whatever the query says.

A measurement gives the set of words a careful reader could use for it, not one word: a
band around each documented threshold (:data:`TOLERANCE`), so that a lesion of 9.9 mm may
be called small or medium-sized but never large. A claim holds when its word is in the set;
a cue disagrees when its word is not.

Thresholds (the cues' documented ones, re-stated here so that either can be re-checked):

* position: the cell of the 3×3 grid holding the centre of the union box of the object's
  pixels (exact: boxes equal masks).
* side: the share of the object's pixels on the patient's right of the body's midline,
  the middle of the body's extent in the stored image per row (axial, coronal and 2D
  views; the body is the largest component above half the image's Otsu threshold), or,
  on sagittal views, the slice's world x against the middle of the body in the volume.
  ``right`` from a share of 0.6, ``left`` up to 0.4, ``midline`` between 0.15 and 0.85.
* intensity: mean grey inside against a ring 3 mm wide (at least 2 pixels; Euclidean
  distance) in the stored image; the threshold t is 15 HU in the window's grey levels
  (at least 4) for CT, half the ring's standard deviation (at least 2) for MR and PET,
  5% of full scale otherwise; darker below −t/2, brighter above t/2, similar within 1.5 t.
* shape (lesion-like instances the image border does not cut): elongation (square root of the covariance eigenvalue
  ratio), solidity (area over the convex hull of the pixel squares), circularity
  (4πA/P² with the marching-squares perimeter), classified as the cues do, every class
  reachable within ±0.03 (elongation, circularity) and ±0.02 (solidity) allowed.
* size: lesion-like instances by the longest diameter between hull corners (< 10 mm
  small, ≤ 30 mm medium, else large), only when the object touches neither the volume's
  nor the image's border; organs by their voxels' volume against the adult ranges in
  ``presets/priors.toml``, only when whole in the volume; photographs by share of the
  image (< 2% small, ≤ 15% medium, else large) when the image border does not cut them;
  each bound ± 10%.
* relations: the share of the object's outer boundary on another object (within from
  25%); a direction in the plane shown when the centres lie that way along that axis at
  least half as far as along the other and the boxes overlap along it by at most 25% of
  the smaller extent; medial/lateral between objects on the same side.
* rank: largest (smallest) when its area is at least 5% above (below) every other of its
  category in the view.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medground import geometry
from medground.anatomy import absent_margin, is_lesion, priors
from medground.terms import clinical_term
from medground.views import View
from medground.words import image_position, shape_word

__all__ = [
    "TOLERANCE",
    "CaseEvidence",
    "Evidence",
    "Form",
    "Measured",
    "Measurements",
    "evidence_of_view",
    "intensity_direction",
    "sides_of",
    "size_classes",
]

#: Relative band around the size thresholds.
TOLERANCE = 0.1
RING_MM = 3.0
LESION_MM = (10.0, 30.0)
IMAGE_SHARE = (0.02, 0.15)
SIDE_RIGHT, SIDE_LEFT, SIDE_MIDLINE = 0.6, 0.4, (0.15, 0.85)
SHAPE_BAND = {"elongation": 0.03, "circularity": 0.03, "solidity": 0.02}
RANK_MARGIN = 0.05
#: A piece of an object smaller than this many voxels is a speck, not a part (as the views).
MIN_PIECE_VOXELS = 4
WITHIN_SHARE = 0.25
DIRECTION_OVERLAP = 0.25

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_WORDS = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
_INTENSITY = {
    "hypodense": "low",
    "hypointense": "low",
    "darker": "low",
    "isodense": "same",
    "isointense": "same",
    "similar": "same",
    "hyperdense": "high",
    "hyperintense": "high",
    "brighter": "high",
}


def intensity_direction(word: str | None) -> str | None:
    """``low``, ``same`` or ``high`` for an intensity word of any modality."""
    return None if word is None else _INTENSITY.get(word)


class CaseEvidence:
    """What a case's volume ships, shared by the evidence of its views: the objects' ids on
    the volume's grid and the image volume, with what is measured from them once per case
    (each object's voxels and whether it touches the volume's border, its largest area
    along each axis, the body's middle)."""

    def __init__(
        self,
        object_volume: NDArray[Any],
        volume: NDArray[Any],
        affine: NDArray[np.float64],
        modality: str,
        *,
        areas: Mapping[int, tuple[NDArray[Any], NDArray[np.int64]]] | None = None,
    ):
        self.object_volume = object_volume
        self.volume = volume
        self.affine = affine
        self.modality = modality
        self._given = areas
        self._areas: dict[int, tuple[dict[int, int], NDArray[np.int64]]] = {}

    def areas(self, axis: int) -> tuple[dict[int, int], NDArray[np.int64]]:
        """Every object's voxels on each slice along ``axis``: object id → row, and the rows
        (the tables handed in, as :attr:`medground.anchors.Objects.slice_areas` counts them
        from this same map, or one pass over every axis of the volume in the core)."""
        if axis not in self._areas:
            if self._given is None:
                ids, tables = geometry.slice_areas_along(self.object_volume)
                self._given = dict(enumerate(zip([ids] * len(tables), tables, strict=True)))
            ids, table = self._given[axis]
            self._areas[axis] = ({int(i): row for row, i in enumerate(ids) if i}, table)
        return self._areas[axis]

    @cached_property
    def stats(self) -> tuple[dict[int, int], frozenset[int]]:
        """Voxels per object, and the objects touching the volume's border."""
        border: set[int] = set()
        counts: dict[int, int] = {}
        for axis in range(self.object_volume.ndim):
            rows, table = self.areas(axis)
            if not rows:
                continue
            # Whole tables at once: an object's voxels are its row's sum along any axis.
            sums = table.sum(axis=1).tolist()
            edge = ((table[:, 0] != 0) | (table[:, -1] != 0)).tolist()
            for object_id, row in rows.items():
                counts[object_id] = int(sums[row])
                if edge[row]:
                    border.add(object_id)
        return counts, frozenset(border)

    def largest_area(self, object_id: int, axis: int) -> int | None:
        """The object's largest area (voxels) on any slice along ``axis``."""
        rows, table = self.areas(axis)
        row = rows.get(object_id)
        return None if row is None else int(table[row].max())

    def slice_area(self, object_id: int, axis: int, index: int) -> int:
        rows, table = self.areas(axis)
        row = rows.get(object_id)
        return 0 if row is None else int(table[row, index])

    @cached_property
    def midline_x(self) -> float | None:
        """World x of the middle of the body in the volume (for sagittal views)."""
        step = max(1, int(round((self.volume.size / 2e6) ** (1 / 3))))
        sample = np.asarray(self.volume[::step, ::step, ::step], dtype=np.float64)
        if self.modality == "CT":
            body = sample > -300.0
        else:
            finite = sample[np.isfinite(sample)]
            low, high = np.percentile(finite, (1, 99))
            scaled = np.clip((sample - low) / max(high - low, 1e-6) * 255.0, 0, 255)
            body = scaled > 0.5 * _otsu(scaled.ravel())
        points = np.argwhere(body) * step
        if points.size == 0:
            return None
        xs = (points @ self.affine[:3, :3].T + self.affine[:3, 3])[:, 0]
        low, high = np.percentile(xs, (2, 98))
        return float(0.5 * (low + high))


def _distinct(source: NDArray[np.intp]) -> int:
    """Distinct voxels a row (or column) map shows: its steps plus one where it runs one
    way (a view's rows and columns, flipped or not), else numpy's unique."""
    if source.size < 2:
        return int(source.size)
    steps = np.diff(source)
    if (steps >= 0).all() or (steps <= 0).all():
        return int(np.count_nonzero(steps)) + 1
    return len(np.unique(source))


@dataclass(frozen=True, eq=False)
class Evidence:
    """What the samples of one view ship, as the verifier reads it.

    Attributes:
        image: the stored 8-bit image (grey, or RGB).
        objects: object ids on the image grid (0 = none): the masks in the image.
        labels: object id → label name; ``kinds``: object id → organ, instance or series.
        modality, body_region: the dataset's.
        plane: axial, coronal or sagittal; None for 2D images.
        row_axis, col_axis, slice_axis, slice_index: the voxel↔pixel map's axes.
        row_source, col_source: for each row/column of the image, the voxel it shows.
        spacing: voxel size per array axis (mm), None without physical spacing.
        axcodes: patient direction of each array axis, None without orientation.
        affine: index → RAS+ mm.
        case: the case's volume evidence (None for 2D images: sizes in 3D unknown).
        window_width: the CT window's width in HU, None for other renderings.
        clinical: object id → clinical attribute → term, from the dataset's case table.
        clinical_terms: every term that table can give (a query naming a wrong one is read).
        labels_known: every label name of the dataset (a query may name any of them).
        values, full_scale: the stored intensities on the image grid (for the visual judge).
        label_map: the case's label map as loaded (the volume, or the 2D image's), every
            label's voxels before any became an object: what an absent query is checked
            against (None: only the objects of the view are known).
        label_names: label id → name for the ids of ``label_map``.
        masks, table: every id's COCO RLE counts and the region table of ``objects``, where
            whoever made the view read them already (the same core passes over the same
            map); None: measured here.
    """

    image: NDArray[np.uint8]
    objects: NDArray[Any]
    labels: Mapping[int, str]
    kinds: Mapping[int, str]
    modality: str
    body_region: str | None
    plane: str | None
    row_axis: int
    col_axis: int
    slice_axis: int | None
    slice_index: int | None
    row_source: NDArray[np.intp]
    col_source: NDArray[np.intp]
    spacing: tuple[float, ...] | None
    axcodes: tuple[str, ...] | None
    affine: NDArray[np.float64]
    case: CaseEvidence | None = None
    window_width: float | None = None
    clinical: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    clinical_terms: tuple[str, ...] = ()
    labels_known: tuple[str, ...] = ()
    values: NDArray[Any] | None = None
    full_scale: float | None = None
    label_map: NDArray[Any] | None = None
    label_names: Mapping[int, str] = field(default_factory=dict)
    masks: Mapping[int, str] | None = None
    table: Any = None

    @property
    def height(self) -> int:
        return int(self.objects.shape[0])

    @property
    def width(self) -> int:
        return int(self.objects.shape[1])

    @property
    def oriented(self) -> bool:
        return self.axcodes is not None

    @cached_property
    def pixel_mm(self) -> tuple[float, float] | None:
        """Millimetres per pixel (rows, columns), from the map and the voxel size."""
        if self.spacing is None:
            return None
        rows = _distinct(self.row_source) / float(self.height)
        cols = _distinct(self.col_source) / float(self.width)
        return self.spacing[self.row_axis] * rows, self.spacing[self.col_axis] * cols

    @cached_property
    def directions(self) -> tuple[str, str] | None:
        """The patient direction rows and columns grow in (``("P", "L")``)."""
        if self.axcodes is None:
            return None
        out = []
        for axis, source in ((self.row_axis, self.row_source), (self.col_axis, self.col_source)):
            code = self.axcodes[axis]
            flipped = source.size > 1 and source[0] > source[-1]
            out.append(_OPPOSITE[code] if flipped else code)
        return out[0], out[1]

    @property
    def grey(self) -> NDArray[np.float64]:
        """The stored image's grey levels as float64 (luminance for RGB); made when asked for,
        not kept: a case's views are verified together, and a float64 copy of each would
        outweigh the volume. Per object, :meth:`grey_window` reads the box only."""
        return self._rgb_grey if self.image.ndim == 3 else self.image.astype(np.float64)

    @cached_property
    def _rgb_grey(self) -> NDArray[np.float64]:
        return np.asarray(self.image.astype(np.float64) @ np.asarray([0.299, 0.587, 0.114]), dtype=np.float64)

    def grey_window(self, rows: slice, cols: slice) -> NDArray[np.float64]:
        """:attr:`grey` of a window of the image."""
        if self.image.ndim == 3:
            return self._rgb_grey[rows, cols]
        return self.image[rows, cols].astype(np.float64)

    def world_x(self, ys: NDArray[Any], xs: NDArray[Any]) -> NDArray[np.float64]:
        """RAS+ x (mm; grows toward the patient's right) of the voxels pixels (ys, xs) show."""
        n_axes = 3 if self.slice_axis is not None else 2
        index = np.zeros((ys.size, n_axes))
        index[:, self.row_axis] = self.row_source[ys]
        index[:, self.col_axis] = self.col_source[xs]
        if self.slice_axis is not None and self.slice_index is not None:
            index[:, self.slice_axis] = self.slice_index
        world = index @ self.affine[:3, :n_axes].T + self.affine[:3, 3]
        return np.asarray(world[:, 0], dtype=np.float64)


@dataclass(frozen=True)
class Measured:
    """One object's facts as the verifier measures them (word sets: what a reader may say).
    In a view, ``box`` is ``(x0, y0, x1, y1)`` in pixels and ``centre`` in pixels; for a
    volume sample (:mod:`medground.verify.volume`), ``box`` is ``(i0, j0, k0, i1, j1, k1)``
    in voxels and ``centre`` the box's centre in RAS+ mm."""

    object_id: int
    label: str
    kind: str
    category: str
    box: tuple[int, ...]
    area_px: int
    position: str
    right_share: float | None
    sides: frozenset[str]
    contrast: float | None
    intensities: frozenset[str]
    form: Form
    volume_ml: float | None
    centre: tuple[float, ...]
    boundary: Mapping[int, float]
    clinical: Mapping[str, str]
    cross_section_share: float

    @property
    def shapes(self) -> frozenset[str] | None:
        """The shape classes a reader may use (lesions wholly in the image)."""
        return self.form.values[0]

    @property
    def sizes(self) -> frozenset[str] | None:
        """The size classes a reader may use."""
        return self.form.values[1]

    @property
    def diameter_mm(self) -> float | None:
        """The longest diameter between hull corners (lesions, with a known spacing)."""
        return self.form.values[2]


class Form:
    """An object's shape classes, size classes and longest diameter, worked out when first
    asked for: a lesion's hull is the costliest reading of it, and most queries about one
    of a thousand nuclei never ask its shape."""

    def __init__(self, work: Callable[[], tuple[frozenset[str] | None, frozenset[str] | None, float | None]]) -> None:
        self._work = work

    @classmethod
    def known(cls, shapes: frozenset[str] | None, sizes: frozenset[str] | None, diameter: float | None) -> Form:
        return cls(lambda: (shapes, sizes, diameter))

    @cached_property
    def values(self) -> tuple[frozenset[str] | None, frozenset[str] | None, float | None]:
        return self._work()


@dataclass(frozen=True)
class _Reading:
    """What one object's pixels, its ring and its outline hold in a view."""

    box: tuple[int, int, int, int]
    area: int
    centre: tuple[float, float]
    difference: float | None  # mean grey inside − mean of the ring; None without a ring
    ring_std: float
    boundary: Mapping[int, float]  # share of the outer boundary on each other object

    @classmethod
    def of_stats(cls, stats: geometry.ObjectStats) -> _Reading:
        ring = stats.ring_count > 0
        return cls(
            box=stats.bbox,
            area=stats.area,
            centre=stats.centre,
            difference=stats.inside_mean - stats.ring_mean if ring else None,
            ring_std=stats.ring_std if ring else 0.0,
            boundary={label: count / stats.touching for label, count in stats.touches},
        )


def sides_of(right_share: float | None) -> frozenset[str]:
    """The sides a reader may give an object with ``right_share`` of it on the patient's
    right (the bands of the module docstring; none without a share)."""
    sides: set[str] = set()
    if right_share is not None:
        if right_share >= SIDE_RIGHT:
            sides.add("right")
        if right_share <= SIDE_LEFT:
            sides.add("left")
        if SIDE_MIDLINE[0] < right_share < SIDE_MIDLINE[1]:
            sides.add("midline")
    return frozenset(sides)


def _otsu(values: NDArray[Any]) -> float:
    if values.dtype == np.uint8:  # one bin per grey level: the same counts, without binning
        histogram = np.bincount(values.ravel(), minlength=256)
        edges = np.arange(257, dtype=np.float64)
    else:
        histogram, edges = np.histogram(values, bins=256, range=(0.0, 256.0))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight = np.cumsum(histogram).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(histogram * centres)
    between = (mean[-1] * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    return float(centres[int(np.argmax(between[:-1]))])


def _shapes(mask: NDArray[np.bool_], scale: tuple[float, float]) -> tuple[frozenset[str], float]:
    """The shape classes within the band of the measured descriptors, and the longest
    diameter between hull corners (physical units), measured by the core from the mask
    alone: elongation from the pixels' covariance, solidity against the convex hull of the
    pixel squares, circularity from the marching-squares contour."""
    table = geometry.regionprops(mask.view(np.uint8), scale)
    # One pixel has no spread: read as round (the core gives it elongation 0).
    elongation = float(table["elongation"][0]) if table["axis_lengths"][0, 0] > 0 else 1.0
    solidity = min(1.0, float(table["solidity"][0]))
    circularity = float(table["circularity"][0])
    classes = set()
    for de in (-1, 0, 1):
        for ds in (-1, 0, 1):
            for dc in (-1, 0, 1):
                classes.add(
                    shape_word(
                        elongation + de * SHAPE_BAND["elongation"],
                        solidity + ds * SHAPE_BAND["solidity"],
                        circularity + dc * SHAPE_BAND["circularity"],
                    )
                )
    return frozenset(classes), float(table["feret_diameter_max"][0])


def _classes(value: float, bounds: tuple[float, float], names: tuple[str, str, str]) -> frozenset[str]:
    """The classes a value may take with every bound moved by ± :data:`TOLERANCE`."""
    low, high = value * (1 - TOLERANCE), value * (1 + TOLERANCE)
    out = set()
    if low < bounds[0]:
        out.add(names[0])
    if high >= bounds[0] and low <= bounds[1]:
        out.add(names[1])
    if high > bounds[1]:
        out.add(names[2])
    return frozenset(out)


def size_classes(
    ev: Evidence,
    label: str,
    kind: str,
    lesion: bool,
    diameter: float | None,
    volume_ml: float | None,
    whole: bool,
    area: int,
) -> frozenset[str] | None:
    """The size classes a reader may use for an object of the evidence ``ev``."""
    if kind == "instance":
        if not lesion:
            return None
        if ev.pixel_mm is None:
            share = area / float(ev.width * ev.height)
            return _classes(share, IMAGE_SHARE, ("small", "medium", "large")) if whole else None
        return _classes(diameter, LESION_MM, ("small", "medium", "large")) if whole and diameter else None
    if kind == "series" or volume_ml is None:
        return None
    ranges = priors().get("volume_ml", {})
    key = label.lower().replace(" ", "_")
    for name in (key, key.removesuffix("_left").removesuffix("_right")):
        if name in ranges:
            low, high = ranges[name]
            return _classes(volume_ml, (low, high), ("small", "normal", "large"))
    return None


class Measurements:
    """The measured facts of every object of a view, computed when first asked for."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence
        self._cache: dict[int, Measured] = {}
        self._readings: dict[int, _Reading] = {}
        self._shares: dict[int, float | None] = {}
        self._pieces: dict[int, int] = {}
        self._in_case: dict[str, bool] = {}

    # ---------------------------------------------------------------- the view

    @cached_property
    def masks(self) -> dict[int, str]:
        """Every object's COCO RLE counts string on the view, from one walk of its objects
        map in the core: a stored mask equal to one of these is that object's pixels."""
        given = self.evidence.masks
        return dict(given) if given is not None else geometry.rle_by_label(self.evidence.objects)

    @cached_property
    def labels_in_view(self) -> frozenset[str]:
        """The names of every label with a voxel in the view: anywhere in a 2D image's label
        map; for a slice of a volume, on the slice or within :func:`medground.anatomy.absent_margin`
        slices of it (the whole slice, whatever part of it the image shows). Read from the
        label map as loaded, so a structure too small to be an object still counts; without
        a label map, the labels of the view's objects."""
        ev = self.evidence
        if ev.label_map is None:
            return frozenset(ev.labels[o] for o in self.object_ids)
        region: Any = ev.label_map
        if ev.slice_axis is not None and ev.slice_index is not None and ev.label_map.ndim == 3:
            axis, index = ev.slice_axis, ev.slice_index
            margin = absent_margin(ev.spacing[axis] if ev.spacing is not None else None)
            window: list[slice] = [slice(None)] * 3
            window[axis] = slice(max(0, index - margin), index + margin + 1)
            region = ev.label_map[tuple(window)]
        ids = np.unique(np.asarray(region))
        return frozenset(ev.label_names.get(int(i), f"unknown_{int(i)}") for i in ids if i != 0)

    def label_in_case(self, name: str) -> bool:
        """Whether label ``name`` has any voxel in the case's label map (False without one)."""
        if name not in self._in_case:
            ev = self.evidence
            ids = [i for i, n in ev.label_names.items() if n == name]
            found = ev.label_map is not None and bool(ids) and bool(np.isin(ev.label_map, ids).any())
            self._in_case[name] = found
        return self._in_case[name]

    @cached_property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(i for i in self._boxes if i in self.evidence.labels)

    @cached_property
    def _table(self) -> Any:
        """Every object's box and pixel count on the view, ascending ids (one core pass)."""
        given = self.evidence.table
        return given if given is not None else geometry.regionprops(self.evidence.objects, contours=False)

    @cached_property
    def _boxes(self) -> dict[int, tuple[slice, slice]]:
        """Every object's (rows, columns) box on the view, ascending ids."""
        table = self._table
        return {
            int(i): (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])))
            for i, lo, hi in zip(table["label"], table["bbox_min"], table["bbox_max"], strict=True)
        }

    @cached_property
    def _areas(self) -> dict[int, int]:
        """Every object's pixels (voxels in a volume): what :meth:`rank` compares."""
        table = self._table
        return {int(i): int(n) for i, n in zip(table["label"], table["voxel_count"], strict=True)}

    @cached_property
    def _midline(self) -> Callable[[NDArray[Any], NDArray[Any]], NDArray[np.float64]] | None:
        """Signed distance to the patient's right of the midline for pixels (ys, xs):
        positive on the patient's right. None without orientation."""
        ev = self.evidence
        directions = ev.directions
        if directions is None:
            return None
        if "L" in directions or "R" in directions:
            line = self._line_middle
            if line is None:
                return None
            axis, toward_right, centre = line

            def image_side(ys: NDArray[Any], xs: NDArray[Any]) -> NDArray[np.float64]:
                along, across = (xs, ys) if axis == 1 else (ys, xs)
                return np.asarray(toward_right * (along + 0.5 - centre[across]), dtype=np.float64)

            return image_side
        body_x = ev.case.midline_x if ev.case is not None and ev.slice_axis is not None else None
        if body_x is None:
            return None

        def slice_side(ys: NDArray[Any], xs: NDArray[Any]) -> NDArray[np.float64]:
            return ev.world_x(ys, xs) - body_x  # RAS+: x grows toward the patient's right

        return slice_side

    def _right_share(self, object_id: int, rows: slice, cols: slice) -> float | None:
        """The share of the object's pixels on the patient's right of the midline (None
        without orientation). Against a body middle per line, read over the object's box
        (a row of the box against its row's middle), not over a list of its pixels."""
        side = self._midline
        if side is None:
            return None
        inside = self.evidence.objects[rows, cols] == object_id  # the object's pixels within its box
        line = self._line_middle
        if line is None:
            ys, xs = np.nonzero(inside)
            return float(np.mean(side(ys + rows.start, xs + cols.start) > 0))
        axis, toward_right, centre = line
        ys = np.arange(rows.start, rows.stop)[:, None]
        xs = np.arange(cols.start, cols.stop)[None, :]
        along, across = (xs, ys) if axis == 1 else (ys, xs)
        right = toward_right * (along + 0.5 - centre[across]) > 0
        return float(np.count_nonzero(right & inside)) / float(np.count_nonzero(inside))

    @cached_property
    def _line_middle(self) -> tuple[int, float, NDArray[np.float64]] | None:
        """``(axis, toward right, middle per line)`` where the view's sides run along its
        rows or columns (:attr:`_midline`'s ``image_side``), else None."""
        directions = self.evidence.directions
        if directions is None or not ("L" in directions or "R" in directions):
            return None
        axis = 1 if directions[1] in ("L", "R") else 0
        centre = self._body_centre(axis)
        return None if centre is None else (axis, 1.0 if directions[axis] == "R" else -1.0, centre)

    def _body_centre(self, axis: int) -> NDArray[np.float64] | None:
        """Per row (or column, when sides run along rows), the middle of the body's extent
        in the stored image: from the first to the last pixel of the body (every component
        above half the image's Otsu threshold bigger than 0.5% of the image; dark organs
        and air inside the body are not its edge); rows without body take the overall middle."""
        image = self.evidence.image
        grey = image if image.ndim == 2 and image.dtype == np.uint8 else self.evidence.grey
        # Components (8-connected) of at least 0.5% of the image.
        smallest = math.ceil(0.005 * grey.size)
        length = grey.shape[1] if axis == 1 else grey.shape[0]  # of a line
        if grey.dtype == np.uint8:  # the threshold, the components and the lines: one core pass
            _, starts, ends = geometry.body_lines(grey, 0.5, smallest, along_rows=axis == 1)
            present = starts >= 0
            if not present.any():
                return None
            # A line without body reads as spanning the image (masked out below).
            first = np.where(present, starts, 0).astype(np.float64)
            last = np.where(present, ends, length - 1).astype(np.float64)
        else:
            body = geometry.dust(grey > 0.5 * _otsu(grey), smallest, 8, in_place=True)
            if not body.any():
                return None
            lines = body if axis == 1 else body.T
            present = np.asarray(lines.any(axis=1), dtype=bool)
            first = np.argmax(lines, axis=1).astype(np.float64)
            last = (length - 1 - np.argmax(lines[:, ::-1], axis=1)).astype(np.float64)
        middle = 0.5 * (first + last + 1.0)
        overall = float(np.median(middle[present]))
        if self.evidence.plane == "axial" or self.evidence.plane is None:
            # One axial level: the body's middle, from the rows where the body is widest.
            widths = np.where(present, last - first, 0.0)
            wide = widths >= 0.5 * widths.max()
            return np.full(present.size, float(np.median(middle[wide])))
        middle = np.where(present, middle, overall)
        return np.asarray(ndimage.median_filter(middle, size=15, mode="nearest"), dtype=np.float64)

    # ---------------------------------------------------------------- one object

    def category(self, object_id: int) -> str:
        """What a reader can tell the object is: its label, or for a member of a numbered
        series its series and side ("left rib")."""
        label = self.evidence.labels[object_id]
        if self.evidence.kinds.get(object_id) != "series":
            return label
        term = clinical_term(label, self.evidence.body_region)
        return f"{term.side} {term.noun}" if term.side else term.noun

    def right_share(self, object_id: int) -> float | None:
        """The object's share of pixels right of the midline (what its side words rest on),
        measured alone while nothing else of it is asked for: an ambiguity sweep over the
        lesions of a view that says "left" reads their sides, not their grey levels."""
        known = self._cache.get(object_id)
        if known is not None:
            return known.right_share
        if object_id not in self._shares:
            rows, cols = self._local(object_id)
            if rows is None or cols is None:
                raise KeyError(f"object {object_id} has no pixels in the view")
            self._shares[object_id] = self._right_share(object_id, rows, cols)
        return self._shares[object_id]

    def sides(self, object_id: int) -> frozenset[str]:
        """The side words the object allows (:func:`sides_of` its :meth:`right_share`)."""
        return sides_of(self.right_share(object_id))

    def box(self, object_id: int) -> tuple[int, ...]:
        """The object's box ``(x0, y0, x1, y1)`` (the region table's: the tight box its
        reading gives too), without measuring the rest of it."""
        known = self._cache.get(object_id)
        if known is not None:
            return known.box
        rows, cols = self._local(object_id)
        if rows is None or cols is None:
            raise KeyError(f"object {object_id} has no pixels in the view")
        return (cols.start, rows.start, cols.stop, rows.stop)

    def position(self, object_id: int) -> str:
        """The image cell of the object's box centre (:func:`medground.words.image_position`)."""
        return image_position(self.box(object_id), self.evidence.width, self.evidence.height)

    def of(self, object_id: int) -> Measured:
        if object_id not in self._cache:
            self._cache[object_id] = self._measure(object_id)
        return self._cache[object_id]

    def _local(self, object_id: int) -> tuple[slice, slice] | tuple[None, None]:
        found = self._boxes.get(object_id)
        return (None, None) if found is None else found

    def _measure(self, object_id: int) -> Measured:
        ev = self.evidence
        rows, cols = self._local(object_id)
        if rows is None or cols is None:
            raise KeyError(f"object {object_id} has no pixels in the view")
        reading = self._read(object_id)
        box = reading.box
        label = ev.labels[object_id]
        kind = ev.kinds.get(object_id, "organ")
        right_share = self.right_share(object_id)
        sides = sides_of(right_share)
        contrast, intensities = self._intensity(reading)
        scale = ev.pixel_mm or (1.0, 1.0)
        lesion = kind == "instance" and is_lesion(label)
        touches_image = box[0] == 0 or box[1] == 0 or box[2] == ev.width or box[3] == ev.height
        counts, border = ev.case.stats if ev.case is not None else ({}, frozenset())
        voxels = counts.get(object_id)
        whole = object_id not in border and not touches_image
        volume_ml = None
        if voxels is not None and ev.spacing is not None and ev.slice_axis is not None and object_id not in border:
            volume_ml = voxels * float(np.prod(ev.spacing)) / 1000.0

        area = reading.area

        def form() -> tuple[frozenset[str] | None, frozenset[str] | None, float | None]:
            # The pixels read again when asked for: a kept mask per object would hold them
            # all; and not through ``self``, whose cache holds this (a cycle would keep a
            # verified part's views alive until the garbage collector ran).
            shapes, diameter = _shapes(ev.objects[rows, cols] == object_id, scale) if lesion else (None, None)
            sizes = size_classes(ev, label, kind, lesion, diameter, volume_ml, whole, area)
            return None if touches_image else shapes, sizes, diameter if ev.pixel_mm is not None else None

        share = 1.0
        if ev.case is not None and ev.slice_axis is not None and ev.slice_index is not None:
            largest = ev.case.largest_area(object_id, ev.slice_axis)
            if largest:
                share = ev.case.slice_area(object_id, ev.slice_axis, ev.slice_index) / largest
        return Measured(
            object_id=object_id,
            label=label,
            kind=kind,
            category=self.category(object_id),
            box=box,
            area_px=reading.area,
            position=image_position(box, ev.width, ev.height),
            right_share=right_share,
            sides=sides,
            contrast=contrast,
            intensities=intensities,
            form=Form(form),
            volume_ml=volume_ml,
            centre=reading.centre,
            boundary=reading.boundary,
            clinical=dict(ev.clinical.get(object_id, {})),
            cross_section_share=share,
        )

    @property
    def _ring_radius(self) -> int:
        """Pixels of the ring an object's grey levels are compared with."""
        ev = self.evidence
        return max(2, math.ceil(RING_MM / min(ev.pixel_mm))) if ev.pixel_mm is not None else 3

    def _intensity(self, reading: _Reading) -> tuple[float | None, frozenset[str]]:
        ev = self.evidence
        if reading.difference is None:
            return None, frozenset()
        difference = reading.difference
        if ev.modality == "CT":
            threshold = max(4.0, 15.0 * 255.0 / ev.window_width) if ev.window_width else 4.0
        elif ev.modality in ("MR", "PET"):
            threshold = max(2.0, 0.5 * reading.ring_std)
        else:
            threshold = 0.05 * 255.0
        words = set()
        if difference < -0.5 * threshold:
            words.add("low")
        if difference > 0.5 * threshold:
            words.add("high")
        if abs(difference) < 1.5 * threshold:
            words.add("same")
        return difference, frozenset(words)

    def _read(self, object_id: int) -> _Reading:
        """The object's box, area, centre, grey levels against its ring and boundary
        owners: from the core's one pass over the object's box and ring for 8-bit grey
        views, from the pixels otherwise (photographs, compared as float luminance)."""
        if object_id not in self._readings:
            image = self.evidence.image
            reading = None
            rows, cols = self._local(object_id)
            if image.ndim == 2 and image.dtype == np.uint8 and rows is not None and cols is not None:
                within = [(cols.start, rows.start, cols.stop, rows.stop)]
                found = geometry.object_stats(
                    self.evidence.objects, image, [object_id], self._ring_radius, "disk", pieces=False, within=within
                )[0]
                reading = None if found is None else _Reading.of_stats(found)
            self._readings[object_id] = reading if reading is not None else self._read_pixels(object_id)
        return self._readings[object_id]

    def _read_pixels(self, object_id: int) -> _Reading:
        ev = self.evidence
        rows, cols = self._local(object_id)
        if rows is None or cols is None:
            raise KeyError(f"object {object_id} has no pixels in the view")
        inside = ev.objects[rows, cols] == object_id
        ys, xs = np.nonzero(inside)
        ys, xs = ys + rows.start, xs + cols.start
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        radius = self._ring_radius
        y0, y1 = max(0, box[1] - radius - 1), min(ev.height, box[3] + radius + 1)
        x0, x1 = max(0, box[0] - radius - 1), min(ev.width, box[2] + radius + 1)
        local = ev.objects[y0:y1, x0:x1] == object_id
        distance = ndimage.distance_transform_edt(~local)
        ring = (distance > 0) & (distance <= radius)
        difference, ring_std = None, 0.0
        if ring.any():
            grey = ev.grey_window(slice(y0, y1), slice(x0, x1))
            difference = float(grey[local].mean() - grey[ring].mean())
            ring_std = float(grey[ring].std())
        return _Reading(
            box=box,
            area=int(ys.size),
            centre=(float(xs.mean()) + 0.5, float(ys.mean()) + 0.5),
            difference=difference,
            ring_std=ring_std,
            boundary=self._boundary(object_id, box),
        )

    def _boundary(self, object_id: int, box: tuple[int, int, int, int]) -> dict[int, float]:
        """Share of the object's outer boundary (4-neighbour pixels outside it, inside the
        image) on each other object."""
        ev = self.evidence
        y0, y1 = max(0, box[1] - 1), min(ev.height, box[3] + 1)
        x0, x1 = max(0, box[0] - 1), min(ev.width, box[2] + 1)
        local = ev.objects[y0:y1, x0:x1] == object_id
        grown = local.copy()
        grown[1:, :] |= local[:-1, :]
        grown[:-1, :] |= local[1:, :]
        grown[:, 1:] |= local[:, :-1]
        grown[:, :-1] |= local[:, 1:]
        ring = grown & ~local
        owners = ev.objects[y0:y1, x0:x1][ring]
        if owners.size == 0:
            return {}
        ids, counts = np.unique(owners, return_counts=True)
        return {int(i): float(c) / owners.size for i, c in zip(ids, counts, strict=True) if i != 0}

    # ---------------------------------------------------------------- between objects

    def direction(self, object_id: int, other_id: int, direction: str) -> bool:
        """Whether the object lies in ``direction`` of the other in the plane shown."""
        ev = self.evidence
        mine, other = self.of(object_id), self.of(other_id)
        if direction in ("medial", "lateral"):
            return self._medial_or_lateral(object_id, other_id, direction)
        if ev.directions is None:
            return False
        codes = {_WORDS[c]: (axis, 1.0) for axis, c in ((1, ev.directions[1]), (0, ev.directions[0]))}
        codes.update({_WORDS[_OPPOSITE[c]]: (axis, -1.0) for axis, c in ((1, ev.directions[1]), (0, ev.directions[0]))})
        if direction not in codes:
            return False
        axis, sign = codes[direction]
        centre = (mine.centre[0], mine.centre[1])
        other_centre = (other.centre[0], other.centre[1])
        along = sign * ((centre[0] - other_centre[0]) if axis == 1 else (centre[1] - other_centre[1]))
        across = abs((centre[1] - other_centre[1]) if axis == 1 else (centre[0] - other_centre[0]))
        if along <= 0 or along < 0.5 * across:
            return False
        a = (mine.box[0], mine.box[2]) if axis == 1 else (mine.box[1], mine.box[3])
        b = (other.box[0], other.box[2]) if axis == 1 else (other.box[1], other.box[3])
        overlap = min(a[1], b[1]) - max(a[0], b[0])
        return overlap <= DIRECTION_OVERLAP * min(a[1] - a[0], b[1] - b[0])

    def _medial_or_lateral(self, object_id: int, other_id: int, direction: str) -> bool:
        """Medial (lateral): both on one side of the body — the other's side, which this
        object may have too — and the object toward (away from) the midline of the other."""
        mine, other = self.of(object_id), self.of(other_id)
        side = next(iter(other.sides)) if len(other.sides) == 1 else None
        if side not in ("left", "right") or side not in mine.sides:
            return False
        toward_midline = "right" if side == "left" else "left"
        return self.direction(object_id, other_id, toward_midline if direction == "medial" else side)

    @cached_property
    def min_piece(self) -> float:
        """Pixels of the smallest piece that counts as a part (specks are not parts)."""
        ev = self.evidence
        per_voxel = ev.height * ev.width / float(_distinct(ev.row_source) * _distinct(ev.col_source))
        return MIN_PIECE_VOXELS * per_voxel

    @staticmethod
    def largest_piece(mask: NDArray[np.bool_]) -> int:
        """Pixels of the largest 8-connected piece of a mask (0 when empty)."""
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        return int(np.bincount(labelled.ravel())[1:].max()) if count else 0

    def pieces(self, object_id: int) -> int:
        """How many parts the object shows: 8-connected pieces of at least :attr:`min_piece`
        (counted when a query speaks of parts)."""
        if object_id not in self._pieces:
            # Within the object's box from the view's table (the tight box :meth:`of` gives
            # too): counting an object's parts does not measure it, so a query about parts
            # does not measure every object of the view it is checked against.
            rows, cols = self._local(object_id)
            if rows is None or cols is None:
                raise KeyError(f"object {object_id} has no pixels in the view")
            local = self.evidence.objects[rows, cols] == object_id
            labelled, count = ndimage.label(local, structure=np.ones((3, 3)))
            sizes = np.bincount(labelled.ravel())[1:] if count else np.zeros(0, np.int64)
            self._pieces[object_id] = int(np.count_nonzero(sizes >= self.min_piece))
        return self._pieces[object_id]

    def rank(self, object_id: int) -> frozenset[str]:
        """``largest``/``smallest`` where the object stands out by area among its category."""
        # The areas from the view's table, not from measuring every object of the category:
        # the same counts (a thousand nuclei are not each measured to rank one).
        areas, category = self._areas, self.category(object_id)
        others = [areas[o] for o in self.object_ids if o != object_id and self.category(o) == category]
        if not others:
            return frozenset()
        out = set()
        mine = areas[object_id]
        if mine >= (1 + RANK_MARGIN) * max(others):
            out.add("largest")
        if mine <= (1 - RANK_MARGIN) * min(others):
            out.add("smallest")
        return frozenset(out)


def evidence_of_view(
    view: View,
    *,
    case_evidence: CaseEvidence | None,
    clinical: Mapping[int, Mapping[str, str]],
    clinical_terms: Sequence[str],
    modality: str,
    body_region: str | None,
    oriented_display: bool,
) -> Evidence:
    """The evidence a view's samples ship: its stored image, the object masks in it, its
    map and the case's volume (``case_evidence``, shared by the case's views; None for 2D).
    ``oriented_display``: the spec shows patient orientation (radiological display)."""
    case = view.case
    image = case.image
    smap = view.map
    window_width = None
    if view.intensity.kind == "window" and len(view.intensity.ranges) == 1:
        low, high = view.intensity.ranges[0]
        window_width = float(high - low)
    axcodes = image.axcodes if oriented_display else None
    values = view.values
    return Evidence(
        image=view.image,
        objects=view.object_map,
        labels={oid: obj.anchor.label for oid, obj in view.objects.items()},
        kinds={oid: obj.anchor.kind for oid, obj in view.objects.items()},
        modality=modality,
        body_region=body_region,
        plane=smap.plane,
        row_axis=smap.row_axis,
        col_axis=smap.col_axis,
        slice_axis=smap.axis,
        slice_index=smap.slice_index,
        row_source=smap.row_source,
        col_source=smap.col_source,
        spacing=image.spacing if image.spacing_known else None,
        axcodes=axcodes,
        affine=np.asarray(image.affine, dtype=np.float64),
        case=None if image.is_2d else case_evidence,
        window_width=window_width,
        clinical={oid: dict(values) for oid, values in clinical.items() if oid in view.objects},
        clinical_terms=tuple(clinical_terms),
        labels_known=tuple(case.label_names.values()),
        values=values,
        full_scale=full_scale_of(image.array, values),
        label_map=case.labels,
        label_names=dict(case.label_names),
        masks=None if view.reading is None else view.reading.masks,
        table=None if view.reading is None else view.reading.table,
    )


def full_scale_of(stored: NDArray[Any], values: NDArray[Any]) -> float:
    """The intensity range photographs are compared in: 255 for 8-bit images, else the view's."""
    if stored.dtype == np.uint8:
        return 255.0
    return max(float(np.float32(values.max()) - np.float32(values.min())), 1e-6)
