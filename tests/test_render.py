"""Rendering: radiological display whatever the storage orientation, exact voxel<->pixel maps,
intensity mappings and PNG output."""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from medground.geometry import regionprops, slice_bboxes
from medground.io import load_label_file, read_image
from medground.io.volume import Volume, axcodes_of
from medground.render import (
    CT_WINDOWS,
    Intensity,
    image_map,
    intensity_for,
    plane_axis,
    png_bytes,
    render_image,
    render_slice,
    to_uint8,
    write_png,
)

SHAPE = (23, 19, 11)


SPACING = (0.7, 1.1, 2.5)  # no pixel centre falls on a voxel edge when resampled


AFFINE = np.diag([*SPACING, 1.0])


AFFINE[:3, 3] = (-7.0, 12.5, 30.0)


WINDOW = Intensity("window", ((-200.0, 300.0),))


PLANES = ("axial", "coronal", "sagittal")


BASE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # the base volume is RAS


POS, NEG = ("R", "A", "S"), ("L", "P", "I")


ORIENTATIONS = [
    tuple((NEG if f else POS)[w] for w, f in zip(perm, flips, strict=True))
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((0, 1), repeat=3)
]


SOME_ORIENTATIONS = [("R", "A", "S"), ("L", "P", "S"), ("P", "I", "R"), ("S", "L", "A"), ("I", "R", "P")]


@functools.cache
def base() -> tuple[np.ndarray, np.ndarray]:
    """Random intensities and four asymmetric labelled blobs on a RAS grid."""
    rng = np.random.default_rng(7)
    image = rng.uniform(-250.0, 350.0, SHAPE).astype(np.float32)
    i, j, k = np.indices(SHAPE)
    labels = np.zeros(SHAPE, np.uint8)
    labels[(i - 5) ** 2 / 9 + (j - 6) ** 2 / 16 + (k - 3) ** 2 / 4 <= 1] = 1
    labels[15:21, 3:8, 2:9] = 2
    labels[17:21, 3:5, 2:4] = 0
    labels[(i >= 9) & (i <= 16) & (j >= 11) & (j - 11 <= i - 9) & (k >= 5)] = 3
    labels[2:4, 14:18, 7:10] = 4
    return image, labels


