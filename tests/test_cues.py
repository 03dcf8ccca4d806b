"""Cues: laterality from geometry (never from label names), on real CT and MR in any storage
orientation and on photographs; and every threshold of the cues module's docstring, table by
table, at and on both sides of each threshold: the laterality share, the shape classes, the
3×3 image position, intensity per modality, containment and the size classes."""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import replace
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medground import cues, geometry, render
from medground.anchors import Anchor, find_anchors
from medground.generate import draft_case
from medground.io import Case, DatasetSpec, find_cases, load_case, load_spec
from medground.views import iter_views
from orientations import reoriented_case
from real_specs import ct_mr_spec


def _sides_by_name(case: Case, spec: DatasetSpec, original_names: dict[int, str]) -> dict[str, set[str]]:
    objects = find_anchors(case, spec)
    context = cues.case_context(case, objects, spec.modality, render.body_mask(case.image, spec.modality))
    sides: dict[str, set[str]] = {}
    for object_id, anchor in objects.anchors.items():
        name = original_names[anchor.label_id]
        if anchor.voxel_count >= 50 and (name.endswith("_left") or name.endswith("_right")):
            sides.setdefault(name, set()).add(cues.laterality(context.laterality.right_share[object_id]))
    return sides


def test_an_objects_place_is_the_same_in_every_view_and_follows_the_midline(shared_data: Path, tmp_path: Path) -> None:
    """Every view's ``midline_offset_mm`` and ``centroid_world`` of an object are its 3D
    anchor's (|x − midline at z|, rounded to 0.01 mm); measured once per case, so a context
    with another midline (``dataclasses.replace``) measures them again."""
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, "CT"))
    case = load_case(spec, find_cases(spec).cases[0])
    objects = find_anchors(case, spec)
    context = cues.case_context(case, objects, spec.modality, render.body_mask(case.image, spec.modality))
    assert context.midline is not None and not context.laterality.withheld
    shifted = replace(context, midline=cues.Midline("body", context.midline.z, context.midline.x + 7.5))
    seen = 0
    for view in iter_views(case, objects, spec, render.body_mask(case.image, spec.modality), []):
        for ctx, dx in ((context, 0.0), (shifted, 7.5)):
            for object_id, cue in cues.compute_cues(view, ctx).items():
                x, _, z = objects.anchors[object_id].centroid_world
                expected = round(abs(x - float(np.interp(z, context.midline.z, context.midline.x)) - dx), 2)
                assert cue["midline_offset_mm"] == expected
                assert cue["centroid_world"] == [round(c, 2) for c in objects.anchors[object_id].centroid_world]
                seen += 1
    assert seen > 100


def _reoriented(case: Case, codes: tuple[str, str, str]) -> Case:
    return reoriented_case(case, codes)


@pytest.mark.parametrize("kind", ["CT", "MR"])
@pytest.mark.parametrize("codes", [None, ("P", "S", "R"), ("L", "A", "I")])
def test_laterality_comes_from_geometry_not_names(shared_data: Path, tmp_path: Path, kind: str, codes) -> None:
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, kind))
    original = dict(spec.labels)
    neutral = replace(spec, labels={i: f"structure {i}" for i in spec.labels})
    case = load_case(neutral, find_cases(neutral).cases[0])
    if codes is not None:
        case = _reoriented(case, codes)
        assert case.image.axcodes == codes
    sides = _sides_by_name(case, neutral, original)
    assert len(sides) >= 4
    for name, found in sides.items():
        assert found == {name.rsplit("_", 1)[1]}, (name, found)


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_a_views_faces_equal_the_background_as_a_region(shared_data: Path, tmp_path: Path, kind: str) -> None:
    """A grey view's faces (the background's from each object's outline pairs, without a
    widened copy of the map) equal :func:`cues.shared_faces` of its object map for every
    object of the view, on the real CT and MR; a photograph's come from ``shared_faces``."""
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, kind))
    case = load_case(spec, find_cases(spec).cases[0])
    objects = find_anchors(case, spec)
    checked = 0
    for view in iter_views(case, objects, spec, render.body_mask(case.image, spec.modality), []):
        assert all(obj.grey is not None for obj in view.objects.values())
        fast, plain = cues._faces(view), cues.shared_faces(view.object_map)
        for object_id in view.objects:
            assert dict(fast.get(object_id, {})) == dict(plain.get(object_id, {}))
            checked += bool(plain.get(object_id, {}).get(0))
    assert checked > 50  # objects with faces on the background


