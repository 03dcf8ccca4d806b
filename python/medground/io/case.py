"""One case read and checked: the image, its label map on the same grid, and the label names.

Everything that can be wrong with a case is found here and raised as a :class:`CaseError`
naming the file and the problem, so that the runner records it and goes on: unreadable
or truncated files, grids that do not match, masks with non-integer or negative values,
non-finite intensities, 4D images without a chosen channel, oversized headers. An empty
mask is not an error: the case loads with a warning and yields no samples.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry
from medground.io.discover import CaseFiles
from medground.io.errors import CaseError, unreadable
from medground.io.readers import IMAGE_2D_SUFFIXES, read_header, read_image, read_raster, suffix_of
from medground.io.schema import DatasetSpec
from medground.io.volume import Volume

__all__ = ["Case", "label_voxels", "load_case", "present_labels"]


@dataclass(frozen=True, eq=False)
class Case:
    """A loaded case.

    Attributes:
        dataset: the spec's ``name``.
        files: the files it came from.
        image: intensities (3D ``(i, j, k)`` or 2D ``(rows, cols[, 3])``) with the geometry.
        labels: unsigned label map on the image's spatial grid (0 = background).
        label_names: id → name for every id in the spec and every id present; ids the
            spec does not declare are named ``unknown_<id>``.
        present: ids present in ``labels``, ascending.
        warnings: what is odd but not fatal (empty mask, undeclared ids, overlapping files).
        ahead: what :func:`load_case`'s ``then`` made of the label map on the thread that
            read it, while the image was still being read; None without it.
    """

    dataset: str
    files: CaseFiles
    image: Volume
    labels: NDArray[np.unsignedinteger[Any]]
    label_names: dict[int, str]
    present: tuple[int, ...]
    warnings: tuple[str, ...]
    ahead: Any = None

    @property
    def case_id(self) -> str:
        return self.files.case_id

    @property
    def patient_id(self) -> str:
        return self.files.patient_id


def present_labels(labels: NDArray[np.integer[Any]]) -> tuple[int, ...]:
    """Nonzero ids present in an unsigned label map: one pass in the core for 8- and 16-bit
    maps (no widened copy, any memory order), else numpy's unique."""
    if labels.size == 0:
        return ()
    flat = labels.ravel(order="K")
    if flat.dtype in (np.uint8, np.uint16):
        ids, _ = geometry.slice_areas_along(flat.reshape(1, -1), axes=())  # the labels, no table
        return tuple(sorted(int(i) for i in ids if i != 0))
    top = int(flat.max())
    if top == 0:
        return ()
    if top < 1 << 16:
        counts = np.bincount(flat, minlength=top + 1)
        return tuple(int(i) for i in np.flatnonzero(counts[1:]) + 1)
    return tuple(int(i) for i in np.unique(flat) if i != 0)


def label_voxels(labels: NDArray[np.integer[Any]]) -> dict[int, int]:
    """Voxels per nonzero id of an unsigned label map, in id order.

    A ``bincount`` only for ids below 2**16: over a map holding id 4,000,000,000 it would
    allocate a counter for every id up to it (30 GiB), and numpy refuses uint64 maps
    outright; numpy's unique counts those instead.
    """
    if labels.size == 0:
        return {}
    flat = labels.ravel(order="K")
    top = int(flat.max())
    if top < 1 << 16:
        counts = np.bincount(flat, minlength=top + 1)
        return {int(i): int(counts[i]) for i in np.flatnonzero(counts[1:]) + 1}
    ids, counts = np.unique(flat, return_counts=True)
    return {int(i): int(n) for i, n in zip(ids, counts, strict=True) if i != 0}


def _smallest_unsigned(top: int) -> np.dtype[Any]:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _squeeze_trailing(array: NDArray[Any], spatial: int) -> NDArray[Any]:
    while array.ndim > spatial and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _pick_channel(array: NDArray[Any], channel: int | None, path: Path) -> NDArray[Any]:
    """The ``[cases] channel`` of a 4D image."""
    if channel is None:
        raise CaseError(
            path,
            f"4D image {array.shape} with {array.shape[3]} channels/timepoints; choose one with [cases] channel = N",
        )
    if channel >= array.shape[3]:
        raise CaseError(path, f"[cases] channel = {channel} but the image has {array.shape[3]} channels")
    return array[..., channel]


