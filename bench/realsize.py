"""Seeded real-size cases for the pipeline benchmark, written as files the pipeline reads.

ct        the shared abdominal CT (41 structures) resampled to a 512×512×300 grid over the
          same field of view (linear for HU, nearest for labels), plus ``lesions`` hypodense
          liver lesions (label ``liver_lesion``, one object each); without ../shared/data,
          the CT phantom at the same size stands in.
photos    dermoscopy photographs at camera size: the shared PH2 images (765×572) enlarged 4×
          to 3060×2288 (bicubic; masks nearest), or phantom photographs without the data.
nuclei    a 1024×1024 microscopy-like image with ``count`` separate round nuclei (instances),
          for the cost of many objects in one view.

Every generator writes the dataset folder and a spec (``spec.toml``) and returns the spec's
path; files are cached by their parameters under bench/.cache/realsize.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medground import phantoms

SHARED = Path(os.environ.get("MEDGROUND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CACHE = Path(__file__).resolve().parent / ".cache" / "realsize"
LESION = "liver_lesion"


def _zoom(volume: NDArray, shape: tuple[int, ...], order: int) -> NDArray:
    from scipy import ndimage

    factors = [n / m for n, m in zip(shape, volume.shape, strict=True)]
    out = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


def _source_ct(shape: tuple[int, int, int]) -> tuple[NDArray, NDArray, NDArray, dict[int, str]]:
    """HU volume, label map, affine and label names on ``shape``."""
    import nibabel as nib

    root = SHARED / "ct_abdomen_totalseg"
    if (root / "ct.nii.gz").exists():
        image = nib.load(root / "ct.nii.gz")
        seg = nib.load(root / "seg.nii.gz")
        ct = np.asarray(image.dataobj, dtype=np.float32)
        labels = np.asarray(seg.dataobj, dtype=np.uint8)
        names = {int(k): v for k, v in json.loads((root / "labels.json").read_text()).items()}
        affine = image.affine.copy()
        scale = np.array(ct.shape, dtype=np.float64) / np.array(shape, dtype=np.float64)
        # Same field of view on the finer grid: new voxel i sits at old index (i + 0.5)·scale − 0.5.
        affine[:3, 3] = affine[:3, :3] @ (0.5 * scale - 0.5) + affine[:3, 3]
        affine[:3, :3] = affine[:3, :3] * scale
        return _zoom(ct, shape, 1), _zoom(labels, shape, 0), affine, names
    ct, labels = phantoms.phantom_ct(0, shape)
    return ct.astype(np.float32), labels, np.diag([0.8, 0.8, 1.5, 1.0]), dict(phantoms._CT_LABELS)


def _add_lesions(ct: NDArray, labels: NDArray, liver_id: int, lesion_id: int, count: int, spacing, seed: int) -> int:
    """Paints ``count`` separate spheres (radius 3–8 mm) inside the liver; returns how many fit."""
    rng = np.random.default_rng(seed)
    liver = np.argwhere(labels == liver_id)
    spacing = np.asarray(spacing, dtype=np.float64)
    placed = 0
    for _ in range(count * 20):
        if placed == count:
            break
        centre = liver[rng.integers(len(liver))]
        radius = rng.uniform(3.0, 8.0)
        half = np.ceil((radius + 2.0) / spacing).astype(int)
        lo = np.maximum(centre - half, 0)
        hi = np.minimum(centre + half + 1, labels.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij"), -1)
        dist = np.sqrt((((grid - centre) * spacing) ** 2).sum(-1))
        sub = labels[box]
        if np.any(sub[dist <= radius + 2.0] == lesion_id):  # keep lesions apart: one object each
            continue
        inside = (dist <= radius) & (sub == liver_id)
        if inside.sum() < 20:
            continue
        sub[inside] = lesion_id
        ct[box][inside] -= rng.uniform(35.0, 60.0)
        placed += 1
    return placed


def ct(shape: tuple[int, int, int] = (512, 512, 300), lesions: int = 50, seed: int = 0) -> Path:
    """A real-size abdominal CT case; returns its spec."""
    import nibabel as nib

    folder = CACHE / f"ct_{'x'.join(map(str, shape))}_l{lesions}_s{seed}"
    spec = folder / "spec.toml"
    if spec.exists():
        return spec
    (folder / "case0").mkdir(parents=True, exist_ok=True)
    hu, labels, affine, names = _source_ct(shape)
    liver_id = next(k for k, v in names.items() if v == "liver")
    if lesions:
        lesion_id = max(names) + 1
        names[lesion_id] = LESION
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
        _add_lesions(hu, labels, liver_id, lesion_id, lesions, spacing, seed)
    for array, name in ((np.rint(hu).astype(np.int16), "ct"), (labels.astype(np.uint8), "seg")):
        image = nib.Nifti1Image(array, affine)  # stored as int16 HU and uint8 labels, as scanners and tools write
        image.header.set_xyzt_units("mm")
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, folder / "case0" / f"{name}.nii.gz")
    (folder / "labels.json").write_text(json.dumps({str(k): v for k, v in sorted(names.items())}, indent=1))
    spec.write_text(
        f'name = "realsize_ct"\nmodality = "CT"\nbody_region = "abdomen"\nroot = "{folder}"\n'
        'labels_file = "labels.json"\n[cases]\nimage = "{case}/ct.nii.gz"\nmask = "{case}/seg.nii.gz"\n'
        '[render]\naxes = ["axial", "coronal"]\nslices = "spread:2"\n'
    )
    return spec


def _raster_folder(name: str) -> tuple[Path, Path]:
    """A cached 2D dataset's folder (with images/ and masks/) and its spec's path."""
    folder = CACHE / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    return folder, folder / "spec.toml"


def photos(count: int = 3, scale: int = 4) -> Path:
    """Dermoscopy photographs at camera size; returns their spec."""
    from PIL import Image

    folder, spec = _raster_folder(f"photos_{count}_x{scale}")
    if spec.exists():
        return spec
    source = sorted((SHARED / "dermoscopy_ph2" / "images").glob("*.png"))[:count]
    for index in range(count):
        if index < len(source):
            photo = Image.open(source[index]).convert("RGB")
            mask = Image.open(SHARED / "dermoscopy_ph2" / "masks" / source[index].name).convert("L")
        else:
            array, mask_array = phantoms.phantom_photo(index, (572, 765))
            photo, mask = Image.fromarray(array), Image.fromarray(mask_array)
        size = (photo.width * scale, photo.height * scale)
        photo.resize(size, Image.Resampling.BICUBIC).save(folder / "images" / f"case{index}.png")
        mask.resize(size, Image.Resampling.NEAREST).save(folder / "masks" / f"case{index}.png")
    spec.write_text(
        f'name = "realsize_photos"\nmodality = "dermoscopy"\nroot = "{folder}"\n[cases]\n'
        'image = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n1 = "skin lesion"\n'
    )
    return spec


def nuclei(count: int, side: int = 1024, seed: int = 0) -> Path:
    """One microscopy-like image with ``count`` separate nuclei (label ``nucleus``); returns its spec."""
    from PIL import Image

    folder, spec = _raster_folder(f"nuclei_{count}_{side}_s{seed}")
    if spec.exists():
        return spec
    rng = np.random.default_rng(seed)
    mask = np.zeros((side, side), np.uint8)
    cells = int(np.ceil(np.sqrt(count)))
    pitch = side / cells
    radius = max(2.0, pitch * 0.3)
    yy, xx = np.mgrid[0:side, 0:side]
    order = rng.permutation(cells * cells)[:count]
    for cell in order:
        cy = (cell // cells + 0.5) * pitch + rng.uniform(-0.1, 0.1) * pitch
        cx = (cell % cells + 0.5) * pitch + rng.uniform(-0.1, 0.1) * pitch
        r = radius * rng.uniform(0.7, 1.0)
        lo_y, hi_y = int(max(cy - r - 1, 0)), int(min(cy + r + 2, side))
        lo_x, hi_x = int(max(cx - r - 1, 0)), int(min(cx + r + 2, side))
        disk = (yy[lo_y:hi_y, lo_x:hi_x] - cy) ** 2 + (xx[lo_y:hi_y, lo_x:hi_x] - cx) ** 2 <= r * r
        mask[lo_y:hi_y, lo_x:hi_x][disk] = 255
    tissue = np.stack([np.full((side, side), 232.0), np.full((side, side), 200.0), np.full((side, side), 222.0)], -1)
    tissue[mask > 0] = (90.0, 60.0, 140.0)
    tissue += rng.normal(0, 6, tissue.shape)
    Image.fromarray(np.clip(tissue, 0, 255).astype(np.uint8)).save(folder / "images" / "case0.png")
    Image.fromarray(mask).save(folder / "masks" / "case0.png")
    spec.write_text(
        f'name = "nuclei_{count}"\nmodality = "microscopy"\nroot = "{folder}"\n[cases]\n'
        'image = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n1 = "nucleus"\n'
    )
    return spec
