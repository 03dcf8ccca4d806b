"""The facts of a volume sample measured a second time, from the volume file and the objects
file it ships (the arrays written to them: the closest-RAS+ grid and its affine).

The same rules judge a volume sample as a slice's (:mod:`medground.verify.rules`): every
claim true of the targets, the cues it rests on agreeing with these measurements, the
claims fitting no other object — of the whole volume. What is measured here, with code of
its own (numpy and scipy; the cues use the Rust core and a 3D midline):

* box: the voxel box of the object's voxels in the objects file (it must equal the
  sample's ``bbox_3d``), and its faces in RAS+ millimetres through the affine.
* side: the share of the object's voxels whose world x lies right of the middle of the
  body in the volume (the body: CT above −300 HU, else above half the Otsu threshold of
  the robustly scaled volume), read in the bands of :mod:`medground.verify.measure`.
* relations: the share of the object's outer 6-neighbour boundary on each other object
  (within from 25%); a direction in the patient when the centres of the two boxes lie that
  way along that world axis at least half as far as along any other, and the boxes overlap
  along it by at most 25% of the shorter extent; medial/lateral between objects on the
  same side.
* size: organs whole in the volume (touching none of its faces) by their voxels' volume
  against the adult ranges, each bound ± 10%.
* rank: largest (smallest) when its voxels are at least 5% more (fewer) than every other
  of its category in the volume.
* parts: connected pieces (26-neighbour) of at least 4 voxels.

A volume has no places in an image, no in-plane shape and no 8-bit brightness: a query
claiming any of them is rejected before it is judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medground.boxes import voxel_box_to_ras
from medground.verify.measure import (
    DIRECTION_OVERLAP,
    MIN_PIECE_VOXELS,
    CaseEvidence,
    Evidence,
    Form,
    Measured,
    Measurements,
    sides_of,
    size_classes,
)

__all__ = ["VolumeMeasurements", "volume_evidence"]

_AXIS_WORDS = {
    "right": (0, 1.0),
    "left": (0, -1.0),
    "anterior": (1, 1.0),
    "posterior": (1, -1.0),
    "superior": (2, 1.0),
    "inferior": (2, -1.0),
}


def volume_evidence(
    objects: NDArray[Any],
    volume: NDArray[Any],
    affine: NDArray[np.float64],
    labels: Mapping[int, str],
    kinds: Mapping[int, str],
    *,
    modality: str,
    body_region: str | None,
    clinical: Mapping[int, Mapping[str, str]] | None = None,
    clinical_terms: tuple[str, ...] = (),
    labels_known: tuple[str, ...] = (),
    spacing_known: bool = True,
) -> Evidence:
    """What a case's volume samples ship, as the verifier reads it: the objects file's ids
    and the volume file's values on their closest-RAS+ grid, with its affine. Read as an
    :class:`Evidence` whose plane is ``volume`` (rows along the first array axis)."""
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return Evidence(
        image=np.zeros((0, 0), np.uint8),
        objects=objects,
        labels=dict(labels),
        kinds=dict(kinds),
        modality=modality,
        body_region=body_region,
        plane="volume",
        row_axis=0,
        col_axis=1,
        slice_axis=None,
        slice_index=None,
        row_source=np.arange(objects.shape[0]),
        col_source=np.arange(objects.shape[1]),
        spacing=spacing if spacing_known else None,
        axcodes=("R", "A", "S"),
        affine=np.asarray(affine, dtype=np.float64),
        case=CaseEvidence(objects, volume, np.asarray(affine, dtype=np.float64), modality),
        clinical=dict(clinical or {}),
        clinical_terms=clinical_terms,
        labels_known=labels_known,
    )


class VolumeMeasurements(Measurements):
    """The measured facts of every object of a volume (see the module docstring)."""

    @cached_property
    def _boxes3(self) -> dict[int, tuple[slice, ...]]:
        found = ndimage.find_objects(np.asarray(self.evidence.objects, dtype=np.int64))
        return {i + 1: s for i, s in enumerate(found) if s is not None}

    @cached_property
    def labels_in_view(self) -> frozenset[str]:
        return frozenset(self.evidence.labels[o] for o in self.object_ids)

    @cached_property
    def min_piece(self) -> float:
        return float(MIN_PIECE_VOXELS)

    def pieces(self, object_id: int) -> int:
        if object_id not in self._pieces:
            local = self._local_mask(object_id)
            labelled, count = ndimage.label(local, structure=np.ones((3, 3, 3)))
            sizes = np.bincount(labelled.ravel())[1:] if count else np.zeros(0, np.int64)
            self._pieces[object_id] = int(np.count_nonzero(sizes >= self.min_piece))
        return self._pieces[object_id]

    def right_share(self, object_id: int) -> float | None:
        return self.of(object_id).right_share

    def box(self, object_id: int) -> tuple[int, ...]:
        return self.of(object_id).box

    def position(self, object_id: int) -> str:
        return self.of(object_id).position

    def _local_mask(self, object_id: int) -> NDArray[np.bool_]:
        window = self._boxes3.get(object_id)
        if window is None:
            raise KeyError(f"object {object_id} has no voxels in the volume")
        return np.asarray(self.evidence.objects[window] == object_id)

    def _measure(self, object_id: int) -> Measured:
        ev = self.evidence
        window = self._boxes3.get(object_id)
        if window is None:
            raise KeyError(f"object {object_id} has no voxels in the volume")
        local = np.asarray(ev.objects[window] == object_id)
        index = np.argwhere(local) + np.array([s.start for s in window])
        low = [int(v) for v in index.min(axis=0)]
        high = [int(v) + 1 for v in index.max(axis=0)]
        box = (*low, *high)
        world_x = index @ ev.affine[0, :3] + ev.affine[0, 3]  # RAS+ x of every voxel
        label = ev.labels[object_id]
        kind = ev.kinds.get(object_id, "organ")
        midline = ev.case.midline_x if ev.case is not None else None
        right_share = None if midline is None else float(np.mean(world_x > midline))
        whole = all(lo > 0 for lo in low) and all(hi < n for hi, n in zip(high, ev.objects.shape, strict=True))
        volume_ml = None
        if ev.spacing is not None and whole:
            volume_ml = int(index.shape[0]) * float(np.prod(ev.spacing)) / 1000.0
        sizes = size_classes(ev, label, kind, False, None, volume_ml, whole, int(index.shape[0]))
        extent = voxel_box_to_ras(low, high, ev.affine)
        centre = tuple(0.5 * (a + b) for a, b in zip(*extent, strict=True))
        return Measured(
            object_id=object_id,
            label=label,
            kind=kind,
            category=self.category(object_id),
            box=box,
            area_px=int(index.shape[0]),
            position="",
            right_share=right_share,
            sides=sides_of(right_share),
            contrast=None,
            intensities=frozenset(),
            form=Form.known(None, sizes, None),
            volume_ml=volume_ml,
            centre=centre,
            boundary=self._boundary3(object_id, window),
            clinical=dict(ev.clinical.get(object_id, {})),
            cross_section_share=1.0,
        )

    def extent_mm(self, object_id: int) -> list[list[float]]:
        """The object's box in RAS+ mm, ``[min, max]`` per world axis: the faces of its
        voxels through the affine, as ``bbox_3d_ras`` is made."""
        m = self.of(object_id)
        return voxel_box_to_ras(m.box[:3], m.box[3:], self.evidence.affine)

    def _boundary3(self, object_id: int, window: tuple[slice, ...]) -> dict[int, float]:
        """Share of the object's outer boundary (6-neighbour voxels outside it, inside the
        volume) on each other object."""
        objects = self.evidence.objects
        grown_window = tuple(
            slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(window, objects.shape, strict=True)
        )
        region = np.asarray(objects[grown_window])
        local = region == object_id
        grown = local.copy()
        for axis in range(3):
            lead = [slice(None)] * 3
            trail = [slice(None)] * 3
            lead[axis], trail[axis] = slice(1, None), slice(None, -1)
            grown[tuple(lead)] |= local[tuple(trail)]
            grown[tuple(trail)] |= local[tuple(lead)]
        owners = region[grown & ~local]
        if owners.size == 0:
            return {}
        ids, counts = np.unique(owners, return_counts=True)
        return {int(i): float(c) / owners.size for i, c in zip(ids, counts, strict=True) if i != 0}

    def direction(self, object_id: int, other_id: int, direction: str) -> bool:
        """Whether the object lies in ``direction`` of the other in the patient (module
        docstring); medial and lateral between objects on one side of the body."""
        mine, other = self.of(object_id), self.of(other_id)
        if direction in ("medial", "lateral"):
            return self._medial_or_lateral(object_id, other_id, direction)
        if direction not in _AXIS_WORDS:
            return False
        axis, sign = _AXIS_WORDS[direction]
        offsets = [mine.centre[k] - other.centre[k] for k in range(3)]
        along = sign * offsets[axis]
        across = max(abs(offsets[k]) for k in range(3) if k != axis)
        if along <= 0 or along < 0.5 * across:
            return False
        (a_low, a_high), (b_low, b_high) = self.extent_mm(object_id), self.extent_mm(other_id)
        overlap = min(a_high[axis], b_high[axis]) - max(a_low[axis], b_low[axis])
        shorter = min(a_high[axis] - a_low[axis], b_high[axis] - b_low[axis])
        return overlap <= DIRECTION_OVERLAP * shorter