def test_dermoscopy_has_no_patient_side(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "ph2.toml").write_text(
        f'name = "ph2"\nmodality = "dermoscopy"\nbody_region = "skin"\nroot = "{shared_data / "dermoscopy_ph2"}"\n'
        '[cases]\nimage = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n'
        '1 = "skin lesion"\n'
    )
    spec = load_spec(tmp_path / "ph2.toml")
    for files in find_cases(spec, limit=6).cases:
        drafts = draft_case(load_case(spec, files), spec)
        assert drafts.samples
        for sample in drafts.samples:
            assert all(t.cues["laterality"] is None for t in sample.targets)
            assert "-sided" not in sample.query and "patient" not in sample.query
            assert sample.view is None


# ----------------------------------------------------------------------------- thresholds, table by table
#
# Each row is one case with its expected answer, at a threshold and just on either side of
# it; the functions are called directly with constructed inputs.


def test_the_documented_thresholds() -> None:
    assert (cues.LATERAL_SHARE, cues.CONTAINED_SHARE, cues.RING_MM) == (0.75, 0.5, 3.0)


@pytest.mark.parametrize(
    ("share_right", "side"),
    [
        (1.0, "right"),
        (0.76, "right"),
        (0.75, "right"),  # at least 75% on the right
        (0.74, "midline"),
        (0.5, "midline"),
        (0.26, "midline"),
        (0.25, "left"),  # at least 75% on the left
        (0.24, "left"),
        (0.0, "left"),
        (None, None),  # no patient orientation
    ],
)
def test_laterality_needs_three_quarters_on_one_side(share_right: float | None, side: str | None) -> None:
    assert cues.laterality(share_right) == side


@pytest.mark.parametrize(
    ("elongation", "solidity", "circularity", "shape"),
    [
        # elongated: elongation (minor/major) < 0.5, whatever the rest.
        (0.49, 1.0, 1.0, "elongated"),
        (0.49, 0.5, 0.5, "elongated"),
        (0.5, 1.0, 1.0, "oval"),
        # irregular: solidity < 0.8 (before lobulated).
        (0.9, 0.79, 0.9, "irregular"),
        (0.9, 0.79, 0.5, "irregular"),
        (0.9, 0.8, 0.9, "round"),
        # lobulated: solidity < 0.9 and circularity < 0.7.
        (0.9, 0.8, 0.69, "lobulated"),
        (0.9, 0.89, 0.69, "lobulated"),
        (0.9, 0.9, 0.69, "oval"),
        (0.9, 0.89, 0.7, "oval"),
        # round: elongation ≥ 0.8 and circularity ≥ 0.8; else oval.
        (0.8, 0.95, 0.8, "round"),
        (1.0, 1.0, 1.0, "round"),
        (0.79, 0.95, 0.8, "oval"),
        (0.8, 0.95, 0.79, "oval"),
        (0.6, 0.95, 0.75, "oval"),
    ],
)
def test_shape_classes(elongation: float, solidity: float, circularity: float, shape: str) -> None:
    descriptors = {"elongation": elongation, "solidity": solidity, "circularity": circularity}
    assert cues.shape_class(descriptors) == shape


