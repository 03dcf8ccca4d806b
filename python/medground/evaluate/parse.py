"""Reading the boxes a model wrote, whatever its family's syntax (no convention applied)."""

from __future__ import annotations

import re

from medground.boxes import Box

__all__ = ["parse_boxes"]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_BBOX_2D = re.compile(rf'"bbox_2d"\s*:\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]')
# Qwen2-VL <|box_start|>(x1,y1),(x2,y2)<|box_end|> and Qwen-VL <box>(x1,y1),(x2,y2)</box>; the
# bare pair also covers a server that strips Qwen2-VL's special tokens from the text.
_CORNER_PAIR = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")
# InternVL <box>[[x1, y1, x2, y2], ...]</box> and plain [x1, y1, x2, y2].
_QUAD = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")


def parse_boxes(text: str) -> list[Box]:
    """The boxes a model wrote, as the four numbers it wrote (no convention applied).

    Recognised, in this order of precedence (the first syntax found wins):

    1. Qwen2.5-VL / Qwen3-VL JSON, ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]``, inside
       ````` ```json ````` fences or not, and still read when the JSON was cut short;
    2. corner pairs ``(x1,y1),(x2,y2)``, as in Qwen2-VL ``<|box_start|>...<|box_end|>`` and
       Qwen-VL ``<box>...</box>``;
    3. four-number lists ``[x1, y1, x2, y2]``, as in InternVL ``<box>[[...], [...]]</box>``
       and plain answers.

    Args:
        text: The model's raw answer.

    Returns:
        Every box found, in the order written; empty when none could be read.
    """
    for pattern in (_BBOX_2D, _CORNER_PAIR, _QUAD):
        found = [_box(match) for match in pattern.finditer(text)]
        if found:
            return found
    return []


def _box(match: re.Match[str]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in match.groups())
    return (x1, y1, x2, y2)
