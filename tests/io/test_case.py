"""Loading cases: every kind of bad input is a per-case error naming the file; the real
sample datasets load with the right masks and labels."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medground import geometry
from medground.anchors import LabelObjects, Objects, find_anchors, objects_ahead
from medground.io import CaseError, find_cases, load_case, load_preset, load_spec, resolve_labels
from medground.io.discover import CaseFiles
from medground.io.inventory import inventory
from medground.io.schema import DatasetSpec
from thread_counts import one_then_two

AFFINE = np.array([[-1.5, 0, 0, 90], [0, -1.5, 0, 100], [0, 0, 3.0, -40], [0, 0, 0, 1]])
SHAPE = (10, 9, 6)

SPEC = """
name = "toy"
modality = "CT"
[cases]
image = "img/{case}.nii.gz"
mask = "seg/{case}.nii.gz"
[labels]
1 = "liver"
2 = "lesion"
"""


def nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def good_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:7, 2:7, 1:5] = 1
    mask[3:5, 3:5, 2:4] = 2
    return mask


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(-100, 200, SHAPE).astype(np.int16)


def truncated(path: Path) -> None:
    nifti(path, image())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# Each bad case: how to write it, and what its error must say.
BAD_CASES = {
    "shape": (
        lambda d: (
            nifti(d / "img/shape.nii.gz", image()),
            nifti(d / "seg/shape.nii.gz", np.zeros((10, 9, 5), np.uint8)),
        ),
        ["seg/shape.nii.gz", "(10, 9, 5)", "img/shape.nii.gz", "(10, 9, 6)"],
    ),
    "affine": (
        lambda d: (
            nifti(d / "img/affine.nii.gz", image()),
            nifti(d / "seg/affine.nii.gz", good_mask(), AFFINE + np.diag([0, 0, 0.5, 0])),
        ),
        ["seg/affine.nii.gz", "img/affine.nii.gz", "affine differs", "0.5"],
    ),
    "fraction": (
        lambda d: (
            nifti(d / "img/fraction.nii.gz", image()),
            nifti(d / "seg/fraction.nii.gz", good_mask().astype(np.float32) * 0.5),
        ),
        ["seg/fraction.nii.gz", "non-integer"],
    ),
    "negative": (
        lambda d: (
            nifti(d / "img/negative.nii.gz", image()),
            nifti(d / "seg/negative.nii.gz", good_mask().astype(np.int16) - 1),
        ),
        ["seg/negative.nii.gz", "negative"],
    ),
    "nan": (
        lambda d: (
            nifti(d / "img/nan.nii.gz", np.where(good_mask() == 2, np.nan, 1.0).astype(np.float32)),
            nifti(d / "seg/nan.nii.gz", good_mask()),
        ),
        ["img/nan.nii.gz", "8 NaN or infinite"],
    ),
    "fourd": (
        lambda d: (
            nifti(d / "img/fourd.nii.gz", np.stack([image()] * 3, axis=-1)),
            nifti(d / "seg/fourd.nii.gz", good_mask()),
        ),
        ["img/fourd.nii.gz", "3 channels", "channel = N"],
    ),
    "truncated": (
        lambda d: (truncated(d / "img/truncated.nii.gz"), nifti(d / "seg/truncated.nii.gz", good_mask())),
        ["img/truncated.nii.gz", "unreadable"],
    ),
    "garbage": (
        lambda d: (
            nifti(d / "img/garbage.nii.gz", image()),
            (d / "seg/garbage.nii.gz").write_bytes(gzip.compress(b"x" * 400)),
        ),
        ["seg/garbage.nii.gz", "unreadable"],
    ),
    # A label map off the image's grid and with bad values: the grid is the error, however
    # the two are read (the values are checked on the reader thread, raised after the grid).
    "gridfirst": (
        lambda d: (
            nifti(d / "img/gridfirst.nii.gz", image()),
            nifti(d / "seg/gridfirst.nii.gz", good_mask().astype(np.int16) - 1, AFFINE + np.diag([0, 0, 0.5, 0])),
        ),
        ["seg/gridfirst.nii.gz", "affine differs"],
    ),
    # Both broken: the image's error is the case's, however the two are read.
    "both": (
        lambda d: (truncated(d / "img/both.nii.gz"), (d / "seg/both.nii.gz").write_bytes(gzip.compress(b"x" * 400))),
        ["img/both.nii.gz", "unreadable"],
    ),
}


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    nifti(tmp_path / "img" / "good.nii.gz", image())
    nifti(tmp_path / "seg" / "good.nii.gz", good_mask())
    for write, _ in BAD_CASES.values():
        write(tmp_path)
    (tmp_path / "spec.toml").write_text(SPEC)
    return tmp_path


@pytest.mark.parametrize("ahead", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_is_a_case_error_naming_the_file(dataset: Path, name: str, threads: int, ahead: bool) -> None:
    """Whether the label map is read in turn or (a second core) beside the image, with its
    objects measured there (``then``) or not."""
    spec = load_spec(dataset / "spec.toml")
    files = next(c for c in find_cases(spec).cases if c.case_id == name)
    try:
        geometry.set_num_threads(threads)
        with pytest.raises(CaseError) as caught:
            load_case(spec, files, then=objects_ahead(spec) if ahead else None)
    finally:
        geometry.set_num_threads(0)
    message = str(caught.value)
    for expected in BAD_CASES[name][1]:
        assert expected in message, message
    assert caught.value.case_id == name
    if name == "both":
        assert "seg/both" not in message
    if name == "gridfirst":
        assert "negative" not in message


def test_a_label_map_read_beside_its_image_is_the_one_read_after_it(shared_data: Path, tmp_path: Path) -> None:
    """With a second core the label map is read on a thread while the image is read: the
    case is the one a single thread reads."""
    (tmp_path / "ct.toml").write_text(
        f'name = "ct"\nmodality = "CT"\nroot = "{shared_data / "ct_abdomen_totalseg"}"\n'
        'labels_file = "labels.json"\n[cases]\nimage = "ct.nii.gz"\nmask = "seg.nii.gz"\n'
    )
    spec = load_spec(tmp_path / "ct.toml")
    files = find_cases(spec).cases[0]
    alone, beside = one_then_two(lambda: load_case(spec, files))
    assert np.array_equal(alone.labels, beside.labels) and alone.labels.dtype == beside.labels.dtype
    assert np.array_equal(alone.image.array, beside.image.array)
    assert alone.present == beside.present and alone.warnings == beside.warnings


def _shared_ct(shared_data: Path, tmp_path: Path, extra: str = "") -> tuple[DatasetSpec, CaseFiles]:
    (tmp_path / "ct.toml").write_text(
        f'name = "ct"\nmodality = "CT"\nroot = "{shared_data / "ct_abdomen_totalseg"}"\n'
        f'labels_file = "labels.json"\n[cases]\nimage = "ct.nii.gz"\nmask = "seg.nii.gz"\n{extra}'
    )
    spec = load_spec(tmp_path / "ct.toml")
    return spec, find_cases(spec).cases[0]


def _same_objects(a: Objects, b: Objects) -> None:
    assert np.array_equal(a.map, b.map) and a.map.dtype == b.map.dtype
    assert a.anchors == b.anchors and a.dropped == b.dropped
    for axis, (ids, table) in a.slice_areas.items():
        assert np.array_equal(ids, b.slice_areas[axis][0]) and np.array_equal(table, b.slice_areas[axis][1])


def test_objects_measured_beside_the_image_are_the_ones_measured_after_it(shared_data: Path, tmp_path: Path) -> None:
    """With a second core, the objects' label-only measures (components, regions, slice
    areas, the minimum-size filter) are taken on the thread that read the label map while
    the image is read: the anchors, object map and drops are the ones a single thread finds
    (the filter drops some objects here, so the erased map is compared too)."""
    spec, files = _shared_ct(shared_data, tmp_path, "[anchors]\nmin_voxels = 400\n")
    alone, beside = one_then_two(lambda: load_case(spec, files, then=objects_ahead(spec)))
    assert alone.ahead is None  # one core: nothing is read beside the image
    assert isinstance(beside.ahead, LabelObjects) and not beside.ahead.intensities
    assert beside.ahead.slice_areas is not None
    plain = find_anchors(alone, spec)
    assert any(d.reason == "too_small" for d in plain.dropped)
    found = find_anchors(beside, spec)
    _same_objects(found, plain)
    assert found.slice_areas is beside.ahead.slice_areas  # not counted again


def test_label_work_that_fails_or_sees_another_spacing_is_done_again(shared_data: Path, tmp_path: Path) -> None:
    """``then`` raising leaves the case without it (the work is done where the case needs
    it, and raises there); a label map whose spacing differs from the image's within the
    affine tolerance is measured again on the image's spacing."""
    spec, files = _shared_ct(shared_data, tmp_path)
    plain = find_anchors(load_case(spec, files), spec)

    def broken(*args: object) -> None:
        raise RuntimeError("label work failed")

    try:
        geometry.set_num_threads(2)
        case = load_case(spec, files, then=broken)
        assert case.ahead is None
        _same_objects(find_anchors(case, spec), plain)
        # The label file's spacing off by 1e-4 mm (within the 1e-3 mm tolerance).
        image = nib.load(files.masks[0])
        affine = image.affine.copy()
        affine[0, 0] *= 1 + 1e-4 / abs(affine[0, 0])
        moved = nifti(tmp_path / "seg.nii.gz", np.asanyarray(image.dataobj), affine)
        case = load_case(spec, replace(files, masks=(moved,)), then=objects_ahead(spec))
    finally:
        geometry.set_num_threads(0)
    assert isinstance(case.ahead, LabelObjects) and case.ahead.spacing != case.image.spacing
    _same_objects(find_anchors(case, spec), plain)