# A 300 × 150 image: the grid lines are at x = 100, 200 and y = 50, 100; a box's centre is
# in the cell whose left/upper edge it is on (centre x = 100 is the middle column).
@pytest.mark.parametrize(
    ("box", "position"),
    [
        ((0, 0, 198, 98), "upper left"),  # centre (99, 49)
        ((98, 48, 100, 50), "upper left"),
        ((99, 0, 101, 98), "upper"),  # centre (100, 49)
        ((198, 48, 200, 50), "upper"),  # centre (199, 49)
        ((199, 48, 201, 50), "upper right"),  # centre (200, 49)
        ((99, 49, 99, 51), "left"),  # centre (99, 50)
        ((99, 49, 101, 51), "center"),  # centre (100, 50)
        ((0, 0, 300, 150), "center"),
        ((198, 98, 200, 100), "center"),  # centre (199, 99)
        ((199, 98, 201, 100), "right"),  # centre (200, 99)
        ((98, 99, 100, 101), "lower left"),  # centre (99, 100)
        ((149, 99, 151, 101), "lower"),
        ((199, 99, 201, 101), "lower right"),
        ((298, 148, 300, 150), "lower right"),
    ],
)
def test_image_position_on_a_three_by_three_grid(box: tuple[int, int, int, int], position: str) -> None:
    assert cues.image_position(box, 300, 150) == position


def band(
    inside: float,
    ring: tuple[float, float],
    *,
    window: tuple[float, float] | None = None,
    width: int = 8,
    core: bool = False,
):
    """A view of three rows of an 8-bit image: the object is the middle row, its ring (any
    radius) the rows above (``ring[0]``) and below (``ring[1]``): the ring's mean is their
    mean, its standard deviation half their difference. With ``core``, the object carries
    the core's statistics of it, as a grey view's objects do (else the pixels are read)."""
    image = np.empty((3, width), np.uint8)
    image[0], image[1], image[2] = ring[0], inside, ring[1]
    objects = np.zeros((3, width), np.uint32)
    objects[1] = 1
    intensity = render.Intensity("window", (window,)) if window else render.Intensity("as_is", ((0.0, 255.0),))
    view = SimpleNamespace(
        pixel_mm=(1.0, 1.0),
        width=width,
        height=3,
        object_map=objects,
        image=image,
        intensity=intensity,
        case=SimpleNamespace(image=SimpleNamespace(spacing_known=True)),
    )
    obj = SimpleNamespace(object_id=1, bbox_xyxy=(0, 1, width, 2), grey=None)
    if core:
        obj.grey = geometry.object_stats(objects, image, [1], 3, "diamond", pieces=False)[0]
    return view, obj


@pytest.mark.parametrize(
    ("modality", "difference", "ring_std", "window_width", "word"),
    [
        # CT: ±15 HU in the stored window, in grey levels: 15 × 255 / 400 = 9.5625 for a
        # 400 HU soft-tissue window (at least 4 grey levels).
        ("CT", -9.57, 0.0, 400.0, "hypodense"),
        ("CT", -9.5625, 0.0, 400.0, "isodense"),
        ("CT", 0.0, 0.0, 400.0, "isodense"),
        ("CT", 9.5625, 0.0, 400.0, "isodense"),
        ("CT", 9.57, 0.0, 400.0, "hyperdense"),
        # A wide bone window (1800 HU): 15 HU is 2.1 grey levels, so the floor of 4 applies.
        ("CT", 4.01, 0.0, 1800.0, "hyperdense"),
        ("CT", 4.0, 0.0, 1800.0, "isodense"),
        ("CT", -4.01, 0.0, 1800.0, "hypodense"),
        # MR and PET: ±0.5 of the ring's standard deviation (at least 2 grey levels).
        ("MR", -5.01, 10.0, None, "hypointense"),
        ("MR", -5.0, 10.0, None, "isointense"),
        ("MR", 5.0, 10.0, None, "isointense"),
        ("MR", 5.01, 10.0, None, "hyperintense"),
        ("MR", 2.01, 1.0, None, "hyperintense"),  # a flat ring: the 2-level floor
        ("MR", 2.0, 1.0, None, "isointense"),
        ("PET", -5.01, 10.0, None, "hypointense"),
        ("PET", 5.01, 10.0, None, "hyperintense"),
        # Photographs and radiographs: ±5% of 255 = ±12.75 grey levels.
        ("XR", -12.76, 0.0, None, "darker"),
        ("XR", -12.75, 0.0, None, "similar"),
        ("XR", 12.75, 0.0, None, "similar"),
        ("XR", 12.76, 0.0, None, "brighter"),
        ("dermoscopy", -12.76, 0.0, None, "darker"),
        ("endoscopy", 12.76, 0.0, None, "brighter"),
    ],
)
def test_intensity_words_per_modality(
    modality: str, difference: float, ring_std: float, window_width: float | None, word: str
) -> None:
    assert cues.intensity_word(modality, difference, ring_std, window_width) == word


