"""medground.io readers checked against nibabel, SimpleITK and Pillow as oracles (RAS+
world, arrays in the file's index order): 3D formats, DICOM series, 2D rasters, size
caps and broken files."""

from __future__ import annotations

import gzip
import locale
import tracemalloc
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image, ImageFile
from scipy.spatial.transform import Rotation

from medground.io.errors import CaseError
from medground.io.readers import read_header, read_image, read_raster, suffix_of
from orientations import ORIENTATIONS, RNG_SEED, SPACING
from orientations import oriented_affine as _affine

MiB = 1 << 20


def _volume(shape=(5, 6, 7)) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).integers(-1024, 3000, shape).astype(np.int16)


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.to_filename(str(path))
    return nib.load(str(path))


def _sitk_write(image: sitk.Image, path: Path) -> None:
    """Writes without the NIfTI header fields ITK cannot store in other formats (no stderr noise)."""
    image = sitk.Image(image)
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    sitk.WriteImage(image, str(path))


def _write_dicom_series(
    folder: Path,
    array_xyz: np.ndarray,
    spacing,
    origin_lps,
    direction_lps: np.ndarray,
    series_uid: str,
    prefix: str = "slice",
) -> None:
    """One CT file per slice, SimpleITK's DicomSeriesFromArray pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin_lps])
    image.SetDirection([float(d) for d in direction_lps.ravel()])
    d = direction_lps.ravel()
    tags = [
        ("0008|0060", "CT"),
        ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
        ("0010|0020", "TEST"),
        ("0020|000d", series_uid + ".0"),
        ("0020|000e", series_uid),
        ("0020|0037", "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
        ("0018|0050", f"{spacing[2]}"),
        ("0028|0030", f"{spacing[1]}\\{spacing[0]}"),
    ]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    # GDCM's writer leaves the process in the C locale (text files then read as ASCII in the
    # tests that follow); the locale is put back.
    saved = locale.setlocale(locale.LC_ALL)
    try:
        for k in range(image.GetDepth()):
            slice_ = image[:, :, k]
            for key, value in tags:
                slice_.SetMetaData(key, value)
            position = image.TransformIndexToPhysicalPoint((0, 0, k))
            slice_.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
            slice_.SetMetaData("0020|0013", str(k + 1))
            slice_.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
            writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
            writer.Execute(slice_)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_raw_nifti(path: Path, shape, zero_bytes: int) -> None:
    """A NIfTI header claiming ``shape`` (int16) followed by ``zero_bytes`` of zeros, streamed."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_data_offset(352)
    header.set_sform(np.eye(4), code=1)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header.binaryblock + b"\0" * 4)
        chunk = b"\0" * (8 * MiB)
        while zero_bytes > 0:
            handle.write(chunk[: min(zero_bytes, len(chunk))])
            zero_bytes -= len(chunk)


def _case_error(call, path: Path, *fragments: str) -> None:
    """``call()`` raises a CaseError whose str names ``path`` and whose problem (not the path) says each fragment."""
    with pytest.raises(CaseError) as info:
        call()
    assert str(path) in str(info.value)
    for fragment in fragments:
        assert fragment in info.value.problem


def _peak_traced_bytes(call, path: Path, *fragments: str) -> int:
    """Peak Python/numpy allocation while ``call()`` fails as :func:`_case_error` expects."""
    tracemalloc.start()
    try:
        _case_error(call, path, *fragments)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _forbid(monkeypatch, owner, name: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"{owner.__name__}.{name} must not run")

    monkeypatch.setattr(owner, name, refuse)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_3d_formats_read_like_nibabel(tmp_path, orientation, suffix):
    reference = _save_nifti(tmp_path / "ref.nii.gz", _volume(), _affine(ORIENTATIONS[orientation]))
    target = tmp_path / f"image{suffix}"
    if suffix.startswith(".nii"):
        nib.save(reference, str(target))
    else:
        _sitk_write(sitk.ReadImage(str(tmp_path / "ref.nii.gz")), target)
    volume = read_image(target)
    expected = np.asanyarray(reference.dataobj)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-4)
    assert volume.axcodes == nib.aff2axcodes(reference.affine)
    np.testing.assert_allclose(volume.spacing, SPACING, atol=1e-4)
    ijk = np.array([[1.0, 2.0, 3.0], [4.0, 0.5, 6.0]])
    np.testing.assert_allclose(volume.world(ijk), nib.affines.apply_affine(reference.affine, ijk), atol=1e-3)
    np.testing.assert_allclose(volume.index(volume.world(ijk)), ijk, atol=1e-9)
    header = read_header(target)
    assert header.shape == expected.shape
    np.testing.assert_allclose(header.affine, reference.affine, atol=1e-4)
    assert header.axcodes == volume.axcodes


