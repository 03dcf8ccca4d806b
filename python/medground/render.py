"""Slices as a reader sees them, with an exact map between volume indices and pixels.

3D volumes are sliced along the patient's axial, coronal or sagittal plane, whatever
their storage orientation, and displayed in radiological convention: the patient's left
on the viewer's right; anterior at the top of axial slices; superior at the top of
coronal and sagittal slices, with anterior on the left of sagittal ones. 2D images are
shown as stored.

The :class:`SliceMap` of a rendered slice says, for every output row and column, which
voxel it shows (nearest neighbour; anisotropic in-plane voxels are repeated so that pixels
are square). Boxes are mapped through the same tables that draw the image, so the box of
the rendered mask is exactly the mapped box of the mask's voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry
from medground.io.schema import CT_WINDOWS
from medground.io.volume import Volume, opposite

__all__ = [
    "BODY_SAMPLE",
    "CT_WINDOWS",
    "PLANES",
    "Body",
    "Encoding",
    "Intensity",
    "RenderedSlice",
    "SliceMap",
    "image_map",
    "body_mask",
    "encode",
    "encoding_for",
    "intensity_for",
    "luminance",
    "plane_axis",
    "png_bytes",
    "render_image",
    "render_slice",
    "slice_map",
    "to_uint8",
    "window_intensity",
    "write_png",
]

PLANES = ("axial", "coronal", "sagittal")
#: The patient axis each plane is perpendicular to.
_NORMAL = {"axial": "SI", "coronal": "AP", "sagittal": "LR"}
#: Radiological display: the direction in which rows and columns of each plane grow.
_DISPLAY = {"axial": ("P", "L"), "coronal": ("I", "L"), "sagittal": ("I", "P")}
#: Without patient orientation: the array axis sliced per plane (rows, columns keep axis order).
_UNORIENTED_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}


def plane_axis(axcodes: Sequence[str] | None, plane: str) -> int:
    """The array axis perpendicular to a patient plane (``axial`` slices along S/I)."""
    if plane not in _NORMAL:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    if axcodes is None:
        return _UNORIENTED_AXIS[plane]
    for axis, code in enumerate(axcodes):
        if code in _NORMAL[plane]:
            return axis
    raise ValueError(f"no array axis runs along {_NORMAL[plane]} in axcodes {tuple(axcodes)}")


def _sources(n: int, scale: float, flip: bool) -> NDArray[np.intp]:
    """Voxel index shown by each output pixel along one axis: pixel p shows voxel
    floor((p + 0.5) / scale), so each voxel covers round-to-nearest pixel edges (scale > 1
    repeats voxels, scale < 1 skips some)."""
    n_out = max(1, int(round(n * scale)))
    source = np.minimum(((np.arange(n_out) + 0.5) / scale).astype(np.intp), n - 1)
    return (n - 1 - source) if flip else source


def _span(source: NDArray[np.intp], lo: int, hi: int) -> tuple[int, int]:
    """Pixels [first, last + 1) that show voxels lo..hi-1 (contiguous: sources are monotone)."""
    hit = np.flatnonzero((source >= lo) & (source < hi))
    if hit.size == 0:
        raise ValueError(f"voxels [{lo}, {hi}) are outside the slice")
    return int(hit[0]), int(hit[-1]) + 1


@dataclass(frozen=True, eq=False)
class SliceMap:
    """Exact map between a volume's index space and the pixels of one rendered view.

    Attributes:
        volume_shape: spatial shape of the volume (2 or 3 axes).
        axis: the array axis sliced (None for 2D images).
        slice_index: the index along ``axis`` (None for 2D images).
        plane: axial / coronal / sagittal, or None for 2D images.
        row_axis, col_axis: the array axes that run down the rows and across the columns.
        row_source, col_source: for each output row / column, the voxel index it shows.
    """

    volume_shape: tuple[int, ...]
    axis: int | None
    slice_index: int | None
    plane: str | None
    row_axis: int
    col_axis: int
    row_source: NDArray[np.intp]
    col_source: NDArray[np.intp]

    @property
    def height(self) -> int:
        return int(self.row_source.size)

    @property
    def width(self) -> int:
        return int(self.col_source.size)

    @property
    def row_flipped(self) -> bool:
        return self.row_source.size > 1 and bool(self.row_source[0] > self.row_source[-1])

    @property
    def col_flipped(self) -> bool:
        return self.col_source.size > 1 and bool(self.col_source[0] > self.col_source[-1])

    def plane_of(self, array: NDArray[Any]) -> NDArray[Any]:
        """The 2D slice of ``array`` (spatial axes first; trailing channels kept), unresampled,
        with its axes as (row_axis, col_axis): a view of the array in its own memory order
        (``np.take`` would first copy the whole volume when it is not C-contiguous, as
        nibabel's Fortran-ordered arrays are)."""
        if self.axis is None or self.slice_index is None:
            plane = array
        else:
            plane = array[(slice(None),) * self.axis + (self.slice_index,)]
        remaining = [a for a in range(len(self.volume_shape)) if a != self.axis]
        if remaining.index(self.row_axis) == 1:
            plane = np.swapaxes(plane, 0, 1)
        return plane

    def render(self, array: NDArray[Any]) -> NDArray[Any]:
        """The view of ``array`` (intensities or labels, on the volume's grid): each pixel
        shows the one voxel its tables name (labels stay labels)."""
        plane = self._checked_plane(array)
        if plane.ndim == 2 and plane.dtype in _GATHERED:
            return geometry.resample_plane(plane, self.row_source, self.col_source)
        return np.ascontiguousarray(plane[self.row_source][:, self.col_source])

    def render_values(self, array: NDArray[Any]) -> NDArray[Any]:
        """The intensities a pixel shows: the voxel its tables name where the view keeps or
        enlarges the grid, and where it shrinks it (``max_side``) the mean of the voxels
        whose nearest shown voxel is that one (an area average, not aliased skipping),
        rounded back to the stored type for integer data. Equal to :meth:`render` on any
        map that does not shrink."""
        plane = self._checked_plane(array)
        lines = [
            source if source.size >= plane.shape[axis] else _bins(source, plane.shape[axis])
            for axis, source in ((0, self.row_source), (1, self.col_source))
        ]
        means = sum(isinstance(spec, tuple) for spec in lines)
        if plane.ndim == 2 and (
            (means == 0 and plane.dtype in _GATHERED) or (means == 1 and plane.dtype in geometry.MEAN_DTYPES)
        ):
            # The core reads the plane once in its memory order (the sums of integers are
            # exact: numpy's float64 means below, to the bit).
            return geometry.resample_plane(plane, lines[0], lines[1])
        return self._values_by_numpy(plane)

    def _values_by_numpy(self, plane: NDArray[Any]) -> NDArray[Any]:
        """:meth:`render_values` of a plane by numpy: RGB planes, floats (whose sums
        depend on their order) and means along both axes; the reference of the core's."""
        dtype = plane.dtype
        shrunk = False
        for axis, source in ((0, self.row_source), (1, self.col_source)):
            if source.size >= plane.shape[axis]:
                plane = np.take(plane, source, axis=axis)
            else:
                plane = _area_mean(plane, source, axis)
                shrunk = True
        if shrunk and np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            plane = np.clip(np.rint(plane), info.min, info.max)
        return np.ascontiguousarray(plane.astype(dtype, copy=False))

    def _checked_plane(self, array: NDArray[Any]) -> NDArray[Any]:
        if tuple(array.shape[: len(self.volume_shape)]) != self.volume_shape:
            raise ValueError(f"array of shape {array.shape} is not on this map's grid {self.volume_shape}")
        return self.plane_of(array)

    def pixel_box(self, bbox_min: Sequence[int], bbox_max: Sequence[int]) -> tuple[int, int, int, int]:
        """``[x_min, y_min, x_max, y_max]`` (max exclusive) of the pixels showing the voxel box
        ``[bbox_min, bbox_max)`` (the slice axis is ignored: the in-plane footprint)."""
        x0, x1 = _span(self.col_source, int(bbox_min[self.col_axis]), int(bbox_max[self.col_axis]))
        y0, y1 = _span(self.row_source, int(bbox_min[self.row_axis]), int(bbox_max[self.row_axis]))
        return x0, y0, x1, y1

    def index_of_pixel(self, x: float, y: float) -> tuple[int, ...]:
        """The voxel index shown at image point (x, y) (continuous pixel coordinates)."""
        column, row = int(math.floor(x)), int(math.floor(y))
        if not (0 <= column < self.width and 0 <= row < self.height):
            raise ValueError(f"point ({x}, {y}) is outside the {self.width}x{self.height} image")
        index = [0] * len(self.volume_shape)
        if self.axis is not None:
            assert self.slice_index is not None
            index[self.axis] = self.slice_index
        index[self.row_axis] = int(self.row_source[row])
        index[self.col_axis] = int(self.col_source[column])
        return tuple(index)

    def pixel_of_index(self, index: Sequence[float]) -> tuple[float, float]:
        """Continuous image point (x, y) of a (possibly fractional) voxel index: the centre
        of a voxel lands at the centre of the pixels that show it."""
        return (
            _continuous(self.col_source, float(index[self.col_axis])),
            _continuous(self.row_source, float(index[self.row_axis])),
        )

    def to_dict(self) -> dict[str, Any]:
        """Provenance for records: which voxels the image shows."""
        return {
            "plane": self.plane,
            "axis": self.axis,
            "slice_index": self.slice_index,
            "row_axis": self.row_axis,
            "col_axis": self.col_axis,
            "row_flipped": self.row_flipped,
            "col_flipped": self.col_flipped,
            "volume_shape": list(self.volume_shape),
            "size": [self.width, self.height],
        }


#: dtypes the core gathers (:func:`medground.geometry.resample_plane`).
_GATHERED = frozenset(
    np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.uint8,
        np.int16,
        np.uint16,
        np.int32,
        np.uint32,
        np.int64,
        np.uint64,
        np.float32,
        np.float64,
    )
)