def _spatial_array(volume: Volume, spec: DatasetSpec) -> NDArray[Any]:
    """The image's intensities on its spatial grid: a 2D image as is (grayscale or RGB), a 3D
    one with singleton trailing axes squeezed and the chosen channel of a 4D one."""
    array = volume.array
    if volume.is_2d:
        if array.ndim == 3 and array.shape[2] not in (3,):
            raise CaseError(volume.path, f"2D image with {array.shape[2]} channels; expected grayscale or RGB")
        return array
    array = _squeeze_trailing(array, 3)
    if array.ndim == 4:
        return _pick_channel(array, spec.cases.channel, volume.path)
    if array.ndim != 3:
        raise CaseError(volume.path, f"{array.ndim}D image {array.shape}; expected a 3D volume (or 4D with channel)")
    return array


def _check_intensities(array: NDArray[Any], path: Path) -> None:
    """Raises unless the pixel type is numeric and every float intensity is finite."""
    if array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise CaseError(path, f"{bad} NaN or infinite intensities")
    elif array.dtype.kind not in "iub":
        raise CaseError(path, f"unsupported pixel type {array.dtype}")


def _image_array(volume: Volume, spec: DatasetSpec) -> Volume:
    """Picks the channel of a 4D image, squeezes singleton trailing axes, checks finiteness."""
    array = _spatial_array(volume, spec)
    _check_intensities(array, volume.path)
    if array is volume.array:
        return volume
    return Volume(array, volume.affine, volume.path, volume.oriented, volume.metadata)


def _integer_labels(array: NDArray[Any], path: Path) -> NDArray[np.unsignedinteger[Any]]:
    """Checks that mask values are non-negative integers; returns the smallest unsigned dtype."""
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise CaseError(path, f"mask has {int((~finite).sum())} NaN or infinite values")
        fractional = array != np.round(array)
        if fractional.any():
            example = float(array[fractional].flat[0])
            raise CaseError(
                path,
                f"mask has {int(fractional.sum())} non-integer values (e.g. {example}); expected integer label ids",
            )
    elif array.dtype.kind not in "iu":
        raise CaseError(path, f"mask pixel type {array.dtype} is not an integer label map")
    if array.size == 0:
        return array.astype(np.uint8)
    low = array.min()
    if low < 0:
        raise CaseError(path, f"mask has negative values (min {low}); label ids must be >= 0")
    top = int(array.max())
    dtype = _smallest_unsigned(top)
    if array.dtype == dtype:
        return array
    return array.astype(dtype, order="K")


def _read_mask(path: Path, spec: DatasetSpec, image: Volume, read: Volume | None = None) -> NDArray[Any]:
    """The mask's array, checked against the image; ``read``: the mask's volume read
    already (:func:`_read_ahead`)."""
    if image.is_2d:
        if suffix_of(path) in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            try:
                array = read_raster(path, max_bytes=spec.cases.max_bytes, keep_palette=True)
            except CaseError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise unreadable(path, exc) from exc
        else:
            array = (read if read is not None else read_image(path, max_bytes=spec.cases.max_bytes)).array
        if array.ndim == 3:
            array = _collapse_colour(array, path, spec)
        return array
    volume = read if read is not None else read_image(path, max_bytes=spec.cases.max_bytes)
    return _checked_volume_mask(volume, _squeeze_trailing(volume.array, 3), path, spec, image)


def _checked_volume_mask(
    volume: Volume, array: NDArray[Any], path: Path, spec: DatasetSpec, image: Volume
) -> NDArray[Any]:
    """A 3D mask's (squeezed) array, checked: three dimensions, the image's grid."""
    if array.ndim != 3:
        raise CaseError(path, f"mask has shape {volume.array.shape}; expected a 3D label map")
    _check_grid(image, volume, path, spec.cases.affine_tolerance)
    return array