@pytest.mark.parametrize(
    ("modality", "inside", "ring", "window", "relation"),
    [
        ("CT", 100.0, (110.0, 110.0), (-160.0, 240.0), "hypodense"),  # 10 levels under, 9.5625 needed
        ("CT", 101.0, (110.0, 110.0), (-160.0, 240.0), "isodense"),
        ("MR", 97.0, (92.0, 108.0), None, "isointense"),  # ring SD 8: ±4 levels
        ("MR", 95.0, (92.0, 108.0), None, "hypointense"),
        ("MR", 95.0, (90.0, 90.0), None, "hyperintense"),  # flat ring: ±2 levels
        ("XR", 87.0, (100.0, 100.0), None, "darker"),
        ("XR", 90.0, (100.0, 100.0), None, "similar"),
    ],
)
@pytest.mark.parametrize("core", [False, True], ids=["pixels", "core"])
def test_intensity_is_measured_on_the_stored_image(
    modality: str,
    inside: float,
    ring: tuple[float, float],
    window: tuple[float, float] | None,
    relation: str,
    core: bool,
) -> None:
    view, obj = band(inside, ring, window=window, core=core)
    result = cues.intensity_relation(view, obj, modality)
    assert result["relation"] == relation
    assert (result["mean_8bit"], result["ring_mean_8bit"]) == (inside, sum(ring) / 2)


@pytest.mark.parametrize("core", [False, True], ids=["pixels", "core"])
def test_no_ring_no_intensity(core: bool) -> None:
    view, obj = band(50.0, (50.0, 50.0))
    view.object_map[:] = 1
    if core:
        obj.grey = geometry.object_stats(view.object_map, view.image, [1], 3, "diamond", pieces=False)[0]
    assert cues.intensity_relation(view, obj, "CT")["relation"] is None


@pytest.mark.parametrize(
    ("modality", "inside", "ring", "scale", "expected"),
    [
        ("CT", [50.0, 60.0], [40.0, 40.0], 255.0, 15.0),  # HU difference; scale unused
        ("MR", [104.0], [92.0, 108.0], 255.0, 0.5),  # ring standard deviations
        ("PET", [92.0], [92.0, 108.0], 255.0, -1.0),
        ("MR", [10.0], [5.0, 5.0], 255.0, 5.0 / 1e-6),  # a flat ring: SD floored at 1e-6
        ("XR", [112.75], [100.0], 255.0, 0.05),  # share of full scale
        ("dermoscopy", [0.0], [51.0], 255.0, -0.2),
        ("endoscopy", [30.0], [10.0], 200.0, 0.1),
    ],
)
def test_contrast_in_the_unit_of_each_modality(
    modality: str, inside: list[float], ring: list[float], scale: float, expected: float
) -> None:
    assert cues.contrast(modality, np.array(inside), np.array(ring), scale) == pytest.approx(expected)


def anchor(object_id: int, label: str, *, size: float | None = 1.0, complete: bool = True) -> Anchor:
    """A small anchor: only the label, its kind, the size and completeness mean anything here."""
    from medground.anatomy import label_kind

    return Anchor(
        object_id=object_id,
        label_id=object_id,
        label=label,
        kind=label_kind(label),
        voxel_count=8,
        bbox_min=(1, 1, 1),
        bbox_max=(3, 3, 3),
        centroid_index=(1.5, 1.5, 1.5),
        centroid_world=(0.0, 0.0, 0.0),
        size=size,
        complete=complete,
        pieces=1,
        descriptors={},
    )