def _bins(source: NDArray[np.intp], n: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``(start, end)`` of the plane lines each image line averages where the image
    shrinks an axis of ``n`` lines (:func:`_area_mean`'s bins, in the plane's order)."""
    flipped = source.size > 1 and bool(source[0] > source[-1])
    ascending = n - 1 - source if flipped else source
    edges = np.empty(source.size + 1, dtype=np.intp)
    edges[0], edges[-1] = 0, n
    edges[1:-1] = (ascending[:-1] + ascending[1:] + 1) // 2
    if flipped:  # bin i holds flipped lines edges[i]:edges[i + 1], plane lines n - edges[i + 1]:n - edges[i]
        return n - edges[1:], n - edges[:-1]
    return edges[:-1], edges[1:]


def _area_mean(plane: NDArray[Any], source: NDArray[np.intp], axis: int) -> NDArray[np.float64]:
    """Means of ``plane`` along ``axis`` over the bins of a shrinking source table: the voxels
    between the midpoints of consecutive shown voxels (every voxel in exactly one bin)."""
    n = plane.shape[axis]
    flipped = source.size > 1 and bool(source[0] > source[-1])
    if flipped:
        plane, source = np.flip(plane, axis=axis), n - 1 - source
    edges = np.empty(source.size + 1, dtype=np.intp)
    edges[0], edges[-1] = 0, n
    edges[1:-1] = (source[:-1] + source[1:] + 1) // 2
    sums = np.add.reduceat(plane.astype(np.float64), edges[:-1], axis=axis)
    counts = np.diff(edges).astype(np.float64)
    shape = [1] * sums.ndim
    shape[axis] = counts.size
    means: NDArray[np.float64] = sums / counts.reshape(shape)
    return means


def _continuous(source: NDArray[np.intp], position: float) -> float:
    """Pixel coordinate of a continuous voxel position, piecewise linear through voxel spans."""
    n = int(source.max()) + 1
    base = int(math.floor(position + 0.5))
    base = min(max(base, 0), n - 1)
    lo, hi = _span(source, base, base + 1)
    centre = 0.5 * (lo + hi)
    width = hi - lo
    direction = -1.0 if source.size > 1 and source[0] > source[-1] else 1.0
    return centre + direction * (position - base) * width


def slice_map(
    shape: Sequence[int],
    spacing: Sequence[float],
    axcodes: Sequence[str] | None,
    plane: str,
    slice_index: int,
    *,
    square_pixels: bool = True,
    min_side: int = 1,
    max_side: int | None = None,
) -> SliceMap:
    """The map of one slice of a 3D volume in radiological display.

    Args:
        shape: the volume's shape.
        spacing: voxel size per array axis (mm).
        axcodes: patient direction of each array axis; None shows array axes in order.
        plane: axial, coronal or sagittal.
        slice_index: index along the plane's normal axis.
        square_pixels: repeat voxels of the coarser in-plane axis so that pixels are square.
        min_side: scale the view up (repeating voxels) until its shorter side has at least
            this many pixels.
        max_side: scale it down (skipping voxels) until its longer side has at most this
            many, unless that would make the shorter side fall under ``min_side``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"slice_map needs a 3D shape, got {shape}")
    axis = plane_axis(axcodes, plane)
    if not 0 <= slice_index < shape[axis]:
        raise ValueError(f"slice_index {slice_index} out of range for axis {axis} of size {shape[axis]}")
    remaining = [a for a in range(3) if a != axis]
    if axcodes is None:
        row_axis, col_axis = remaining
        row_flip = col_flip = False
    else:
        row_dir, col_dir = _DISPLAY[plane]
        row_axis = next(a for a in remaining if axcodes[a] in (row_dir, opposite(row_dir)))
        col_axis = next(a for a in remaining if axcodes[a] in (col_dir, opposite(col_dir)))
        row_flip = axcodes[row_axis] != row_dir
        col_flip = axcodes[col_axis] != col_dir
    row_scale = col_scale = 1.0
    if square_pixels:
        finest = min(spacing[row_axis], spacing[col_axis])
        row_scale, col_scale = spacing[row_axis] / finest, spacing[col_axis] / finest
    zoom = _zoom(shape[row_axis] * row_scale, shape[col_axis] * col_scale, min_side, max_side)
    row_scale, col_scale = row_scale * zoom, col_scale * zoom
    return SliceMap(
        volume_shape=shape,
        axis=axis,
        slice_index=int(slice_index),
        plane=plane,
        row_axis=row_axis,
        col_axis=col_axis,
        row_source=_sources(shape[row_axis], row_scale, row_flip),
        col_source=_sources(shape[col_axis], col_scale, col_flip),
    )