def _collapse_colour(array: NDArray[Any], path: Path, spec: DatasetSpec) -> NDArray[Any]:
    """An RGB mask → label ids: through ``[cases.colors]``, or as gray when R = G = B."""
    rgb = array[..., :3].astype(np.int16)
    if not spec.cases.colors:
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return array[..., 0]
        raise CaseError(path, 'colour-coded mask but the spec has no [cases.colors] table ("R,G,B" = label id)')
    labels = np.zeros(rgb.shape[:2], dtype=np.uint32)
    matched = np.zeros(rgb.shape[:2], dtype=bool)
    tolerance = spec.cases.color_tolerance
    for colour, label_id in spec.cases.colors:
        hit = (np.abs(rgb - np.asarray(colour, dtype=np.int16)).max(axis=2) <= tolerance) & ~matched
        labels[hit] = label_id
        matched |= hit
    background = (np.abs(rgb).max(axis=2) <= tolerance) & ~matched
    stray = ~(matched | background)
    if stray.any():
        colours, counts = np.unique(rgb[stray].reshape(-1, 3), axis=0, return_counts=True)
        top = ", ".join(
            f"{tuple(int(v) for v in c)} x{n}"
            for c, n in sorted(zip(colours, counts, strict=True), key=lambda t: -t[1])[:3]
        )
        raise CaseError(
            path,
            f"{int(stray.sum())} mask pixels have colours not in [cases.colors] (e.g. {top}); "
            "add them or raise color_tolerance",
        )
    return labels


def _check_grid(image: Volume, mask: Volume, mask_path: Path, tolerance: float) -> None:
    if image.shape != mask.shape:
        raise CaseError(mask_path, f"mask grid {mask.shape} does not match image {image.path} grid {image.shape}")
    if image.ndim == 3 and image.oriented and mask.oriented:
        difference = float(np.abs(image.affine - mask.affine).max())
        if difference > tolerance:
            raise CaseError(
                mask_path,
                f"mask affine differs from image {image.path} affine by {difference:.4g} mm "
                f"(tolerance {tolerance} mm); image affine {np.round(image.affine[:3], 4).tolist()}, "
                f"mask affine {np.round(mask.affine[:3], 4).tolist()}",
            )


LabelWork = Callable[[NDArray[Any], tuple[int, ...], dict[int, str], tuple[float, ...]], Any]


def load_case(spec: DatasetSpec, files: CaseFiles, then: LabelWork | None = None) -> Case:
    """Reads and checks one case.

    ``then(labels, present, label_names, spacing)``: work on the checked label map alone
    (spacing the label file's own) that the thread which read it does while this one still
    reads the image (two cores, one label map file): its result is the case's ``ahead``.
    An exception it raises is dropped (``ahead`` stays None: the work is done again where
    the case needs it, and raises there).

    Raises:
        CaseError: tagged with the case id; the message names the file and the problem.
    """
    try:
        return _load(spec, files, then)
    except CaseError as error:
        raise error.for_case(files.case_id) from error.__cause__


def _check_headers(spec: DatasetSpec, files: CaseFiles) -> tuple[int, ...]:
    """Compares the grids the image's and masks' headers declare before any pixels are read:
    a mask that does not fit costs a header read, not the decoding of both volumes. Returns
    the image's shape as its header gives it."""
    image = read_header(files.image, radiological_2d=spec.is_radiological)
    image_raster = suffix_of(files.image) in IMAGE_2D_SUFFIXES
    for path in files.masks or tuple(p for _, p in files.label_masks):
        mask = read_header(path, radiological_2d=spec.is_radiological)
        if image_raster or suffix_of(path) in IMAGE_2D_SUFFIXES or len(image.shape) < 3 or len(mask.shape) < 3:
            image_grid, mask_grid = image.shape[:2], mask.shape[:2]
        else:
            image_grid, mask_grid = image.shape[:3], mask.shape[:3]
        if image_grid != mask_grid:
            raise CaseError(
                path,
                f"mask grid {mask_grid} does not match image {files.image} grid {image_grid} "
                "(read from the headers; no pixels were decoded)",
            )
    return tuple(image.shape)


