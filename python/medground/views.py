"""Views: the images a model is shown, and every object in each.

A :class:`View` is one rendered image (a slice of a volume in one intensity window, or a
2D image as stored) with every object visible in it. Each :class:`ViewObject` has the box
and mask of its whole visible extent, its visible *pieces* (an organ seen in several parts
on one slice is one object with one box per part, never one box over the gaps), its 2D
descriptors, the share of its largest cross-section the slice shows, whether the image
border cuts it, and how visible it is in the stored 8-bit image.

Slices are chosen per object by the spec's rule (:func:`select_slices`), never on the
``edge_margin`` slices at either end of a volume; each view lists all objects on its slice,
so a target's distractors are complete. A target is shown in its own CT window (lungs in
the lung window, bones in the bone window: ``presets/anatomy.toml``, ``[render.windows]``),
so one slice may give several images. An object is a target of a view only where it is
visible in the stored image, shows at least ``min_target_share`` of its largest
cross-section, and has at least ``min_area_px`` voxels on the slice; otherwise it stays a distractor and
the reason is recorded (:class:`Skip`).
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry, render
from medground.anatomy import group_window, label_group
from medground.anchors import Anchor, Objects
from medground.io.case import Case
from medground.io.schema import VOLUME_AXIS, DatasetSpec, RenderSpec
from medground.io.volume import opposite
from medground.records import image_path

__all__ = [
    "RING_MM",
    "Piece",
    "Skip",
    "View",
    "ViewObject",
    "Visibility",
    "build_views",
    "iter_views",
    "component_slices",
    "dilate",
    "select_slices",
    "visibility",
]

#: Width of the ring of surrounding tissue objects are compared with (at least 2 pixels).
RING_MM = 3.0
#: Pieces of an object with fewer voxels than this on the slice get no box of their own
#: (they are specks of a larger object, not parts a reader would point at).
MIN_PIECE_VOXELS = 4
#: An object whose outline runs along the image border for more than this share is cut off
#: by the field of view too much to be asked about (it stays a distractor).
MAX_BORDER_SHARE = 0.3


@dataclass(frozen=True)
class Piece:
    """One visible part of an object in a view (a 2D connected component of its mask)."""

    bbox_xyxy: tuple[int, int, int, int]
    area_px: int
    mask_rle: dict[str, Any]


@dataclass(frozen=True)
class Visibility:
    """How an object shows in the stored 8-bit image.

    Attributes:
        visible: enough contrast (``contrast`` or ``edge`` at least the floor); a flat,
            saturated blob (all black or all white, no texture left) only with a clear
            outline (``edge`` at least twice the floor).
        contrast: |mean inside − mean of a surrounding ring|, grey levels.
        edge: mean |inside − outside| across the outline (4-neighbour pairs), grey levels.
        flat: the pixels are (near) uniform and saturated (all black or all white).
    """

    visible: bool
    contrast: float
    edge: float
    flat: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "visible": self.visible,
            "contrast_8bit": round(self.contrast, 2),
            "edge_8bit": round(self.edge, 2),
            "flat": self.flat,
        }


@dataclass(frozen=True)
class ViewObject:
    """An object as it appears in one view.

    Attributes:
        anchor: the object.
        bbox_xyxy, area_px, mask_rle: its whole visible extent in the image.
        pieces: its visible parts, each with its own box (one for most objects).
        descriptors: 2D descriptors of the visible extent (mm where the spacing is known).
        cross_section_share: its area on this slice over its largest area along the axis.
        cut_by_border: the image border cuts it (the field of view ends inside it).
        border_share: the share of its outline that is the image border.
        voxels: its area in voxels of the slice as stored (the view may repeat voxels).
        visibility: how it shows in the stored image.
        grey: for 8-bit grey views, the core's statistics of its pixels and of the ring
            ``visibility`` compares them with (None for photographs).
        not_target: why it cannot be asked about in this view (None when it can): too
            small, a sliver of its largest cross-section, or not visible.
    """

    anchor: Anchor
    bbox_xyxy: tuple[int, int, int, int]
    area_px: int
    mask_rle: dict[str, Any]
    pieces: tuple[Piece, ...]
    descriptors: dict[str, float | None]
    cross_section_share: float
    cut_by_border: bool
    visibility: Visibility
    border_share: float = 0.0
    voxels: int = 0
    not_target: tuple[str, str] | None = None
    grey: geometry.ObjectStats | None = field(default=None, repr=False, compare=False)

    @property
    def object_id(self) -> int:
        return self.anchor.object_id


@dataclass(frozen=True)
class Skip:
    """An object that could not be a target on a view (or anywhere), and why."""

    object_id: int
    label: str
    reason: str
    detail: str = ""
    view: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class MapReading:
    """What the core's passes over a view's object map gave, once: every id's COCO RLE
    counts and the map's region table (boxes and pixels, ascending ids). Verification
    measures the same map (``View.object_map``): it takes these instead of walking it again."""

    masks: dict[int, str]
    table: geometry.RegionTable


@dataclass(frozen=True, eq=False)
class View:
    """One rendered image and the objects in it.

    Attributes:
        case: the case it shows.
        map: the exact voxel↔pixel map (plane and slice index included).
        image: the 8-bit image a model sees (no overlays).
        object_map: object ids on the image grid (0 = none).
        objects: every object visible in the view, by object id.
        targets: object ids this view may ask about.
        pixel_mm: millimetres (or, without spacing, stored pixels) per pixel (rows, columns).
        intensity: how ``image`` was made from :attr:`values`.
        window: the CT window group it is rendered for (``lung``, ``bone``), None for the default.
        directions: the patient direction in which rows and columns grow (``("P", "L")`` for
            an axial slice in radiological display), None without patient orientation.
        skips: the objects of the view that are not targets, with why.
        encoding: how the image is stored (``[render] image_format``).
        stored: the stored intensities on the image grid ``image`` was made from (kept for
            :attr:`values`, so verification never renders a slice twice; a case's views are
            verified in parts, :func:`medground.generate.draft_parts`, so only one part's
            views hold them at once).
        reading: the masks and region table of :attr:`object_map` as the view read them
            (None where it read no masks: a crowded view, or one without objects).
    """

    case: Case
    map: render.SliceMap
    image: NDArray[np.uint8]
    object_map: NDArray[Any]
    objects: dict[int, ViewObject]
    targets: tuple[int, ...]
    pixel_mm: tuple[float, float]
    intensity: render.Intensity
    window: str | None = None
    directions: tuple[str, str] | None = None
    skips: tuple[Skip, ...] = field(default_factory=tuple)
    encoding: render.Encoding = field(default_factory=render.Encoding)
    stored: NDArray[Any] | None = field(default=None, repr=False)
    reading: MapReading | None = field(default=None, repr=False)

    @property
    def values(self) -> NDArray[Any]:
        """The stored intensities on the image grid (luminance for RGB), for the evidence
        judge, in the stored type where float32 holds it exactly."""
        stored = self.stored if self.stored is not None else self.map.render_values(self.case.image.array)
        return render.luminance(stored) if stored.ndim == 3 else _exact_values(stored)

    @property
    def nbytes(self) -> int:
        """The bytes of the arrays the view holds (image, object map, stored intensities)."""
        return self.image.nbytes + self.object_map.nbytes + (self.stored.nbytes if self.stored is not None else 0)

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

    @functools.cached_property
    def image_file(self) -> str:
        """Where the image is stored, relative to the output folder (the ``image`` field)."""
        return image_path(self.case.dataset, self.case.case_id, self.view_record(), self.encoding.suffix)

    def encoded(self) -> bytes:
        """The stored image file's bytes."""
        return render.encode(self.image, self.encoding, self.case.image.path)

    def view_record(self) -> dict[str, Any] | None:
        """The ``view`` field of a sample: ``{axis, slice_index, array_axis}`` (and the
        ``window`` group when not the default), or None for 2D images."""
        if self.map.plane is None:
            return None
        record: dict[str, Any] = {
            "axis": self.map.plane,
            "slice_index": self.map.slice_index,
            "array_axis": self.map.axis,
        }
        if self.window is not None:
            record["window"] = self.window
        return record