#: However thin a slab, ``min_side`` never makes the longer side more than this many times
#: ``max_side``: a broken spacing (0.0003 mm against 1 mm) cannot ask for a million-pixel view.
MAX_SIDE_STRETCH = 2


def _zoom(height: float, width: float, min_side: int, max_side: int | None) -> float:
    """The one factor both sides are scaled by: the longer side down to ``max_side``, but
    never the shorter below ``min_side`` (a thin slab stays readable, however long), unless
    that would stretch the longer side past :data:`MAX_SIDE_STRETCH` × ``max_side``."""
    zoom = 1.0
    if max_side is not None and max(height, width) > max_side:
        zoom = max_side / max(height, width)
    zoom = max(zoom, min_side / min(height, width))
    if max_side is not None:
        zoom = min(zoom, MAX_SIDE_STRETCH * max_side / max(height, width))
    return zoom


def image_map(
    shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    *,
    square_pixels: bool = False,
    max_side: int | None = None,
) -> SliceMap:
    """The map of a 2D image shown as stored (optionally resampled to square pixels), scaled
    down until its longer side has at most ``max_side`` pixels (never scaled up)."""
    rows, cols = int(shape[0]), int(shape[1])
    row_scale = col_scale = 1.0
    if square_pixels and spacing is not None:
        finest = min(spacing[0], spacing[1])
        row_scale, col_scale = spacing[0] / finest, spacing[1] / finest
    zoom = min(1.0, _zoom(rows * row_scale, cols * col_scale, 1, max_side))  # never scaled up
    row_scale, col_scale = row_scale * zoom, col_scale * zoom
    return SliceMap(
        (rows, cols), None, None, None, 0, 1, _sources(rows, row_scale, False), _sources(cols, col_scale, False)
    )


