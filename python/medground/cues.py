"""Cues: the facts a clinician uses to point at an object, computed from geometry and pixels.

Per object in a view: the patient side (from world coordinates against the body's
midline), where it sits in the image, what contains it and what it touches *in the slice
shown*, the nearest other structure with the in-plane direction to it, its size (only where
it is measurable), shape (instances only), intensity against the surrounding tissue *in the
stored image*, and how many objects of its kind the view holds with its rank. Nothing is
taken from label names: ``kidney_left`` is "left" because of where it lies, and the name's
side only checks the computation (:class:`Laterality`).

Thresholds (documented here and in the cue records, so a reader can re-check):

* midline: the median x of the midline structures (vertebrae, spinal cord, sacrum,
  discs: ``presets/anatomy.toml``) per axial level when the case labels them, else the
  middle of the body outline per axial level (2D radiographs: of the labelled structures).
* laterality: ``left``/``right`` when at least 75% of the object's voxels lie on that side
  of the midline, else ``midline``; a label whose objects lie on both sides is
  ``bilateral`` (multi-object targets). ``null`` without patient orientation, and for
  every object of a case whose side-named structures (``kidney_left``) lie on the
  opposite side of the computed midline (laterality withheld, reported).
* shape (2D, in the view; lesion-like instance classes the image border does not cut) and
  place in the image (the box centre on a 3×3 grid): the words of :mod:`medground.words`,
  which the verifier reads the same way.
* intensity, measured on the stored 8-bit image against a ring 3 mm wide (at least 2
  pixels) around the object: CT ±15 HU in the image's window (15 × 255 / window width
  grey levels, at least 4: hypo/iso/hyperdense); MR and PET ±0.5 of the ring's standard
  deviation (hypo/iso/hyperintense); photographs and radiographs ±5% of full scale
  (darker/similar/brighter).
* containment, in the slice: another object covers ≥ 50% of the object's outline
  (4-neighbour faces); touching: any shared face.
* direction to another object, in the plane shown (axial: left/right/anterior/posterior;
  coronal: left/right/superior/inferior; sagittal: anterior/posterior/superior/inferior):
  along the axis of the larger centroid offset, when the two boxes do not overlap along it
  by more than 10% of the smaller extent.
* size, only for objects entirely inside the imaged field (not touching a volume or image
  border) and with physical spacing: lesion-like instances by longest in-plane diameter
  (< 10 mm small, ≤ 30 mm medium, else large); organs by volume against the adult ranges
  in ``presets/priors.toml``. Without spacing (photographs), no millimetres anywhere; an
  instance's relative size is its share of the image (< 2% small, ≤ 15% medium, else large),
  when the image border does not cut it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry
from medground.anatomy import is_lesion, midline_labels, priors
from medground.anchors import Anchor, Objects
from medground.io.case import Case
from medground.render import Body
from medground.terms import clinical_term
from medground.views import RING_MM, View, ViewObject, dilate
from medground.words import image_position, shape_word

__all__ = [
    "CONTAINED_SHARE",
    "LATERAL_SHARE",
    "CaseContext",
    "Laterality",
    "Midline",
    "case_context",
    "category_of",
    "compute_cues",
    "contrast",
    "full_scale",
    "image_position",
    "in_plane_direction",
    "organ_size_class",
    "shared_faces",
    "world_direction",
    "intensity_word",
    "laterality",
    "shape_class",
    "size_class",
]

LATERAL_SHARE = 0.75
CONTAINED_SHARE = 0.5
#: Boxes may overlap by this share of the smaller extent and still be "left of" each other.
DIRECTION_OVERLAP = 0.1
#: Lesion size classes by longest diameter (mm): small below the first, medium up to the second.
LESION_MM = (10.0, 30.0)
#: Relative size classes by share of the image (photographs without spacing).
IMAGE_SHARE = (0.02, 0.15)

_WORDS = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}


@dataclass(frozen=True)
class Midline:
    """The body's midline plane, per axial level: at world height ``z`` (mm, superior
    positive) it lies at world ``x`` (mm) = :meth:`at`.

    Attributes:
        source: ``spine`` (midline structures), ``body`` (the body outline), ``labels``
            (2D radiographs: the labelled structures' extent).
        z, x: the levels and the midline there (interpolated between, constant beyond).
    """

    source: str
    z: NDArray[np.float64]
    x: NDArray[np.float64]

    def at(self, z: NDArray[np.float64] | float) -> NDArray[np.float64]:
        return np.asarray(np.interp(z, self.z, self.x), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "x_mm": round(float(np.median(self.x)), 2),
            "levels": int(self.z.size),
            "range_mm": round(float(np.ptp(self.x)), 2) if self.x.size else 0.0,
        }


@dataclass(frozen=True)
class Laterality:
    """The case's laterality: each object's share of voxels right of the midline, and the
    self-check against side-named labels.

    Attributes:
        right_share: object id → share of its voxels on the patient's right.
        conflicts: side-named structures that lie on the other side of the midline
            (``{label, named, computed, right_share}``); any conflict withholds every side.
    """

    right_share: dict[int, float]
    conflicts: tuple[dict[str, Any], ...] = ()

    @property
    def withheld(self) -> bool:
        return bool(self.conflicts)

    def side(self, object_id: int) -> str | None:
        if self.withheld:
            return None
        return laterality(self.right_share.get(object_id))

    def to_dict(self) -> dict[str, Any]:
        return {"withheld": self.withheld, "conflicts": list(self.conflicts)}


@dataclass(frozen=True)
class CaseContext:
    """Case-level facts the cues of every view share.

    Attributes:
        midline: the body's midline, None without patient orientation.
        laterality: every object's side and the self-check.
        modality: the dataset's modality.
        body_region: the dataset's body region (for clinical terms).
        clinical: object id → the clinical attributes the dataset's case table gives it
            (``{"diagnosis": {"value": "melanoma", "role": "finding"}}``).
    """

    midline: Midline | None
    laterality: Laterality
    modality: str
    body_region: str | None = None
    spacing_known: bool = True
    checks: dict[str, Any] = field(default_factory=dict)
    clinical: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)
    _placed: dict[int, tuple[float | None, tuple[float, ...] | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def placed(self, anchor: Anchor) -> tuple[float | None, tuple[float, ...] | None]:
        """An object's distance from the midline (mm, None without one or with its sides
        withheld) and its rounded world centroid: properties of the 3D object, the same in
        every view of it, so measured once per case."""
        known = self._placed.get(anchor.object_id)
        if known is None:
            offset = None
            centroid = anchor.centroid_world
            if self.midline is not None and centroid is not None and not self.laterality.withheld:
                x, _, z = centroid
                offset = round(abs(x - float(self.midline.at(z))), 2)
            known = (offset, None if centroid is None else tuple(round(c, 2) for c in centroid))
            self._placed[anchor.object_id] = known
        return known


# ----------------------------------------------------------------------------- midline and sides


def _levels(points: NDArray[np.float64], values: NDArray[np.float64], reduce: str) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per axial level (1 mm bins of world z): the median (or mid-range) of ``values``."""
    if points.size == 0:
        return np.zeros(0), np.zeros(0)
    bins = np.round(points).astype(np.int64)
    order = np.argsort(bins, kind="stable")
    bins, values = bins[order], values[order]
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], bins.size]
    if reduce == "median":
        xs = np.asarray([np.median(values[a:b]) for a, b in zip(starts, ends, strict=True)])
    else:
        xs = np.asarray([0.5 * (values[a:b].min() + values[a:b].max()) for a, b in zip(starts, ends, strict=True)])
    return bins[starts].astype(np.float64), xs