def test_bad_cases_cost_nothing_else(dataset: Path) -> None:
    report = inventory(load_spec(dataset / "spec.toml"))
    by_id = {c.case_id: c for c in report.cases}
    assert set(by_id) == set(BAD_CASES) | {"good"}
    assert {c.case_id for c in report.failed} == set(BAD_CASES)
    good = by_id["good"]
    assert good.error is None and good.labels == {1: int((good_mask() == 1).sum()), 2: 8}
    assert good.axcodes == ("L", "P", "S") and good.spacing == (1.5, 1.5, 3.0)


def test_four_d_image_with_a_chosen_channel(dataset: Path) -> None:
    spec_text = SPEC.replace('mask = "seg/{case}.nii.gz"', 'mask = "seg/{case}.nii.gz"\nchannel = 2')
    (dataset / "spec.toml").write_text(spec_text)
    stack = np.stack([image() + i for i in range(3)], axis=-1)
    nifti(dataset / "img" / "fourd.nii.gz", stack)
    spec = load_spec(dataset / "spec.toml")
    case = load_case(spec, next(c for c in find_cases(spec).cases if c.case_id == "fourd"))
    assert np.array_equal(case.image.array, stack[..., 2])
    (dataset / "spec.toml").write_text(spec_text.replace("channel = 2", "channel = 3"))
    spec = load_spec(dataset / "spec.toml")
    with pytest.raises(CaseError, match="channel = 3 but the image has 3 channels"):
        load_case(spec, next(c for c in find_cases(spec).cases if c.case_id == "fourd"))