def seen(diameter_mm: float | None = 5.0, *, image_share: float = 0.01, cut: bool = False) -> SimpleNamespace:
    """An object as a view shows it: its in-plane diameter, share of the image, and whether
    the image border cuts it."""
    return SimpleNamespace(descriptors={"diameter_mm": diameter_mm, "image_share": image_share}, cut_by_border=cut)


# The target (object 1, a liver lesion) and its neighbours by object id; 0 is the background.
NEIGHBOURS = {"background": 0, "liver": 2, "left kidney": 3, "another lesion": 4}


@pytest.mark.parametrize(
    ("faces", "within", "touches"),
    [
        ({"liver": 50, "background": 50}, "liver", ["liver"]),  # half the outline: contained
        ({"liver": 51, "background": 49}, "liver", ["liver"]),
        ({"liver": 49, "background": 51}, None, ["liver"]),
        # Faces shared with an object of the same label count in the outline, never contain it.
        ({"liver": 50, "another lesion": 50}, "liver", ["liver"]),
        ({"liver": 49, "another lesion": 51}, None, ["liver"]),
        # The label covering most of the outline, and only if it covers half.
        ({"left kidney": 60, "liver": 40}, "kidney_left", ["kidney_left", "liver"]),
        ({"liver": 40, "left kidney": 35, "background": 25}, None, ["liver", "kidney_left"]),
        ({"background": 100}, None, []),
        ({}, None, []),
    ],
)
def test_containment_is_half_the_outline_in_the_slice(
    faces: dict[str, int], within: str | None, touches: list[str]
) -> None:
    labels = {1: "liver lesion", 2: "liver", 3: "kidney_left", 4: "liver lesion"}
    objects = {
        i: SimpleNamespace(anchor=anchor(i, label), object_id=i, bbox_xyxy=(10 * i, 0, 10 * i + 5, 5))
        for i, label in labels.items()
    }
    view = SimpleNamespace(
        objects=objects,
        pixel_mm=(1.0, 1.0),
        directions=None,
        case=SimpleNamespace(image=SimpleNamespace(spacing_known=True)),
    )
    outline = {NEIGHBOURS[name]: count for name, count in faces.items()}
    found = cues.relations(view, objects[1], {1: outline})
    assert (found["within"], found["touches"]) == (within, touches)


@pytest.mark.parametrize(
    ("label", "diameter_mm", "size"),
    [
        # Lesion-like labels by longest in-plane diameter: < 10 mm small, ≤ 30 mm medium, else large.
        ("liver lesion", 9.99, "small"),
        ("liver lesion", 10.0, "medium"),
        ("liver lesion", 10.01, "medium"),
        ("liver lesion", 29.99, "medium"),
        ("liver lesion", 30.0, "medium"),
        ("liver lesion", 30.01, "large"),
        ("kidney tumor", 0.5, "small"),
        ("lung nodule", 120.0, "large"),
        ("polyp", 9.99, "small"),
        ("skin lesion", 30.0, "medium"),
        ("skin lesion", 30.01, "large"),
    ],
)
def test_lesion_size_classes(label: str, diameter_mm: float, size: str) -> None:
    assert cues.size_class(anchor(1, label, size=1e6), seen(diameter_mm), True) == size


@pytest.mark.parametrize(
    ("image_share", "size"),
    [(0.0199, "small"), (0.02, "medium"), (0.15, "medium"), (0.1501, "large")],
)
def test_without_spacing_a_lesion_is_sized_by_its_share_of_the_image(image_share: float, size: str) -> None:
    lesion = anchor(1, "skin lesion", size=None)
    assert cues.size_class(lesion, seen(None, image_share=image_share), False) == size


