"""Connected components and region descriptors of 2D and 3D masks.

Typed, validated wrappers over the Rust kernels in :mod:`medground._core`. Arrays are
indexed in numpy order; boxes are ``[min, max)`` per axis (max exclusive); centroids
are in index coordinates with voxel centres at integer positions; ``spacing`` is the
physical size of a voxel along each array axis, in that order.

Every kernel releases the GIL and reads the array as it lies in memory: a
Fortran-ordered array (as nibabel returns) is not copied.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medground import _core

__all__ = [
    "PairTable",
    "RegionTable",
    "body_lines",
    "connected_components",
    "ObjectStats",
    "contacts",
    "dilate",
    "dust",
    "get_num_threads",
    "kernels_on_caller",
    "largest_k",
    "object_components",
    "object_stats",
    "overlap",
    "padded",
    "regionprops",
    "relabel",
    "resample_plane",
    "rle_by_label",
    "set_num_threads",
    "slice_areas",
    "slice_areas_along",
    "slice_bboxes",
]

SUPPORTED_DTYPES = ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64")
_OUT_DTYPES = ("uint8", "uint16", "uint32", "uint64")
_CONNECTIVITY = {2: (4, 8), 3: (6, 18, 26)}


def _as_mask(array: ArrayLike, what: str = "mask", *, as_labels: bool = False) -> NDArray[Any]:
    """Returns ``array`` as a 2D/3D numpy array of a supported dtype that the kernels
    can read in place: native byte order and aligned (copied only when it is not).
    With ``as_labels``, a bool mask is viewed as uint8 (label 1)."""
    arr = np.asarray(array)
    if arr.dtype.name not in SUPPORTED_DTYPES:
        raise TypeError(f"{what} dtype must be one of {', '.join(SUPPORTED_DTYPES)}; got {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what} must be 2D or 3D, got {arr.ndim} dimensions with shape {arr.shape}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.aligned:
        arr = arr.copy()
    if as_labels and arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    return arr


def _connectivity(ndim: int, connectivity: int | None) -> int:
    if connectivity is None:
        return 8 if ndim == 2 else 26
    if isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer)):
        raise ValueError(f"connectivity must be an integer, got {connectivity!r}")
    if connectivity not in _CONNECTIVITY[ndim]:
        allowed = " or ".join(str(c) for c in _CONNECTIVITY[ndim])
        raise ValueError(f"connectivity must be {allowed} for {ndim}D, got {connectivity}")
    return int(connectivity)


def _spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing) or not isinstance(spacing, Iterable):
        raise ValueError(f"spacing must have one value per axis ({ndim}), got the scalar {spacing!r}")
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be {ndim} numbers, got {spacing!r}") from None
    if len(values) != ndim:
        raise ValueError(f"spacing must have one value per axis ({ndim}), got {len(values)}: {values}")
    for s in values:
        if not math.isfinite(s) or s <= 0:
            raise ValueError(f"spacing values must be finite and > 0, got {s} in {values}")
    return values


def _out_dtype(out_dtype: Any) -> str | None:
    if out_dtype is None:
        return None
    name = str(np.dtype(out_dtype).name)
    if name not in _OUT_DTYPES:
        raise ValueError(f"out_dtype must be one of {', '.join(_OUT_DTYPES)}, got {name}")
    return name


def set_num_threads(n: int) -> None:
    """Limits every kernel to ``n`` threads; 0 restores the default (one per core, or
    the ``RAYON_NUM_THREADS`` environment variable). Results never depend on it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads the kernels run on (:func:`set_num_threads`; a thread that
    runs its kernels on itself, :func:`kernels_on_caller`, still reads the process's)."""
    return int(_core.get_num_threads())


def kernels_on_caller(on: bool) -> bool:
    """Whether the calling thread runs its kernels on itself alone (True), or on the
    threads :func:`set_num_threads` sets (False, the default); returns the setting it
    replaces, for restoring. The setting belongs to the calling thread.

    For a thread that calls many short kernels while another thread keeps the pool busy
    with large ones: a call handed to the pool waits behind those (rayon's workers take
    their own queued work first), often longer than the call itself takes. Results never
    depend on it."""
    if not isinstance(on, (bool, np.bool_)):
        raise ValueError(f"on must be True or False, got {on!r}")
    return bool(_core.kernels_on_caller(bool(on)))


@overload
def connected_components(
    mask: ArrayLike,
    connectivity: int | None = ...,
    *,
    binary: bool = ...,
    return_n: Literal[False] = ...,
    out_dtype: Any = ...,
) -> NDArray[np.unsignedinteger]: ...
@overload
def connected_components(
    mask: ArrayLike,
    connectivity: int | None = ...,
    *,
    binary: bool = ...,
    return_n: Literal[True],
    out_dtype: Any = ...,
) -> tuple[NDArray[np.unsignedinteger], int]: ...
def connected_components(
    mask: ArrayLike,
    connectivity: int | None = None,
    *,
    binary: bool = False,
    return_n: bool = False,
    out_dtype: Any = None,
) -> NDArray[np.unsignedinteger] | tuple[NDArray[np.unsignedinteger], int]:
    """Labels the connected components of a 2D or 3D mask.

    Voxels of different nonzero values never join (a label map splits into the
    components of each label) unless ``binary=True``, which joins all nonzero voxels.

    Components are numbered ``1..N`` in the order of their first voxel in the order
    the array is walked, which follows memory instead of copying: C (row-major) order,
    unless the first axis has a smaller stride than the last (ignoring axes of length
    1; a Fortran-ordered array such as nibabel returns), then Fortran order, and the
    output has that memory order too. The numbering does not depend on the number of
    threads.

    Args:
        mask: 2D or 3D array of bool or any integer dtype; C, Fortran or strided.
        connectivity: 4 or 8 in 2D (default 8); 6, 18 or 26 in 3D (default 26).
        binary: Join all nonzero voxels regardless of value.
        return_n: Also return the number of components.
        out_dtype: uint8/16/32/64 for the result. Default: the smallest of
            uint16/uint32/uint64 that holds N.

    Returns:
        The label image, shaped and ordered like ``mask``; with ``return_n``, also N.

    Raises:
        TypeError: Unsupported dtype.
        ValueError: Wrong number of dimensions, bad connectivity, or an ``out_dtype``
            too small for N.
    """
    arr = _as_mask(mask)
    conn = _connectivity(arr.ndim, connectivity)
    labels, n = _core.connected_components(arr, conn, bool(binary), _out_dtype(out_dtype))
    return (labels, int(n)) if return_n else labels


def object_components(
    labels: ArrayLike, policy: Mapping[int, int], connectivity: int | None = None
) -> tuple[NDArray[np.unsignedinteger], NDArray[Any], NDArray[np.uint32]]:
    """The objects of a label map, made from its connected components (numbered as
    :func:`connected_components` numbers them) in the same pass: ``policy[v]`` says what
    the components of label ``v`` become — 1 one object for all of them (an organ in
    pieces), 2 an object each (instances), anything else (or a label without a rule)
    nothing. Objects are numbered ``1..`` by ascending label, then component.

    Returns:
        ``(object map, values, owners)``: the map, in the smallest unsigned dtype that holds
        the objects (``uint8`` first); ``values[c]`` the label of component ``c`` and
        ``owners[c]`` its object (0: none), entry 0 for the background.
    """
    arr = _as_mask(labels)
    conn = _connectivity(arr.ndim, connectivity)
    ruled = {int(k): int(v) for k, v in policy.items() if 0 <= int(k) < 1 << 64}  # labels are never negative
    keys = np.fromiter(ruled, dtype=np.uint64, count=len(ruled))
    rules = np.fromiter(ruled.values(), dtype=np.uint8, count=len(ruled))
    objects, _, values, owners = _core.object_components(arr, conn, keys, rules)
    return objects, np.asarray(values), np.asarray(owners)


def largest_k(
    labels_or_mask: ArrayLike,
    k: int,
    connectivity: int | None = None,
    *,
    binary: bool = False,
    return_n: bool = False,
    out_dtype: Any = None,
) -> Any:
    """Keeps the ``k`` largest connected components, labelled ``1..k`` by decreasing size.

    Ties in size go to the component met first in memory order. Arguments are those
    of :func:`connected_components`; with ``return_n`` the number kept is returned too.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    arr = _as_mask(labels_or_mask)
    conn = _connectivity(arr.ndim, connectivity)
    labels, n = _core.largest_k(arr, int(k), conn, bool(binary), _out_dtype(out_dtype))
    return (labels, int(n)) if return_n else labels


def dust(
    labels_or_mask: ArrayLike,
    threshold: int,
    connectivity: int | None = None,
    *,
    binary: bool = False,
    invert: bool = False,
    in_place: bool = False,
) -> NDArray[Any]:
    """Removes connected components smaller than ``threshold`` voxels.

    Every component with fewer than ``threshold`` voxels is set to 0 (with
    ``invert=True``: every component with ``threshold`` voxels or more); other voxels
    keep their values and dtype.

    Args:
        labels_or_mask: 2D or 3D mask or label map (components as in
            :func:`connected_components`).
        threshold: Smallest voxel count kept.
        connectivity: As in :func:`connected_components`.
        binary: Join all nonzero voxels into components regardless of value.
        invert: Remove the large components instead.
        in_place: Edit ``labels_or_mask`` itself (a writeable numpy array in native
            byte order) instead of returning a copy.

    Returns:
        The edited array: a new one, or ``labels_or_mask`` with ``in_place``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 0:
        raise ValueError(f"threshold must be a non-negative integer voxel count, got {threshold!r}")
    if in_place:
        if not isinstance(labels_or_mask, np.ndarray):
            raise ValueError(f"in_place needs a numpy array, got {type(labels_or_mask).__name__}")
        arr = _as_mask(labels_or_mask)
        if arr is not labels_or_mask:
            raise ValueError("in_place needs an aligned array in native byte order; this one would have to be copied")
        if not arr.flags.writeable:
            raise ValueError("in_place needs a writeable array; this one is read-only")
        conn = _connectivity(arr.ndim, connectivity)
        _core.dust_in_place(arr, int(threshold), conn, bool(binary), bool(invert))
        return arr
    arr = _as_mask(labels_or_mask)
    conn = _connectivity(arr.ndim, connectivity)
    return _core.dust(arr, int(threshold), conn, bool(binary), bool(invert))


_BASE_COLUMNS = (
    "label",
    "voxel_count",
    "bbox_min",
    "bbox_max",
    "centroid",
    "volume",
    "axis_lengths",
    "principal_axes",
    "elongation",
    "flatness",
)
_COLUMNS_2D = (
    "perimeter",
    "circularity",
    "convex_area",
    "solidity",
    "eccentricity",
    "orientation",
    "feret_diameter_max",
)
_COLUMNS_3D = ("surface_area", "sphericity")
_INTENSITY_COLUMNS = ("intensity_mean", "intensity_std", "intensity_min", "intensity_max")


_CONTOUR_COLUMNS = {2: ("perimeter", "circularity", "convex_area", "solidity", "feret_diameter_max"), 3: _COLUMNS_3D}


def _contour_columns(
    labels: NDArray[Any], spacing: tuple[float, ...], region_labels: NDArray[Any], size: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    """The contour measures of every region: one more pass over the map."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if labels.ndim == 3:
            area = _core.surface_areas(labels, list(spacing), region_labels)
            sphericity = np.where(area > 0, np.pi ** (1 / 3) * (6 * size) ** (2 / 3) / area, np.nan)
            return {"surface_area": area, "sphericity": sphericity}
        measures = _core.shape2d(labels, list(spacing), region_labels)
        perimeter = measures["perimeter"]
        convex = measures["convex_area"]
        return {
            "perimeter": perimeter,
            "circularity": np.where(perimeter > 0, 4 * np.pi * size / perimeter**2, np.nan),
            "convex_area": convex,
            "solidity": np.where(convex > 0, size / convex, np.nan),
            "feret_diameter_max": measures["feret_diameter_max"],
        }


class RegionTable:
    """Region descriptors as columns, one row per distinct nonzero label, sorted by label.

    Columns are numpy arrays, read as attributes (``table.centroid``) or by name
    (``table["centroid"]``); ``columns`` lists them. The table holds no reference to
    the label map it was computed from.

    Column definitions (physical units come from ``spacing``):

    - ``label``; ``voxel_count`` (int64); ``bbox_min``/``bbox_max`` ((n, ndim) int64,
      max exclusive); ``centroid`` ((n, ndim) float64, index coordinates);
      ``volume`` (voxel count × voxel volume; area in 2D).
    - ``axis_lengths`` ((n, ndim), major first): 4·sqrt(λ) for the eigenvalues λ of
      the population covariance of voxel-centre physical coordinates;
      ``principal_axes`` ((n, ndim, ndim)): unit eigenvectors as rows, in array axis
      order, sign chosen so the largest component is positive; ``elongation`` =
      sqrt(λ_minor/λ_major); ``flatness`` = sqrt(λ_least/λ_major) in 3D, NaN in 2D.
      These are pyradiomics' definitions.
    - 2D: ``eccentricity`` and ``orientation`` (radians, angle from axis 0 to the
      major axis, as scikit-image).
    - Contour measures (left out with ``regionprops(..., contours=False)``):
      3D ``surface_area`` of the marching-cubes surface at level 0.5 (vertices at edge
      midpoints, volume padded with background, faces with two diagonal inside corners
      split so the region reads 6-connected), exact on axis-aligned faces, about 7%
      large on a digitised ball (scikit-image's marching cubes: 8.7%), so a ball's
      ``sphericity`` = π^(1/3)·(6V)^(2/3)/A is about 0.93 (and a region of a few
      voxels can read above 1). 2D ``perimeter`` of the marching-squares contour at
      level 0.5 (holes included; as scikit-image's ``find_contours`` and
      pyradiomics), exact along axes and diagonals but long on curves: +5.5% on a
      large disc, so a disc's ``circularity`` = 4πA/P² is about 0.90; ``convex_area``
      of the convex hull of the region's pixel squares (about 3% over a disc's area);
      ``solidity`` = area/convex_area; ``feret_diameter_max`` between hull vertices.
    - With ``intensity``: ``intensity_mean``, ``intensity_std`` (population),
      ``intensity_min``, ``intensity_max``.
    """

    def __init__(self, columns: dict[str, NDArray[Any]], ndim: int, spacing: tuple[float, ...]) -> None:
        self._columns = dict(columns)
        self.ndim = ndim
        self.spacing = spacing

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the columns, in a fixed order."""
        order = _BASE_COLUMNS + (_COLUMNS_2D if self.ndim == 2 else _COLUMNS_3D) + _INTENSITY_COLUMNS
        return tuple(c for c in order if c in self._columns)

    def __len__(self) -> int:
        return len(self._columns["label"])

    def __getitem__(self, name: str) -> NDArray[Any]:
        try:
            return self._columns[name]
        except KeyError:
            hint = ""
            if name in _CONTOUR_COLUMNS[self.ndim]:
                hint = " (a contour measure: this table was made with contours=False)"
            raise KeyError(f"no column {name!r}{hint}; columns are {', '.join(self.columns)}") from None

    def __getattr__(self, name: str) -> NDArray[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(f"RegionTable ({self.ndim}D): {e.args[0]}") from None

    def to_dict(self) -> dict[str, NDArray[Any]]:
        """Every column by name."""
        return {name: self._columns[name] for name in self.columns}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts of column name → value (scalars or small arrays)."""
        cols = self.to_dict()
        for i in range(len(self)):
            yield {name: col[i].item() if col[i].ndim == 0 else col[i] for name, col in cols.items()}

    def __repr__(self) -> str:
        return f"RegionTable({len(self)} regions, {self.ndim}D, spacing={self.spacing})"


def regionprops(
    labels: ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    intensity: ArrayLike | None = None,
    contours: bool = True,
) -> RegionTable:
    """Descriptors of every region of a label map (or of a connected_components output).

    Counts, boxes, centroids, moments and intensity statistics come from one pass over
    the map; the contour measures (surface area and sphericity in 3D; perimeter,
    circularity, convex area, solidity and Feret diameter in 2D) from a second.

    Args:
        labels: 2D or 3D label map of bool or integer dtype; one row per distinct
            nonzero value.
        spacing: Physical voxel size per array axis (array axis order); default 1.0.
        intensity: Optional image of the same shape for intensity statistics.
        contours: Compute the contour measures (the second pass); False skips them,
            as SimpleITK's ``ComputePerimeterOff``.

    Returns:
        A :class:`RegionTable` sorted by label.

    Raises:
        TypeError: Unsupported dtype of ``labels`` or ``intensity``.
        ValueError: Wrong dimensions, bad ``spacing``, or ``intensity`` of another shape.
    """
    arr = _as_mask(labels, "labels", as_labels=True)
    sp = _spacing(spacing, arr.ndim)
    values = None
    if intensity is not None:
        values = np.asarray(intensity)
        if values.shape != arr.shape:
            raise ValueError(f"intensity must have the shape of labels {arr.shape}, got {values.shape}")
        if values.dtype.kind not in "biuf":
            raise TypeError(f"intensity must be a real numeric array, got dtype {values.dtype}")
        if values.dtype.kind == "f" and values.dtype.itemsize not in (4, 8):
            values = values.astype(np.float64)
        if not values.dtype.isnative:
            values = values.astype(values.dtype.newbyteorder("="))
        if not values.flags.aligned:
            values = values.copy()
    columns = _core.regionprops(arr, list(sp), values)
    if contours:
        columns.update(_contour_columns(arr, sp, columns["label"], columns["volume"]))
    return RegionTable(columns, arr.ndim, sp)


@overload
def slice_areas(labels: ArrayLike, axis: int, *, return_labels: Literal[False] = ...) -> NDArray[np.int64]: ...
@overload
def slice_areas(
    labels: ArrayLike, axis: int, *, return_labels: Literal[True]
) -> tuple[NDArray[Any], NDArray[np.int64]]: ...
def slice_areas(labels: ArrayLike, axis: int, *, return_labels: bool = False) -> Any:
    """Voxel count of every region in every slice along ``axis``.

    Returns:
        (n, labels.shape[axis]) int64; row ``i`` is the ``i``-th distinct nonzero
        label in ascending order (``regionprops(labels).label[i]``). With
        ``return_labels``, ``(labels, table)``: those label values and the table.
    """
    arr = _as_mask(labels, "labels", as_labels=True)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis must be an integer in [{-arr.ndim}, {arr.ndim}) for a {arr.ndim}D array, got {axis!r}")
    values, table = _core.slice_areas(arr, int(axis) % arr.ndim)
    return (values, table) if return_labels else table


def slice_areas_along(
    labels: ArrayLike, axes: Sequence[int] | None = None
) -> tuple[NDArray[Any], tuple[NDArray[np.int64], ...]]:
    """:func:`slice_areas` along each of ``axes`` (default: every axis) in one pass over the
    map: ``(labels, tables)`` with one ``(n, labels.shape[axis])`` table per axis, rows in
    the order of the returned labels (ascending). No axes: the labels alone, no table pass."""
    arr = _as_mask(labels, "labels", as_labels=True)
    chosen = tuple(range(arr.ndim)) if axes is None else tuple(axes)
    for axis in chosen:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -arr.ndim <= axis < arr.ndim:
            raise ValueError(
                f"axis must be an integer in [{-arr.ndim}, {arr.ndim}) for a {arr.ndim}D array, got {axis!r}"
            )
    values, tables = _core.slice_areas_along(arr, [int(a) % arr.ndim for a in chosen])
    return values, tuple(tables)


def slice_bboxes(labels: ArrayLike, axis: int, index: int, spacing: Sequence[float] | None = None) -> RegionTable:
    """Descriptors (boxes included) of every region present in one slice.

    Args:
        labels: 3D label map.
        axis: The axis the slice is taken across (0, 1 or 2).
        index: The slice's position along ``axis``.
        spacing: Physical voxel size of the 3D map; the slice keeps the other two.

    Returns:
        A 2D :class:`RegionTable` of the slice ``np.take(labels, index, axis)``, whose
        ``bbox_min``/``bbox_max`` are in the slice's remaining axes, in order.
    """
    arr = _as_mask(labels, "labels")
    if arr.ndim != 3:
        raise ValueError(f"slice_bboxes needs a 3D label map, got {arr.ndim} dimensions")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    axis = int(axis) % 3
    size = arr.shape[axis]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -size <= index < size:
        raise ValueError(f"index must be an integer in [{-size}, {size}) along axis {axis}, got {index!r}")
    sp = _spacing(spacing, 3)
    plane = np.moveaxis(arr, axis, 0)[int(index)]  # a view, no copy
    return regionprops(plane, tuple(s for a, s in enumerate(sp) if a != axis))


@dataclass(frozen=True)
class PairTable:
    """Pairs of labels with a count each, sorted by ``(a, b)``. Labels are int64, or
    uint64 when a uint64 map holds labels of 2^63 or more."""

    a: NDArray[np.integer]
    b: NDArray[np.integer]
    count: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.a)

    def to_dict(self) -> dict[tuple[int, int], int]:
        """``{(a, b): count}``."""
        return {(int(x), int(y)): int(c) for x, y, c in zip(self.a, self.b, self.count, strict=True)}


def contacts(labels: ArrayLike, connectivity: int | None = None) -> PairTable:
    """Which regions touch and by how much.

    For each pair of distinct nonzero labels ``a < b`` with neighbouring voxels, the
    number of neighbouring voxel pairs under ``connectivity`` (default 8 in 2D, 26 in
    3D). With face connectivity (4 or 6) this is the contact area in voxel faces.
    """
    arr = _as_mask(labels, "labels", as_labels=True)
    conn = _connectivity(arr.ndim, connectivity)
    return PairTable(**_core.contacts(arr, conn))


def overlap(labels_a: ArrayLike, labels_b: ArrayLike) -> PairTable:
    """Voxel counts of every co-occurring pair of nonzero labels of two maps.

    ``count[i]`` voxels carry label ``a[i]`` in ``labels_a`` and ``b[i]`` in
    ``labels_b`` (for example: how much of each lesion lies inside each organ).
    """
    arr_a = _as_mask(labels_a, "labels_a", as_labels=True)
    arr_b = _as_mask(labels_b, "labels_b", as_labels=True)
    if arr_a.shape != arr_b.shape:
        raise ValueError(f"labels_a and labels_b must have one shape, got {arr_a.shape} and {arr_b.shape}")
    return PairTable(**_core.overlap(arr_a, arr_b))


# ----------------------------------------------------------------------------- one 2D view


def _plane(array: ArrayLike, what: str) -> NDArray[Any]:
    arr = _as_mask(array, what, as_labels=True)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2D, got {arr.ndim} dimensions with shape {arr.shape}")
    return arr


#: Intensity types whose means :func:`resample_plane` takes (every sum an exact integer).
MEAN_DTYPES = frozenset(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32))


def resample_plane(
    plane: ArrayLike,
    rows: ArrayLike | tuple[ArrayLike, ArrayLike],
    cols: ArrayLike | tuple[ArrayLike, ArrayLike],
) -> NDArray[Any]:
    """A 2D plane on an image's grid, in one read of the plane in its memory order: image
    row ``i`` shows plane row ``rows[i]``, or, with ``rows = (start, end)``, the mean of
    plane rows ``start[i]:end[i]`` (columns alike). Means go along one axis at most, over
    integers of :data:`MEAN_DTYPES`, rounded half to even and clipped to the dtype (numpy's
    float64 mean, ``rint`` and ``clip``: the sums are exact); a gather keeps any numeric
    dtype. C-ordered, in the plane's dtype.

    Raises:
        ValueError: a line outside the plane, an empty run, means along both axes.
        TypeError: means of a dtype outside :data:`MEAN_DTYPES`.
    """
    arr = np.asarray(plane)
    if arr.ndim != 2:
        raise ValueError(f"plane must be 2D, got {arr.ndim} dimensions with shape {arr.shape}")

    def lines(spec: ArrayLike | tuple[ArrayLike, ArrayLike]) -> tuple[NDArray[np.int64], NDArray[np.int64] | None]:
        if isinstance(spec, tuple):
            start, end = spec
            return np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
        return np.asarray(spec, dtype=np.int64), None

    (row_index, row_ends), (col_index, col_ends) = lines(rows), lines(cols)
    if row_ends is not None and col_ends is not None:
        raise ValueError("means along one axis at most (the means of means depend on their order)")
    return np.asarray(_core.resample_plane(arr, row_index, col_index, row_ends, col_ends))


def rle_by_label(labels: ArrayLike) -> dict[int, str]:
    """The COCO RLE counts string of every nonzero label's mask in a 2D label map, from one
    walk of the image: ``{label: counts}``, ascending (the counts of
    :func:`medground.rle.encode` of ``labels == label``, which pycocotools writes)."""
    return dict(_core.rle_by_label(_plane(labels, "labels")))


@dataclass(frozen=True)
class ObjectStats:
    """What one object's box and ring hold in a 2D view (:func:`object_stats`).

    Grey levels are 8-bit, so the sums are exact integers and every mean here equals
    numpy's mean of the same pixels.
    """

    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1), max exclusive
    area: int
    sum_x: int
    sum_y: int
    inside_sum: int
    inside_sumsq: int
    ring_count: int  # pixels outside the object within the ring's radius
    ring_sum: int
    ring_sumsq: int
    edge_count: int  # (object pixel, outside 4-neighbour in the image) pairs
    edge_sum: int  # their summed absolute grey difference
    outline: int  # object pixels with a 4-neighbour outside the object or the image
    outline_on_border: int  # of those, on the image border
    touching: int  # outside pixels 4-adjacent to the object
    touches: tuple[tuple[int, int], ...]  # (label, pixels) of the nonzero ones, ascending
    pieces: tuple[int, ...]  # pixel counts of the 8-connected pieces, largest first

    @classmethod
    def _of(cls, row: tuple[Any, ...]) -> ObjectStats:
        """The statistics of a core row (the fields in order), as ``ObjectStats(*row)``
        makes them, without the frozen class's one ``object.__setattr__`` per field: a
        view of fifty lesions reads thousands a case, on the thread making views."""
        stats = object.__new__(cls)
        stats.__dict__.update(zip(_OBJECT_STATS_FIELDS, row, strict=True))
        return stats

    @property
    def centre(self) -> tuple[float, float]:
        """``(x, y)`` of the pixel centres' mean."""
        return self.sum_x / self.area + 0.5, self.sum_y / self.area + 0.5

    @property
    def inside_mean(self) -> float:
        return self.inside_sum / self.area

    @property
    def ring_mean(self) -> float:
        return self.ring_sum / self.ring_count

    @staticmethod
    def _var(n: int, total: int, squares: int) -> float:
        return (n * squares - total * total) / (n * n)  # exact integers until the division

    @property
    def inside_std(self) -> float:
        return math.sqrt(self._var(self.area, self.inside_sum, self.inside_sumsq))

    @property
    def ring_std(self) -> float:
        return math.sqrt(self._var(self.ring_count, self.ring_sum, self.ring_sumsq))

    @property
    def edge_mean(self) -> float:
        """Mean absolute grey difference across the outline (0 without outside neighbours)."""
        return self.edge_sum / self.edge_count if self.edge_count else 0.0

    @property
    def border_share(self) -> float:
        """Share of the outline on the image border."""
        return self.outline_on_border / max(1, self.outline)


#: :class:`ObjectStats`' fields in order: the core's rows come in it.
_OBJECT_STATS_FIELDS = tuple(f.name for f in fields(ObjectStats))


def object_stats(
    labels: ArrayLike,
    grey: ArrayLike,
    ids: Iterable[int],
    radius: int,
    ring: Literal["diamond", "disk"],
    *,
    pieces: bool = True,
    within: Sequence[tuple[int, int, int, int]] | None = None,
) -> list[ObjectStats | None]:
    """Per-object statistics of a 2D label map against 8-bit grey levels of its shape, each
    object read within its box and a ring of ``radius`` pixels: ``diamond`` rings are the
    pixels within ``radius`` 4-neighbour steps (a dilation), ``disk`` rings those within
    Euclidean distance ``radius``. One entry per id, None for an id not in the map;
    without ``pieces`` the pieces are not counted (``pieces`` is empty). ``within``: for
    each id a box ``(x0, y0, x1, y1)`` the object lies in, so that only those boxes are
    read (the statistics still give each object's tight box)."""
    arr = _plane(labels, "labels")
    values = np.asarray(grey)
    if values.dtype != np.uint8 or values.shape != arr.shape:
        raise ValueError(f"grey must be uint8 of the labels' shape {arr.shape}, got {values.dtype} {values.shape}")
    wanted = np.asarray(list(ids), dtype=arr.dtype)
    boxes = None if within is None else np.asarray(within, dtype=np.int64).reshape(-1, 4)
    rows = _core.object_stats(arr, values, wanted, int(radius), ring, bool(pieces), boxes)
    return [None if row is None else ObjectStats._of(row) for row in rows]


def body_lines(
    grey: ArrayLike, fraction: float, min_size: int, *, along_rows: bool = True
) -> tuple[float, NDArray[np.int64], NDArray[np.int64]]:
    """The body in an 8-bit grey view, line by line, in one pass of the core: the image's
    Otsu threshold (one bin per grey level, as :func:`medground.verify.measure._otsu`), and
    per row (``along_rows``) or column the first and last pixel of the body — the pixels
    above ``fraction`` × that threshold, in 8-connected components of at least ``min_size``
    pixels — or -1 where a line has none."""
    values = np.asarray(grey)
    if values.dtype != np.uint8 or values.ndim != 2:
        raise ValueError(f"grey must be a 2D uint8 image, got {values.dtype} with shape {values.shape}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative pixel count, got {min_size!r}")
    otsu, first, last = _core.body_lines(values, float(fraction), int(min_size), bool(along_rows))
    return float(otsu), np.asarray(first), np.asarray(last)


def padded(mask: ArrayLike, width: int | tuple[tuple[int, int], tuple[int, int]]) -> NDArray[np.bool_]:
    """A 2D mask inside a frame of False: ``width`` pixels on every side, or
    ``((top, bottom), (left, right))``. ``np.pad(mask, width, constant_values=False)``
    without its general machinery, which costs more than the copy for an object's box
    (tens of microseconds a call; a view of a thousand nuclei pads each object's box)."""
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2D, got {arr.ndim} dimensions with shape {arr.shape}")
    (top, bottom), (left, right) = ((width, width), (width, width)) if isinstance(width, int) else width
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad widths must be non-negative, got {width!r}")
    out = np.zeros((arr.shape[0] + top + bottom, arr.shape[1] + left + right), dtype=bool)
    out[top : top + arr.shape[0], left : left + arr.shape[1]] = arr
    return out


def dilate(mask: ArrayLike, radius: int) -> NDArray[np.bool_]:
    """Binary dilation of a 2D mask by ``radius`` steps of the 4-neighbourhood (a diamond),
    inside the image."""
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2D, got {arr.ndim} dimensions with shape {arr.shape}")
    return np.asarray(_core.dilate(arr, int(radius)))


def relabel(labels: ArrayLike, lookup: ArrayLike) -> NDArray[Any]:
    """``lookup[labels]`` (a label map renumbered through a table, e.g. components to
    objects) in the map's own memory order and the table's dtype (uint8 to uint64), in
    parallel chunks and without numpy's index checks per element.

    Raises:
        ValueError: a label is negative or has no entry in the table.
    """
    arr = _as_mask(labels, "labels", as_labels=True)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    table = np.ascontiguousarray(lookup)
    if table.ndim != 1 or table.dtype.name not in _OUT_DTYPES:
        raise TypeError(f"lookup must be a 1D array of {', '.join(_OUT_DTYPES)}; got {table.dtype} {table.shape}")
    return np.asarray(_core.relabel(arr, table))


def c_order_samples(
    labels: ArrayLike, ids: Sequence[int], boxes: Sequence[Sequence[int]], sample: int
) -> list[NDArray[np.int64]]:
    """Evenly spaced voxels of each object, as ``np.argwhere(crop == id)[::stride] + lo``
    picks them (C order within the object's box ``(lo0, lo1, lo2, hi0, hi1, hi2)``,
    ``stride = max(1, count // sample)``), found in two walks of the volume in its own
    memory order: a Fortran-ordered volume is not transposed. One ``(m, ndim)`` int64
    array of indices per id; a 2D map takes boxes ``(lo0, lo1, hi0, hi1)``."""
    arr = _as_mask(labels, "labels", as_labels=True)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    ndim = arr.ndim
    table = np.asarray(boxes, dtype=np.int64).reshape(-1, 2 * ndim)
    if ndim == 2:  # one plane of a volume: C order is the same
        arr = arr[np.newaxis]
        ones = np.ones((len(table), 1), np.int64)
        table = np.hstack([np.zeros_like(ones), table[:, :2], ones, table[:, 2:]])
    wanted = np.asarray(list(ids), dtype=arr.dtype)
    found = _core.c_order_samples(arr, wanted, table, int(sample))
    return [np.asarray(t)[:, 3 - ndim :] for t in found]


def _midline_rows(
    labels: ArrayLike, affine: ArrayLike, levels: ArrayLike, midline: ArrayLike
) -> tuple[NDArray[Any], list[list[float]], list[float], list[float]]:
    """The label map as the side walks take it (3D, contiguous in some order), the affine's
    x and z rows on its index, and the midline's levels and x values."""
    arr = _as_mask(labels, "labels", as_labels=True)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {matrix.shape}")
    ndim = arr.ndim
    rows = [[float(v) for v in (*matrix[r, :ndim], matrix[r, 3])] for r in (0, 2)]
    xp = np.asarray(levels, dtype=np.float64).ravel()
    fp = np.asarray(midline, dtype=np.float64).ravel()
    return arr, rows, xp.tolist(), fp.tolist()


def _shares(counts: Sequence[tuple[int, int]]) -> NDArray[np.float64]:
    return np.asarray([right / n if n else np.nan for right, n in counts], dtype=np.float64)


def c_order_side_shares(
    labels: ArrayLike,
    ids: Sequence[int],
    boxes: Sequence[Sequence[int]],
    sample: int,
    affine: ArrayLike,
    levels: ArrayLike,
    midline: ArrayLike,
) -> NDArray[np.float64]:
    """Each object's share of the voxels :func:`c_order_samples` picks that lie right of
    a midline: world x (row 0 of ``affine`` on the index) above ``np.interp(world z,
    levels, midline)`` (z: row 2), in numpy's arithmetic, so the share equals
    ``np.mean(x > np.interp(z, levels, midline))`` over those picks; NaN for an object
    with none. Same two walks, no memory per voxel. :func:`side_shares` counts every voxel."""
    arr, rows, xp, fp = _midline_rows(labels, affine, levels, midline)
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    table = np.asarray(boxes, dtype=np.int64).reshape(-1, 2 * arr.ndim)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
        ones = np.ones((len(table), 1), np.int64)
        table = np.hstack([np.zeros_like(ones), table[:, :2], ones, table[:, 2:]])
    wanted = np.asarray(list(ids), dtype=arr.dtype)
    return _shares(_core.c_order_side_counts(arr, wanted, table, int(sample), rows[0], rows[1], xp, fp))


def side_shares(
    labels: ArrayLike, ids: Sequence[int], affine: ArrayLike, levels: ArrayLike, midline: ArrayLike
) -> NDArray[np.float64]:
    """Each object's share of its voxels right of a midline: world x (row 0 of ``affine`` on
    the index) above ``np.interp(world z, levels, midline)`` (z: row 2), in numpy's
    arithmetic, so the share equals ``np.mean(x > np.interp(z, levels, midline))`` over all
    the object's voxels; NaN for an id without any. One walk of the map in its memory
    order; a run at one world z is counted without visiting its voxels."""
    arr, rows, xp, fp = _midline_rows(labels, affine, levels, midline)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    wanted = np.asarray(list(ids), dtype=arr.dtype)
    return _shares(_core.side_counts(arr, wanted, rows[0], rows[1], xp, fp))