# ----------------------------------------------------------------------------- visibility


def dilate(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """Binary dilation of a 2D mask by ``radius`` steps of the 4-neighbourhood (a diamond)."""
    return geometry.dilate(mask, radius)


def _edge(image: NDArray[np.float64], mask: NDArray[np.bool_]) -> float:
    """Mean absolute difference across the outline: each inside pixel against its outside
    4-neighbours (pixels on the image border have none beyond it)."""
    pairs = (
        (mask[:-1, :] & ~mask[1:, :], image[:-1, :], image[1:, :]),
        (mask[1:, :] & ~mask[:-1, :], image[1:, :], image[:-1, :]),
        (mask[:, :-1] & ~mask[:, 1:], image[:, :-1], image[:, 1:]),
        (mask[:, 1:] & ~mask[:, :-1], image[:, 1:], image[:, :-1]),
    )
    differences = [np.abs(inner[where] - outer[where]) for where, inner, outer in pairs if where.any()]
    return float(np.mean(np.concatenate(differences))) if differences else 0.0


def _border_share(local: NDArray[np.bool_], box: tuple[int, int, int, int], size: tuple[int, int]) -> float:
    """The share of an object's outline pixels that lie on the image border, from its
    pixels within its box ``(x0, y0, x1, y1)`` in an image of ``size`` (height, width)."""
    padded = geometry.padded(local, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    outline = local & ~inner
    edge = np.zeros_like(local)
    x0, y0, x1, y1 = box
    edge[0, :] |= y0 == 0
    edge[-1, :] |= y1 == size[0]
    edge[:, 0] |= x0 == 0
    edge[:, -1] |= x1 == size[1]
    return float((outline & edge).sum()) / max(1, int(outline.sum()))


def visibility(image: NDArray[np.uint8], mask: NDArray[np.bool_], ring_px: int, floor: float) -> Visibility:
    """How an object (``mask``) shows in a stored 8-bit image (grey, or RGB as luminance)."""
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return _visibility(image, mask[box[1] : box[3], box[0] : box[2]], box, ring_px, floor)


def _visibility(
    image: NDArray[np.uint8], local: NDArray[np.bool_], box: tuple[int, int, int, int], ring_px: int, floor: float
) -> Visibility:
    """:func:`visibility` of an object given by its pixels within its box ``(x0, y0, x1, y1)``:
    only the box and its ring are read."""
    height, width = image.shape[:2]
    y0, y1 = max(0, box[1] - ring_px), min(height, box[3] + ring_px)
    x0, x1 = max(0, box[0] - ring_px), min(width, box[2] + ring_px)
    patch = image[y0:y1, x0:x1]
    values = render.luminance(patch).astype(np.float64) if patch.ndim == 3 else patch.astype(np.float64)
    local = geometry.padded(local, ((box[1] - y0, y1 - box[3]), (box[0] - x0, x1 - box[2])))
    inside = values[local]
    ring = dilate(local, ring_px) & ~local
    contrast = abs(float(inside.mean()) - float(values[ring].mean())) if ring.any() else 0.0
    edge = _edge(values, local)
    flat = bool(inside.std() < 1.0 and (inside.mean() <= 1.0 or inside.mean() >= 254.0))
    visible = edge >= 2 * floor if flat else max(contrast, edge) >= floor
    return Visibility(bool(visible), contrast, edge, flat)


def _visibility_of(stats: geometry.ObjectStats, floor: float) -> Visibility:
    """:func:`_visibility` from an object's statistics in an 8-bit grey view (the ring a
    diamond of the ring's radius): the same numbers, from one pass of the core."""
    mean = stats.inside_mean
    contrast = abs(mean - stats.ring_mean) if stats.ring_count else 0.0
    edge = stats.edge_mean
    flat = bool(stats.inside_std < 1.0 and (mean <= 1.0 or mean >= 254.0))
    visible = edge >= 2 * floor if flat else max(contrast, edge) >= floor
    return Visibility(bool(visible), contrast, edge, flat)


# ----------------------------------------------------------------------------- views


def _window_of(label: str, spec: DatasetSpec) -> tuple[str, str | tuple[float, float]] | None:
    """The window a label's targets are shown in, when it is not the spec's own: ``(name,
    window)``, named by the label's window group (``lung``, ``bone``) or, for a per-label
    override, by the label. Only for CT rendered in one window."""
    default = spec.render.window if spec.render.window is not None else "soft_tissue"
    if spec.modality != "CT" or (isinstance(default, tuple) and len(default) == 3):
        return None
    overrides = dict(spec.render.windows)
    if label in overrides:
        return label, overrides[label]
    group = label_group(label)
    if group is None:
        return None
    window = overrides.get(group, group_window(group))
    return None if window == default else (group, window)


def _directions(smap: render.SliceMap, axcodes: tuple[str, ...] | None) -> tuple[str, str] | None:
    """The patient directions rows and columns grow in, from the map and the axes' codes."""
    if axcodes is None:
        return None
    row = axcodes[smap.row_axis]
    col = axcodes[smap.col_axis]
    return (opposite(row) if smap.row_flipped else row, opposite(col) if smap.col_flipped else col)


def build_views(
    case: Case, objects: Objects, spec: DatasetSpec, body: render.Body | None = None
) -> tuple[list[View], list[Skip]]:
    """The views of a case and the objects that could not be targets anywhere, with why.

    2D images give one view; volumes give, per plane, the slices the rule picks for any
    object (edge slices excluded), each in the windows its targets need.
    """
    skips: list[Skip] = []
    return list(iter_views(case, objects, spec, body, skips)), skips


def iter_views(
    case: Case, objects: Objects, spec: DatasetSpec, body: render.Body | None, skips: list[Skip]
) -> Iterator[View]:
    """:func:`build_views` one view at a time, each made only when asked for (a caller that
    lets go of the views it has used holds one view's arrays, not the case's); ``skips``
    gets the skips of the views made so far, in :func:`build_views`' order."""
    image = case.image
    render_spec = spec.render
    if not objects.anchors:
        return
    default = render.intensity_for(image, spec.modality, render_spec.window, render_spec.percentiles, body)
    if image.is_2d:
        smap = render.image_map(image.shape, image.spacing, square_pixels=False, max_side=render_spec.max_side)
        axcodes = image.axcodes if spec.is_radiological else None
        view = _make_view(
            case, smap, objects, tuple(sorted(objects.anchors)), default, None, spec, _directions(smap, axcodes)
        )
        skips.extend(view.skips)
        if view.objects:
            yield view
        return
    axcodes = image.axcodes if spec.is_radiological else None
    for plane in render_spec.axes:
        if plane == VOLUME_AXIS:
            continue  # the whole volume is one image of its own (medground.volumes)
        axis = render.plane_axis(axcodes, plane)
        chosen, areas = _choose_slices(objects, axis, render_spec, skips, plane)
        for index in sorted(chosen):
            smap = render.slice_map(
                image.shape,
                image.spacing,
                axcodes,
                plane,
                index,
                square_pixels=render_spec.square_pixels,
                min_side=render_spec.min_side,
                max_side=render_spec.max_side,
            )
            by_window: dict[tuple[str, Any] | None, list[int]] = defaultdict(list)
            for object_id in chosen[index]:
                by_window[_window_of(objects.anchors[object_id].label, spec)].append(object_id)
            # The slice is drawn once for all its windows.
            drawn = _draw(case, smap, objects, spec)
            for window in sorted(by_window, key=lambda w: ("", "") if w is None else (w[0], str(w[1]))):
                intensity = default if window is None else render.window_intensity(window[1])
                name = None if window is None else window[0]
                view = _make_view(
                    case,
                    smap,
                    objects,
                    tuple(by_window[window]),
                    intensity,
                    name,
                    spec,
                    _directions(smap, axcodes),
                    index_areas=areas,
                    drawn=drawn,
                )
                skips.extend(view.skips)
                if view.targets:
                    yield view


def _choose_slices(
    objects: Objects, axis: int, render_spec: RenderSpec, skips: list[Skip], plane: str
) -> tuple[dict[int, list[int]], dict[int, NDArray[np.int64]]]:
    """slice index → the objects chosen on it, and every object's area per slice."""
    ids, areas = objects.slice_areas[axis]
    rows = {int(o): row for o, row in zip(ids, areas, strict=True)}
    chosen: dict[int, list[int]] = {}
    margin = render_spec.edge_margin
    for object_id in sorted(objects.anchors):
        row = rows.get(object_id)
        if row is None:
            continue
        inner = row.copy()
        inner[:margin] = 0
        if margin:
            inner[len(inner) - margin :] = 0
        if not inner.any():
            skips.append(
                Skip(
                    object_id,
                    objects.anchors[object_id].label,
                    "edge_slices_only",
                    f"on {plane} slices it lies only within {margin} slice(s) of the volume's ends",
                )
            )
            continue
        picks = select_slices(
            inner,
            render_spec.slices,
            max_slices=render_spec.max_slices,
            min_area_fraction=render_spec.min_area_fraction,
        )
        for index in picks:
            chosen.setdefault(index, []).append(object_id)
    return chosen, rows


#: The region table's columns a view reads per object.
_VIEW_COLUMNS = (
    "label",
    "voxel_count",
    "perimeter",
    "circularity",
    "solidity",
    "eccentricity",
    "elongation",
    "feret_diameter_max",
)


def _pixel_mm(smap: render.SliceMap, spacing: tuple[float, ...]) -> tuple[float, float]:
    rows = spacing[smap.row_axis] * smap.volume_shape[smap.row_axis] / smap.height
    cols = spacing[smap.col_axis] * smap.volume_shape[smap.col_axis] / smap.width
    return float(rows), float(cols)


def _pieces(view_objects: NDArray[Any], min_piece: int, object_masks: dict[int, str]) -> dict[int, list[Piece]]:
    """The visible parts of every object: 2D 8-connected components of its pixels, top row
    first, then left column. An object in one component has its own mask (``object_masks``,
    the view's RLE per object) as its piece's; the components are encoded only for a view
    where some object is in several."""
    parts = geometry.connected_components(view_objects, 8)
    if not parts.any():
        return {}
    table = geometry.regionprops(parts, contours=False)
    labels = table["label"].tolist()
    lo, hi, areas = table["bbox_min"].tolist(), table["bbox_max"].tolist(), table["voxel_count"].tolist()
    # A piece is a component of the object map: all its pixels hold its object's id, read
    # at its first pixel on its top row.
    owners = []
    for (y0, x0), (_, x1), label in zip(lo, hi, labels, strict=True):
        owners.append(int(view_objects[y0, x0 + int(np.argmax(parts[y0, x0:x1] == label))]))
    components = Counter(owners)
    masks = geometry.rle_by_label(parts) if len(components) < len(owners) else {}
    size = [int(n) for n in parts.shape]
    out: dict[int, list[Piece]] = defaultdict(list)
    for i in np.lexsort((labels, [x for _, x in lo], [y for y, _ in lo])).tolist():
        if areas[i] < min_piece:
            continue
        (y0, x0), (y1, x1), owner = lo[i], hi[i], owners[i]
        counts = object_masks[owner] if components[owner] == 1 else masks[labels[i]]
        out[owner].append(Piece((x0, y0, x1, y1), int(areas[i]), {"size": size, "counts": counts}))
    return out


def _object_reader(
    rendered: NDArray[np.uint8],
    view_objects: NDArray[Any],
    ids: list[int],
    boxes: list[tuple[int, int, int, int]],
    ring_px: int,
    floor: float,
) -> Callable[[int, tuple[int, int, int, int]], tuple[float, Visibility, geometry.ObjectStats | None]]:
    """``(object id, box) → (border share, visibility, statistics)`` for the objects of a
    view (statistics for grey views only), ``boxes`` their boxes ``(x0, y0, x1, y1)`` from
    the view's table. Grey views are read by the core, one pass per object over its box
    and ring for every object; photographs (RGB, compared as float luminance) per object in
    numpy."""
    if rendered.ndim == 2 and rendered.dtype == np.uint8:
        # The table's boxes: the core reads each object's window only, without a walk of
        # the whole view to find them.
        found = geometry.object_stats(view_objects, rendered, ids, ring_px, "diamond", pieces=False, within=boxes)
        stats = dict(zip(ids, found, strict=True))

        def from_core(
            object_id: int, box: tuple[int, int, int, int]
        ) -> tuple[float, Visibility, geometry.ObjectStats | None]:
            found = stats[object_id]
            assert found is not None, "every id comes from the view's own table"
            return found.border_share, _visibility_of(found, floor), found

        return from_core

    def from_pixels(
        object_id: int, box: tuple[int, int, int, int]
    ) -> tuple[float, Visibility, geometry.ObjectStats | None]:
        x0, y0, x1, y1 = box
        local = view_objects[y0:y1, x0:x1] == object_id
        seen = _visibility(rendered, local, box, ring_px, floor)
        return _border_share(local, box, view_objects.shape), seen, None

    return from_pixels


@dataclass(frozen=True, eq=False)
class _Drawn:
    """What a slice shows whatever its window: the stored intensities and object ids on the
    image grid, the objects' table and, where the view is not crowded, their masks and
    pieces. A slice shown in two windows (soft tissue and bone) draws them once."""

    stored: NDArray[Any]
    object_map: NDArray[Any]
    pixel_mm: tuple[float, float]
    table: geometry.RegionTable | None
    crowded: bool
    per_voxel: float
    masks: dict[int, str]
    pieces: dict[int, list[Piece]]


def _draw(case: Case, smap: render.SliceMap, objects: Objects, spec: DatasetSpec) -> _Drawn:
    stored = smap.render_values(case.image.array)
    view_objects = smap.render(objects.map)
    pixel_mm = _pixel_mm(smap, case.image.spacing)
    table = geometry.regionprops(view_objects, pixel_mm) if view_objects.any() else None
    # No expression can be checked unique among thousands of look-alikes at a cost that
    # stays linear: a crowded view gets neither masks nor pieces (it asks nothing).
    crowded = table is not None and len(table) > spec.render.max_objects
    masks: dict[int, str] = {}
    pieces: dict[int, list[Piece]] = {}
    per_voxel = 1.0
    if table is not None and not crowded:
        height, width = view_objects.shape
        per_voxel = (
            height * width / float(np.prod([smap.volume_shape[smap.row_axis], smap.volume_shape[smap.col_axis]]))
        )
        masks = geometry.rle_by_label(view_objects)
        pieces = _pieces(view_objects, int(math.ceil(MIN_PIECE_VOXELS * per_voxel)), masks)
    return _Drawn(stored, view_objects, pixel_mm, table, crowded, per_voxel, masks, pieces)


def _make_view(
    case: Case,
    smap: render.SliceMap,
    objects: Objects,
    targets: tuple[int, ...],
    intensity: render.Intensity,
    window: str | None,
    spec: DatasetSpec,
    directions: tuple[str, str] | None,
    *,
    index_areas: dict[int, NDArray[np.int64]] | None = None,
    drawn: _Drawn | None = None,
) -> View:
    """The view of ``smap`` in ``intensity``; ``drawn``: its window-independent part, when
    the slice was drawn already (:func:`_draw`)."""
    image = case.image
    if drawn is None:
        drawn = _draw(case, smap, objects, spec)
    stored, view_objects, pixel_mm, table = drawn.stored, drawn.object_map, drawn.pixel_mm, drawn.table
    rendered = render.to_uint8(stored, intensity)
    physical = image.spacing_known
    record = None if smap.plane is None else {"axis": smap.plane, "slice_index": smap.slice_index}
    ring_px = max(2, int(math.ceil(RING_MM / min(pixel_mm)))) if physical else 3
    found: dict[int, ViewObject] = {}
    skips: list[Skip] = []
    if drawn.crowded:
        assert table is not None, "a crowded view has objects"
        count = len(table)
        for object_id in targets:
            skips.append(
                Skip(
                    object_id,
                    objects.anchors[object_id].label,
                    "crowded_view",
                    f"{count} objects in the view, over [render] max_objects = {spec.render.max_objects}",
                    record,
                )
            )
        targets = ()
    elif table is not None:
        height, width = view_objects.shape
        per_voxel, masks, pieces = drawn.per_voxel, drawn.masks, drawn.pieces
        pixel_area = pixel_mm[0] * pixel_mm[1]
        # The table's columns as Python numbers, read by position (no row dicts).
        column = {name: table[name].tolist() for name in _VIEW_COLUMNS}
        ids, lo, hi = column["label"], table["bbox_min"].tolist(), table["bbox_max"].tolist()
        boxes = [(x0, y0, x1, y1) for (y0, x0), (y1, x1) in zip(lo, hi, strict=True)]
        read = _object_reader(rendered, view_objects, ids, boxes, ring_px, spec.render.min_contrast)
        for i, object_id in enumerate(ids):
            anchor = objects.anchors.get(object_id)
            if anchor is None or not pieces.get(object_id):
                continue
            box = boxes[i]
            x0, y0, x1, y1 = box
            share = 1.0
            if index_areas is not None and smap.axis is not None and smap.slice_index is not None:
                areas = index_areas[object_id]
                share = float(areas[smap.slice_index]) / float(areas.max())
            area_px = column["voxel_count"][i]
            voxels = int(round(area_px / per_voxel))
            border_share, seen, grey = read(object_id, box)
            area_mm2 = round(area_px * pixel_area, 3) if physical else None
            share = round(share, 4)
            found[object_id] = ViewObject(
                anchor=anchor,
                bbox_xyxy=box,
                area_px=area_px,
                mask_rle={"size": [height, width], "counts": masks[object_id]},
                pieces=tuple(pieces[object_id]),
                descriptors={
                    "area_mm2": area_mm2,
                    "perimeter_mm": round(column["perimeter"][i], 3) if physical else None,
                    "circularity": round(column["circularity"][i], 4),
                    "solidity": round(column["solidity"][i], 4),
                    "eccentricity": round(column["eccentricity"][i], 4),
                    "elongation": round(column["elongation"][i], 4),
                    "diameter_mm": round(column["feret_diameter_max"][i], 3) if physical else None,
                    "image_share": round(area_px / float(height * width), 5),
                },
                cross_section_share=share,
                cut_by_border=bool(x0 == 0 or y0 == 0 or x1 == width or y1 == height),
                border_share=border_share,
                voxels=voxels,
                visibility=seen,
                grey=grey,
                not_target=_why_not(voxels, area_mm2, border_share, share, seen, anchor.label, spec),
            )
    chosen = []
    for object_id in targets:
        label = objects.anchors[object_id].label
        reason = _not_a_target(found.get(object_id))
        if reason is None:
            chosen.append(object_id)
        else:
            skips.append(Skip(object_id, label, reason[0], reason[1], record))
    return View(
        case,
        smap,
        rendered,
        view_objects,
        found,
        tuple(chosen),
        pixel_mm,
        intensity,
        window,
        directions,
        tuple(skips),
        render.encoding_for(image, smap, intensity, spec.render.image_format, spec.render.jpeg_quality),
        stored,
        None if table is None or drawn.crowded else MapReading(drawn.masks, table),
    )


_EXACT_IN_FLOAT32 = (np.int8, np.uint8, np.int16, np.uint16, np.float32)


def _exact_values(stored: NDArray[Any]) -> NDArray[Any]:
    """Stored intensities as they are when float32 would hold them exactly, else as float32."""
    return stored if stored.dtype in _EXACT_IN_FLOAT32 else stored.astype(np.float32)


def _not_a_target(obj: ViewObject | None) -> tuple[str, str] | None:
    """Why an object chosen for a view cannot be asked about on it (None when it can)."""
    if obj is None:
        return "too_small_in_view", "no piece of it is large enough to box on this slice"
    return obj.not_target


def _why_not(
    voxels: int,
    area_mm2: float | None,
    border_share: float,
    cross_section_share: float,
    seen: Visibility,
    label: str,
    spec: DatasetSpec,
) -> tuple[str, str] | None:
    """Why an object of a view with these readings cannot be asked about (None when it
    can): the ``not_target`` it is made with."""
    filters = spec.anchors
    min_area = filters.get("min_area_px", label)
    if voxels < min_area or (area_mm2 is not None and area_mm2 < filters.get("min_area_mm2", label)):
        return "too_small_in_view", f"{voxels} voxels on this slice (minimum {min_area:g})"
    if border_share > MAX_BORDER_SHARE:
        return "cut_by_border", f"{border_share:.0%} of its outline is the image border"
    if cross_section_share < spec.render.min_target_share:
        return "sliver", f"{cross_section_share:.0%} of its largest cross-section"
    if not seen.visible:
        flat = "flat, saturated pixels; " if seen.flat else ""
        return "not_visible_in_image", (
            f"{flat}contrast {seen.contrast:.1f}, edge {seen.edge:.1f} grey levels (floor {spec.render.min_contrast:g})"
        )
    return None


# ----------------------------------------------------------------------------- slices


def select_slices(
    areas: NDArray[np.integer[Any]], rule: str, *, max_slices: int = 16, min_area_fraction: float = 0.5
) -> list[int]:
    """Slices to render for one object, from its area on each slice.

    Args:
        areas: the object's voxel count on each slice along the plane's axis.
        rule: ``max_area`` (the slice of largest cross-section; among ties the middle one),
            ``spread:K`` (K slices evenly spread over those with area ≥ ``min_area_fraction``
            of the max), or ``all`` (every slice it appears on).
        max_slices: cap for ``all`` and ``spread:K`` (evenly subsampled).

    Returns:
        Ascending slice indices; empty for an empty object.
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
    """Slices to render for every region of a label map, along one array axis.

    One pass over the volume (:func:`medground.geometry.slice_areas`), then
    :func:`select_slices` on each region's areas.

    Returns:
        region id → ascending slice indices along ``axis``.
    """
    ids, table = geometry.slice_areas(components, axis, return_labels=True)
    return {
        int(component): select_slices(row, rule, max_slices=max_slices, min_area_fraction=min_area_fraction)
        for component, row in zip(ids, table, strict=True)
    }
