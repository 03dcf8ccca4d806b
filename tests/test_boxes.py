"""Box conventions: Qwen2.5-VL's resize (against qwen-vl-utils' own code), LLaMA-Factory's
resize, LLaVA's square padding, every convention to and from stored pixels.

Expected numbers are worked out by hand in the comments.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medground.boxes import (
    QWEN25_MAX_PIXELS,
    QWEN25_MIN_PIXELS,
    BoxConvention,
    convention,
    llamafactory_resize,
    smart_resize,
    voxel_box_to_ras,
)
from medground.export import FORMATS
from qwen_vision import vision_process


@pytest.mark.parametrize(
    ("height", "width", "kwargs", "expected"),
    [
        # 572/28 = 20.43 -> 20*28 = 560; 765/28 = 27.32 -> 27*28 = 756; 560*756 = 423360 is in range.
        (572, 765, {}, (560, 756)),
        # 512/28 = 18.29 -> 18*28 = 504.
        (512, 512, {}, (504, 504)),
        # Already multiples of 28: unchanged.
        (112, 196, {}, (112, 196)),
        # The checkpoints' max_pixels is 16384*28*28 = 12845056: 1512*1988 fits, nothing shrinks.
        (1500, 2000, {}, (1512, 1988)),
        # A 2295x1716 photograph: 1716/28 = 61.29 -> 1708, 2295/28 = 81.96 -> 2296; 3.9 MP fits.
        (1716, 2295, {}, (1708, 2296)),
        # 5012*4004 = 20.07 MP > 12845056: beta = sqrt(20e6/12845056) = 1.24781; 4000/beta/28 = 114.49
        # -> 114*28 = 3192, 5000/beta/28 = 143.11 -> 4004.
        (4000, 5000, {}, (3192, 4004)),
        # The HF processor class default (1280 patches, 1003520): 1512*1988 > 1003520:
        # beta = sqrt(3e6/1003520) = 1.72902; 1500/beta/28 = 30.98 -> 840, 2000/beta/28 = 41.31 -> 1148.
        (1500, 2000, {"max_pixels": 1280 * 28 * 28}, (840, 1148)),
        # 28*28 < 3136: beta = sqrt(3136/600) = 2.28619; 20*beta/28 = 1.63 -> ceil 2 -> 56,
        # 30*beta/28 = 2.45 -> ceil 3 -> 84.
        (20, 30, {}, (56, 84)),
        # max_pixels 256*28*28 = 200704 < 504*504: beta = sqrt(262144/200704) = 8/7; 512*7/8 = 448 = 16*28.
        (512, 512, {"max_pixels": 256 * 28 * 28}, (448, 448)),
    ],
)
def test_smart_resize_matches_hand_computed_sizes(height, width, kwargs, expected):
    assert smart_resize(height, width, **kwargs) == expected


@pytest.mark.parametrize(
    ("height", "width", "kwargs", "message"),
    [
        (0, 10, {}, "positive"),
        (10, 2500, {}, "aspect ratio"),
        (100, 100, {"min_pixels": 10, "max_pixels": 5}, "min_pixels"),
    ],
)
def test_smart_resize_rejects_what_the_processor_rejects(height, width, kwargs, message):
    with pytest.raises(ValueError, match=message):
        smart_resize(height, width, **kwargs)


@pytest.mark.parametrize(
    ("name", "box", "expected"),
    [
        ("pixel", [10, 20, 30, 40], (10, 20, 30, 40)),
        # 0.2*765 = 153, 0.25*572 = 143, 0.6*765 = 459, 0.75*572 = 429.
        ("norm1", [0.2, 0.25, 0.6, 0.75], (153, 143, 459, 429)),
        ("qwen2-vl", [200, 250, 600, 750], (153, 143, 459, 429)),
        ("qwen3-vl", [200, 250, 600, 750], (153, 143, 459, 429)),
        ("internvl", [200, 250, 600, 750], (153, 143, 459, 429)),
        ("qwen-vl", [200, 250, 600, 750], (153, 143, 459, 429)),
        # Resized 756x560: x * 765/756, y * 572/560; 84 -> 85, 140 -> 143, 420 -> 425 and 429.
        ("qwen2.5-vl", [84, 140, 420, 420], (85, 143, 425, 429)),
        # Corners come in any order.
        ("internvl", [600, 750, 200, 250], (153, 143, 459, 429)),
    ],
)
def test_each_convention_maps_to_stored_pixels(name, box, expected):
    assert convention(name).to_pixels(box, 765, 572) == pytest.approx(expected)


def test_qwen25_resize_parameters_are_configurable():
    # max_pixels 256*28*28 resizes 512x512 to 448x448, so 448 maps back to 512 (not 455.1 via 504).
    fmt = convention("qwen2.5-vl", max_pixels=256 * 28 * 28)
    assert fmt.to_pixels([0, 0, 448, 224], 512, 512) == pytest.approx((0, 0, 512, 256))
    default = convention("qwen2.5-vl").to_pixels([0, 0, 448, 224], 512, 512)
    assert default == pytest.approx((0, 0, 448 * 512 / 504, 224 * 512 / 504))
    assert fmt.describe() == {"name": "qwen2.5-vl", "factor": 28, "min_pixels": 3136, "max_pixels": 200704}
    assert convention("internvl").describe() == {"name": "norm1000"}
    with pytest.raises(ValueError, match="box convention must be one of"):
        convention("qwen")


def test_from_pixels_conventions() -> None:
    assert convention("norm1000").from_pixels([10, 20, 30, 40], 100, 200) == [100, 100, 300, 200]
    assert convention("norm1").from_pixels([10, 20, 30, 40], 100, 200) == [0.1, 0.1, 0.3, 0.2]
    height, width = smart_resize(572, 765)
    assert convention("qwen2.5-vl").from_pixels([0, 0, 765, 572], 765, 572) == [0, 0, width, height]
    assert set(FORMATS) == {
        "llava",
        "sharegpt",
        "swift",
        "qwen2.5-vl",
        "qwen2-vl",
        "qwen3-vl",
        "internvl",
        "refcoco",
        "parquet",
    }
    with pytest.raises(ValueError):
        convention("yolo")


SIZES = [(572, 765), (512, 512), (20, 30), (28, 28), (1716, 2295), (1024, 1024), (4000, 5000), (3000, 100), (99, 9000)]


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize(
    "limits", [{}, {"max_pixels": 1280 * 28 * 28}, {"min_pixels": 256 * 28 * 28, "max_pixels": 512 * 28 * 28}]
)
def test_smart_resize_is_qwen_vl_utils(height: int, width: int, limits: dict[str, int]) -> None:
    # With no limits given, each side uses its own defaults: ours must be the library's
    # (the released checkpoints': 4 and 16384 patches of 28 x 28).
    qwen = vision_process()
    assert smart_resize(height, width, **limits) == qwen.smart_resize(height, width, factor=28, **limits)
    assert (QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS) == (3136, 12845056)


@pytest.mark.parametrize(("height", "width"), [(1716, 2295), (1024, 1024), (572, 765), (40, 60)])
def test_image_element_fields_make_fetch_image_resize_as_the_boxes_assume(height: int, width: int) -> None:
    # fetch_image (what process_vision_info calls for every image element) reads min_pixels and
    # max_pixels from the element itself; the image it returns is the model's input.
    qwen = vision_process()
    image = Image.new("RGB", (width, height))
    for limits in ({}, {"max_pixels": 512 * 28 * 28}):
        fmt = convention("qwen2.5-vl", **limits)
        fetched = qwen.fetch_image({"type": "image", "image": image, **fmt.image_fields()})
        assert fetched.size == fmt.model_size(width, height)
        # A box over the whole image is the whole model input.
        assert fmt.from_pixels([0, 0, width, height], width, height) == [0, 0, *fetched.size]


def test_pad_square_boxes_are_relative_to_the_centred_square() -> None:
    # LLaVA-1.5 (image_aspect_ratio "pad") pastes a 200x100 image at y = (200 - 100) // 2 = 50 of
    # a 200x200 square: [20, 10, 60, 90] is [0.1, 0.3, 0.3, 0.7] of the square.
    fmt = convention("norm1", pad_square=True)
    assert fmt.from_pixels([20, 10, 60, 90], 200, 100) == [0.1, 0.3, 0.3, 0.7]
    assert fmt.to_pixels([0.1, 0.3, 0.3, 0.7], 200, 100) == pytest.approx((20, 10, 60, 90))
    # Odd padding: 101 wide, 100 high -> offset (101 - 100) // 2 = 0 rows; 99 wide -> 0 columns.
    assert convention("pixel", pad_square=True).from_pixels([0, 0, 99, 100], 99, 100) == [0, 0, 99, 100]
    assert fmt.model_size(200, 100) == (200, 200)
    assert fmt.describe() == {"name": "norm1", "pad_square": True}


def test_llamafactory_resize_is_applied_before_the_units() -> None:
    # LLaMA-Factory's _preprocess_image: 2295*1716 = 3938220 > 768*768 = 589824, so
    # f = sqrt(589824 / 3938220) = 0.387003; int(2295 f) = 888, int(1716 f) = 664.
    assert llamafactory_resize(2295, 1716) == (888, 664)
    assert llamafactory_resize(500, 400) == (500, 400)  # small enough: untouched
    # Under image_min_pixels 32*32 = 1024: 20x30 = 600, f = sqrt(1024/600) = 1.30639 -> 26x39.
    assert llamafactory_resize(20, 30) == (26, 39)
    fmt = convention("pixel", image_max_pixels=768 * 768)
    assert fmt.from_pixels([0, 0, 2295, 1716], 2295, 1716) == [0, 0, 888, 664]
    # [1000, 800, 1100, 900] * (888/2295, 664/1716) = [386.9, 309.6, 425.6, 348.2] -> rounded.
    assert fmt.from_pixels([1000, 800, 1100, 900], 2295, 1716) == [387, 310, 426, 348]
    assert fmt.to_pixels([0, 0, 888, 664], 2295, 1716) == pytest.approx((0, 0, 2295, 1716))
    # Then Qwen2.5-VL's processor on the shrunk image: 888x664 -> 896x672 (multiples of 28).
    qwen = convention("qwen2.5-vl", image_max_pixels=768 * 768)
    assert qwen.model_size(2295, 1716) == (896, 672)
    assert qwen.from_pixels([0, 0, 2295, 1716], 2295, 1716) == [0, 0, 896, 672]


@pytest.mark.parametrize(
    "fmt",
    [
        convention("qwen2.5-vl"),
        convention("qwen2.5-vl", max_pixels=1003520, min_pixels=256 * 28 * 28),
        convention("norm1000", pad_square=True),
        convention("pixel", image_max_pixels=589824, image_min_pixels=4096),
        convention("norm1"),
    ],
)
def test_a_described_convention_reads_back_as_itself(fmt: BoxConvention) -> None:
    assert BoxConvention.from_description(json.loads(json.dumps(fmt.describe()))) == fmt


def test_round_trip_is_the_quantisation_of_the_convention() -> None:
    # 0-1000 of a 2295-wide image: one unit is 2.295 px, so a box moves by at most 1.15 px.
    box = [1203, 811, 1257, 861]
    back = convention("norm1000").round_trip(box, 2295, 1716)
    assert max(abs(a - b) for a, b in zip(back, box, strict=True)) <= 2.295 / 2
    assert convention("pixel").round_trip(box, 2295, 1716) == tuple(box)
    with pytest.raises(ValueError, match="only factor 28"):
        BoxConvention.from_description({"name": "qwen2.5-vl", "factor": 32})
    with pytest.raises(ValueError, match="needs 'name'"):
        BoxConvention.from_description({"name": "pixel", "scale": 3})


def test_voxel_boxes_in_ras_millimetres() -> None:
    # An LPS-stored volume (affine diag(-1, -1, 3)): box [2, 3, 1]..[5, 7, 4) has faces at
    # i 1.5..4.5, j 2.5..6.5, k 0.5..3.5, so R -4.5..-1.5, A -6.5..-2.5, S 1.5..10.5.
    lps = np.diag([-1.0, -1.0, 3.0, 1.0])
    assert voxel_box_to_ras([2, 3, 1], [5, 7, 4], lps) == [[-4.5, -6.5, 1.5], [-1.5, -2.5, 10.5]]
    # Shifted origin, 0.8 mm in-plane: i 9.5..19.5 -> 7.6..15.6, +100.
    shifted = np.diag([0.8, 0.8, 2.0, 1.0])
    shifted[:3, 3] = [100.0, -50.0, 20.0]
    assert voxel_box_to_ras([10, 0, 0], [20, 1, 1], shifted) == [[107.6, -50.4, 19.0], [115.6, -49.6, 21.0]]
    # A 90-degree rotation in plane (i runs along A, j along R): the bounds follow.
    rotated = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1.0]])
    assert voxel_box_to_ras([0, 10, 0], [4, 12, 1], rotated) == [[9.5, -0.5, -0.5], [11.5, 3.5, 0.5]]


@pytest.mark.parametrize("oblique", [False, True])
def test_voxel_box_in_ras_is_the_bounds_of_its_corners(oblique: bool) -> None:
    """The box's eight face corners through the affine (nibabel's ``apply_affine``), their
    bounds rounded to 0.01 mm; asked again, the same numbers in new lists."""
    from nibabel.affines import apply_affine

    affine = np.diag([-0.78, -0.78, 2.5, 1.0])
    affine[:3, 3] = [200.0, 180.0, -400.0]
    if oblique:
        angle = np.deg2rad(12.0)
        turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        affine[:3, :3] = turn @ affine[:3, :3]
    low, high = (10, 20, 3), (40, 61, 9)
    corners = np.array([[(low, high)[p][a] - 0.5 for a, p in enumerate(c)] for c in np.ndindex(2, 2, 2)])
    world = apply_affine(affine, corners)
    expected = [[round(float(v), 2) for v in world.min(0)], [round(float(v), 2) for v in world.max(0)]]
    first = voxel_box_to_ras(low, high, affine)
    np.testing.assert_allclose(first, expected, atol=0.0100001)
    first[0][0] = 1e9  # the caller's lists are its own
    np.testing.assert_allclose(voxel_box_to_ras(list(low), list(high), affine), expected, atol=0.0100001)
