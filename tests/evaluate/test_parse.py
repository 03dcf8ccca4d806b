"""Reading boxes out of every model family's answer syntax."""

from __future__ import annotations

import pytest

from medground.evaluate import parse_boxes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Qwen2.5-VL / Qwen3-VL JSON, fenced, several objects, and cut short by max_tokens.
        ('```json\n[\n  {"bbox_2d": [84, 140, 420, 420], "label": "kidney tumor"}\n]\n```', [(84, 140, 420, 420)]),
        (
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5.5, 6, 7, 8], "label": "b"}]',
            [(1, 2, 3, 4), (5.5, 6, 7, 8)],
        ),
        (
            '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "lab',
            [(1, 2, 3, 4), (5, 6, 7, 8)],
        ),
        # bbox_2d wins over other lists in the answer.
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "the [10, 20, 30, 40] one"}]', [(1, 2, 3, 4)]),
        # Qwen2-VL, with its special tokens and with them stripped by the server.
        (
            "<|object_ref_start|>the tumor<|object_ref_end|><|box_start|>(153,143),(459,429)<|box_end|>",
            [(153, 143, 459, 429)],
        ),
        ("the tumor(153,143),(459,429)", [(153, 143, 459, 429)]),
        # Qwen-VL.
        ("<ref>the tumor</ref><box>(10, 20), (30, 40)</box>", [(10, 20, 30, 40)]),
        # InternVL, one and several boxes.
        ("<ref>the tumor</ref><box>[[200, 250, 600, 750]]</box>", [(200, 250, 600, 750)]),
        ("<ref>tumors</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>", [(1, 2, 3, 4), (5, 6, 7, 8)]),
        # Plain lists.
        ("The box is [0.2, 0.25, 0.6, 0.75].", [(0.2, 0.25, 0.6, 0.75)]),
        ("[12, 30, 40, 50] and [1, 1, 2, 2]", [(12, 30, 40, 50), (1, 1, 2, 2)]),
        # Nothing to read.
        ("I cannot find a tumor in this image.", []),
        ("[1, 2, 3]", []),
        ("", []),
    ],
)
def test_parse_boxes_reads_every_family_syntax(text, expected):
    assert parse_boxes(text) == expected
