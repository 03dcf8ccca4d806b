"""Readers for the files segmentation datasets come in.

NIfTI with nibabel; NRRD, MHA/MHD and DICOM series with SimpleITK; 2D PNG, JPEG, BMP and
TIFF with Pillow. Every reader checks the size a header claims against ``max_bytes``
before it allocates, and turns any failure into a :class:`CaseError` that names the file.
Arrays keep the index order of the file (ITK's ``(x, y, z)``, as nibabel gives NIfTI), so
the same image saved as NIfTI and as NRRD reads to the same array and affine.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground.io.errors import CaseError, unreadable
from medground.io.volume import Volume, affine_problem, axcodes_of, radiograph_affine

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Header",
    "read_header",
    "IMAGE_2D_SUFFIXES",
    "read_image",
    "read_raster",
    "suffix_of",
]

#: Refuse files whose decompressed pixel data would exceed this (4 GiB), before reading them.
DEFAULT_MAX_BYTES = 4 << 30

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_DICOM_SUFFIXES = (".dcm", ".dicom")

# ITK→RAS: ITK world coordinates are LPS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def suffix_of(path: Path) -> str:
    """Lower-case file type, with ``.nii.gz`` as one suffix; ``""`` for a folder."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def _check_size(path: Path, shape: tuple[int, ...], itemsize: int, max_bytes: int) -> None:
    claimed = math.prod(int(s) for s in shape) * itemsize
    if claimed > max_bytes:
        raise CaseError(
            path,
            f"header claims {'x'.join(str(s) for s in shape)} voxels of {itemsize} bytes "
            f"({_bytes(claimed)}), over the {_bytes(max_bytes)} cap (max_bytes); not read",
        )


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} bytes"


def read_image(
    path: Path | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    radiological_2d: bool = False,
    pixel_spacing: tuple[float, float] | None = None,
) -> Volume:
    """Reads one image or mask file (or a DICOM series folder) as a :class:`Volume`.

    Args:
        path: a NIfTI, NRRD/NHDR, MHA/MHD, DICOM file or series folder, or a 2D raster.
        max_bytes: refuse (before reading pixel data) anything larger than this.
        radiological_2d: a 2D raster is stored as displayed radiologically (radiographs):
            give it patient axes ``("I", "L")``. Otherwise 2D rasters have no orientation.
        pixel_spacing: millimetres per row and column of a 2D raster, when known.

    Raises:
        CaseError: the file is missing, unreadable, truncated, of an unknown type or too big.
    """
    path = Path(path)
    if not path.exists():
        raise CaseError(path, "file not found")
    suffix = suffix_of(path)
    try:
        if path.is_dir() or suffix in _DICOM_SUFFIXES:
            if not path.is_dir():
                _check_dicom_file(path)
            return _read_dicom_series(path if path.is_dir() else path.parent, max_bytes)
        if suffix in _NIFTI_SUFFIXES:
            return _read_nifti(path, max_bytes)
        if suffix in _ITK_SUFFIXES:
            return _read_itk(path, max_bytes)
        if suffix in IMAGE_2D_SUFFIXES:
            raster: dict[str, object] = {}
            array = read_raster(path, max_bytes=max_bytes, source=raster)
            spacing = pixel_spacing or (1.0, 1.0)
            affine = radiograph_affine(spacing) if radiological_2d else np.diag([spacing[0], spacing[1], 1.0, 1.0])
            metadata: dict[str, object] = {
                "channels_last": array.ndim == 3,
                "spacing_known": pixel_spacing is not None,
                "raster": raster,
            }
            return Volume(array, affine, path, oriented=radiological_2d, metadata=metadata)
    except CaseError:
        raise
    except MemoryError as exc:
        raise CaseError(path, "out of memory while reading") from exc
    except Exception as exc:  # noqa: BLE001 - any reader failure is this file's problem
        raise unreadable(path, exc) from exc
    raise CaseError(
        path,
        f"unknown file type {suffix!r}; expected NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), "
        "MetaImage (.mha, .mhd), DICOM (.dcm or a series folder) or a 2D raster (PNG, JPEG, BMP, TIFF)",
    )


@dataclass(frozen=True)
class Header:
    """What a file says about its grid, read without its pixel data."""

    path: Path
    shape: tuple[int, ...]
    dtype: str
    affine: NDArray[np.float64]
    oriented: bool

    @property
    def spacing(self) -> tuple[float, ...]:
        n = min(len(self.shape), 3)
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :n], axis=0))

    @property
    def axcodes(self) -> tuple[str, ...] | None:
        return axcodes_of(self.affine, min(len(self.shape), 3)) if self.oriented else None