def reorient(array: np.ndarray, codes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The base array re-stored with axes ``codes``, and the affine depicting the same object."""
    transform = nio.ornt_transform(nio.axcodes2ornt(POS), nio.axcodes2ornt(codes))
    return nio.apply_orientation(array, transform), AFFINE @ nio.inv_ornt_aff(transform, array.shape)


def expected_view(array: np.ndarray, plane: str, s: int, square: bool) -> np.ndarray:
    """Independent radiological view of a slice of the RAS base: every in-plane axis is shown
    reversed (P, L, I grow down/right); pixels counted from the displayed top-left edge."""
    axis = BASE_AXIS[plane]
    rem = [a for a in range(3) if a != axis]
    view = np.take(array, s, axis=axis)[::-1, ::-1].T  # rows: rem[1], columns: rem[0]
    if square:
        fine = min(SPACING[a] for a in rem)
        for dim, a in enumerate((rem[1], rem[0])):
            n_out = round(SHAPE[a] * SPACING[a] / fine)
            view = np.take(view, np.floor((np.arange(n_out) + 0.5) * fine / SPACING[a]).astype(int), axis=dim)
    return view


def new_slice(affine: np.ndarray, codes: tuple[str, ...], plane: str, s: int) -> tuple[int, int]:
    """(axis, index) of the re-stored volume's slice through the base slice ``s`` of ``plane``."""
    axis = next(a for a, c in enumerate(codes) if c in (POS[BASE_AXIS[plane]], NEG[BASE_AXIS[plane]]))
    index = np.zeros(3)
    index[BASE_AXIS[plane]] = s
    new_index = np.linalg.solve(affine, AFFINE @ np.append(index, 1.0))[:3]
    return axis, int(round(new_index[axis]))


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def oriented_case(codes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, labels = base()
    new_image, affine = reorient(image, codes)
    return new_image, reorient(labels, codes)[0], affine


@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("codes", ORIENTATIONS, ids="".join)
def test_same_view_in_all_48_orientations(codes, square):
    image, labels = base()
    new_image, new_labels, affine = oriented_case(codes)
    assert axcodes_of(affine) == nib.aff2axcodes(affine) == codes
    # The re-stored arrays depict the same object (checks the fixture itself).
    idx = np.indices(new_image.shape).reshape(3, -1)
    old = np.rint(np.linalg.solve(AFFINE[:3, :3], affine[:3, :3] @ idx + (affine - AFFINE)[:3, 3:])).astype(int)
    assert np.array_equal(image[tuple(old)], new_image[tuple(idx)])
    base_volume = Volume(image, AFFINE, Path("x"))
    volume = Volume(new_image, affine, Path("x"))
    for plane in PLANES:
        for s in (0, SHAPE[BASE_AXIS[plane]] // 2, SHAPE[BASE_AXIS[plane]] - 2):
            ref = render_slice(base_volume, plane, s, WINDOW, square_pixels=square)
            assert np.array_equal(ref.image, to_uint8(expected_view(image, plane, s, square), WINDOW))
            assert np.array_equal(ref.labels(labels), expected_view(labels, plane, s, square))
            axis, index = new_slice(affine, codes, plane, s)
            assert plane_axis(codes, plane) == axis
            got = render_slice(volume, plane, index, WINDOW, square_pixels=square)
            assert got.image.dtype == np.uint8
            assert np.array_equal(got.image, ref.image)
            assert np.array_equal(got.labels(new_labels), ref.labels(labels))


@pytest.mark.parametrize("codes", ORIENTATIONS, ids="".join)
def test_boxes_are_exact_in_all_48_orientations(codes):
    new_image, new_labels, affine = oriented_case(codes)
    volume = Volume(new_image, affine, Path("x"))
    for plane, square in itertools.product(PLANES, (True, False)):
        axis = plane_axis(codes, plane)
        for s in range(new_labels.shape[axis]):
            rendered = render_slice(volume, plane, s, WINDOW, square_pixels=square)
            shown = rendered.labels(new_labels)
            table = slice_bboxes(new_labels, axis, s)
            assert sorted(np.unique(shown[shown > 0]).tolist()) == sorted(table.label.tolist())
            part = np.zeros_like(new_labels)
            keep = tuple(slice(s, s + 1) if a == axis else slice(None) for a in range(3))
            part[keep] = new_labels[keep]
            full = regionprops(part, contours=False)
            for row, label in enumerate(table.label):
                bmin = np.insert(table.bbox_min[row], axis, s)
                bmax = np.insert(table.bbox_max[row], axis, s + 1)
                expected = box_of(shown == label)
                assert rendered.map.pixel_box(bmin, bmax) == expected
                k = int(np.flatnonzero(full.label == label)[0])
                assert rendered.map.pixel_box(full.bbox_min[k], full.bbox_max[k]) == expected


@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("codes", SOME_ORIENTATIONS, ids="".join)
def test_index_of_pixel_and_pixel_of_index(codes, square):
    image, labels = base()
    new_image, new_labels, affine = oriented_case(codes)
    volume = Volume(new_image, affine, Path("x"))
    for plane in PLANES:
        s = SHAPE[BASE_AXIS[plane]] // 2
        ref = render_slice(Volume(image, AFFINE, Path("x")), plane, s, WINDOW, square_pixels=square).map
        m = render_slice(volume, plane, new_slice(affine, codes, plane, s)[1], WINDOW, square_pixels=square).map
        shown_labels, shown_values = m.render(new_labels), m.render(new_image)
        voxels = np.empty((m.height, m.width, 3), int)
        for y, x in np.ndindex(m.height, m.width):
            v = voxels[y, x] = m.index_of_pixel(x + 0.5, y + 0.5)
            assert new_labels[tuple(v)] == shown_labels[y, x] and new_image[tuple(v)] == shown_values[y, x]
            # Same physical voxel as the base volume shows at that pixel.
            assert np.allclose(volume.world(v), AFFINE[:3, :3] @ ref.index_of_pixel(x + 0.5, y + 0.5) + AFFINE[:3, 3])
        rects = {}
        for v in np.unique(voxels.reshape(-1, 3), axis=0):
            ys, xs = np.nonzero((voxels == v).all(axis=-1))
            assert ys.size == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a rectangle
            rects[tuple(v)] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            x, y = m.pixel_of_index(v)
            assert (x, y) == ((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2)
            assert m.index_of_pixel(x, y) == tuple(v)
        # Half a voxel toward a neighbour lands on the edge shared with the neighbour's pixels.
        for v, rect in rects.items():
            for dim, axis in enumerate((m.col_axis, m.row_axis)):
                for step in (-1, 1):
                    neighbour = tuple(c + step * (a == axis) for a, c in enumerate(v))
                    if neighbour in rects:
                        edge = rect[dim + 2] if rects[neighbour][dim] >= rect[dim + 2] else rect[dim]
                        half = [c + 0.5 * step * (a == axis) for a, c in enumerate(v)]
                        assert m.pixel_of_index(half)[dim] == edge
        for x, y in [(-0.01, 0), (0, -0.01), (m.width, 0), (0, m.height), (m.width + 3.5, m.height + 2)]:
            with pytest.raises(ValueError):
                m.index_of_pixel(x, y)


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "P", "S"), ("P", "I", "R"), ("S", "R", "P")], ids="".join)
def test_radiological_display(codes):
    shape, spacing = (15, 12, 9), (1.2, 0.9, 2.0)
    affine = np.zeros((4, 4))
    affine[:, 3] = (10.0, -20.0, 5.0, 1.0)
    for a, code in enumerate(codes):
        world = next(w for w in range(3) if code in (POS[w], NEG[w]))
        affine[world, a] = spacing[a] * (1 if code in POS else -1)
    labels = np.zeros(shape, np.uint8)
    centre = (7, 6, 4)
    volume = Volume(np.zeros(shape, np.float32), affine, Path("x"))
    points = volume.world(np.indices(shape).reshape(3, -1).T) - volume.world(centre)
    for label, direction in ((1, (-1, 0, 0)), (2, (0, 1, 0)), (3, (0, 0, 1))):  # left, anterior, superior
        along = points @ direction
        off = np.linalg.norm(points - np.outer(along, direction), axis=1)
        pick = np.unravel_index(int(np.argmax(along - 1000.0 * off)), shape)
        assert along.max() > 0 and pick != centre
        labels[pick] = label
    labels[centre] = 4
    expect = {"axial": {1: "right", 2: "top"}, "coronal": {1: "right", 3: "top"}, "sagittal": {2: "left", 3: "top"}}
    for plane, markers in expect.items():
        shown = render_slice(volume, plane, centre[plane_axis(codes, plane)], WINDOW).labels(labels)
        rows_c, cols_c = np.nonzero(shown == 4)
        for label, where in markers.items():
            rows, cols = np.nonzero(shown == label)
            assert rows.size, (plane, label)
            if where == "right":
                assert cols.max() == shown.shape[1] - 1 and cols.mean() > cols_c.mean()
            elif where == "left":
                assert cols.min() == 0 and cols.mean() < cols_c.mean()
            else:
                assert rows.min() == 0 and rows.mean() < rows_c.mean()


@pytest.mark.parametrize(
    ("folder", "image", "modality"), [("ct_abdomen_totalseg", "ct", "CT"), ("mr_abdomen_totalseg", "mr", "MR")]
)
def test_real_data_radiological(shared_data, folder, image, modality):
    volume = read_image(shared_data / folder / f"{image}.nii.gz")
    seg = read_image(shared_data / folder / "seg.nii.gz")
    names = load_label_file(shared_data / folder / "labels.json")
    assert np.allclose(volume.affine, seg.affine) and volume.shape == seg.shape
    intensity = intensity_for(volume, modality)
    checks = {"pairs": 0, "liver/spleen": 0, "vertebrae/aorta": 0}
    for k in range(volume.shape[plane_axis(volume.axcodes, "axial")]):
        shown = render_slice(volume, "axial", k, intensity).labels(seg.array)
        where = {names[int(v)]: np.nonzero(shown == v) for v in np.unique(shown) if v}
        col = {n: rc[1].mean() for n, rc in where.items()}
        for name in col:
            twin = name.replace("_left", "_right")
            if twin != name and twin in col:
                assert col[name] > col[twin], (k, name)
                checks["pairs"] += 1
        if "liver" in col and "spleen" in col:
            assert col["liver"] < col["spleen"], k
            checks["liver/spleen"] += 1
        spine = [rc[0] for n, rc in where.items() if n.startswith("vertebrae")]
        if spine and "aorta" in where:
            assert np.concatenate(spine).mean() > where["aorta"][0].mean(), k
            checks["vertebrae/aorta"] += 1
    assert min(checks.values()) > 0, checks


@pytest.mark.parametrize("name", sorted(CT_WINDOWS))
def test_ct_windows(name):
    level, width = CT_WINDOWS[name]
    intensity = intensity_for(Volume(np.zeros((4, 4, 4), np.int16), AFFINE, Path("x")), "CT", name)
    assert intensity.kind == "window" and intensity.ranges == ((level - width / 2, level + width / 2),)
    values = np.array([level - width, level - width / 2, level, level + width / 2, level + 2 * width])
    assert to_uint8(values, intensity).tolist() == [0, 0, 128, 255, 255]
    ramp = to_uint8(np.linspace(level - width, level + width, 101), intensity)
    assert ramp.dtype == np.uint8 and np.all(np.diff(ramp.astype(int)) >= 0)


def test_intensity_defaults_and_rgb():
    ct = Volume(np.random.default_rng(1).integers(-1000, 1500, (6, 5, 4)).astype(np.int16), AFFINE, Path("x"))
    assert intensity_for(ct, "CT") == Intensity("window", ((-160.0, 240.0),), "soft_tissue")
    custom = intensity_for(ct, "CT", (100.0, 50.0))
    assert custom.kind == "window" and custom.ranges == ((75.0, 125.0),)
    rgb = intensity_for(ct, "CT", ("lung", "soft_tissue", "bone"))
    assert rgb.kind == "window" and len(rgb.ranges) == 3
    image = render_slice(ct, "axial", 2, rgb, square_pixels=False).image
    assert image.shape == (5, 6, 3) and image.dtype == np.uint8
    gray = render_slice(ct, "axial", 2, intensity_for(ct, "CT", "bone"), square_pixels=False).image
    assert np.array_equal(image[..., 2], gray)
    # MR: a percentile range of the body (above Otsu's threshold), inside the data range.
    rng = np.random.default_rng(2)
    mr = rng.uniform(0.0, 10.0, (30, 30, 20))
    body = np.zeros(mr.shape, bool)
    body[5:25, 8:22, 3:17] = True
    mr[body] = rng.normal(600.0, 60.0, body.sum())
    intensity = intensity_for(Volume(mr, AFFINE, Path("x")), "MR")
    assert intensity.kind == "percentile"
    low, high = intensity.ranges[0]
    assert mr.min() <= low < high <= mr.max()
    assert np.allclose((low, high), np.percentile(mr[body], (0.5, 99.5)))
    flat = np.random.default_rng(3).integers(0, 256, (7, 9), dtype=np.uint8)
    assert intensity_for(Volume(flat, np.eye(4), Path("x"), oriented=False), "XR").kind == "as_is"
    colour = Volume(
        np.stack([flat, flat[::-1], flat[:, ::-1]], -1),
        np.eye(4),
        Path("x"),
        oriented=False,
        metadata={"channels_last": True},
    )
    assert intensity_for(colour, "endoscopy").kind == "as_is"
    assert np.array_equal(render_image(colour, intensity_for(colour, "endoscopy")).image, colour.array)


def test_image_map_is_identity_and_png_round_trip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    m = image_map(gray.shape)
    assert np.array_equal(m.render(gray), gray) and (m.width, m.height) == (9, 7)
    assert m.pixel_box((2, 3), (5, 8)) == (3, 2, 8, 5)
    assert m.index_of_pixel(8.9, 6.2) == (6, 8)
    stretched = image_map(gray.shape, (2.0, 1.0), square_pixels=True)
    assert np.array_equal(stretched.render(gray), np.repeat(gray, 2, axis=0))
    volume = Volume(gray, np.eye(4), Path("x"), oriented=False)
    assert np.array_equal(render_image(volume, intensity_for(volume, "XR")).image, gray)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    for image, mode in ((gray, "L"), (rgb, "RGB")):
        write_png(tmp_path / f"{mode}.png", image)
        with Image.open(tmp_path / f"{mode}.png") as png:
            assert png.format == "PNG" and png.mode == mode
            assert np.array_equal(np.asarray(png), image)
    with pytest.raises(ValueError):
        write_png(tmp_path / "bad.png", gray.astype(np.uint16))


def test_png_bytes_lossless_in_any_memory_order_and_deterministic():
    """The core's PNG encoder: Pillow (libpng's format rules, CRCs checked) decodes exactly
    the pixels, for grey and RGB, odd sizes and views that are not C-contiguous; the same
    pixels always give the same bytes; what PNG cannot hold is a ValueError."""
    import io

    from PIL import Image

    rng = np.random.default_rng(11)
    smooth = np.add.outer(np.arange(301), np.arange(517)) % 256
    grey = (smooth + rng.integers(0, 9, smooth.shape)).astype(np.uint8)
    rgb = rng.integers(0, 256, (33, 65, 3), dtype=np.uint8)
    cases = {
        "grey": grey,
        "rgb": rgb,
        "one pixel": grey[:1, :1],
        "transposed": grey.T,
        "strided": grey[::3, 1::2],
        "fortran": np.asfortranarray(rgb),
        "channels view": np.ascontiguousarray(rgb[..., ::-1])[:, ::2],
        "flat": np.zeros((4, 600), np.uint8),
    }
    for name, image in cases.items():
        data = png_bytes(image)
        with Image.open(io.BytesIO(data)) as png:
            png.load()
            assert png.format == "PNG" and png.mode == ("L" if image.ndim == 2 else "RGB"), name
            assert np.array_equal(np.asarray(png), image), name
        assert png_bytes(image.copy()) == data, name
    for bad in (
        grey.astype(np.uint16),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 5), np.uint8),
        np.zeros(5, np.uint8),
    ):
        with pytest.raises(ValueError):
            png_bytes(bad)


