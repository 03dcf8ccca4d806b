"""Cues: the facts a clinician uses to point at an object, all computed from geometry and pixels.

Per object in a view: the patient side (from world coordinates against the body's
midline), where it sits in the image, what contains it, what it touches and the nearest
other structure with the direction to it, its size, shape and intensity against the
surrounding tissue, and how many objects of its label the view holds with its rank.
Nothing is taken from label names: ``kidney_left`` is "left" because of where it lies.

Thresholds (documented here and in the cue records, so a reader can re-check):

* laterality: ``left``/``right`` when at least 75% of the object's voxels lie on that side
  of the midline, else ``midline``; a label whose objects lie on both sides is
  ``bilateral`` (multi-object targets). ``null`` without patient orientation.
* shape (2D, in the view): ``elongated`` if elongation (minor/major) < 0.5; else
  ``irregular`` if solidity < 0.8; else ``lobulated`` if solidity < 0.9 and circularity < 0.7;
  else ``round`` if elongation ≥ 0.8 and circularity ≥ 0.8; else ``oval``.
* intensity against a ring 3 mm wide (at least 2 pixels) around the object: CT ±15 HU
  (hypo/iso/hyperdense); MR ±0.5 of the ring's standard deviation (hypo/iso/hyperintense);
  photographs and radiographs ±5% of full scale (darker/similar/brighter).
* containment: another label covers ≥ 50% of the object's boundary faces; touching: any
  shared face.
* size class: lesion-like labels by longest diameter (< 10 mm small, ≤ 30 mm medium,
  else large); organs against the adult volume ranges in ``presets/priors.toml``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry
from medground.anatomy import is_lesion, priors
from medground.anchors import Anchor
from medground.io.case import Case
from medground.render import otsu_threshold
from medground.views import View, ViewObject

__all__ = ["CaseContext", "case_context", "compute_cues", "image_position", "shape_class"]

LATERAL_SHARE = 0.75
CONTAINED_SHARE = 0.5
RING_MM = 3.0


@dataclass(frozen=True)
class CaseContext:
    """Case-level facts the cues of every view share.

    Attributes:
        midline_x: RAS x (mm) of the body's midline plane, None without orientation.
        body_width_mm: left-right extent of the body (or labelled union).
        right_share: component id → share of its voxels on the patient's right.
        faces: component id → {neighbour component id (or 0 = background): shared faces}.
    """

    midline_x: float | None
    body_width_mm: float | None
    right_share: dict[int, float]
    faces: dict[int, dict[int, int]]


def _body_mask_sample(case: Case, modality: str, step: int) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    array = case.image.array
    if case.image.is_2d:
        grid = case.labels[::step, ::step] != 0
    else:
        sample: NDArray[Any] = array[::step, ::step, ::step]
        threshold = -500.0 if modality == "CT" else otsu_threshold(sample.ravel().astype(np.float64))
        grid = sample > threshold
    return np.argwhere(grid) * step, grid


def case_context(case: Case, components: NDArray[Any], anchors: dict[int, Anchor], modality: str) -> CaseContext:
    """Midline, per-component sides and boundary contacts of a case (one pass each)."""
    image = case.image
    midline = width = None
    right_share: dict[int, float] = {}
    if image.oriented and anchors:
        step = max(1, int(round((components.size / 2e6) ** (1 / components.ndim))))
        points, _ = _body_mask_sample(case, modality, step)
        if len(points) < 16:
            points = np.argwhere(case.labels != 0)
        xs = image.world(points.astype(np.float64))[:, 0]
        midline = float(np.median(xs)) if not image.is_2d else float(0.5 * (xs.min() + xs.max()))
        width = float(xs.max() - xs.min())
        for component, anchor in anchors.items():
            crop = tuple(slice(a, b) for a, b in zip(anchor.bbox_min, anchor.bbox_max, strict=True))
            local = np.argwhere(components[crop] == component) + np.asarray(anchor.bbox_min)
            right_share[component] = float(np.mean(image.world(local.astype(np.float64))[:, 0] > midline))
    # Boundary contacts: background gets its own id so its faces are counted too.
    faces: dict[int, dict[int, int]] = defaultdict(dict)
    if anchors:
        background = int(components.max()) + 1
        dtype = np.uint32 if background < 2**32 else np.uint64
        filled = np.where(components == 0, dtype(background), components.astype(dtype))
        pairs = geometry.contacts(filled, 4 if image.is_2d else 6)
        for a, b, count in zip(pairs.a, pairs.b, pairs.count, strict=True):
            a, b = int(a), int(b)
            a_key, b_key = (0 if a == background else a), (0 if b == background else b)
            faces[a_key][b_key] = faces[a_key].get(b_key, 0) + int(count)
            faces[b_key][a_key] = faces[b_key].get(a_key, 0) + int(count)
    return CaseContext(midline, width, right_share, dict(faces))


def laterality(share_right: float | None) -> str | None:
    if share_right is None:
        return None
    if share_right >= LATERAL_SHARE:
        return "right"
    if share_right <= 1 - LATERAL_SHARE:
        return "left"
    return "midline"


def image_position(bbox_xyxy: tuple[int, int, int, int], width: int, height: int) -> str:
    """Where a box's centre sits on a 3×3 grid of the image: ``"upper left"`` … ``"center"``."""
    cx = 0.5 * (bbox_xyxy[0] + bbox_xyxy[2]) / width
    cy = 0.5 * (bbox_xyxy[1] + bbox_xyxy[3]) / height
    row = "upper" if cy < 1 / 3 else "lower" if cy >= 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx >= 2 / 3 else ""
    return " ".join(w for w in (row, col) if w) or "center"