def read_header(path: Path | str, *, radiological_2d: bool = False) -> Header:
    """The shape, pixel type and geometry of an image file, without reading its pixels.

    Raises:
        CaseError: missing, unreadable or of an unknown type.
    """
    path = Path(path)
    if not path.exists():
        raise CaseError(path, "file not found")
    suffix = suffix_of(path)
    try:
        header: Header | None = None
        if suffix in _NIFTI_SUFFIXES:
            header = _nifti_header(path)
        elif suffix in IMAGE_2D_SUFFIXES:
            header = _raster_header(path, radiological_2d)
        elif path.is_dir() or suffix in _DICOM_SUFFIXES or suffix in _ITK_SUFFIXES:
            header = _itk_header(path, suffix)
        if header is not None:
            problem = affine_problem(header.affine)
            if problem is not None:
                raise CaseError(path, problem)
            return header
    except CaseError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise unreadable(path, exc, "unreadable header") from exc
    raise CaseError(path, f"unknown file type {suffix!r}")


def _nifti_header(path: Path) -> Header:
    """A NIfTI file's header; oriented when it has an sform or qform."""
    image = _load_nifti(path)
    header = image.header
    oriented = int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0
    return Header(
        path,
        tuple(int(s) for s in header.get_data_shape()),
        str(header.get_data_dtype()),
        np.asarray(image.affine, dtype=np.float64),
        oriented,
    )


def _raster_header(path: Path, radiological_2d: bool) -> Header:
    """A 2D raster's header, with its channels as :func:`read_image` returns them."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as raster:
            # Channels as read_image returns them: alpha dropped, palettes as RGB.
            bands = 1 if raster.mode in ("L", "LA", "1", "I", "F") or raster.mode.startswith("I;") else 3
            shape = (raster.height, raster.width) + ((bands,) if bands > 1 else ())
            mode = raster.mode
    affine = radiograph_affine() if radiological_2d else np.eye(4)
    return Header(path, shape, mode, affine, radiological_2d)


def _itk_header(path: Path, suffix: str) -> Header:
    """The header of an NRRD/MetaImage file, a DICOM file's series or a DICOM series folder."""
    import SimpleITK as sitk

    files = _dicom_series_files(path) if path.is_dir() or suffix in _DICOM_SUFFIXES else [str(path)]
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()
    size = tuple(int(s) for s in reader.GetSize())
    if len(files) > 1:
        size = size[:2] + (len(files),)
    image = sitk.Image([1] * reader.GetDimension(), sitk.sitkUInt8)
    image.SetSpacing(reader.GetSpacing())
    image.SetOrigin(reader.GetOrigin())
    image.SetDirection(reader.GetDirection())
    if len(files) > 1:
        _set_slice_geometry(image, reader, files[1])
    dtype = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    return Header(path, size, dtype, _itk_affine(image), len(size) == 3)


def _dicom_series_files(path: Path) -> list[str]:
    """The files of the one DICOM series in ``path`` (a folder) or beside it (a file), in order."""
    import SimpleITK as sitk

    if not path.is_dir():
        _check_dicom_file(path)
    folder = path if path.is_dir() else path.parent
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise CaseError(folder, f"expected one DICOM series in the folder, found {len(series)}")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _set_slice_geometry(image: Any, first: Any, second_file: str) -> None:
    """Gives ``image`` a series' slice spacing and direction from the slice positions (the
    second file's origin), not from one file's thickness tag."""
    import SimpleITK as sitk

    second = sitk.ImageFileReader()
    second.SetFileName(second_file)
    second.ReadImageInformation()
    step = np.subtract(second.GetOrigin(), first.GetOrigin())
    distance = float(np.linalg.norm(step))
    if distance > 0:
        direction = np.asarray(first.GetDirection(), dtype=np.float64).reshape(3, 3)
        direction[:, 2] = step / distance
        image.SetDirection(direction.ravel().tolist())
        image.SetSpacing((*first.GetSpacing()[:2], distance))


#: Largest relative deviation of one DICOM slice step from the series' median step.
SLICE_STEP_TOLERANCE = 0.05


def _check_slice_positions(folder: Path, files: Sequence[str]) -> None:
    """Refuses a series whose slices are not evenly spaced along their normal (a missing
    slice, a duplicated position, a gantry-tilt stack read as one volume): one affine could
    only describe it with an averaged spacing, misplacing every slice after the gap."""
    import SimpleITK as sitk

    if len(files) < 3:
        return
    positions = []
    normal: NDArray[np.float64] | None = None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        if normal is None:
            direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(3, 3)
            normal = np.cross(direction[:, 0], direction[:, 1])
        positions.append(float(np.dot(reader.GetOrigin(), normal)))
    steps = np.diff(positions)
    moving = np.abs(steps)[np.abs(steps) > 1e-6]
    if moving.size == 0:
        raise CaseError(folder, "DICOM slices share one position: not a volume")
    typical = float(moving.min())  # a missing slice shows as a step of twice this
    off = np.abs(np.abs(steps) - typical) > SLICE_STEP_TOLERANCE * typical
    if off.any() or (np.sign(steps) != np.sign(steps[0])).any():
        where = int(np.argmax(off)) if off.any() else int(np.argmax(np.sign(steps) != np.sign(steps[0])))
        raise CaseError(
            folder,
            f"DICOM slices are not evenly spaced: step {steps[where]:.3f} mm between {Path(files[where]).name} and "
            f"{Path(files[where + 1]).name}, typical {typical:.3f} mm (a missing or duplicated slice?)",
        )