def test_png_bytes_no_larger_than_zlib_fastest_on_real_views(shared_data):
    """On real views (the shared CT at its soft-tissue window, a dermoscopy photograph) the
    fast encoder's files stay within 15% of zlib level 1's (Pillow), the encoder it replaced
    (its fixed cost shows on the tiny CT's 101×122 slices; a 512² view is smaller than zlib's)."""
    import io

    import nibabel as nib
    from PIL import Image

    ct = np.asanyarray(nib.load(shared_data / "ct_abdomen_totalseg" / "ct.nii.gz").dataobj)
    views = [np.clip((ct[:, :, k].T + 160) * 255.0 / 400.0, 0, 255).astype(np.uint8) for k in range(0, ct.shape[2], 7)]
    views.append(np.asarray(Image.open(sorted((shared_data / "dermoscopy_ph2").rglob("*.png"))[0]).convert("RGB")))
    for image in views:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        assert len(png_bytes(image)) <= 1.15 * len(buffer.getvalue())


def test_shrunk_views_show_area_means_and_keep_exact_boxes():
    """``max_side`` on a 2D image: pixels are box means (skimage's downscale_local_mean on
    an exact factor; ties of odd factors to the next bin), the mask is shown nearest-voxel
    and its boxes stay exactly the mapped voxel boxes; the longer side is the cap."""
    from skimage.transform import downscale_local_mean

    rng = np.random.default_rng(11)
    gray = rng.integers(0, 4096, (2048, 1536), dtype=np.uint16)
    m = image_map(gray.shape, max_side=1024)
    assert (m.height, m.width) == (1024, 768)
    shown = m.render_values(gray)
    assert shown.dtype == np.uint16
    reference = downscale_local_mean(gray.astype(np.float64), (2, 2))
    assert np.abs(shown.astype(np.float64) - reference).max() <= 0.5
    rgb = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    small = image_map(rgb.shape[:2], max_side=100)
    assert (small.height, small.width) == (60, 100)
    means = downscale_local_mean(rgb.astype(np.float64), (5, 5, 1))
    assert np.abs(small.render_values(rgb).astype(np.float64) - means).max() <= 0.5
    # A non-integer factor: every stored pixel counts once (the mean of the means, weighted
    # by bin sizes, is the mean of the image).
    odd = image_map((1000, 700), max_side=300)
    values = rng.random((1000, 700))
    bins_r = np.bincount(np.searchsorted(_bin_edges(odd.row_source, 1000), np.arange(1000), "right") - 1)
    bins_c = np.bincount(np.searchsorted(_bin_edges(odd.col_source, 700), np.arange(700), "right") - 1)
    weighted = (odd.render_values(values) * np.outer(bins_r, bins_c)).sum()
    assert weighted == pytest.approx(values.sum(), rel=1e-9)
    # Masks: nearest voxel, and the box of what is shown is the mapped box of the voxels.
    labels = np.zeros(gray.shape, np.uint8)
    labels[301:777, 90:1201] = 1
    labels[1500:1503, 10:13] = 2
    shown_labels = m.render(labels)
    assert set(np.unique(shown_labels)) <= {0, 1, 2}
    for label in (1, 2):
        rows, cols = np.nonzero(labels == label)
        box = m.pixel_box((rows.min(), cols.min()), (rows.max() + 1, cols.max() + 1))
        rows, cols = np.nonzero(shown_labels == label)
        if rows.size:
            assert box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    # A flipped table (radiological display) averages the same bins, mirrored.
    upright = image_map((8, 6), max_side=4)
    mirrored = replace(upright, row_source=7 - upright.row_source)
    data = rng.random((8, 6))
    assert np.allclose(mirrored.render_values(data), upright.render_values(data[::-1]))
    # Unshrunk maps are unchanged by render_values.
    assert np.array_equal(image_map(gray.shape).render_values(gray), gray)