def _midline(case: Case, body: Body | None) -> Midline | None:
    image = case.image
    if not image.oriented:
        return None
    if image.is_2d:
        points = np.argwhere(case.labels != 0)
        if points.size == 0:
            return None
        xs = image.world(points.astype(np.float64))[:, 0]
        return Midline("labels", np.zeros(1), np.asarray([0.5 * (xs.min() + xs.max())]))
    spine = [
        i
        for i in case.present
        if i in case.label_names and case.label_names[i] in midline_labels([case.label_names[i]])
    ]
    if spine:
        step = max(1, int(round((case.labels.size / 4e6) ** (1 / 3))))
        sample = case.labels[::step, ::step, ::step]
        points = np.argwhere(np.isin(sample, np.asarray(spine, dtype=sample.dtype))) * step
        world = image.world(points.astype(np.float64))
        z, x = _levels(world[:, 2], world[:, 0], "median")
        if z.size:
            return Midline("spine", z, x)
    if body is not None and body.mask.any():
        world = image.world(body.indices().astype(np.float64))
        z, x = _levels(world[:, 2], world[:, 0], "midrange")
        return Midline("body", z, x)
    return None


def _right_shares(case: Case, objects: Objects, midline: Midline) -> dict[int, float]:
    """Each object's share of its voxels right of the midline (world x against the midline
    at their world z, RAS+), every voxel counted by the core in one walk of the object map."""
    ids = list(objects.anchors)
    found = geometry.side_shares(objects.map, ids, case.image.affine, midline.z, midline.x)
    return {object_id: float(share) for object_id, share in zip(ids, found, strict=True)}


