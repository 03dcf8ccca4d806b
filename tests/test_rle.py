"""COCO run-length encoding, compared with pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medground import rle

coco_mask = pytest.importorskip("pycocotools.mask")


def coco_encode(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def coco_bbox_xyxy(coco_rle: dict) -> list[int] | None:
    x, y, w, h = (int(v) for v in coco_mask.toBbox(coco_rle))
    return None if w == 0 or h == 0 else [x, y, x + w, y + h]


shapes = st.tuples(st.integers(1, 64), st.integers(1, 64))


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    """Random masks plus the edge cases: empty, full, one pixel at a corner, sparse noise."""
    shape = draw(shapes)
    kind = draw(st.sampled_from(["random", "zeros", "ones", "corner", "blob"]))
    if kind == "random":
        return draw(arrays(np.bool_, shape))
    if kind == "zeros":
        return np.zeros(shape, bool)
    if kind == "ones":
        return np.ones(shape, bool)
    mask = np.zeros(shape, bool)
    if kind == "corner":
        mask[draw(st.sampled_from([0, -1])), draw(st.sampled_from([0, -1]))] = True
        return mask
    y0, y1 = sorted(draw(st.lists(st.integers(0, shape[0]), min_size=2, max_size=2)))
    x0, x1 = sorted(draw(st.lists(st.integers(0, shape[1]), min_size=2, max_size=2)))
    mask[y0:y1, x0:x1] = True
    return mask


@settings(max_examples=400, deadline=None)
@given(masks())
def test_matches_pycocotools(mask: np.ndarray) -> None:
    ours = rle.encode(mask)
    theirs = coco_encode(mask)
    assert ours == {"size": list(mask.shape), "counts": theirs["counts"].decode("ascii")}
    assert isinstance(ours["counts"], str)
    assert rle.area(ours) == int(coco_mask.area(theirs)) == int(mask.sum())
    assert rle.bbox_xyxy(ours) == coco_bbox_xyxy(theirs)


@settings(max_examples=400, deadline=None)
@given(masks())
def test_round_trip(mask: np.ndarray) -> None:
    decoded = rle.decode(rle.encode(mask))
    assert decoded.dtype == np.bool_
    np.testing.assert_array_equal(decoded, mask)


# pycocotools' decode still calls __array__ without numpy 2's copy keyword.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@settings(max_examples=200, deadline=None)
@given(masks())
def test_decodes_pycocotools_rle(mask: np.ndarray) -> None:
    theirs = coco_encode(mask)
    np.testing.assert_array_equal(rle.decode(theirs), mask)  # counts as bytes
    np.testing.assert_array_equal(rle.decode({**theirs, "counts": theirs["counts"].decode()}), mask)
    np.testing.assert_array_equal(coco_mask.decode(rle.encode(mask)).astype(bool), mask)


@settings(max_examples=200, deadline=None)
@given(masks())
def test_uncompressed_counts(mask: np.ndarray) -> None:
    compressed = rle.encode(mask)
    # pycocotools turns an uncompressed RLE (list counts) into a compressed one.
    counts = rle._decompress(compressed["counts"]).tolist()
    uncompressed = {"size": list(mask.shape), "counts": counts}
    assert coco_mask.frPyObjects(uncompressed, *mask.shape)["counts"].decode() == compressed["counts"]
    np.testing.assert_array_equal(rle.decode(uncompressed), mask)
    assert rle.area(uncompressed) == int(mask.sum())
    assert rle.bbox_xyxy(uncompressed) == rle.bbox_xyxy(compressed)


def test_runs_start_with_zeros() -> None:
    mask = np.array([[1, 0], [1, 1]], bool)  # Fortran order: 1 1 0 1
    assert rle._decompress(rle.encode(mask)["counts"]).tolist() == [0, 2, 1, 1]
    assert rle._decompress(rle.encode(np.zeros((3, 2)))["counts"]).tolist() == [6]
    assert rle._decompress(rle.encode(np.ones((3, 2)))["counts"]).tolist() == [0, 6]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int32, np.float32])
def test_any_dtype_and_memory_order(dtype: type, order: str) -> None:
    mask = np.random.default_rng(1).random((17, 23)) < 0.3
    array = np.asarray(mask.astype(dtype) * 3, order=order)  # nonzero, not just 1, is foreground
    assert rle.encode(array) == rle.encode(mask)


def test_bbox_is_max_exclusive() -> None:
    mask = np.zeros((10, 12), bool)
    mask[2, 3] = True
    assert rle.bbox_xyxy(rle.encode(mask)) == [3, 2, 4, 3]
    mask[4:7, 5:9] = True
    assert rle.bbox_xyxy(rle.encode(mask)) == [3, 2, 9, 7]
    assert rle.bbox_xyxy(rle.encode(np.ones((10, 12)))) == [0, 0, 12, 10]


def test_bbox_of_runs_that_wrap_columns() -> None:
    mask = np.zeros((5, 4), bool)
    mask[3:, 0] = True  # one run: rows 3-4 of column 0, then rows 0-1 of column 1
    mask[:2, 1] = True
    assert rle.bbox_xyxy(rle.encode(mask)) == [0, 0, 2, 5]


def test_empty_mask() -> None:
    empty = rle.encode(np.zeros((8, 9), bool))
    assert rle.area(empty) == 0
    assert rle.bbox_xyxy(empty) is None
    assert not rle.decode(empty).any()


def test_large_counts_and_long_deltas() -> None:
    mask = np.zeros((1024, 1024), bool)
    mask[1000:, 1000:] = True
    mask[0, 0] = True
    theirs = coco_encode(mask)
    assert rle.encode(mask)["counts"] == theirs["counts"].decode()
    np.testing.assert_array_equal(rle.decode(theirs), mask)


def test_noise_1024() -> None:
    mask = np.random.default_rng(2).random((1024, 1024)) < 0.5
    ours = rle.encode(mask)
    assert ours["counts"] == coco_encode(mask)["counts"].decode()
    np.testing.assert_array_equal(rle.decode(ours), mask)


MALFORMED = [
    ({"size": [2, 2]}, "'size' and 'counts'"),
    ([4], "mapping"),
    ({"size": [2], "counts": [4]}, r"\[height, width\]"),
    ({"size": [2, -1], "counts": [4]}, r"\[height, width\]"),
    ({"size": [2, 2], "counts": [3]}, "add up to 3 pixels"),
    ({"size": [2, 2], "counts": [2, -1, 3]}, "negative"),
    ({"size": [2, 2], "counts": []}, "non-empty list"),
    ({"size": [2, 2], "counts": [1.5, 2.5]}, "non-empty list"),
    ({"size": [2, 2], "counts": ""}, "empty"),
    ({"size": [2, 2], "counts": "4 "}, "outside COCO's alphabet"),
    ({"size": [2, 2], "counts": "4P"}, "ends inside a count"),
    ({"size": [2, 2], "counts": "P" * 12 + "0"}, "longer than 12"),
    ({"size": [2, 2], "counts": "1211"}, "add up to 7 pixels"),
    ({"size": [2, 2], "counts": "00O"}, "negative, got -1"),
]


@pytest.mark.parametrize(("bad", "message"), MALFORMED)
def test_malformed_rle(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rle.decode(bad)  # type: ignore[arg-type]


def test_encode_needs_2d() -> None:
    with pytest.raises(ValueError, match=r"2D, got 3 dimensions with shape \(2, 2, 2\)"):
        rle.encode(np.zeros((2, 2, 2)))


@settings(max_examples=300, deadline=None)
@given(
    mask=arrays(np.bool_, st.tuples(st.integers(1, 14), st.integers(1, 14))),
    corner=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_window_encoding_equals_whole_image(mask: np.ndarray, corner: tuple[float, ...]) -> None:
    """An object's RLE from its box alone is pycocotools' RLE of the whole image (runs that
    end on the last row and go on at the top of the next column included)."""
    height, width = mask.shape
    top, left = int(corner[0] * (height - 1)), int(corner[1] * (width - 1))
    bottom = top + 1 + int(corner[2] * (height - top - 1))
    right = left + 1 + int(corner[3] * (width - left - 1))
    whole = np.zeros_like(mask)
    whole[top:bottom, left:right] = mask[top:bottom, left:right]
    expected = coco_encode(whole)["counts"].decode("ascii")
    assert rle.encode_window(mask[top:bottom, left:right], top, left, (height, width))["counts"] == expected


def test_window_whole_columns_join_into_one_run() -> None:
    whole = np.zeros((4, 5), bool)
    whole[:, 1:4] = True  # three full columns: one run in column-major order
    assert rle.encode_window(whole[:, 1:4], 0, 1, (4, 5)) == rle.encode(whole)
    assert rle.encode(whole)["counts"] == rle._compress(np.array([4, 12, 4]))


def test_window_outside_the_image() -> None:
    with pytest.raises(ValueError, match="does not lie inside"):
        rle.encode_window(np.ones((3, 3), bool), 2, 0, (4, 4))


# pycocotools' decode still calls __array__ without numpy 2's copy keyword.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@settings(max_examples=300, deadline=None)
@given(mask=masks(), corner=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)))
def test_decode_window_equals_pycocotools(mask: np.ndarray, corner: tuple[float, ...]) -> None:
    """A window of a counts string (str, bytes, or the list of runs) decoded by the core
    is that window of pycocotools' whole mask, empty windows included."""
    height, width = mask.shape
    top, left = int(corner[0] * height), int(corner[1] * width)
    bottom = top + int(corner[2] * (height - top))
    right = left + int(corner[3] * (width - left))
    theirs = coco_encode(mask)
    expected = coco_mask.decode(theirs).astype(bool)[top:bottom, left:right]
    text = theirs["counts"].decode("ascii")
    for counts in (text, theirs["counts"], rle._decompress(text).tolist()):
        got = rle.decode_window({"size": [height, width], "counts": counts}, top, left, bottom, right)
        assert got.dtype == bool and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(rle.decode({"size": [height, width], "counts": text}), mask)