@pytest.mark.parametrize(
    ("label", "complete", "cut", "diameter_mm"),
    [
        ("liver lesion", False, False, 12.0),  # the volume's border cuts it
        ("liver lesion", True, True, 12.0),  # the image's border cuts it
        ("liver lesion", True, False, None),  # no spacing: no diameter
        ("kidney", False, False, 12.0),  # an organ the field of view cuts
        ("rib_left_7", True, False, 12.0),  # a numbered series member: no size words
        ("lung field", True, False, 12.0),  # a paired structure labelled as instances
    ],
)
def test_no_size_class_where_size_is_not_measurable(
    label: str, complete: bool, cut: bool, diameter_mm: float | None
) -> None:
    assert cues.size_class(anchor(1, label, size=200.0, complete=complete), seen(diameter_mm, cut=cut), True) is None


PRIORS = tomllib.loads((resources.files("medground") / "presets" / "priors.toml").read_text())["volume_ml"]

# Every organ of presets/priors.toml at and on either side of both ends of its adult range (mL).
ORGAN_ROWS = [
    row
    for organ, (low, high) in sorted(PRIORS.items())
    for row in (
        (organ, low - 0.01, "small"),
        (organ, low, "normal"),
        (organ, high, "normal"),
        (organ, high + 0.01, "large"),
    )
]


@pytest.mark.parametrize(("label", "volume_ml", "size"), ORGAN_ROWS)
def test_organ_size_classes_against_the_priors(label: str, volume_ml: float, size: str) -> None:
    assert cues.size_class(anchor(1, label, size=volume_ml), seen(), True) == size


@pytest.mark.parametrize(
    ("label", "prior", "end", "size"),
    [
        # A side suffix and spaces name the same prior.
        ("kidney_left", "kidney", "low", "normal"),
        ("kidney_right", "kidney", "below", "small"),
        ("kidney_left", "kidney", "above", "large"),
        ("adrenal_gland_right", "adrenal_gland", "high", "normal"),
        ("Urinary Bladder", "urinary_bladder", "above", "large"),
    ],
)
def test_organ_names_find_their_prior(label: str, prior: str, end: str, size: str) -> None:
    low, high = PRIORS[prior]
    volume = {"below": low - 0.01, "low": low, "high": high, "above": high + 0.01}[end]
    assert cues.size_class(anchor(1, label, size=volume), seen(), True) == size


def test_no_size_class_without_a_prior() -> None:
    assert cues.size_class(anchor(1, "aorta", size=1500.0), seen(), True) is None


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "P", "S"), ("P", "I", "R")])
def test_whole_structures_relate_in_the_patient_whatever_the_storage(shared_data: Path, tmp_path: Path, codes) -> None:
    """3D relations between whole structures on the real CT, from their boxes in RAS+ mm:
    what an atlas says (the liver on the patient's right of the spleen, the left kidney to
    the left of the right one, the spinal cord posterior to the pancreas, the right lower
    lobe superior to the right kidney), with the same boxes in millimetres and the same
    words when the file stores the grid as LPS or PIR."""
    from medground.boxes import voxel_box_to_ras

    spec = load_spec(ct_mr_spec(shared_data, tmp_path, "CT"))
    stored = load_case(spec, find_cases(spec).cases[0])
    case = _reoriented(stored, codes)
    assert case.image.axcodes == codes

    def ras_boxes(case: Case) -> dict[str, list[list[float]]]:
        organs = [a for a in find_anchors(case, spec).anchors.values() if a.kind == "organ"]
        return {a.label: voxel_box_to_ras(a.bbox_min, a.bbox_max, case.image.affine) for a in organs}

    boxes, reference = ras_boxes(case), ras_boxes(stored)
    assert boxes.keys() == reference.keys() and len(boxes) >= 20
    for name, box in boxes.items():
        assert np.allclose(box, reference[name], atol=0.011), name
    expected = {
        ("liver", "spleen"): "right",
        ("spleen", "liver"): "left",
        ("kidney_left", "kidney_right"): "left",
        ("spinal_cord", "pancreas"): "posterior",
        ("lung_lower_lobe_right", "kidney_right"): "superior",
        ("kidney_right", "lung_lower_lobe_right"): "inferior",
    }
    for (a, b), word in expected.items():
        assert cues.world_direction(boxes[a], boxes[b]) == word, (a, b, boxes[a], boxes[b])
    # Boxes overlapping along the axis of their offset are in no direction of each other.
    assert cues.world_direction(boxes["stomach"], boxes["colon"]) is None
    box = [[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]]
    assert cues.world_direction(box, [[2.0, 1.0, 0.0], [8.0, 9.0, 10.0]]) is None
    assert cues.world_direction(box, [[0.0, 0.0, 10.5], [10.0, 10.0, 20.0]]) == "inferior"
    assert cues.world_direction(box, [[0.0, -20.0, 0.0], [10.0, -0.5, 10.0]]) == "anterior"


