"""Gzipped NIfTI read by ISA-L straight into the array equals nibabel's read, voxel for voxel,
for every stored type and orientation; scaled or foreign-byte-order files go through nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medground.io import readers
from medground.io.case import present_labels
from medground.io.errors import CaseError


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5, 3), (4, 6, 5, 2), (9, 1, 4)])
def test_equals_nibabel(tmp_path: Path, dtype: type, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 200 - (0 if np.dtype(dtype).kind == "u" else 100)).astype(dtype)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    fast = readers._fast_gzip_voxels(nib.load(path), path)
    assert fast is not None
    expected = np.asanyarray(nib.load(path).dataobj)
    assert fast.dtype == expected.dtype and fast.shape == expected.shape
    assert np.array_equal(fast, expected)
    volume = readers.read_image(path, max_bytes=1 << 30)
    assert np.array_equal(volume.array, expected)


def test_scaled_and_foreign_files_go_through_nibabel(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    scaled = nib.Nifti1Image(data, np.eye(4))
    scaled.header.set_slope_inter(2.0, -5.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(scaled, path)
    assert readers._fast_gzip_voxels(nib.load(path), path) is None
    assert np.array_equal(readers.read_image(path, max_bytes=1 << 30).array, data * 2.0 - 5.0)
    big_endian = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(">i2"), np.eye(4)), big_endian)
    image = nib.load(big_endian)
    if not np.dtype(image.header.get_data_dtype()).isnative:
        assert readers._fast_gzip_voxels(image, big_endian) is None
    assert np.array_equal(readers.read_image(big_endian, max_bytes=1 << 30).array, data)
    plain = tmp_path / "plain.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), plain)
    assert readers._fast_gzip_voxels(nib.load(plain), plain) is None


def test_truncated_gzip_is_this_files_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((30, 30, 30)).astype(np.float32), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CaseError, match="cut.nii.gz"):
        readers.read_image(path, max_bytes=1 << 30)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_present_labels_equal_numpy_unique(dtype: type, order: str) -> None:
    rng = np.random.default_rng(2)
    top = min(np.iinfo(dtype).max, 70000)
    labels = np.zeros((20, 30, 10), dtype=dtype, order=order)
    ids = rng.choice(np.arange(1, top + 1), size=25, replace=False).astype(dtype)
    labels.ravel(order="K")[rng.choice(labels.size, size=25, replace=False)] = ids
    assert present_labels(labels) == tuple(int(i) for i in np.unique(labels) if i != 0)
    assert present_labels(np.zeros((3, 3), dtype=dtype)) == ()


@pytest.mark.parametrize(("feed", "give"), [(7, 13), (64, 5), (1 << 22, 1 << 24)])
def test_pieces_of_any_size_equal_nibabel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed: int, give: int
) -> None:
    """The file inflated in pieces (a few bytes in, a few out: the header's end and the
    voxels' start fall inside pieces) is nibabel's read, voxel for voxel."""
    monkeypatch.setattr(readers, "_INFLATE_IN", feed)
    monkeypatch.setattr(readers, "_INFLATE_OUT", give)
    data = np.random.default_rng(3).integers(-1000, 1000, (11, 9, 7)).astype(np.int16)
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.7, 2.0, 1.0])), path)
    fast = readers._fast_gzip_voxels(nib.load(path), path)
    assert fast is not None and fast.flags.f_contiguous
    assert np.array_equal(fast, data)


def test_a_file_of_several_gzip_members(tmp_path: Path) -> None:
    """gzip files may be several members one after another (as ``cat a.gz b.gz`` makes):
    every member is read, as nibabel reads them."""
    import gzip

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    plain = tmp_path / "image.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), plain)
    raw = plain.read_bytes()
    path = tmp_path / "members.nii.gz"
    path.write_bytes(b"".join(gzip.compress(raw[i : i + 100]) for i in range(0, len(raw), 100)))
    fast = readers._fast_gzip_voxels(nib.load(path), path)
    assert fast is not None and np.array_equal(fast, np.asanyarray(nib.load(path).dataobj))
    assert np.array_equal(fast, data)


def test_corrupt_gzip_is_this_files_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((30, 30, 30)).astype(np.float32), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # zeros in the middle of the stream
    path.write_bytes(bytes(raw))
    with pytest.raises(CaseError, match="bad.nii.gz"):
        readers.read_image(path, max_bytes=1 << 30)