# ------------------------------------------------------------------------------- intensities


@dataclass(frozen=True)
class Intensity:
    """How stored intensities become 8-bit pixels (recorded with every sample).

    ``kind`` is ``window`` (CT level/width; three for RGB), ``percentile`` (the range
    between two percentiles of the body's intensities), or ``as_is`` (8-bit images).
    ``ranges`` are the (low, high) intensities mapped to 0 and 255.
    """

    kind: str
    ranges: tuple[tuple[float, float], ...]
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "ranges": [list(r) for r in self.ranges]}


def _window_range(window: str | tuple[float, float]) -> tuple[float, float]:
    level, width = CT_WINDOWS[window] if isinstance(window, str) else window
    return level - width / 2.0, level + width / 2.0


def _subsample(array: NDArray[Any], target: int = 1 << 21) -> NDArray[Any]:
    """A deterministic strided sample of at most ~target values (cheap statistics on big volumes)."""
    flat = array.ravel(order="K")
    step = max(1, flat.size // target)
    return flat[::step]


def otsu_threshold(values: NDArray[Any], bins: int = 256) -> float:
    """Otsu's threshold of a sample (maximises the between-class variance)."""
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight0 = np.cumsum(counts)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(counts * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


@dataclass(frozen=True, eq=False)
class Body:
    """The body in a volume, on a subsampled grid: ``mask[i, j, k]`` is voxel
    ``(i * step, j * step, k * step)``."""

    step: int
    mask: NDArray[np.bool_]

    def indices(self) -> NDArray[np.intp]:
        """Volume indices of the body's sampled voxels, ``(n, 3)``."""
        return np.argwhere(self.mask) * self.step


#: Voxels the body mask is computed on (the volume is subsampled with one stride to this).
BODY_SAMPLE = 1 << 21


def body_mask(volume: Volume, modality: str) -> Body:
    """The body: the largest connected foreground of a subsample of the volume, with the
    holes of each axial slice filled.

    Foreground is above -500 HU for CT; for other modalities above 10% of the robust range
    (2nd to 98th percentile) over its low end, as FSL's BET starts: low enough that dark
    soft tissue is body, high enough that background noise is not. The largest connected
    component drops noise and objects outside the patient; filling each axial slice's holes
    puts the dark structures inside the body (flow voids, bowel gas, cortical bone on MR)
    back into it, so the intensity range covers them too.
    """
    array = volume.array
    step = max(1, int(round((array.size / BODY_SAMPLE) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step])
    if modality == "CT":
        foreground = sample > -500
    else:
        low, high = (float(v) for v in np.percentile(sample, (2, 98)))
        foreground = sample > low + 0.1 * (high - low)
    if not foreground.any():
        return Body(step, foreground)
    largest = np.asarray(geometry.largest_k(foreground, 1, binary=True) != 0)
    axis = plane_axis(volume.axcodes, "axial")
    return Body(step, _fill_holes(largest, axis))


def _fill_holes(mask: NDArray[np.bool_], axis: int) -> NDArray[np.bool_]:
    """``mask`` with the holes of each slice along ``axis`` filled: background regions that
    do not reach the slice's border."""
    filled = mask.copy()
    for index in range(mask.shape[axis]):
        plane = np.moveaxis(mask, axis, 0)[index]  # a view: np.take copies non-C-ordered volumes
        if not plane.any():
            continue
        outside = geometry.connected_components(~plane, 4, binary=True)
        edge = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
        holes = ~plane & ~np.isin(outside, edge)
        where = [slice(None)] * mask.ndim
        where[axis] = slice(index, index + 1)
        filled[tuple(where)] |= np.expand_dims(holes, axis)
    return filled


def intensity_for(
    volume: Volume,
    modality: str,
    window: Any = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    body: Body | None = None,
) -> Intensity:
    """The intensity mapping of a volume: CT windows (default soft tissue), else the
    percentiles of the body's intensities over the whole volume (so every slice of a
    case shares one mapping and soft tissue spans the grey range); 8-bit 2D images are
    kept as they are."""
    array = volume.array
    if volume.is_2d and array.dtype == np.uint8:
        return Intensity("as_is", ((0.0, 255.0),))
    if modality == "CT" and not volume.is_2d:
        return window_intensity("soft_tissue" if window is None else window)
    if volume.is_2d:
        values = _subsample(array).astype(np.float64)
    else:
        body = body or body_mask(volume, modality)
        values = np.asarray(array[:: body.step, :: body.step, :: body.step], dtype=np.float64)[body.mask]
        if values.size < 16:
            values = _subsample(array).astype(np.float64)
    body_values = values
    low, high = (float(v) for v in np.percentile(body_values, percentiles))
    if high <= low:
        high = low + 1.0
    return Intensity("percentile", ((low, high),), f"p{percentiles[0]:g}-p{percentiles[1]:g}")


def window_intensity(window: str | tuple[float, float] | tuple[Any, ...]) -> Intensity:
    """A CT window (preset name or ``(level, width)``), or three of them for RGB."""
    if isinstance(window, tuple) and len(window) == 3:
        names = [w if isinstance(w, str) else None for w in window]
        return Intensity("window", tuple(_window_range(w) for w in window), "+".join(n or "custom" for n in names))
    return Intensity("window", (_window_range(window),), window if isinstance(window, str) else None)


def to_uint8(values: NDArray[Any], intensity: Intensity) -> NDArray[np.uint8]:
    """Maps intensities to 8-bit: one range → grayscale, three windows → RGB."""
    if intensity.kind == "as_is":
        return np.asarray(values, dtype=np.uint8)
    channels: list[NDArray[np.uint8]] = []
    data = np.asarray(values, dtype=np.float32)
    for low, high in intensity.ranges:
        # In place after the first pass: the same float32 steps, one scratch array.
        scaled = np.subtract(data, low)
        scaled *= 255.0 / (high - low)
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        channels.append(scaled.astype(np.uint8))
    if len(channels) == 1:
        return channels[0]
    stacked: NDArray[np.uint8] = np.stack(channels, axis=-1)
    return stacked


@dataclass(frozen=True, eq=False)
class RenderedSlice:
    """An 8-bit view with its map and intensity mapping."""

    image: NDArray[np.uint8]
    map: SliceMap
    intensity: Intensity

    def labels(self, label_volume: NDArray[Any]) -> NDArray[Any]:
        """The label map as it appears in this view (same pixels as the image)."""
        return self.map.render(label_volume)


def render_slice(
    volume: Volume,
    plane: str,
    slice_index: int,
    intensity: Intensity,
    *,
    square_pixels: bool = True,
    radiological: bool = True,
) -> RenderedSlice:
    """One slice of a 3D volume, 8-bit, in radiological display (or array order when
    ``radiological`` is False or the volume has no orientation)."""
    axcodes = volume.axcodes if radiological else None
    smap = slice_map(volume.shape, volume.spacing, axcodes, plane, slice_index, square_pixels=square_pixels)
    return RenderedSlice(to_uint8(smap.render_values(volume.array), intensity), smap, intensity)


def render_image(volume: Volume, intensity: Intensity, *, square_pixels: bool = False) -> RenderedSlice:
    """A 2D image as stored, 8-bit (RGB stays RGB)."""
    smap = image_map(volume.shape, volume.spacing, square_pixels=square_pixels)
    return RenderedSlice(to_uint8(smap.render_values(volume.array), intensity), smap, intensity)


def png_bytes(image: NDArray[np.uint8]) -> bytes:
    """An 8-bit grayscale (H, W) or RGB (H, W, 3) image encoded as PNG: lossless and
    deterministic (the same pixels, the same bytes), by the core without the GIL (fdeflate
    with a filter chosen row by row: on the run's views about seven times faster than
    zlib's fastest level for files within a few percent of its size)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        found = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"PNG output needs an 8-bit (H, W) or (H, W, 3) image, got {found}")
    from medground import _core

    return bytes(_core.encode_png(image))


#: Quality of the JPEGs a run encodes from sources that are not JPEG (``image_format = "jpeg"``).
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Encoding:
    """How a view's image is stored: ``png`` (lossless) or ``jpeg``; ``copy`` when the file
    is the source file's own bytes (the view is that JPEG as stored). A JPEG ``quality`` of
    None keeps a JPEG source's quantisation tables and chroma subsampling
    (:data:`JPEG_QUALITY` for other sources)."""

    format: str = "png"
    quality: int | None = None
    copy: bool = False

    @property
    def suffix(self) -> str:
        return ".png" if self.format == "png" else ".jpg"


def encoding_for(
    volume: Volume, smap: SliceMap, intensity: Intensity, image_format: str, quality: int | None = None
) -> Encoding:
    """The encoding of a view (``[render] image_format``): ``auto`` is JPEG for a JPEG source
    and PNG for anything else. A JPEG view that shows the source pixel for pixel (2D, not
    resized, 8-bit L or RGB shown as is, no EXIF rotation a reader might apply) copies it."""
    raster = volume.metadata.get("raster") if volume.is_2d else None
    source_jpeg = isinstance(raster, dict) and raster.get("format") == "JPEG"
    chosen = ("jpeg" if source_jpeg else "png") if image_format == "auto" else image_format
    if chosen == "png":
        return Encoding("png")
    if chosen != "jpeg":
        raise ValueError(f"image_format must be auto, png or jpeg, got {image_format!r}")
    unchanged = (
        source_jpeg
        and isinstance(raster, dict)
        and raster.get("mode") in ("L", "RGB")
        and raster.get("exif_orientation", 1) == 1
        and intensity.kind == "as_is"
        and smap.axis is None
        and (smap.height, smap.width) == tuple(volume.shape[:2])
        and bool(np.array_equal(smap.row_source, np.arange(smap.height)))
        and bool(np.array_equal(smap.col_source, np.arange(smap.width)))
    )
    return Encoding("jpeg", quality, copy=unchanged)


def encode(image: NDArray[np.uint8], encoding: Encoding, source: Path | None = None) -> bytes:
    """The bytes of a stored view: PNG (:func:`png_bytes`), JPEG (deterministic for one
    libjpeg; see :class:`Encoding` for its quality) or, for a copying encoding, ``source``'s
    bytes."""
    if encoding.copy:
        if source is None:
            raise ValueError("a copying encoding needs the source file")
        return Path(source).read_bytes()
    if encoding.format == "png":
        return png_bytes(image)
    import io

    from PIL import Image, JpegImagePlugin

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"JPEG output needs an 8-bit (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    options: dict[str, Any] = {"quality": encoding.quality or JPEG_QUALITY, "subsampling": 0}
    if encoding.quality is None and source is not None:
        with Image.open(source) as original:
            if isinstance(original, JpegImagePlugin.JpegImageFile) and original.mode == (
                "L" if image.ndim == 2 else "RGB"
            ):
                options = {"qtables": original.quantization, "subsampling": JpegImagePlugin.get_sampling(original)}
                if image.ndim == 2 or options["subsampling"] == -1:
                    options.pop("subsampling")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def write_png(path: Path | str, image: NDArray[np.uint8]) -> None:
    """Writes an 8-bit grayscale or RGB image as PNG (lossless)."""
    Path(path).write_bytes(png_bytes(image))


def luminance(array: NDArray[Any]) -> NDArray[np.float32]:
    """Intensities as one float channel: RGB photographs as luminance (ITU-R BT.601 weights)."""
    if array.ndim == 3:
        rgb = array[..., :3].astype(np.float32)
        return rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return array.astype(np.float32)


def nifti_bytes(array: NDArray[Any], affine: NDArray[np.floating]) -> bytes:
    """A 3D array and its index→RAS affine as the bytes of a ``.nii.gz`` file: NIfTI-1,
    the affine as both qform and sform (code 1, scanner), the array's own type, and a gzip
    stream without a timestamp at a speed-oriented level, so the same volume always gives
    the same bytes."""
    import gzip

    import nibabel

    image = nibabel.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)
