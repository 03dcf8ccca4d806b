"""Images with their geometry: the array, its affine and the patient axes of every array axis.

World coordinates are RAS+ millimetres (nibabel's convention: +x toward the patient's
right, +y anterior, +z superior), whatever the file stored: DICOM, NRRD and MHA carry
LPS and are converted on reading. Arrays are never reoriented; instead every array axis
has a patient axis code (``axcodes``), the direction in which its index grows, and all
downstream code asks for it rather than assuming RAS or LPS.

2D images have two spatial axes (plus a trailing channel axis for colour). A radiograph
stored as it is read (``display = "radiological"``) has its rows running toward the
patient's feet and its columns toward the patient's left, so its axcodes are ``("I", "L")``;
photographs (endoscopy, dermoscopy) have no patient orientation and ``axcodes`` is None.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["Reorientation", "Volume", "axcodes_of", "opposite", "patient_side", "radiograph_affine", "to_ras"]

#: The direction each RAS+ world axis points to, and its opposite.
_WORLD_CODES = (("R", "L"), ("A", "P"), ("S", "I"))
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}

Side = Literal["left", "right", "midline"]


def opposite(code: str) -> str:
    """The opposite patient direction: ``"L"`` for ``"R"`` and so on."""
    return _OPPOSITE[code]


def axcodes_of(affine: NDArray[np.floating], n_axes: int | None = None) -> tuple[str, ...]:
    """Patient direction in which each array axis's index grows, from an index→RAS affine.

    Each array axis gets the world axis its column of the affine is closest to (each world
    axis used once, so oblique scans still get a permutation), signed: ``"R"`` means the
    index grows toward the patient's right. Equivalent to ``nibabel.aff2axcodes``.
    """
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    n = linear.shape[1] if n_axes is None else n_axes
    columns = linear[:, :n] / np.maximum(np.linalg.norm(linear[:, :n], axis=0), 1e-12)
    weights = np.abs(columns)
    codes: list[str] = [""] * n
    free_world = {0, 1, 2}
    # Greedy on the largest cosine: the best-aligned pair is fixed first.
    for _ in range(n):
        best = None
        for axis in range(n):
            if codes[axis]:
                continue
            for world in free_world:
                if best is None or weights[world, axis] > weights[best[1], best[0]]:
                    best = (axis, world)
        assert best is not None
        axis, world = best
        positive, negative = _WORLD_CODES[world]
        codes[axis] = positive if columns[world, axis] > 0 else negative
        free_world.discard(world)
    return tuple(codes)


def radiograph_affine(spacing: Sequence[float] = (1.0, 1.0)) -> NDArray[np.float64]:
    """Affine of a 2D image stored as displayed radiologically: rows toward the feet
    (``I``), columns toward the patient's left (``L``); the third column is the viewing
    direction (anterior) so that the matrix stays invertible."""
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 0.0, -float(spacing[0]))
    affine[:3, 1] = (-float(spacing[1]), 0.0, 0.0)
    affine[:3, 2] = (0.0, 1.0, 0.0)
    return affine


def patient_side(world_point: Sequence[float], midline_x: float = 0.0, tolerance_mm: float = 0.0) -> Side:
    """Which side of the patient a RAS+ world point lies on, relative to a midline plane
    ``x = midline_x`` (estimate it from the body, not the scanner origin); points within
    ``tolerance_mm`` of the plane are ``"midline"``."""
    offset = float(world_point[0]) - midline_x
    if offset > tolerance_mm:
        return "right"
    if offset < -tolerance_mm:
        return "left"
    return "midline"


@dataclass(frozen=True)
class Reorientation:
    """How a 3D array is turned into its closest RAS+ orientation (what
    ``nibabel.as_closest_canonical`` does): a permutation of the axes, then flips.

    Attributes:
        order: the stored axis that becomes each canonical axis (``order[k]`` → axis ``k``).
        flips: per canonical axis, whether the stored index ran the other way (an ``L``, ``P``
            or ``I`` axis), so canonical index ``n - 1 - i`` is stored index ``i``.
        shape: the canonical shape.
    """

    order: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]

    def array(self, stored: NDArray[Any]) -> NDArray[Any]:
        """The canonical array: a view of ``stored`` (axes transposed, flipped by strides),
        never a copy; spatial axes first, any trailing axes kept."""
        out = np.transpose(stored, (*self.order, *range(3, stored.ndim)))
        slices = tuple(slice(None, None, -1) if flip else slice(None) for flip in self.flips)
        return out[slices]

    def affine(self, stored: NDArray[np.floating]) -> NDArray[np.float64]:
        """The canonical array's index→RAS affine: the same voxels at the same places."""
        matrix = np.asarray(stored, dtype=np.float64)
        out = np.eye(4)
        for k, (axis, flip) in enumerate(zip(self.order, self.flips, strict=True)):
            column = matrix[:3, axis]
            out[:3, k] = -column if flip else column
        # Canonical index 0 of a flipped axis is the stored index n - 1.
        origin = np.array([self.shape[k] - 1 if flip else 0 for k, flip in enumerate(self.flips)], dtype=np.float64)
        stored_origin = np.zeros(3)
        for k, axis in enumerate(self.order):
            stored_origin[axis] = origin[k]
        out[:3, 3] = matrix[:3, :3] @ stored_origin + matrix[:3, 3]
        return out

    def box(self, bbox_min: Sequence[int], bbox_max: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A stored voxel box ``[min, max)`` as the same voxels' box in canonical indices."""
        low, high = [], []
        for k, (axis, flip) in enumerate(zip(self.order, self.flips, strict=True)):
            lo, hi = int(bbox_min[axis]), int(bbox_max[axis])
            if flip:
                lo, hi = self.shape[k] - hi, self.shape[k] - lo
            low.append(lo)
            high.append(hi)
        return tuple(low), tuple(high)


def to_ras(shape: Sequence[int], affine: NDArray[np.floating]) -> Reorientation:
    """The reorientation of a 3D array of ``shape`` with index→RAS ``affine`` to its
    closest RAS+ orientation (array axis 0 toward the patient's right, 1 anterior, 2
    superior), by the same axis assignment as :func:`axcodes_of`."""
    codes = axcodes_of(affine, 3)
    order = [0, 0, 0]
    flips = [False, False, False]
    for axis, code in enumerate(codes):
        world = next(w for w, pair in enumerate(_WORLD_CODES) if code in pair)
        order[world] = axis
        flips[world] = code != _WORLD_CODES[world][0]
    ordered = (order[0], order[1], order[2])
    return Reorientation(
        ordered, (flips[0], flips[1], flips[2]), (int(shape[order[0]]), int(shape[order[1]]), int(shape[order[2]]))
    )


def affine_problem(affine: NDArray[Any]) -> str | None:
    """Why an affine cannot place voxels in the patient, or None when it can: it must be a
    finite 4×4 matrix whose voxel axes span 3D space (a singular one has no sides, no
    spacing and no orientation worth the name; laterality read from it would be a guess)."""
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        return f"affine of shape {matrix.shape}; expected 4x4"
    if not np.isfinite(matrix).all():
        return f"the affine holds NaN or infinite values: {np.round(matrix[:3], 4).tolist()}"
    singular = np.linalg.svd(matrix[:3, :3], compute_uv=False)
    if singular[-1] <= 1e-6 * singular[0] or singular[-1] <= 1e-9:
        return (
            f"singular affine: its voxel axes do not span 3D space (singular values "
            f"{[float(f'{v:.4g}') for v in singular]}); the file's geometry is broken"
        )
    return None


@dataclass(frozen=True, eq=False)
class Volume:
    """An image or mask array with its geometry.

    Attributes:
        array: numpy-ordered data; 3D volumes ``(i, j, k)``, 2D images ``(rows, columns)``
            or ``(rows, columns, channels)``.
        affine: 4×4 map from (spatial) index to RAS+ millimetres. For 2D images the first
            two columns belong to the two array axes.
        path: the file (or DICOM folder) it was read from.
        oriented: whether the affine carries the patient's orientation (False for
            photographs and for files without a usable header).
    """

    array: NDArray[np.generic]
    affine: NDArray[np.float64]
    path: Path
    oriented: bool = True
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = affine_problem(self.affine)
        if problem is not None:
            from medground.io.errors import CaseError

            raise CaseError(self.path, problem)

    @property
    def ndim(self) -> int:
        """Number of spatial axes: 2 or 3."""
        return 2 if self.is_2d else 3

    @property
    def is_2d(self) -> bool:
        return self.array.ndim == 2 or (self.array.ndim == 3 and bool(self.metadata.get("channels_last")))

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape (channels excluded)."""
        return tuple(int(s) for s in self.array.shape[: self.ndim])

    @functools.cached_property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each array axis, in millimetres (pixels for unscaled 2D images).
        Worked out once (every view and check of a case asks for it)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, : self.ndim], axis=0))

    @property
    def spacing_known(self) -> bool:
        """Whether :attr:`spacing` is physical (millimetres): False for photographs and other
        rasters whose files carry no pixel size (and no ``pixel_spacing`` in the spec)."""
        return bool(self.metadata.get("spacing_known", True))

    @property
    def axcodes(self) -> tuple[str, ...] | None:
        """Patient direction of each array axis (``("L", "P", "S")`` for an LPS volume),
        or None when the image has no patient orientation."""
        return axcodes_of(self.affine, self.ndim) if self.oriented else None

    def world(self, index: Sequence[float] | NDArray[np.floating]) -> NDArray[np.float64]:
        """RAS+ millimetres of an index (or of an ``(n, ndim)`` array of indices); voxel
        centres sit at integer indices."""
        idx = np.asarray(index, dtype=np.float64)
        flat = idx.reshape(-1, self.ndim)
        world = flat @ self.affine[:3, : self.ndim].T + self.affine[:3, 3]
        return world.reshape(idx.shape[:-1] + (3,))

    def index(self, world_point: Sequence[float] | NDArray[np.floating]) -> NDArray[np.float64]:
        """Continuous index of a RAS+ world point (inverse of :meth:`world`; 3D only)."""
        if self.ndim != 3:
            raise ValueError(f"index() needs a 3D volume; {self.path} is 2D")
        point = np.asarray(world_point, dtype=np.float64)
        return np.asarray(np.linalg.solve(self.affine[:3, :3], (point - self.affine[:3, 3]).T).T, dtype=np.float64)