def test_the_nearest_structure_is_the_one_the_plain_definition_picks() -> None:
    """``relations``' nearest named structure: among the view's nameable structures (the
    only one of their category) of another category, the most shared outline (by
    category), then the smallest box gap, then the lowest id — the plain minimum, for every
    object of seeded scenes dense with ties (equal gaps, several equally touching
    neighbours, categories shared or alone); None where there is no other."""
    import math

    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        corner = rng.integers(0, 40, size=(n, 2))
        size = rng.integers(1, 8, size=(n, 2))
        objects = [
            SimpleNamespace(object_id=i + 1, bbox_xyxy=tuple(int(v) for v in (*corner[i], *(corner[i] + size[i]))))
            for i in range(n)
        ]
        names = {o.object_id: f"s{int(rng.integers(0, n))}" for o in objects}
        shared = {f"s{int(k)}": int(rng.integers(0, 3)) for k in rng.integers(0, n, size=int(rng.integers(0, 4)))}
        view = SimpleNamespace(objects={o.object_id: o for o in objects})
        nearby = cues._Nearby(view, names)
        counts = Counter(names.values())
        unique = [o for o in objects if counts[names[o.object_id]] == 1]

        def gap(a, b):
            return math.hypot(max(0, max(a[0], b[0]) - min(a[2], b[2])), max(0, max(a[1], b[1]) - min(a[3], b[3])))

        for obj in objects:
            own = names[obj.object_id]
            others = [o for o in unique if names[o.object_id] != own]
            touching = {name: count for name, count in shared.items() if name != own}  # as relations gives it
            plain = (
                min(
                    others,
                    key=lambda o: (-touching.get(names[o.object_id], 0), gap(obj.bbox_xyxy, o.bbox_xyxy), o.object_id),
                )
                if others
                else None
            )
            assert nearby.nearest(obj, touching) is plain


@pytest.mark.parametrize(
    "dtype, shape", [(np.uint8, (23, 31)), (np.uint16, (7, 9, 11)), (np.uint32, (19, 17)), (np.int64, (6, 8, 5))]
)
def test_shared_faces_are_every_pair_of_face_neighbours_counted_both_ways(dtype, shape) -> None:
    """Faces between objects and with the background (0), from every id type a map comes
    in: a brute-force count of each pair of face neighbours along every axis."""
    rng = np.random.default_rng(7)
    labels = rng.choice(np.array([0, 1, 2, 5, 200], dtype=dtype), size=shape, p=[0.4, 0.2, 0.2, 0.1, 0.1])
    expected: dict[int, dict[int, int]] = {}
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        for x, y in zip(a[:-1].ravel().tolist(), a[1:].ravel().tolist(), strict=True):
            if x != y:
                for p, q in ((x, y), (y, x)):
                    expected.setdefault(p, {})
                    expected[p][q] = expected[p].get(q, 0) + 1
    assert {k: dict(v) for k, v in cues.shared_faces(labels).items()} == expected