def _conflicts(objects: Objects, shares: dict[int, float], body_region: str | None) -> tuple[dict[str, Any], ...]:
    """Side-named structures on the other side of the computed midline."""
    found = []
    for object_id, anchor in sorted(objects.anchors.items()):
        named = clinical_term(anchor.label, body_region).side
        computed = laterality(shares.get(object_id))
        if named is not None and computed in ("left", "right") and computed != named:
            found.append(
                {
                    "label": anchor.label,
                    "named": named,
                    "computed": computed,
                    "right_share": round(shares[object_id], 3),
                }
            )
    return tuple(found)


def case_context(
    case: Case,
    objects: Objects,
    modality: str,
    body: Body | None = None,
    body_region: str | None = None,
    clinical: dict[int, dict[str, dict[str, str]]] | None = None,
) -> CaseContext:
    """The midline, every object's side and the laterality self-check of a case, with the
    clinical attributes its objects have from the dataset's case table."""
    midline = _midline(case, body) if objects.anchors else None
    shares = _right_shares(case, objects, midline) if midline is not None else {}
    sides = Laterality(shares, _conflicts(objects, shares, body_region))
    checks = {"midline": None if midline is None else midline.to_dict(), "laterality": sides.to_dict()}
    return CaseContext(midline, sides, modality, body_region, case.image.spacing_known, checks, dict(clinical or {}))


def laterality(share_right: float | None) -> str | None:
    """``right``/``left`` when at least :data:`LATERAL_SHARE` of an object lies on that side,
    else ``midline``; None without a share."""
    if share_right is None:
        return None
    if share_right >= LATERAL_SHARE:
        return "right"
    if share_right <= 1 - LATERAL_SHARE:
        return "left"
    return "midline"


# ----------------------------------------------------------------------------- words of one object


def shape_class(descriptors: dict[str, Any]) -> str:
    """round / oval / elongated / irregular / lobulated (:func:`medground.words.shape_word`)."""
    return shape_word(descriptors["elongation"], descriptors["solidity"], descriptors["circularity"])


def size_class(anchor: Anchor, obj: ViewObject, spacing_known: bool) -> str | None:
    """The size class of an object where it is measurable (module docstring), else None."""
    if anchor.kind == "instance":
        if not is_lesion(anchor.label):
            return None
        if not spacing_known:
            if obj.cut_by_border:
                return None  # the image border cuts it: its share of the image is not its size
            share = obj.descriptors["image_share"]
            assert share is not None
            return "small" if share < IMAGE_SHARE[0] else "medium" if share <= IMAGE_SHARE[1] else "large"
        diameter = obj.descriptors["diameter_mm"]
        if diameter is None or obj.cut_by_border or not anchor.complete:
            return None
        return "small" if diameter < LESION_MM[0] else "medium" if diameter <= LESION_MM[1] else "large"
    return organ_size_class(anchor)