def test_nifti_without_sform_or_qform_has_no_orientation(tmp_path):
    image = nib.Nifti1Image(_volume(), np.diag([2.0, 2.0, 2.0, 1.0]))
    image.set_sform(None, code=0)
    image.set_qform(None, code=0)
    image.to_filename(str(tmp_path / "plain.nii"))
    assert read_image(tmp_path / "plain.nii").axcodes is None
    assert read_header(tmp_path / "plain.nii").axcodes is None


def test_2d_metaimage_reads_as_rows_and_columns(tmp_path):
    rows_columns = _volume((4, 6))
    _sitk_write(sitk.GetImageFromArray(rows_columns), tmp_path / "plane.mha")  # numpy (rows, columns)
    volume = read_image(tmp_path / "plane.mha")
    np.testing.assert_array_equal(volume.array, rows_columns)
    assert volume.is_2d and volume.axcodes is None


DICOM_DIRECTION_LPS = Rotation.from_rotvec(np.deg2rad([2.0, -3.0, 4.0])).as_matrix()


DICOM_SPACING = (0.8, 0.6, 2.5)


@pytest.fixture
def dicom_folder(tmp_path) -> tuple[Path, np.ndarray]:
    array = _volume((6, 5, 4))
    _write_dicom_series(
        tmp_path / "series",
        array,
        DICOM_SPACING,
        (10.0, -20.0, 30.0),
        DICOM_DIRECTION_LPS,
        "1.2.826.0.1.3680043.2.1125.7.1",
    )
    return tmp_path / "series", array


def test_dicom_series_matches_simpleitk(tmp_path, dicom_folder):
    folder, array = dicom_folder
    oracle = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    _sitk_write(oracle, tmp_path / "oracle.nii.gz")  # SimpleITK's own LPS -> RAS conversion
    reference = nib.load(str(tmp_path / "oracle.nii.gz"))
    for path in (folder, sorted(folder.iterdir())[1]):
        volume = read_image(path)
        np.testing.assert_array_equal(volume.array, array)
        np.testing.assert_array_equal(volume.array, np.asanyarray(reference.dataobj))
        np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-4)
        assert volume.axcodes == nib.aff2axcodes(reference.affine) == ("L", "P", "S")
        np.testing.assert_allclose(volume.spacing, DICOM_SPACING, atol=1e-4)


def test_dicom_header_reads_no_pixels(monkeypatch, dicom_folder):
    folder, array = dicom_folder
    _forbid(monkeypatch, sitk.ImageFileReader, "Execute")
    _forbid(monkeypatch, sitk.ImageSeriesReader, "Execute")
    header = read_header(folder)
    assert header.shape == array.shape
    assert header.axcodes == ("L", "P", "S")


def test_dicom_header_geometry_matches_volume(dicom_folder):
    folder, _ = dicom_folder
    np.testing.assert_allclose(read_header(folder).spacing, read_image(folder).spacing, atol=1e-4)


def test_dicom_folder_with_two_series(tmp_path, dicom_folder):
    folder, array = dicom_folder
    _write_dicom_series(
        folder, array, DICOM_SPACING, (0.0, 0.0, 0.0), np.eye(3), "1.2.826.0.1.3680043.2.1125.7.2", prefix="other"
    )
    _case_error(lambda: read_image(folder), folder, "2 DICOM series")
    _case_error(lambda: read_header(folder), folder, "found 2")


def test_empty_folder_is_a_case_error(tmp_path):
    (tmp_path / "empty").mkdir()
    _case_error(lambda: read_image(tmp_path / "empty"), tmp_path / "empty", "no DICOM series")


_R = np.random.default_rng(RNG_SEED)


GRAY8 = _R.integers(0, 256, (7, 9), dtype=np.uint8)


GRAY16 = _R.integers(0, 65536, (7, 9), dtype=np.uint16)


RGBA = _R.integers(0, 256, (7, 9, 4), dtype=np.uint8)


INDICES = _R.integers(0, 4, (7, 9), dtype=np.uint8)


PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def _palette_image() -> Image.Image:
    image = Image.frombytes("P", (9, 7), INDICES.tobytes())
    image.putpalette(PALETTE.ravel().tolist())
    return image