def shape_class(descriptors: dict[str, float]) -> str:
    """round / oval / elongated / irregular / lobulated (thresholds in the module docstring)."""
    elongation = descriptors["elongation"]
    solidity = descriptors["solidity"]
    circularity = descriptors["circularity"]
    if elongation < 0.5:
        return "elongated"
    if solidity < 0.8:
        return "irregular"
    if solidity < 0.9 and circularity < 0.7:
        return "lobulated"
    if elongation >= 0.8 and circularity >= 0.8:
        return "round"
    return "oval"


def size_class(anchor: Anchor, diameter_mm: float, is_3d: bool) -> str | None:
    if is_lesion(anchor.label):
        return "small" if diameter_mm < 10 else "medium" if diameter_mm <= 30 else "large"
    if not is_3d:
        return None
    ranges = priors().get("volume_ml", {})
    key = anchor.label.lower().replace(" ", "_")
    for name in (key, key.removesuffix("_left").removesuffix("_right")):
        if name in ranges:
            low, high = ranges[name]
            return "small" if anchor.size < low else "large" if anchor.size > high else "normal"
    return None


def dilate(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """Binary dilation of a 2D mask by ``radius`` steps of the 4-neighbourhood (a diamond)."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


_INTENSITY_WORDS = {
    "CT": (("hypodense", "isodense", "hyperdense"), 15.0),
    "MR": (("hypointense", "isointense", "hyperintense"), 0.5),
    "PET": (("hypointense", "isointense", "hyperintense"), 0.5),
    "other": (("darker", "similar", "brighter"), 0.05),
}


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


def intensity_relation(view: View, obj: ViewObject, modality: str) -> dict[str, Any]:
    """The object's mean intensity against a ring of surrounding tissue in the view."""
    radius = max(2, int(math.ceil(RING_MM / min(view.pixel_mm))))
    x0, y0, x1, y1 = obj.bbox_xyxy
    ys = slice(max(0, y0 - radius), min(view.height, y1 + radius))
    xs = slice(max(0, x0 - radius), min(view.width, x1 + radius))
    inside = view.components[ys, xs] == obj.component_id
    ring = dilate(inside, radius) & ~inside
    values = view.values[ys, xs]
    if not ring.any():
        return {"relation": None, "reason": "no surrounding tissue in the view"}
    mean_in, mean_ring = float(values[inside].mean()), float(values[ring].mean())
    score = contrast(modality, values[inside], values[ring], full_scale(view.case.image.array, view.values))
    words, threshold = _INTENSITY_WORDS.get(modality, _INTENSITY_WORDS["other"])
    relation = words[0] if score < -threshold else words[2] if score > threshold else words[1]
    return {
        "relation": relation,
        "mean": round(mean_in, 2),
        "ring_mean": round(mean_ring, 2),
        "contrast": round(score, 4),
    }


def _direction(target: Anchor, other: Anchor, midline_x: float | None) -> str | None:
    """Where the target lies relative to the other structure, in patient terms."""
    if target.centroid_world is None or other.centroid_world is None:
        return None
    delta = np.subtract(target.centroid_world, other.centroid_world)
    axis = int(np.argmax(np.abs(delta)))
    if axis == 2:
        return "superior" if delta[2] > 0 else "inferior"
    if axis == 1:
        return "anterior" if delta[1] > 0 else "posterior"
    if midline_x is None:
        return None
    closer = abs(target.centroid_world[0] - midline_x) < abs(other.centroid_world[0] - midline_x)
    return "medial" if closer else "lateral"


def _bbox_gap_mm(a: Anchor, b: Anchor, spacing: tuple[float, ...]) -> float:
    gaps = [
        max(0, max(a.bbox_min[i], b.bbox_min[i]) - min(a.bbox_max[i], b.bbox_max[i])) * spacing[i]
        for i in range(len(spacing))
    ]
    return float(math.sqrt(sum(g * g for g in gaps)))


def relations(
    anchor: Anchor, anchors: dict[int, Anchor], context: CaseContext, spacing: tuple[float, ...]
) -> dict[str, Any]:
    """Containing structure, touching structures and the nearest other structure."""
    faces = context.faces.get(anchor.component_id, {})
    total = sum(faces.values())
    by_label: dict[str, int] = defaultdict(int)
    for neighbour, count in faces.items():
        other = anchors.get(neighbour)
        if other is not None and other.label != anchor.label:
            by_label[other.label] += count
    contained = None
    if total and by_label:
        label, count = max(by_label.items(), key=lambda kv: kv[1])
        if count / total >= CONTAINED_SHARE:
            contained = label
    touches = sorted(by_label, key=lambda name: -by_label[name])
    nearest = None
    candidates = [o for o in anchors.values() if o.label != anchor.label]
    if candidates:

        def key(other: Anchor) -> tuple[float, float]:
            touching = -by_label.get(other.label, 0)
            return (_bbox_gap_mm(anchor, other, spacing) if not touching else -1.0, float(touching))

        best = min(candidates, key=key)
        nearest = {
            "label": best.label,
            "component_id": best.component_id,
            "gap_mm": round(_bbox_gap_mm(anchor, best, spacing), 2),
            "direction": _direction(anchor, best, context.midline_x),
        }
    return {
        "within": contained,
        "touches": touches,
        "boundary_shares": {k: round(v / total, 4) for k, v in by_label.items()} if total else {},
        "nearest": nearest,
    }


def compute_cues(
    view: View, anchors: dict[int, Anchor], context: CaseContext, modality: str
) -> dict[int, dict[str, Any]]:
    """Cues of every object in a view, by component id."""
    is_3d = view.map.plane is not None
    spacing = view.case.image.spacing
    by_label: dict[str, list[ViewObject]] = defaultdict(list)
    for obj in view.objects.values():
        by_label[obj.anchor.label].append(obj)
    cues: dict[int, dict[str, Any]] = {}
    for component, obj in view.objects.items():
        anchor = obj.anchor
        same = by_label[anchor.label]
        by_area = sorted(same, key=lambda o: (-o.area_px, o.component_id))
        rank = by_area.index(obj) + 1
        extremes = _extremes(obj, same) if len(same) > 1 else []
        offset = None
        if context.midline_x is not None and anchor.centroid_world is not None:
            offset = round(abs(anchor.centroid_world[0] - context.midline_x), 2)
        cues[component] = {
            "laterality": laterality(context.right_share.get(component)) if view.case.image.oriented else None,
            "midline_offset_mm": offset,
            "centroid_world": None if anchor.centroid_world is None else [round(c, 2) for c in anchor.centroid_world],
            "image_position": image_position(obj.bbox_xyxy, view.width, view.height),
            "relations": relations(anchor, anchors, context, spacing),
            "size": {
                "diameter_mm": obj.descriptors["diameter_mm"],
                "area_mm2": obj.descriptors["area_mm2"],
                "volume_ml": round(anchor.size, 3) if is_3d else None,
                "size_class": size_class(anchor, obj.descriptors["diameter_mm"], is_3d),
            },
            "shape": shape_class(obj.descriptors),
            "intensity": intensity_relation(view, obj, modality),
            "count": {
                "same_label": len(same),
                "size_rank": rank,
                "size_extreme": ("largest" if rank == 1 else "smallest" if rank == len(same) else None)
                if len(same) > 1
                else None,
                "extremes": extremes,
            },
            "visibility": {"cross_section_share": obj.cross_section_share, "cut_by_border": obj.cut_by_border},
        }
    return cues


def _extremes(obj: ViewObject, same: list[ViewObject]) -> list[str]:
    """Which ends of the patient (or image) this object is at among its label's objects."""
    out = []
    worlds = [o.anchor.centroid_world for o in same if o.anchor.centroid_world is not None]
    here = obj.anchor.centroid_world
    if here is not None and len(worlds) == len(same):
        for axis, (high, low) in enumerate((("right", "left"), ("anterior", "posterior"), ("superior", "inferior"))):
            values = [w[axis] for w in worlds]
            mine = here[axis]
            if max(values) - min(values) < 1e-6:
                continue
            if mine == max(values) and values.count(mine) == 1:
                out.append(f"most {high}")
            if mine == min(values) and values.count(mine) == 1:
                out.append(f"most {low}")
    else:
        centres = [(0.5 * (o.bbox_xyxy[0] + o.bbox_xyxy[2]), 0.5 * (o.bbox_xyxy[1] + o.bbox_xyxy[3])) for o in same]
        centre = centres[same.index(obj)]
        for axis, (low, high) in enumerate(
            (("leftmost in the image", "rightmost in the image"), ("uppermost in the image", "lowest in the image"))
        ):
            values = [c[axis] for c in centres]
            if values.count(centre[axis]) == 1 and centre[axis] == min(values):
                out.append(low)
            if values.count(centre[axis]) == 1 and centre[axis] == max(values):
                out.append(high)
    return out