def organ_size_class(anchor: Anchor) -> str | None:
    """An organ's size class from its volume against the adult range in the priors, when
    it is whole in a volume with physical spacing; else None."""
    if anchor.kind == "series" or anchor.size is None or not anchor.complete or len(anchor.bbox_min) != 3:
        return None
    key = anchor.label.lower().replace(" ", "_")
    ranges = priors().get("volume_ml", {})
    for name in (key, key.removesuffix("_left").removesuffix("_right")):
        if name in ranges:
            low, high = ranges[name]
            return "small" if anchor.size < low else "large" if anchor.size > high else "normal"
    return None


def category_of(anchor: Anchor, body_region: str | None = None, *, sided: bool = True) -> str:
    """What a reader can tell an object is, from the image: the label for organs and
    instance classes; for a member of a numbered series, its series and side without the
    number a single slice does not show (``left rib``). Without a known side (``sided``
    false: no orientation, or laterality withheld) a side-named label's side is dropped."""
    term = clinical_term(anchor.label, body_region)
    if anchor.kind != "series" and (sided or term.side is None):
        return anchor.label
    return f"{term.side} {term.noun}" if term.side and sided else term.noun


# ----------------------------------------------------------------------------- intensity


def full_scale(stored: NDArray[Any], values: NDArray[Any]) -> float:
    """The intensity range photographs and radiographs are compared in: 255 for 8-bit
    images, else the range of the view."""
    if stored.dtype == np.uint8:
        return 255.0
    return max(float(values.max() - values.min()), 1e-6)


def contrast(modality: str, inside: NDArray[Any], ring: NDArray[Any], scale: float) -> float:
    """An object's contrast against its ring, in the unit its modality is judged in: HU
    difference (CT), ring standard deviations (MR, PET), share of full scale (others)."""
    difference = float(np.mean(inside, dtype=np.float64) - np.mean(ring, dtype=np.float64))
    if modality == "CT":
        return difference
    if modality in ("MR", "PET"):
        return difference / max(float(np.std(ring, dtype=np.float64)), 1e-6)
    return difference / scale


_INTENSITY_WORDS = {
    "CT": ("hypodense", "isodense", "hyperdense"),
    "MR": ("hypointense", "isointense", "hyperintense"),
    "PET": ("hypointense", "isointense", "hyperintense"),
    "other": ("darker", "similar", "brighter"),
}


def intensity_word(modality: str, difference: float, ring_std: float, window_width: float | None) -> str:
    """The intensity word for an 8-bit mean difference against the ring (module docstring)."""
    words = _INTENSITY_WORDS.get(modality, _INTENSITY_WORDS["other"])
    if modality == "CT":
        threshold = max(4.0, 15.0 * 255.0 / window_width) if window_width else 4.0
    elif modality in ("MR", "PET"):
        threshold = max(2.0, 0.5 * ring_std)
    else:
        threshold = 0.05 * 255.0
    return words[0] if difference < -threshold else words[2] if difference > threshold else words[1]


def intensity_relation(view: View, obj: ViewObject, modality: str) -> dict[str, Any]:
    """The object's mean grey level against a ring of surrounding tissue, in the stored image
    (the ring the view's visibility used: for grey views its statistics are the core's)."""
    ranges = view.intensity.ranges
    width = ranges[0][1] - ranges[0][0] if view.intensity.kind == "window" and len(ranges) == 1 else None
    if obj.grey is not None:
        if not obj.grey.ring_count:
            return {"relation": None, "reason": "no surrounding tissue in the view"}
        mean_in, mean_ring = obj.grey.inside_mean, obj.grey.ring_mean
        return _relation(modality, mean_in, mean_ring, obj.grey.ring_std, width)
    radius = max(2, int(math.ceil(RING_MM / min(view.pixel_mm)))) if view.case.image.spacing_known else 3
    x0, y0, x1, y1 = obj.bbox_xyxy
    ys = slice(max(0, y0 - radius), min(view.height, y1 + radius))
    xs = slice(max(0, x0 - radius), min(view.width, x1 + radius))
    inside = view.object_map[ys, xs] == obj.object_id
    ring = dilate(inside, radius) & ~inside
    image = view.image[ys, xs].astype(np.float64)
    grey = image @ np.asarray([0.299, 0.587, 0.114]) if image.ndim == 3 else image
    if not ring.any():
        return {"relation": None, "reason": "no surrounding tissue in the view"}
    mean_in, mean_ring = float(grey[inside].mean()), float(grey[ring].mean())
    return _relation(modality, mean_in, mean_ring, float(grey[ring].std()), width)


