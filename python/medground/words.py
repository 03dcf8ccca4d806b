"""What the descriptive words mean: the attributes a query is built from, places on a 3×3
grid of the image and shapes from 2D descriptors.

The cues name objects with these words and the verifier checks a query's words against
its own measurements with them, so both read a word the same way; what each measures it
measures on its own.

* place: where a box's centre sits on a 3×3 grid of the image, the row (``upper``,
  ``lower``) before the column (``left``, ``right``), ``center`` for the middle cell;
  ``upper`` alone is the top row, ``left`` alone the left column.
* shape: ``elongated`` if elongation (minor/major) < 0.5; else ``irregular`` if solidity
  < 0.8; else ``lobulated`` if solidity < 0.9 and circularity < 0.7; else ``round`` if
  elongation ≥ 0.8 and circularity ≥ 0.8; else ``oval``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ATTRIBUTES", "PLACES", "image_position", "in_cell", "shape_word"]

#: The attributes a referring expression is built from; a dataset's clinical attributes
#: (its case table) take any other name.
ATTRIBUTES = frozenset(
    {
        "category",
        "description",
        "laterality",
        "within",
        "touches",
        "size_rank",
        "size_class",
        "position",
        "shape",
        "intensity",
        "relation",
        "count",
    }
)

#: Each place word's (column, row) on the 3×3 grid; None where the word leaves it open.
PLACES: dict[str, tuple[int | None, int | None]] = {
    "upper left": (0, 0),
    "upper": (None, 0),
    "upper right": (2, 0),
    "left": (0, None),
    "center": (1, 1),
    "right": (2, None),
    "lower left": (0, 2),
    "lower": (None, 2),
    "lower right": (2, 2),
}


def image_position(box: Sequence[float], width: int, height: int) -> str:
    """Where a box's centre (``[x0, y0, x1, y1]``) sits: ``"upper left"`` … ``"center"``."""
    cx = 0.5 * (box[0] + box[2]) / width
    cy = 0.5 * (box[1] + box[3]) / height
    row = "upper" if cy < 1 / 3 else "lower" if cy >= 2 / 3 else ""
    column = "left" if cx < 1 / 3 else "right" if cx >= 2 / 3 else ""
    return " ".join(w for w in (row, column) if w) or "center"


def in_cell(box: Sequence[float], position: str, width: int, height: int) -> bool:
    """Whether the centre of a box lies in the part of the image a place word names."""
    column, row = PLACES[position]
    cx = 0.5 * (box[0] + box[2]) * 3 / width
    cy = 0.5 * (box[1] + box[3]) * 3 / height
    if column is not None and not column <= cx < column + 1:
        return False
    return row is None or row <= cy < row + 1


def shape_word(elongation: float, solidity: float, circularity: float) -> str:
    """The shape word of a 2D outline's descriptors."""
    if elongation < 0.5:
        return "elongated"
    if solidity < 0.8:
        return "irregular"
    if solidity < 0.9 and circularity < 0.7:
        return "lobulated"
    if elongation >= 0.8 and circularity >= 0.8:
        return "round"
    return "oval"
