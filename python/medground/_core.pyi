"""Rust kernels behind :mod:`medground.geometry`. Private: call the wrappers there,
which validate arguments and document conventions. Every function releases the GIL;
a panic inside a kernel surfaces as RuntimeError."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "__version__",
    "body_lines",
    "c_order_samples",
    "c_order_side_counts",
    "connected_components",
    "contacts",
    "dilate",
    "dust",
    "dust_in_place",
    "encode_png",
    "get_num_threads",
    "kernels_on_caller",
    "largest_k",
    "object_components",
    "object_stats",
    "overlap",
    "regionprops",
    "relabel",
    "resample_plane",
    "rle_by_label",
    "rle_counts",
    "rle_decode_window",
    "set_num_threads",
    "shape2d",
    "side_counts",
    "slice_areas",
    "slice_areas_along",
    "surface_areas",
]

__version__: str

def connected_components(
    mask: NDArray[Any], connectivity: int, binary: bool, out_dtype: str | None = None
) -> tuple[NDArray[np.unsignedinteger], int]:
    """Labels components 1..N in memory order; returns (labels, N)."""

def object_components(
    mask: NDArray[Any], connectivity: int, keys: NDArray[np.uint64], rules: NDArray[np.uint8]
) -> tuple[NDArray[np.unsignedinteger], int, NDArray[Any], NDArray[np.uint32]]:
    """Objects of a label map from its components (rules[i] for label keys[i]: 1 one
    object, 2 one per component, else none); returns (object map, objects, values, owners)."""

def largest_k(
    mask: NDArray[Any], k: int, connectivity: int, binary: bool, out_dtype: str | None = None
) -> tuple[NDArray[np.unsignedinteger], int]:
    """The k largest components labelled 1..k by decreasing size; returns (labels, kept)."""

def dust(mask: NDArray[Any], threshold: int, connectivity: int, binary: bool, invert: bool) -> NDArray[Any]:
    """A copy of mask with components below threshold voxels (above, if invert) zeroed."""

def dust_in_place(mask: NDArray[Any], threshold: int, connectivity: int, binary: bool, invert: bool) -> None:
    """dust, zeroing the dropped components in mask itself (any strides)."""

def regionprops(
    labels: NDArray[Any], spacing: list[float], intensity: NDArray[Any] | None = None
) -> dict[str, NDArray[Any]]:
    """One-pass region columns: label, voxel_count, bbox_min/max, centroid, volume,
    axis_lengths, principal_axes, elongation, flatness (2D: eccentricity, orientation),
    and intensity_mean/std/min/max when intensity is given."""

def surface_areas(labels: NDArray[Any], spacing: list[float], region_labels: NDArray[Any]) -> NDArray[np.float64]:
    """Marching-cubes surface area (level 0.5) of each region in region_labels; 3D only."""

def shape2d(labels: NDArray[Any], spacing: list[float], region_labels: NDArray[Any]) -> dict[str, NDArray[np.float64]]:
    """perimeter, convex_area and feret_diameter_max of each region in region_labels; 2D only."""

def slice_areas(
    labels: NDArray[Any], axis: int, region_labels: NDArray[Any] | None = None
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """(region labels, (n, shape[axis]) voxel counts per region per slice); by default
    every nonzero label, ascending."""

def slice_areas_along(
    labels: NDArray[Any], axes: list[int], region_labels: NDArray[Any] | None = None
) -> tuple[NDArray[Any], list[NDArray[np.int64]]]:
    """:func:`slice_areas` along each of ``axes`` in one pass: (region labels, one table per axis)."""

def contacts(labels: NDArray[Any], connectivity: int) -> dict[str, NDArray[np.int64]]:
    """Touching label pairs a < b and their count of neighbouring voxel pairs: keys a, b
    (int64, or uint64 for labels of 2^63 or more), count."""

def overlap(labels_a: NDArray[Any], labels_b: NDArray[Any]) -> dict[str, NDArray[np.int64]]:
    """Co-occurring nonzero label pairs and their voxel counts: keys a, b, count."""

def rle_by_label(labels: NDArray[Any]) -> list[tuple[int, str]]:
    """(label, COCO counts string) of every nonzero label of a 2D map, ascending."""

def rle_counts(counts: str | bytes, pixels: int) -> NDArray[np.int64]:
    """Run lengths of a COCO counts string of a mask of ``pixels`` pixels (ValueError if
    malformed or not adding up)."""

def rle_decode_window(
    counts: str | bytes, height: int, width: int, top: int, left: int, bottom: int, right: int
) -> NDArray[np.bool_]:
    """Rows [top, bottom), columns [left, right) of the mask of a COCO counts string."""

def object_stats(
    labels: NDArray[Any],
    grey: NDArray[np.uint8],
    ids: NDArray[Any],
    radius: int,
    ring: str,
    pieces: bool,
    within: NDArray[np.int64] | None = None,
) -> list[tuple[Any, ...] | None]:
    """Per-object box, sums, ring, edge, outline, touching owners and pieces of a 2D map
    against 8-bit grey levels, as a tuple in ``geometry.ObjectStats``' field order; ring
    "diamond" or "disk"; None for an absent id."""

def body_lines(
    grey: NDArray[np.uint8], fraction: float, min_size: int, along_rows: bool
) -> tuple[float, NDArray[np.int64], NDArray[np.int64]]:
    """(Otsu threshold, first and last body pixel per row or column, -1 for none) of an
    8-bit view: pixels above fraction × Otsu in 8-connected components of min_size or more."""

def encode_png(image: NDArray[np.uint8]) -> bytes:
    """An 8-bit (H, W) or (H, W, 3) image as a PNG file's bytes: lossless, deterministic
    (fdeflate, filters chosen row by row), encoded without the GIL."""

def dilate(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """A 2D mask dilated by radius 4-neighbour steps, inside the image."""

def relabel(labels: NDArray[Any], lookup: NDArray[Any]) -> NDArray[Any]:
    """lookup[labels] in the map's memory order and the table's dtype."""

def c_order_samples(
    labels: NDArray[Any], ids: NDArray[Any], boxes: NDArray[np.int64], sample: int
) -> list[NDArray[np.int64]]:
    """Every max(1, count // sample)-th voxel of each object in C order within its box."""

def c_order_side_counts(
    labels: NDArray[Any],
    ids: NDArray[Any],
    boxes: NDArray[np.int64],
    sample: int,
    x_row: list[float],
    z_row: list[float],
    levels: list[float],
    mid: list[float],
) -> list[tuple[int, int]]:
    """Per object, (picks right of the midline, picks) over the c_order_samples picks."""

def side_counts(
    labels: NDArray[Any],
    ids: NDArray[Any],
    x_row: list[float],
    z_row: list[float],
    levels: list[float],
    mid: list[float],
) -> list[tuple[int, int]]:
    """Per object, (voxels right of the midline, voxels) over all its voxels, in one walk."""

def resample_plane(
    values: NDArray[Any],
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    row_ends: NDArray[np.int64] | None = None,
    col_ends: NDArray[np.int64] | None = None,
) -> NDArray[Any]:
    """A plane on an image's grid: lines gathered, or means of runs of lines along one axis."""

def set_num_threads(n: int) -> None:
    """Runs kernels on n threads (0: rayon's default)."""

def get_num_threads() -> int:
    """Threads the kernels run on."""

def kernels_on_caller(on: bool) -> bool:
    """This thread's kernels on it alone (True) or on the set threads; the setting replaced."""