def _relation(modality: str, mean_in: float, mean_ring: float, ring_std: float, width: float | None) -> dict[str, Any]:
    relation = intensity_word(modality, mean_in - mean_ring, ring_std, width)
    return {
        "relation": relation,
        "mean_8bit": round(mean_in, 2),
        "ring_mean_8bit": round(mean_ring, 2),
        "contrast_8bit": round(mean_in - mean_ring, 2),
    }


# ----------------------------------------------------------------------------- relations in the slice


def in_plane_direction(
    box: list[int] | tuple[int, ...], other: list[int] | tuple[int, ...], directions: tuple[str, str] | None
) -> str | None:
    """Where ``box`` lies relative to ``other`` in the plane shown, in patient terms
    (``directions``: the patient direction rows and columns grow in), or None when the
    boxes overlap along the main axis of their offset (one encloses or overlies the other)."""
    if directions is None:
        return None
    centre = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
    other_centre = ((other[0] + other[2]) / 2.0, (other[1] + other[3]) / 2.0)
    dx, dy = centre[0] - other_centre[0], centre[1] - other_centre[1]
    axis = 0 if abs(dx) >= abs(dy) else 1
    lo, hi = (box[axis], box[axis + 2]), (other[axis], other[axis + 2])
    overlap = min(lo[1], hi[1]) - max(lo[0], hi[0])
    if overlap > DIRECTION_OVERLAP * min(lo[1] - lo[0], hi[1] - hi[0]) or (dx if axis == 0 else dy) == 0:
        return None
    code = directions[1] if axis == 0 else directions[0]  # increasing x follows columns, y rows
    positive = (dx if axis == 0 else dy) > 0
    return _WORDS[code] if positive else _WORDS[_opposite(code)]