RASTERS = {  # file name: (Pillow image to save, expected array; None = Pillow's own decoding)
    "gray8.png": (lambda: Image.fromarray(GRAY8), GRAY8),
    "gray16.png": (lambda: Image.fromarray(GRAY16), GRAY16),
    "rgb.png": (lambda: Image.fromarray(RGBA[..., :3]), RGBA[..., :3]),
    "rgba.png": (lambda: Image.fromarray(RGBA), RGBA[..., :3]),
    "palette.png": (_palette_image, PALETTE[INDICES]),
    "bitonal.png": (lambda: Image.fromarray(GRAY8 > 127), np.where(GRAY8 > 127, 255, 0).astype(np.uint8)),
    "gray_alpha.png": (lambda: Image.fromarray(RGBA[..., :2]), RGBA[..., 0]),
    "rgb.bmp": (lambda: Image.fromarray(RGBA[..., :3]), RGBA[..., :3]),
    "gray16.tif": (lambda: Image.fromarray(GRAY16), GRAY16),
    "rgb.jpg": (lambda: Image.fromarray(RGBA[..., :3]), None),
    "gray8.jpg": (lambda: Image.fromarray(GRAY8), None),
}


@pytest.mark.parametrize("name", list(RASTERS))
def test_raster_shapes_and_values(tmp_path, name):
    make, expected = RASTERS[name]
    make().save(tmp_path / name)
    if expected is None:
        with Image.open(tmp_path / name) as image:
            expected = np.asarray(image)
    volume = read_image(tmp_path / name)
    assert volume.array.dtype == expected.dtype
    np.testing.assert_array_equal(volume.array, expected)
    assert volume.is_2d and volume.shape == (7, 9)
    assert volume.axcodes is None and not volume.oriented


def test_palette_indices_kept_on_request(tmp_path):
    _palette_image().save(tmp_path / "mask.png")
    np.testing.assert_array_equal(read_raster(tmp_path / "mask.png", keep_palette=True), INDICES)


def test_radiograph_axes_and_spacing(tmp_path):
    Image.fromarray(GRAY8).save(tmp_path / "cxr.png")
    volume = read_image(tmp_path / "cxr.png", radiological_2d=True, pixel_spacing=(0.2, 0.3))
    assert volume.axcodes == ("I", "L")
    assert volume.spacing == pytest.approx((0.2, 0.3))
    np.testing.assert_allclose(volume.world([1, 0]), [0.0, 0.0, -0.2])  # next row: toward the feet
    assert read_header(tmp_path / "cxr.png", radiological_2d=True).axcodes == ("I", "L")


def test_multiframe_tiff_is_refused(tmp_path):
    Image.fromarray(GRAY8).save(tmp_path / "stack.tif", save_all=True, append_images=[Image.fromarray(GRAY8)])
    _case_error(lambda: read_image(tmp_path / "stack.tif"), tmp_path / "stack.tif", "2 frames")


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_nifti_claiming_huge_dims_is_refused_before_allocating(tmp_path, name):
    _write_raw_nifti(tmp_path / name, (4096, 4096, 4096), 64)
    assert read_header(tmp_path / name).shape == (4096, 4096, 4096)
    assert _peak_traced_bytes(lambda: read_image(tmp_path / name), tmp_path / name, "max_bytes", "cap") < 50 * MiB


def test_nifti_over_max_bytes_is_not_decoded(tmp_path):
    _write_raw_nifti(tmp_path / "big.nii.gz", (512, 512, 256), 512 * 512 * 256 * 2)  # 128 MiB of voxels
    peak = _peak_traced_bytes(
        lambda: read_image(tmp_path / "big.nii.gz", max_bytes=MiB), tmp_path / "big.nii.gz", "max_bytes"
    )
    assert peak < 50 * MiB


def test_png_over_max_bytes_is_not_decoded(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "big.png")
    _forbid(monkeypatch, ImageFile.ImageFile, "load")
    _case_error(lambda: read_image(tmp_path / "big.png", max_bytes=100_000), tmp_path / "big.png", "max_bytes")


def test_png_claiming_huge_dims_is_refused(tmp_path):
    Image.fromarray(GRAY8).save(tmp_path / "bomb.png")
    data = bytearray((tmp_path / "bomb.png").read_bytes())
    data[16:24] = (40_000).to_bytes(4, "big") * 2  # IHDR width, height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    assert _peak_traced_bytes(lambda: read_image(tmp_path / "bomb.png"), tmp_path / "bomb.png", "too large") < 50 * MiB


