"""Box conventions: Qwen2.5-VL's resize, every convention to and from stored pixels.

Expected numbers are worked out by hand in the comments.
"""

from __future__ import annotations

import pytest

from medground.boxes import convention, smart_resize
from medground.export import FORMATS


@pytest.mark.parametrize(
    ("height", "width", "kwargs", "expected"),
    [
        # 572/28 = 20.43 -> 20*28 = 560; 765/28 = 27.32 -> 27*28 = 756; 560*756 = 423360 is in range.
        (572, 765, {}, (560, 756)),
        # 512/28 = 18.29 -> 18*28 = 504.
        (512, 512, {}, (504, 504)),
        # Already multiples of 28: unchanged.
        (112, 196, {}, (112, 196)),
        # 1512*1988 > 1003520: beta = sqrt(3e6/1003520) = 1.72902; 1500/beta/28 = 30.98 -> 840,
        # 2000/beta/28 = 41.31 -> 1148.
        (1500, 2000, {}, (840, 1148)),
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