def world_direction(box: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> str | None:
    """Where a whole structure lies relative to another in the patient, from their boxes in
    RAS+ millimetres (``[[r, a, s]_min, [r, a, s]_max]``): along the world axis of the
    largest offset between their centres, ``right``/``left``, ``anterior``/``posterior`` or
    ``superior``/``inferior`` — or None when the boxes overlap along that axis by more than
    :data:`DIRECTION_OVERLAP` of the shorter extent (one encloses or overlies the other,
    as in a slice). The same rule as :func:`in_plane_direction`, in 3D and in millimetres."""
    low, high = [float(v) for v in box[0]], [float(v) for v in box[1]]
    other_low, other_high = [float(v) for v in other[0]], [float(v) for v in other[1]]
    offsets = [(low[k] + high[k] - other_low[k] - other_high[k]) / 2.0 for k in range(3)]
    axis = max(range(3), key=lambda k: (abs(offsets[k]), -k))
    overlap = min(high[axis], other_high[axis]) - max(low[axis], other_low[axis])
    shorter = min(high[axis] - low[axis], other_high[axis] - other_low[axis])
    if offsets[axis] == 0 or overlap > DIRECTION_OVERLAP * shorter:
        return None
    positive, negative = (("R", "L"), ("A", "P"), ("S", "I"))[axis]
    return _WORDS[positive if offsets[axis] > 0 else negative]


def _opposite(code: str) -> str:
    return {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}[code]


def _faces(view: View) -> dict[int, dict[int, int]]:
    """Shared 4-neighbour faces of the view's objects with each other and with the
    background (0), as :func:`shared_faces` gives them for the objects of ``view.objects``.
    Where the view read every object's statistics (grey views), an object's faces with the
    background are its faces with anything outside it (``edge_count``) less those with other
    objects: the core then walks the object map as it is, not a widened copy in which the
    background is a region of its own."""
    objects = view.objects
    stats = [obj.grey for obj in objects.values()]
    if not objects or any(found is None for found in stats):
        return shared_faces(view.object_map)
    faces = _pair_faces(geometry.contacts(view.object_map, 4), 0, 0)
    for object_id, found in zip(objects, stats, strict=True):
        assert found is not None
        mine = faces[object_id]
        rest = found.edge_count - sum(mine.values())
        if rest:
            mine[0] = rest
    return faces


def shared_faces(labels: NDArray[Any]) -> dict[int, dict[int, int]]:
    """Shared faces (4-neighbour in 2D, 6 in 3D) between the objects of an id map, both
    ways, with 0 for the background: one pass of the core over the map (the background
    made a region of its own by shifting every id up by one, in one pass over the map where
    the ids are narrower than 32 bits)."""
    if labels.dtype.kind in "ub" and labels.dtype.itemsize < 4:
        shift, background = 1, 1
        filled = np.add(labels, 1, dtype=np.uint32)
    else:
        shift, background = 0, int(labels.max()) + 1 if labels.size else 1
        filled = np.where(labels == 0, np.uint32(background), labels.astype(np.uint32))
    return _pair_faces(geometry.contacts(filled, 4 if labels.ndim == 2 else 6), shift, background)


def _pair_faces(pairs: geometry.PairTable, shift: int, background: int) -> dict[int, dict[int, int]]:
    """A contact table's faces both ways, by id: ``background`` read as 0 and every other
    id less ``shift``."""
    faces: dict[int, dict[int, int]] = defaultdict(dict)
    # Python ints from the table at once (not a numpy scalar per element and conversion).
    for a, b, count in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.count.tolist(), strict=True):
        a_key = 0 if a == background else a - shift
        b_key = 0 if b == background else b - shift
        faces[a_key][b_key] = faces[a_key].get(b_key, 0) + count
        faces[b_key][a_key] = faces[b_key].get(a_key, 0) + count
    return faces