def _load_nifti(path: Path) -> Any:
    """The nibabel image of a NIfTI file (header read, voxels not yet).

    Raises:
        CaseError: when the file is not a NIfTI-1 or NIfTI-2 image.
    """
    import nibabel as nib

    image = nib.load(str(path))
    if not isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise CaseError(path, f"not a NIfTI image ({type(image).__name__})")
    return image


def _read_nifti(path: Path, max_bytes: int) -> Volume:
    image = _load_nifti(path)
    header = image.header
    shape = tuple(int(s) for s in header.get_data_shape())
    dtype = header.get_data_dtype()
    # Scaled voxels come back as float64 (nibabel keeps the scaling on the proxy, not the header).
    slope, inter = float(getattr(image.dataobj, "slope", 1.0)), float(getattr(image.dataobj, "inter", 0.0))
    scaled = (slope != 1.0 and not math.isnan(slope)) or (inter != 0.0 and not math.isnan(inter))
    itemsize = 8 if scaled else dtype.itemsize
    _check_size(path, shape, itemsize, max_bytes)
    array = _fast_gzip_voxels(image, path)
    if array is None:
        array = np.asanyarray(image.dataobj)
    if array.shape != shape:
        raise CaseError(path, f"read {array.shape} voxels but the header claims {shape} (truncated file?)")
    affine = np.asarray(image.affine, dtype=np.float64)
    code = int(header["sform_code"]) if "sform_code" in header else 0
    qcode = int(header["qform_code"]) if "qform_code" in header else 0
    metadata: dict[str, Any] = {"format": "nifti", "sform_code": code, "qform_code": qcode}
    # NIfTI without sform/qform has only a scaling: no patient orientation to trust.
    oriented = code > 0 or qcode > 0
    return Volume(array, affine, path, oriented=oriented, metadata=metadata)


#: Compressed bytes handed to the inflater at a time, and the most it gives back per call:
#: the GIL is let go while each piece inflates (the image and the label map of a case
#: inflate side by side on two threads), and no piece is a whole file's worth of memory.
_INFLATE_IN = 1 << 22
_INFLATE_OUT = 1 << 24


def _fast_gzip_voxels(image: Any, path: Path) -> NDArray[Any] | None:
    """The voxels of an unscaled, gzipped NIfTI, inflated by ISA-L (about twice zlib's
    speed) piece by piece into the array, without the GIL while a piece inflates; None
    where nibabel must read it (not gzipped, scaled, foreign byte order)."""
    proxy = image.dataobj
    dtype = np.dtype(image.header.get_data_dtype())
    if not path.name.lower().endswith(".gz") or not dtype.isnative or dtype.hasobject:
        return None
    if getattr(proxy, "order", "F") != "F" or not hasattr(proxy, "offset"):
        return None
    # The scaling nibabel applies lives on the proxy (the loaded header reports none).
    if float(getattr(proxy, "slope", 1.0)) != 1.0 or float(getattr(proxy, "inter", 0.0)) != 0.0:
        return None
    from isal import isal_zlib

    array = np.empty(tuple(int(s) for s in proxy.shape), dtype=dtype, order="F")
    out = array.reshape(-1, order="A").view(np.uint8)
    skip, filled, total = int(proxy.offset), 0, array.nbytes
    inflater = isal_zlib.decompressobj(31)  # gzip
    pending = b""
    with open(path, "rb") as stream:
        while filled < total:
            if inflater.eof:  # a file of several gzip members: the next one
                pending = inflater.unused_data
                inflater = isal_zlib.decompressobj(31)
            data = pending or stream.read(_INFLATE_IN)
            if not data:
                break
            piece = memoryview(inflater.decompress(data, _INFLATE_OUT))
            pending = inflater.unconsumed_tail
            if skip:  # the header and extensions before the voxels
                cut = min(skip, len(piece))
                piece, skip = piece[cut:], skip - cut
            n = min(len(piece), total - filled)
            # numpy copies without the GIL (the first touch of each fresh page is the
            # slow part of the copy).
            out[filled : filled + n] = np.frombuffer(piece, dtype=np.uint8, count=n)
            filled += n
    if filled != total:
        raise CaseError(path, f"read {filled} of {total} voxel bytes (truncated file?)")
    return array


