"""Images prepared per model family (and boxes mapped back to the stored image), and boxes
drawn on a marked copy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medground.backends.images import draw_boxes, png_data_url, prepare_image
from medground.boxes import FAMILIES, family_for_model


@pytest.mark.parametrize(
    ("model", "family", "multiple"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", 28),
        ("/models/lingshu-7b", "qwen2.5-vl", 28),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl", 28),
        ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl", 32),
        ("OpenGVLab/InternVL3-8B", "internvl", 1),
        ("google/medgemma-4b-it", "gemma3", 1),
        ("gpt-4o", "default", 1),
    ],
)
@pytest.mark.parametrize("shape", [(90, 90), (512, 512), (2048, 1536, 3), (300, 41)])
def test_images_are_prepared_per_family_and_boxes_map_back(model: str, family: str, multiple: int, shape) -> None:
    chosen = family_for_model(model)
    assert chosen.name == family
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    before = image.copy()
    prepared, prep = prepare_image(image, chosen)
    np.testing.assert_array_equal(image, before)
    height, width = prepared.shape[:2]
    assert prepared.dtype == np.uint8 and prepared.shape[2] == 3
    assert (width, height) == prep.size and prep.source_size == (shape[1], shape[0])
    if chosen.square:
        assert width == height == chosen.square
    else:
        assert width % multiple == 0 and height % multiple == 0
        assert width * height <= chosen.max_pixels
        assert width * height >= min(chosen.min_pixels, shape[0] * shape[1]) * 0.8
    box = [3, 5, min(shape[1], 40), min(shape[0], 30)]
    np.testing.assert_allclose(prep.to_source(prep.to_prepared(box)), box, atol=1e-9)
    marked = draw_boxes(prepared, [prep.to_prepared(box)])
    assert not np.array_equal(marked, prepared)
    assert json.dumps(prep.to_dict())


def test_draw_boxes_outlines_outside_the_box() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    marked = draw_boxes(image, [[10, 10, 20, 20]], width=2)
    red = (marked == (255, 0, 0)).all(axis=2)
    assert not red[10:20, 10:20].any()  # the object's own pixels stay clean
    assert red[8:22, 8:22].any() and red.sum() > 0
    assert not image.any()
    assert png_data_url(marked).startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="dtype"):
        prepare_image(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="family"):
        prepare_image(np.zeros((4, 4), np.uint8), "nope")
    assert set(FAMILIES) >= {"qwen2-vl", "qwen3-vl", "internvl", "gemma3", "default"}