@functools.cache
def _reader() -> ThreadPoolExecutor:
    """The thread of this process that reads a case's label map while its image is read."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="medground-read")


@dataclass(frozen=True, eq=False)
class _Mask:
    """A label map volume read on the reader thread, and what was made of it there: for a
    3D map the squeezed array, its checked labels, the ids present and ``then``'s result; a
    label-value error waits here until the grids have been compared (as when read in turn)."""

    volume: Volume
    array: NDArray[Any] | None = None
    labels: NDArray[np.unsignedinteger[Any]] | None = None
    present: tuple[int, ...] | None = None
    error: CaseError | None = None
    ahead: Any = None


def _label_names(spec: DatasetSpec, present: tuple[int, ...]) -> tuple[dict[int, str], list[int]]:
    """The spec's names with ``unknown_<id>`` for each id present it does not declare; those ids."""
    names = dict(spec.labels)
    unknown = [i for i in present if i not in names]
    for label_id in unknown:
        names[label_id] = f"unknown_{label_id}"
    return names, unknown


def _read_mask_ahead(
    path: Path, spec: DatasetSpec, volume_3d: bool, then: LabelWork | None, stop: threading.Event
) -> _Mask:
    volume = read_image(path, max_bytes=spec.cases.max_bytes)
    if not volume_3d:
        return _Mask(volume)
    array = _squeeze_trailing(volume.array, 3)
    if array.ndim != 3:
        return _Mask(volume, array)
    try:
        labels = _integer_labels(array, path)
    except CaseError as error:
        return _Mask(volume, array, error=error)
    present = present_labels(labels)
    ahead = None
    if then is not None and present and not stop.is_set():
        # On this thread alone: the other core is still inflating the image.
        alone = geometry.kernels_on_caller(True)
        try:
            ahead = then(labels, present, _label_names(spec, present)[0], volume.spacing)
        except Exception:  # noqa: BLE001 — done again (and raised) where the case needs it
            ahead = None
        finally:
            geometry.kernels_on_caller(alone)
    return _Mask(volume, array, labels, present, None, ahead)


def _read_ahead(
    spec: DatasetSpec, files: CaseFiles, image_shape: tuple[int, ...], then: LabelWork | None, stop: threading.Event
) -> Future[_Mask] | None:
    """With a second core, a case's one label map (not a raster) read on a thread while the
    image is read on this one (inflating both takes a core each), and a 3D map's labels
    checked and ``then`` done there too; None otherwise."""
    if geometry.get_num_threads() <= 1 or spec.cases.mask_mode != "labelmap" or len(files.masks) != 1:
        return None
    (path,) = files.masks
    if suffix_of(path) in IMAGE_2D_SUFFIXES or suffix_of(files.image) in IMAGE_2D_SUFFIXES:
        return None
    volume_3d = len(image_shape) >= 3 and image_shape[2] > 1
    return _reader().submit(_read_mask_ahead, path, spec, volume_3d, then, stop)