def _itk_pixel_bytes(reader: Any) -> int:
    import SimpleITK as sitk

    sizes = {
        sitk.sitkUInt8: 1,
        sitk.sitkInt8: 1,
        sitk.sitkUInt16: 2,
        sitk.sitkInt16: 2,
        sitk.sitkUInt32: 4,
        sitk.sitkInt32: 4,
        sitk.sitkFloat32: 4,
        sitk.sitkUInt64: 8,
        sitk.sitkInt64: 8,
        sitk.sitkFloat64: 8,
    }
    component = reader.GetPixelID()
    return sizes.get(component, 8) * max(1, int(reader.GetNumberOfComponents()))


def _itk_affine(image: Any) -> NDArray[np.float64]:
    ndim = image.GetDimension()
    direction = np.eye(3)
    direction[:ndim, :ndim] = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    spacing = np.ones(3)
    spacing[:ndim] = image.GetSpacing()
    origin = np.zeros(3)
    origin[:ndim] = image.GetOrigin()
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = _LPS_TO_RAS @ origin
    return affine


def _itk_volume(image: Any, path: Path, fmt: str) -> Volume:
    import SimpleITK as sitk

    ndim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)  # (z, y, x[, c]): reverse the spatial axes to ITK order
    spatial = tuple(range(ndim))[::-1]
    array = np.transpose(array, spatial + (ndim,)) if components > 1 else np.transpose(array, spatial)
    if ndim > 3:
        raise CaseError(path, f"{ndim}D image; only 2D and 3D images (with channels) are supported")
    if ndim == 2:
        # 2D ITK images (e.g. a single DICOM radiograph) read as (x, y); store as (rows, columns).
        array = np.swapaxes(array, 0, 1)
        return Volume(
            array,
            np.diag([1.0, 1.0, 1.0, 1.0]),
            path,
            oriented=False,
            metadata={"format": fmt, "channels_last": components > 1},
        )
    metadata: dict[str, Any] = {"format": fmt}
    if components > 1:
        metadata["components"] = components
    return Volume(array, _itk_affine(image), path, oriented=True, metadata=metadata)


def _read_itk(path: Path, max_bytes: int) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    _check_size(path, tuple(reader.GetSize()), _itk_pixel_bytes(reader), max_bytes)
    image = reader.Execute()
    return _itk_volume(image, path, suffix_of(path).lstrip("."))


def _check_dicom_file(path: Path) -> None:
    """A named .dcm file must itself be readable DICOM (its folder's series is then read)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CaseError(path, f"unreadable DICOM file ({str(exc).strip().splitlines()[-1]})") from exc


def _read_dicom_series(folder: Path, max_bytes: int) -> Volume:
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise CaseError(folder, "no DICOM series found in this folder")
    if len(series) > 1:
        raise CaseError(
            folder, f"{len(series)} DICOM series in one folder ({', '.join(series)}); give each its own folder"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    first.ReadImageInformation()
    size = tuple(first.GetSize())[:2] + (len(files),)
    _check_size(folder, size, _itk_pixel_bytes(first), max_bytes)
    _check_slice_positions(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    image = reader.Execute()
    return _itk_volume(image, folder, "dicom")


def read_raster(
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    keep_palette: bool = False,
    source: dict[str, object] | None = None,
) -> NDArray[Any]:
    """A 2D raster as ``(rows, columns)`` or ``(rows, columns, 3)``.

    Grayscale stays one channel (8 or 16 bit); RGBA and LA drop alpha; palette images
    become RGB unless ``keep_palette`` (indexed label masks keep their indices). The EXIF
    orientation tag is not applied: pixels are shown as stored. ``source``, when given,
    receives the file's ``format`` (PIL's name), ``mode`` and ``exif_orientation``.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            handle = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise CaseError(path, f"image too large to decode safely: {exc}") from exc
    with handle as image:
        bands = len(image.getbands())
        itemsize = 2 if image.mode.startswith("I;16") else (4 if image.mode in ("I", "F") else 1)
        _check_size(path, (image.height, image.width, bands), itemsize, max_bytes)
        frames = int(getattr(image, "n_frames", 1))
        if frames > 1:
            raise CaseError(path, f"{frames} frames in one raster; 3D stacks must be NIfTI, NRRD, MHA or DICOM")
        image.load()
        if source is not None:
            source.update(format=image.format, mode=image.mode, exif_orientation=int(image.getexif().get(0x0112, 1)))
        if image.mode == "P" and keep_palette:
            return np.asarray(image)
        decoded: Image.Image = image
        if image.mode in ("RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "PA"):
            decoded = image.convert("RGB")
        elif image.mode in ("LA", "1"):
            decoded = image.convert("L")
        array = np.asarray(decoded)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return array