def _bin_edges(source, n):
    edges = np.empty(source.size + 1, dtype=np.intp)
    edges[0], edges[-1] = 0, n
    edges[1:-1] = (source[:-1] + source[1:] + 1) // 2
    return edges


def test_a_broken_spacing_cannot_ask_for_a_huge_view():
    """0.0003 mm against 1 mm: square pixels and min_side would make a view of millions of
    pixels; the longer side stays within twice max_side."""
    from medground.render import slice_map

    smap = slice_map(
        (512, 512, 3), (0.0003, 0.0003, 1.0), ("R", "A", "S"), "sagittal", 200, min_side=224, max_side=1024
    )
    assert max(smap.height, smap.width) <= 2048 and smap.height * smap.width <= 2048 * 224
    normal = slice_map((512, 512, 30), (0.7, 0.7, 5.0), ("R", "A", "S"), "coronal", 200, min_side=224, max_side=1024)
    assert min(normal.height, normal.width) >= 224  # thin slabs still readable


_CORE_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.float32, np.float64, np.bool_)


@pytest.mark.parametrize("dtype", _CORE_DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_views_from_the_core_equal_numpys_views(dtype, order):
    """The core's views (one read of the plane in its memory order) are numpy's to the
    bit: gathers of every dtype, and area means along one shrunk axis (integers: exact
    sums, ties rounded to even, clipped at the type's limits), for every plane of volumes
    in both memory orders, flipped tables included, shrinking along rows or columns."""
    from medground.render import slice_map

    rng = np.random.default_rng(abs(hash((np.dtype(dtype).str, order))) % 2**32)
    shape = (37, 29, 23)
    if np.dtype(dtype) == np.bool_:
        volume = rng.random(shape) < 0.5
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if info.bits == 64:  # means are numpy's (float64 does not hold these limits)
            info = np.iinfo(np.int32)
        # The type's limits appear (clipping), and runs of equal neighbours give exact halves.
        volume = rng.choice(np.asarray([info.min, info.max, 0, 1, 2, 3]).astype(dtype), size=shape)
        volume[::3] = rng.integers(info.min, info.max, size=volume[::3].shape, endpoint=True).astype(dtype)
    else:
        volume = rng.normal(0, 100, shape).astype(dtype)
    volume = np.asarray(volume, order=order)
    checked = {"gather": 0, "mean": 0}
    for axcodes in (("R", "A", "S"), ("L", "P", "I"), ("A", "S", "L")):
        for plane in ("axial", "coronal", "sagittal"):
            for spacing, max_side in (((1.0, 1.0, 1.0), None), ((0.7, 0.7, 2.9), None), ((0.7, 1.3, 2.9), 31)):
                axis = plane_axis(axcodes, plane)
                m = slice_map(shape, spacing, axcodes, plane, shape[axis] // 2, max_side=max_side)
                flat = m.plane_of(volume)
                shrunk = [m.row_source.size < flat.shape[0], m.col_source.size < flat.shape[1]]
                expected = m._values_by_numpy(flat)
                shown = m.render_values(volume)
                assert shown.dtype == volume.dtype and shown.flags.c_contiguous
                np.testing.assert_array_equal(shown, expected)
                np.testing.assert_array_equal(m.render(volume), flat[m.row_source][:, m.col_source])
                checked["mean" if any(shrunk) else "gather"] += 1
    assert checked["mean"] and checked["gather"]


def test_the_cores_resampling_refuses_what_it_cannot_do_exactly():
    from medground import geometry

    plane = np.arange(12, dtype=np.int16).reshape(3, 4)
    with pytest.raises(ValueError, match="one axis at most"):
        geometry.resample_plane(plane, ([0], [2]), ([0], [2]))
    with pytest.raises(TypeError, match="at most 32 bits"):
        geometry.resample_plane(plane.astype(np.float32), ([0], [2]), [0, 1])
    with pytest.raises(ValueError, match="outside the plane"):
        geometry.resample_plane(plane, [0, 3], [0])
    with pytest.raises(ValueError, match="empty or outside"):
        geometry.resample_plane(plane, ([1], [1]), [0])
    with pytest.raises(ValueError, match="holds -1"):
        geometry.resample_plane(plane, [-1], [0])
    np.testing.assert_array_equal(geometry.resample_plane(plane, ([0, 1], [2, 3]), [3, 0]), [[5, 2], [9, 6]])