def test_empty_mask_warns_and_unknown_ids_are_named(tmp_path: Path) -> None:
    nifti(tmp_path / "img" / "empty.nii.gz", image())
    nifti(tmp_path / "seg" / "empty.nii.gz", np.zeros(SHAPE, np.uint8))
    nifti(tmp_path / "img" / "extra.nii.gz", image())
    mask = good_mask()
    mask[0, 0, 0] = 7
    nifti(tmp_path / "seg" / "extra.nii.gz", mask)
    (tmp_path / "spec.toml").write_text(SPEC)
    spec = load_spec(tmp_path / "spec.toml")
    empty, extra = (load_case(spec, files) for files in find_cases(spec).cases)
    assert empty.present == () and "empty mask" in empty.warnings[0]
    assert extra.present == (1, 2, 7) and extra.label_names[7] == "unknown_7"
    assert "[7]" in extra.warnings[0]
    report = inventory(spec)
    assert report.unknown_labels == [7] and not report.failed


def test_header_cap_refuses_before_reading(dataset: Path) -> None:
    (dataset / "spec.toml").write_text(
        SPEC.replace('mask = "seg/{case}.nii.gz"', 'mask = "seg/{case}.nii.gz"\nmax_bytes = 500')
    )
    spec = load_spec(dataset / "spec.toml")
    with pytest.raises(CaseError, match="over the .* cap"):
        load_case(spec, next(c for c in find_cases(spec).cases if c.case_id == "good"))