def _load(spec: DatasetSpec, files: CaseFiles, then: LabelWork | None = None) -> Case:
    cases = spec.cases
    image_shape = _check_headers(spec, files)
    stop = threading.Event()
    ahead = _read_ahead(spec, files, image_shape, then, stop)
    try:
        image = read_image(
            files.image,
            max_bytes=cases.max_bytes,
            radiological_2d=spec.is_radiological,
            pixel_spacing=cases.pixel_spacing,
        )
        image = _image_array(image, spec)
    except BaseException:
        # The image's error is the case's (as when read in turn); the mask is not waited for.
        if ahead is not None:
            stop.set()
            ahead.cancel()
        raise
    warnings: list[str] = []
    present: tuple[int, ...] | None = None
    made = None
    if cases.mask_mode == "per_label_files":
        labels = _stack_label_files(spec, files, image, warnings)
    elif cases.mask_mode == "binary":
        label_id = next(iter(spec.labels))
        foreground = np.zeros(image.shape, dtype=bool)
        for path in files.masks:
            foreground |= _binary_foreground(_read_mask(path, spec, image), path, image, cases.mask_threshold)
        labels = foreground.astype(_smallest_unsigned(label_id)) * label_id
    else:
        labels, present, made = _label_map(spec, files, image, None if ahead is None else ahead.result())
    if present is None:
        present = present_labels(labels)
    names, unknown = _label_names(spec, present)
    if unknown:
        warnings.append(f"mask ids {unknown} are not in the label map; named unknown_<id>")
    if not present:
        warnings.append(f"empty mask: no labelled {'pixels' if image.is_2d else 'voxels'}; the case yields no samples")
    return Case(spec.name, files, image, labels, names, present, tuple(warnings), made)


def _label_map(
    spec: DatasetSpec, files: CaseFiles, image: Volume, mask: _Mask | None
) -> tuple[NDArray[np.unsignedinteger[Any]], tuple[int, ...] | None, Any]:
    """A case's one label map file, checked: its labels, and the ids present and ``then``'s
    result where the reader thread made them (``mask``), else None."""
    (path,) = files.masks
    if mask is not None and mask.array is not None and not image.is_2d:
        # Checked in the order of a read in turn: dimensions, grid, then the values.
        raw = _checked_volume_mask(mask.volume, mask.array, path, spec, image)
        if raw.shape != image.shape:
            raise CaseError(path, f"mask grid {raw.shape} does not match image {image.path} grid {image.shape}")
        if mask.error is not None:
            raise mask.error
        assert mask.labels is not None
        return mask.labels, mask.present, mask.ahead
    raw = _read_mask(path, spec, image, None if mask is None else mask.volume)
    if raw.shape[: image.ndim] != image.shape:
        raise CaseError(path, f"mask grid {raw.shape} does not match image {image.path} grid {image.shape}")
    return _integer_labels(raw, path), None, None


def _binary_foreground(raw: NDArray[Any], path: Path, image: Volume, threshold: float | None) -> NDArray[np.bool_]:
    """Foreground of a binary mask: nonzero, or above the spec's threshold (lossy masks)."""
    if raw.shape != image.shape:
        raise CaseError(path, f"mask grid {raw.shape} does not match image {image.path} grid {image.shape}")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise CaseError(path, "mask has NaN or infinite values")
    if raw.dtype.kind in "iuf" and raw.size and raw.min() < 0:
        raise CaseError(path, f"mask has negative values (min {raw.min()}); expected 0 = background")
    return raw > (0 if threshold is None else threshold)


def _stack_label_files(spec: DatasetSpec, files: CaseFiles, image: Volume, warnings: list[str]) -> NDArray[Any]:
    """One label map from one binary mask per structure (later files win overlaps, reported)."""
    ids = {name: label_id for label_id, name in spec.labels.items()}
    top = max(ids.values(), default=0)
    labels = np.zeros(image.shape, dtype=_smallest_unsigned(top), order="F" if image.array.flags.f_contiguous else "C")
    undeclared = []
    overlapping: dict[str, int] = {}
    for name, path in files.label_masks:
        if name not in ids:
            undeclared.append(name)
            continue
        foreground = _binary_foreground(_read_mask(path, spec, image), path, image, spec.cases.mask_threshold)
        clash = int(np.count_nonzero(foreground & (labels != 0)))
        if clash:
            overlapping[name] = clash
        labels[foreground] = ids[name]
    if undeclared:
        warnings.append(f"mask files for undeclared structures ignored: {', '.join(sorted(undeclared))}")
    if overlapping:
        detail = ", ".join(f"{name} ({count} voxels)" for name, count in sorted(overlapping.items()))
        warnings.append(f"structures overlap other structures; the later file wins: {detail}")
    return labels
