"""How views are stored (``[render] image_format``, ``max_side``): JPEG sources stay JPEG
(the source's own bytes when the view is the image unchanged), radiology stays lossless
PNG, large images are capped, and every sample names the file that was written."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medground.io import find_cases, load_preset, load_spec
from medground.io.errors import SpecError
from medground.pipeline.worker import process_case


def _run(spec) -> dict[str, bytes]:
    """Every stored image of every case of ``spec``, checked against its samples."""
    images: dict[str, bytes] = {}
    for files in find_cases(spec).cases:
        result = process_case(spec, files)
        assert result.error is None, result.error
        for sample in result.accepted:
            assert sample["image"] in result.images
            with Image.open(io.BytesIO(result.images[sample["image"]])) as stored:
                assert stored.size == (sample["width"], sample["height"])
        images.update(result.images)
    return images


def test_kvasir_jpegs_are_kept_as_they_are(shared_data: Path) -> None:
    """Endoscopy photographs: the stored file is the source JPEG byte for byte (no second
    lossy generation, no 9x growth as PNG); the one above max_side is capped and encoded
    as JPEG; all of it is about the size of the sources."""
    root = shared_data / "endoscopy_kvasir"
    spec = load_preset("kvasir_seg", root)
    images = _run(spec)
    assert images and all(path.endswith(".jpg") for path in images)
    copied = stored_total = source_total = 0
    for path, data in images.items():
        source = root / "images" / Path(path).name
        stored_total += len(data)
        source_total += source.stat().st_size
        with Image.open(source) as original, Image.open(io.BytesIO(data)) as stored:
            assert stored.format == "JPEG"
            if max(original.size) <= spec.render.max_side:
                assert data == source.read_bytes()
                copied += 1
            else:
                assert max(stored.size) == spec.render.max_side
                assert stored.size[0] / stored.size[1] == pytest.approx(original.size[0] / original.size[1], rel=0.01)
    assert copied >= 1 and stored_total <= 1.2 * source_total


def test_png_on_request_is_the_view_losslessly(shared_data: Path) -> None:
    spec = load_preset("kvasir_seg", shared_data / "endoscopy_kvasir")
    spec = replace(spec, render=replace(spec.render, image_format="png", max_side=4096))
    for path, data in _run(spec).items():
        assert path.endswith(".png")
        source = shared_data / "endoscopy_kvasir" / "images" / (Path(path).stem + ".jpg")
        with Image.open(source) as original:
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(original.convert("RGB")))


def test_radiology_volumes_stay_png(demo_data: Path) -> None:
    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    files = find_cases(spec).cases[0]
    result = process_case(spec, files)
    assert result.images and all(p.endswith(".png") for p in result.images)
    assert all(data.startswith(b"\x89PNG") for data in result.images.values())


def _photo_dataset(folder: Path, *, exif_orientation: int | None = None, fmt: str = "JPEG") -> Path:
    """One 200x160 RGB photograph with a round lesion mask."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    yy, xx = np.mgrid[0:160, 0:200]
    lesion = (yy - 80) ** 2 + (xx - 110) ** 2 < 35**2
    photo = np.stack([120 + 80 * lesion, 90 + 20 * lesion, 70 + 10 * lesion], axis=-1).astype(np.uint8)
    photo = np.clip(photo.astype(np.int16) + np.random.default_rng(0).integers(-6, 7, photo.shape), 0, 255)
    image = Image.fromarray(photo.astype(np.uint8))
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    options = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif
    image.save(folder / "images" / f"a{suffix}", format=fmt, quality=92, **options)
    Image.fromarray((lesion * 255).astype(np.uint8)).save(folder / "masks" / "a.png")
    spec = folder / "spec.toml"
    spec.write_text(
        f'name = "photos"\nmodality = "dermoscopy"\ndisplay = "image"\nroot = "{folder}"\n'
        f'[cases]\nimage = "images/{{case}}{suffix}"\nmask = "masks/{{case}}.png"\nmask_mode = "binary"\n'
        '[labels]\n1 = "melanocytic lesion"\n'
    )
    return spec


def test_a_rotated_jpeg_is_encoded_not_copied(tmp_path: Path) -> None:
    """A reader that applies the EXIF rotation would see another image than the one the
    boxes were measured on: such a source is re-encoded (without the tag), not copied."""
    spec = load_spec(_photo_dataset(tmp_path, exif_orientation=6))
    [data] = _run(spec).values()
    source = (tmp_path / "images" / "a.jpg").read_bytes()
    assert data != source
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.format == "JPEG" and stored.size == (200, 160)
        assert int(stored.getexif().get(0x0112, 1)) == 1


def test_jpeg_on_request_for_a_png_source(tmp_path: Path) -> None:
    spec = load_spec(_photo_dataset(tmp_path, fmt="PNG"))
    [png_path] = _run(spec)
    assert png_path.endswith(".png")
    spec = replace(spec, render=replace(spec.render, image_format="jpeg", jpeg_quality=90))
    [(path, data)] = _run(spec).items()
    assert path.endswith(".jpg")
    with Image.open(tmp_path / "images" / "a.png") as original:
        expected = io.BytesIO()
        original.save(expected, format="JPEG", quality=90, subsampling=0)
    assert data == expected.getvalue()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('image_format = "webp"', "image_format must be one of auto, png, jpeg"),
        ("jpeg_quality = 0", "jpeg_quality"),
        ("jpeg_quality = 101", "jpeg_quality"),
    ],
)
def test_image_format_settings_are_checked(tmp_path: Path, line: str, message: str) -> None:
    path = _photo_dataset(tmp_path)
    path.write_text(path.read_text() + f"[render]\n{line}\n")
    with pytest.raises(SpecError, match=message):
        load_spec(path)