@settings(max_examples=500, deadline=None)
@given(text=st.binary(max_size=16) | st.text(alphabet="0123456789:;<=>?@ABOPQXYZ_`ijo", max_size=16))
def test_counts_strings_read_as_the_reference_reads_them(text: bytes | str) -> None:
    """Any string, well formed or not: the core's run lengths are the reference decoder's,
    and a string it refuses is refused with the reference's words."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    try:
        reference = rle._decompress(raw)
    except ValueError:
        reference = None
    pixels = int(reference.sum()) if reference is not None and (reference >= 0).all() else 7
    rle_ = {"size": [1, pixels], "counts": text}
    if reference is None or (reference < 0).any():
        with pytest.raises(ValueError, match="RLE counts"):
            rle.decode_window(rle_, 0, 0, 1, pixels)
        return
    np.testing.assert_array_equal(rle._parse(rle_)[1], reference)
    # Its first 4,096 pixels at most (a random string may stand for 2^59 of them): the runs,
    # each cut to that length, laid end to end.
    width = min(pixels, 4096)
    expected = np.repeat(np.arange(reference.size) % 2 == 1, np.minimum(reference, width))[:width]
    np.testing.assert_array_equal(rle.decode_window(rle_, 0, 0, 1, width), expected[None, :])


@pytest.mark.parametrize(("bad", "message"), MALFORMED)
def test_malformed_rle_windows(bad: object, message: str) -> None:
    """A window of a malformed RLE says what is wrong with the RLE, as a whole decode does."""
    with pytest.raises(ValueError, match=message):
        rle.decode_window(bad, 0, 0, 1, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [(0, 0, 3, 2), (-1, 0, 1, 1), (2, 0, 1, 1), (0, 1, 1, 0)])
def test_window_outside_the_mask(window: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="is not inside 2x2"):
        rle.decode_window(rle.encode(np.eye(2, dtype=bool)), *window)