def _gap_px(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    gx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    gy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(gx, gy)


class _Nearby:
    """The view's nameable structures (each the only one of its category) and the squared
    box gaps of every object to each, for :func:`relations`' nearest structure: the gaps
    of a view's objects in one broadcast, not a loop over the nameable per object."""

    def __init__(self, view: View, names: dict[int, str]) -> None:
        self.unique = _unique(view, names)
        self.names = names
        # Each nameable structure's category is its own: a category names one column.
        self.column = {names[o.object_id]: j for j, o in enumerate(self.unique)}
        self.row = {oid: i for i, oid in enumerate(view.objects)}
        self.least: NDArray[np.int64] | None = None
        if self.unique:
            ob = np.array([o.bbox_xyxy for o in view.objects.values()], dtype=np.int64).reshape(-1, 4)
            ub = np.array([o.bbox_xyxy for o in self.unique], dtype=np.int64).reshape(-1, 4)
            gx = np.maximum(np.maximum(ob[:, None, 0], ub[None, :, 0]) - np.minimum(ob[:, None, 2], ub[None, :, 2]), 0)
            gy = np.maximum(np.maximum(ob[:, None, 1], ub[None, :, 1]) - np.minimum(ob[:, None, 3], ub[None, :, 3]), 0)
            squares = gx * gx + gy * gy
            # An object's own category is never its nearest other structure.
            own = np.array([self.column.get(names[oid], -1) for oid in view.objects], dtype=np.int64)
            mine = np.flatnonzero(own >= 0)
            squares[mine, own[mine]] = np.iinfo(np.int64).max
            self.squares = squares
            self.least = squares.min(axis=1)
            self.ties = (squares == self.least[:, None]).sum(axis=1)

    def nearest(self, obj: ViewObject, shared: dict[str, int]) -> ViewObject | None:
        """The other nameable structure sharing the most outline with ``obj`` (``shared``:
        its faces by category, its own left out), then the nearest by box gap, then the
        lowest id: the minimum of (−shared, gap, id); None when there is none. The gaps are
        compared squared, in integers, and :func:`_gap_px` is taken only among the equally
        near (the same order: distinct squares are far apart beside a rounding)."""
        own = self.names[obj.object_id]
        if self.least is None or (len(self.unique) == 1 and own in self.column):
            return None
        row = self.row[obj.object_id]
        named = {name: count for name, count in shared.items() if name in self.column and name != own}
        most = max(named.values(), default=0)
        if most:
            near = [self.unique[self.column[name]] for name, count in named.items() if count == most]
            if len(near) > 1:
                squares = [int(self.squares[row, self.column[self.names[o.object_id]]]) for o in near]
                near = [o for o, square in zip(near, squares, strict=True) if square == min(squares)]
        elif self.ties[row] == 1:
            return self.unique[int(np.argmin(self.squares[row]))]
        else:
            near = [self.unique[int(j)] for j in np.flatnonzero(self.squares[row] == self.least[row])]
        if len(near) == 1:
            return near[0]
        return min(near, key=lambda o: (_gap_px(obj.bbox_xyxy, o.bbox_xyxy), o.object_id))


def relations(
    view: View,
    obj: ViewObject,
    faces: dict[int, dict[int, int]],
    categories: dict[int, str] | None = None,
    *,
    sided: bool = True,
    nearby: _Nearby | None = None,
) -> dict[str, Any]:
    """Containing and touching structures in the slice, and the nearest other structure a
    reader can name unambiguously (the only one of its category in the view) with the
    in-plane direction to it. Structures are named by their category (what a reader can
    tell them to be: ``left rib``, not ``rib_left_7``); without trusted sides (``sided``
    false) no direction is left or right."""
    names = categories or {oid: o.anchor.label for oid, o in view.objects.items()}
    if nearby is None:
        nearby = _Nearby(view, names)
    mine = faces.get(obj.object_id, {})
    total = sum(mine.values())
    by_name: dict[str, int] = defaultdict(int)
    for neighbour, count in mine.items():
        if neighbour in view.objects and names[neighbour] != names[obj.object_id]:
            by_name[names[neighbour]] += count
    within = None
    if total and by_name:
        name, count = max(by_name.items(), key=lambda kv: (kv[1], kv[0]))
        if count / total >= CONTAINED_SHARE:
            within = name
    nearest = None
    best = nearby.nearest(obj, by_name)
    if best is not None:
        gap = _gap_px(obj.bbox_xyxy, best.bbox_xyxy) * min(view.pixel_mm)
        direction = in_plane_direction(obj.bbox_xyxy, best.bbox_xyxy, view.directions)
        nearest = {
            "label": names[best.object_id],
            "object_id": best.object_id,
            "gap_mm": round(gap, 2) if view.case.image.spacing_known else None,
            "direction": None if not sided and direction in ("left", "right") else direction,
        }
    return {
        "within": within,
        "touches": sorted(by_name, key=lambda name: (-by_name[name], name)),
        "boundary_shares": {k: round(v / total, 4) for k, v in sorted(by_name.items())} if total else {},
        "nearest": nearest,
    }


def _unique(view: View, names: dict[int, str]) -> list[ViewObject]:
    """The view's objects that are the only one of their category (nameable without doubt)."""
    counts: dict[str, int] = defaultdict(int)
    for name in names.values():
        counts[name] += 1
    return [o for oid, o in view.objects.items() if counts[names[oid]] == 1]


# ----------------------------------------------------------------------------- all cues of a view


def compute_cues(view: View, context: CaseContext) -> dict[int, dict[str, Any]]:
    """Cues of every object in a view, by object id."""
    faces = _faces(view)
    sided = context.midline is not None and not context.laterality.withheld
    categories = {oid: category_of(obj.anchor, context.body_region, sided=sided) for oid, obj in view.objects.items()}
    by_category: dict[str, list[ViewObject]] = defaultdict(list)
    for object_id, obj in view.objects.items():
        by_category[categories[object_id]].append(obj)
    # Per category once: ranks by area and the ends of the plane (not per object: a slide
    # of a thousand nuclei stays linear).
    ranks: dict[int, int] = {}
    ends: dict[str, _Ends] = {}
    for category, same in by_category.items():
        for rank, other in enumerate(sorted(same, key=lambda o: (-o.area_px, o.object_id)), start=1):
            ranks[other.object_id] = rank
        if len(same) > 1:  # the ends of a kind are read only where its objects are counted
            ends[category] = _Ends(same)
    nearby = _Nearby(view, categories)
    cues: dict[int, dict[str, Any]] = {}
    for object_id, obj in view.objects.items():
        anchor = obj.anchor
        same = by_category[categories[object_id]]
        counted = anchor.is_instance and len(same) > 1
        rank = ranks[object_id]
        offset, centroid = context.placed(anchor)
        measurable = context.spacing_known and not obj.cut_by_border and anchor.kind == "instance"
        cues[object_id] = {
            "kind": anchor.kind,
            "laterality": context.laterality.side(object_id),
            "midline_offset_mm": offset,
            "centroid_world": None if centroid is None else list(centroid),
            "image_position": image_position(obj.bbox_xyxy, view.width, view.height),
            "relations": relations(view, obj, faces, categories, sided=sided, nearby=nearby),
            "size": {
                "diameter_mm": obj.descriptors["diameter_mm"] if measurable else None,
                "area_mm2": obj.descriptors["area_mm2"] if measurable else None,
                "volume_ml": round(anchor.size, 3)
                if anchor.size is not None and anchor.complete and view.map.plane is not None and context.spacing_known
                else None,
                "image_share": obj.descriptors["image_share"],
                "size_class": size_class(anchor, obj, context.spacing_known),
            },
            # A finding the image border cuts shows the border's shape, not its own.
            "shape": shape_class(obj.descriptors)
            if anchor.kind == "instance" and is_lesion(anchor.label) and not obj.cut_by_border
            else None,
            "intensity": intensity_relation(view, obj, context.modality),
            "count": {
                "category": categories[object_id],
                "same_label": len(same) if anchor.is_instance else 1,
                "size_rank": rank if counted else None,
                "size_extreme": ("largest" if rank == 1 else "smallest" if rank == len(same) else None)
                if counted
                else None,
                "extremes": ends[categories[object_id]].of(view, obj) if counted else [],
            },
            "pieces": len(obj.pieces),
            "clinical": dict(context.clinical.get(object_id, {})),
            "visibility": {
                "cross_section_share": obj.cross_section_share,
                "cut_by_border": obj.cut_by_border,
                **obj.visibility.to_dict(),
            },
        }
    return cues


class _Ends:
    """Which ends of the plane shown each object of one kind is at: in patient terms where
    the view has them ("most anterior"), else in image terms ("leftmost in the image")."""

    def __init__(self, same: list[ViewObject]) -> None:
        centres = [(0.5 * (o.bbox_xyxy[0] + o.bbox_xyxy[2]), 0.5 * (o.bbox_xyxy[1] + o.bbox_xyxy[3])) for o in same]
        self.centres = {o.object_id: c for o, c in zip(same, centres, strict=True)}
        self.counts = [Counter(c[axis] for c in centres) for axis in (0, 1)]
        self.low = [min(c[axis] for c in centres) for axis in (0, 1)]
        self.high = [max(c[axis] for c in centres) for axis in (0, 1)]

    def of(self, view: View, obj: ViewObject) -> list[str]:
        centre = self.centres[obj.object_id]
        out = []
        for axis in (0, 1):
            if self.counts[axis][centre[axis]] != 1:
                continue
            if view.directions is not None:
                code = view.directions[1] if axis == 0 else view.directions[0]
                high, low = _WORDS[code], _WORDS[_opposite(code)]
                words = (f"most {low}", f"most {high}")
            else:
                words = (
                    ("leftmost in the image", "rightmost in the image")
                    if axis == 0
                    else ("uppermost in the image", "lowest in the image")
                )
            if centre[axis] == self.low[axis]:
                out.append(words[0])
            if centre[axis] == self.high[axis]:
                out.append(words[1])
        return out