def test_colour_coded_and_indexed_2d_masks(tmp_path: Path) -> None:
    photo = np.full((8, 10, 3), 120, np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    colours = np.zeros((8, 10, 3), np.uint8)
    colours[1:3, 1:4] = (255, 0, 0)
    colours[5:7, 6:9] = (0, 250, 3)  # near green: within tolerance
    Image.fromarray(colours).save(tmp_path / "a_mask.png")
    spec_text = """
name = "colours"
modality = "endoscopy"
[cases]
image = "{case}.png"
mask = "{case}_mask.png"
color_tolerance = 8
[cases.colors]
"255,0,0" = 1
"#00ff00" = 2
[labels]
1 = "polyp"
2 = "instrument"
"""
    (tmp_path / "spec.toml").write_text(spec_text)
    spec = load_spec(tmp_path / "spec.toml")
    index = find_cases(spec)
    assert [c.case_id for c in index.cases] == ["a"]
    case = load_case(spec, index.cases[0])
    assert case.present == (1, 2) and case.image.axcodes is None
    assert (case.labels == 1).sum() == 6 and (case.labels == 2).sum() == 6
    (tmp_path / "spec.toml").write_text(spec_text.replace("color_tolerance = 8", "color_tolerance = 2"))
    with pytest.raises(CaseError, match=r"colours not in \[cases.colors\].*\(0, 250, 3\)"):
        load_case(load_spec(tmp_path / "spec.toml"), index.cases[0])
    # An indexed (palette) label mask keeps its indices.
    indexed = Image.fromarray(np.where(colours[..., 0] > 0, 3, 0).astype(np.uint8), mode="L").convert("P")
    indexed.putpalette([0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 10, 10])
    indexed.save(tmp_path / "a_mask.png")
    (tmp_path / "spec.toml").write_text(spec_text.split("[cases.colors]")[0] + '[labels]\n3 = "polyp"\n')
    case = load_case(load_spec(tmp_path / "spec.toml"), index.cases[0])
    assert case.present == (3,) and (case.labels == 3).sum() == 6


# --------------------------------------------------------------------------- real data


def ct_spec(folder: Path, tmp_path: Path, *, per_structure: bool) -> Path:
    if per_structure:
        cases = 'image = "ct.nii.gz"\nmask = "structures/{label}.nii.gz"\nmask_mode = "per_label_files"\n'
        labels = ""
    else:
        cases = 'image = "ct.nii.gz"\nmask = "seg.nii.gz"\n'
        labels = 'labels_file = "labels.json"\n'
    path = tmp_path / ("per_structure.toml" if per_structure else "labelmap.toml")
    path.write_text(f'name = "ct"\nmodality = "CT"\nroot = "{folder}"\n{labels}[cases]\n{cases}')
    return path


def test_ct_per_structure_folder_and_label_map_give_the_same_objects(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "ct_abdomen_totalseg"
    specs, cases = [], []
    for per_structure in (False, True):
        spec = load_spec(ct_spec(folder, tmp_path, per_structure=per_structure))
        index = find_cases(spec)
        spec = resolve_labels(spec, index)
        specs.append(spec)
        cases.append(load_case(spec, index.cases[0]))
    labelmap, per_structure = cases
    names_a = {labelmap.label_names[i] for i in labelmap.present}
    names_b = {per_structure.label_names[i] for i in per_structure.present}
    # The folder ships 40 of the label map's 41 structures (no lung_middle_lobe_right file).
    assert len(names_a) == 41 and names_b <= names_a and len(names_b) == 40
    assert not [w for w in per_structure.warnings if "overlap" in w]
    # The two are separate model outputs of one case, so they agree closely, not voxel for
    # voxel: each structure overlaps its namesake (Dice) and sits at the same place.
    for name in names_b:
        a = labelmap.labels == specs[0].label_id(name)
        b = per_structure.labels == specs[1].label_id(name)
        dice = 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
        assert dice > 0.75, (name, dice)
        shift = labelmap.image.world(np.argwhere(a).mean(axis=0)) - per_structure.image.world(
            np.argwhere(b).mean(axis=0)
        )
        assert np.linalg.norm(shift) < 6.0, (name, shift)
    assert np.allclose(labelmap.image.affine, per_structure.image.affine)


@pytest.mark.parametrize(
    ("folder", "image", "orientation"),
    [
        ("ct_abdomen_totalseg", "ct.nii.gz", ("R", "A", "S")),
        ("mr_abdomen_totalseg", "mr.nii.gz", ("L", "P", "S")),
    ],
)
def test_real_volumes_keep_their_orientation(
    shared_data: Path, tmp_path: Path, folder: str, image: str, orientation: tuple[str, ...]
) -> None:
    modality = "CT" if image.startswith("ct") else "MR"
    (tmp_path / "s.toml").write_text(
        f'name = "x"\nmodality = "{modality}"\nroot = "{shared_data / folder}"\nlabels_file = "labels.json"\n'
        f'[cases]\nimage = "{image}"\nmask = "seg.nii.gz"\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    case = load_case(spec, find_cases(spec).cases[0])
    reference = nib.load(shared_data / folder / image)
    assert case.image.axcodes == orientation == nib.aff2axcodes(reference.affine)
    assert np.array_equal(case.image.array, np.asanyarray(reference.dataobj))
    # The patient's left kidney lies at smaller RAS x (toward the left) than the right one.
    centroids = {}
    for name in ("kidney_left", "kidney_right"):
        index = np.argwhere(case.labels == spec.label_id(name)).mean(axis=0)
        centroids[name] = case.image.world(index)
    assert centroids["kidney_left"][0] < centroids["kidney_right"][0]


def test_chest_xray_masks_have_two_lungs(shared_data: Path) -> None:
    spec = load_preset("cxr_lung", shared_data / "cxr_lung")
    index = find_cases(spec)
    assert [c.case_id for c in index.cases] == ["1", "2", "3", "4"]
    for files in index.cases:
        case = load_case(spec, files)
        assert case.image.shape == (512, 512) and case.image.axcodes == ("I", "L")
        components, n = geometry.connected_components(case.labels, return_n=True)
        sizes = np.bincount(components.ravel())[1:]
        assert (sizes > 2000).sum() == 2, (files.case_id, sorted(sizes)[-4:])


def test_kvasir_jpeg_masks_are_thresholded(shared_data: Path) -> None:
    spec = load_preset("kvasir_seg", shared_data / "endoscopy_kvasir")
    index = find_cases(spec)
    assert len(index.cases) == 5
    for files in index.cases:
        case = load_case(spec, files)
        raw = np.asarray(Image.open(files.masks[0]).convert("L"))
        assert case.image.array.ndim == 3 and case.image.axcodes is None
        assert np.array_equal(case.labels == 1, raw > 127)
        assert 0.01 < (case.labels == 1).mean() < 0.9


def test_ph2_dermoscopy_loads_all_cases(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "ph2.toml").write_text(
        f'name = "ph2"\nmodality = "dermoscopy"\nroot = "{shared_data / "dermoscopy_ph2"}"\n'
        '[cases]\nimage = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n'
        '1 = "skin lesion"\n'
    )
    report = inventory(load_spec(tmp_path / "ph2.toml"))
    assert len(report.cases) == 20 and not report.failed
    for summary in report.cases:
        height, width = summary.shape
        assert 570 <= height <= 580 and 760 <= width <= 770 and summary.axcodes is None
        assert summary.labels[1] > 10_000


def test_a_mask_that_does_not_fit_costs_a_header_read(tmp_path: Path, monkeypatch) -> None:
    """The grids are compared from the headers first: a mask declaring a huge other grid is
    refused without decoding a voxel of either file."""
    nifti(tmp_path / "img" / "a.nii.gz", image())
    big = nib.Nifti1Header()
    big.set_data_shape((2000, 2000, 900))  # 3.6 GB of uint8 declared, nothing behind it
    big.set_data_dtype(np.uint8)
    big["vox_offset"] = 352
    (tmp_path / "seg").mkdir()
    with gzip.open(tmp_path / "seg" / "a.nii.gz", "wb") as stream:
        stream.write(big.binaryblock + b"\0" * 4)
    (tmp_path / "spec.toml").write_text(SPEC)
    spec = load_spec(tmp_path / "spec.toml")

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixels were read before the grids were compared")

    monkeypatch.setattr("medground.io.case.read_image", no_pixels)
    with pytest.raises(CaseError, match=r"mask grid \(2000, 2000, 900\) does not match .* no pixels were decoded"):
        load_case(spec, find_cases(spec).cases[0])