def test_metaimage_over_max_bytes_is_not_read(tmp_path, monkeypatch):
    _sitk_write(sitk.GetImageFromArray(np.zeros((64, 64, 64), np.int16)), tmp_path / "m.mha")
    (tmp_path / "huge.raw").write_bytes(b"\0" * 64)
    (tmp_path / "huge.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4096 4096 4096\nElementType = MET_SHORT\nElementDataFile = huge.raw\n"
    )
    _forbid(monkeypatch, sitk.ImageFileReader, "Execute")
    _case_error(lambda: read_image(tmp_path / "m.mha", max_bytes=64 * 64 * 64), tmp_path / "m.mha", "max_bytes")
    _case_error(lambda: read_image(tmp_path / "huge.mhd"), tmp_path / "huge.mhd", "max_bytes")


def test_dicom_series_over_max_bytes_is_not_read(monkeypatch, dicom_folder):
    folder, array = dicom_folder
    _forbid(monkeypatch, sitk.ImageSeriesReader, "Execute")
    _case_error(lambda: read_image(folder, max_bytes=array.nbytes - 1), folder, "max_bytes")


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_truncated_nifti(tmp_path, name):
    nib.Nifti1Image(_volume((20, 20, 20)), np.eye(4)).to_filename(str(tmp_path / name))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    _case_error(lambda: read_image(tmp_path / name), tmp_path / name)


@pytest.mark.parametrize(
    "name",
    [
        "noise.nii.gz",
        "noise.nii",
        "noise.nrrd",
        "noise.mha",
        "noise.png",
        "noise.jpg",
        "noise.tif",
        "noise.dcm",
    ],
)
def test_random_bytes_are_a_case_error_naming_the_file(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(RNG_SEED).bytes(4096))
    _case_error(lambda: read_image(tmp_path / name), tmp_path / name)
    _case_error(lambda: read_header(tmp_path / name), tmp_path / name)


@pytest.mark.parametrize("reader", [read_image, read_header])
def test_missing_file(tmp_path, reader):
    _case_error(lambda: reader(tmp_path / "absent.nii.gz"), tmp_path / "absent.nii.gz", "not found")


def test_unknown_suffix_names_the_supported_types(tmp_path):
    path = tmp_path / "image.xyz"
    path.write_bytes(b"data")
    _case_error(
        lambda: read_image(path),
        path,
        "'.xyz'",
        "NIfTI",
        ".nii.gz",
        "NRRD",
        "MetaImage",
        "DICOM",
        "PNG",
        "JPEG",
        "TIFF",
    )
    _case_error(lambda: read_header(path), path, "unknown file type")


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("ct.NII.GZ", ".nii.gz"),
        ("a.b.nii.gz", ".nii.gz"),
        ("x.Nrrd", ".nrrd"),
        ("x.gz", ".gz"),
        ("folder", ""),
    ],
)
def test_suffix_of(name, suffix):
    assert suffix_of(Path("/data") / name) == suffix


def test_dicom_series_with_a_missing_slice_is_refused(dicom_folder):
    """Averaging the spacing over a gap would misplace every slice after it."""
    folder, _ = dicom_folder
    (folder / "slice002.dcm").unlink()
    with pytest.raises(CaseError, match=r"not evenly spaced: step 5\.000 mm between slice001\.dcm and slice003\.dcm"):
        read_image(folder)


@pytest.mark.parametrize(
    ("affine", "problem"),
    [
        (np.diag([1.0, 1.0, 0.0, 1.0]), "singular affine"),
        (np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float), "singular affine"),
        (np.diag([1.0, np.nan, 1.0, 1.0]), "NaN or infinite"),
        (np.array([[1, 0, 0, np.inf], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float), "NaN or infinite"),
    ],
)
def test_broken_affines_are_the_files_error(tmp_path, affine, problem):
    """A volume whose affine cannot place voxels in the patient is refused by header and by
    reader (nibabel keeps the sform as written), never read with made-up sides."""
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    header.set_data_dtype(np.int16)
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    header["vox_offset"] = 352
    path = tmp_path / "broken.nii"  # written byte by byte: nibabel would not save such an affine
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.zeros((4, 5, 6), np.int16).tobytes(order="F"))
    with pytest.raises(CaseError, match=problem) as caught:
        read_image(path)
    assert str(path) in str(caught.value)
    with pytest.raises(CaseError, match=problem):
        read_header(path)
