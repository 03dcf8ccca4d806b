"""Verification stage 1 (format): a well-formed record, exact boxes, and a query that
gives nothing away.

Reason codes: ``schema``, ``box_outside_image``, ``box_degenerate``, ``box_mask_mismatch``,
``query_length``, ``leaked_number``, ``leaked_rendering``, ``leaked_identifier``,
``unfilled_slot``, ``register``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from medground import rle
from medground.records import Sample, StageResult, Target
from medground.verify.claims import vocabulary

__all__ = ["QUERY_TYPES", "check_format"]

QUERY_TYPES = ("direct", "descriptive", "relational", "multi_object", "absent")


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\s*(?:mm|cm|ml|cc|cm3|%)\b)(?![\w.])")
_SLOT = re.compile(r"[{}<>\[\]]|\bTODO\b|\bN/A\b|\bnull\b|\bNone\b|\$\w+")
_FILE = re.compile(r"\.\s?(?:nii|gz|png|jpe?g|bmp|tiff?|nrrd|mha|mhd|dcm)\b", re.IGNORECASE)
_LABEL_ID = re.compile(r"\b(?:label|class|id)\s*#?\s*\d", re.IGNORECASE)
_REGISTER = re.compile(r"\b(?:I|I'm|I am|sure|as an ai|certainly|here is|here's|the answer)\b", re.IGNORECASE)


#: A reason code and its detail.
_Problem = tuple[str, str]


def check_format(sample: Sample, *, min_words: int = 3, max_words: int = 40) -> StageResult:
    """Stage 1: a well-formed record, exact boxes, and a query that gives nothing away."""
    problem = _record_problem(sample) or _boxes_problem(sample) or _query_problem(sample, min_words, max_words)
    if problem is None:
        return StageResult("format", True)
    reason, detail = problem
    return StageResult.fail("format", reason, detail)


def _record_problem(sample: Sample) -> _Problem | None:
    """A malformed record: unknown query type, empty query, an object count that does not fit
    the query type (several objects only for multi_object; an object seen in pieces has one
    target per piece; no target exactly for an absent query), or no image size."""
    if sample.query_type not in QUERY_TYPES:
        return "schema", f"query_type {sample.query_type!r} is not one of {', '.join(QUERY_TYPES)}"
    if not isinstance(sample.query, str) or not sample.query.strip():
        return "schema", "empty query"
    objects = {t.object_id for t in sample.targets}
    if sample.query_type == "absent":
        if sample.targets:
            return "schema", f"{len(objects)} object(s) for an absent query (it has no target)"
    elif not sample.targets or (sample.query_type == "multi_object") != (len(objects) > 1):
        return "schema", f"{len(objects)} object(s) for a {sample.query_type} query"
    if not (
        isinstance(sample.width, int) and isinstance(sample.height, int) and sample.width > 0 and sample.height > 0
    ):
        return "schema", f"image size {sample.width}x{sample.height}"
    return None


def _boxes_problem(sample: Sample) -> _Problem | None:
    """The first target's box that is not an exact, in-image box of its mask."""
    view = sample.view or {}
    for target in sample.targets:
        if view.get("axis") == "volume":
            problem = _volume_box_problem(target, view)
        else:
            problem = _box_problem(target, sample.width, sample.height)
        if problem is not None:
            return problem
    return None


def _box_problem(target: Target, width: int, height: int) -> _Problem | None:
    """A box that is not four integers, leaves the image, has no area or is not its mask's box."""
    box = target.bbox_xyxy
    if box is None or target.mask_rle is None:
        return "schema", f"target {target.object_id} of a 2D view has no bbox_xyxy or mask_rle"
    if len(box) != 4 or not all(isinstance(v, int) for v in box):
        return "schema", f"bbox_xyxy {box} is not four integers"
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return "box_outside_image", f"box {box} outside the {width}x{height} image"
    if x1 <= x0 or y1 <= y0:
        return "box_degenerate", f"box {box} has no area"
    try:
        size = list(target.mask_rle["size"])
        mask_box = rle.bbox_xyxy(target.mask_rle)
    except (KeyError, TypeError, ValueError) as exc:
        return "schema", f"mask_rle unreadable: {exc}"
    if size != [height, width] or mask_box != box:
        return "box_mask_mismatch", f"box {box} but the mask's box is {mask_box} (mask size {size})"
    return None


def _volume_box_problem(target: Target, view: dict[str, Any]) -> _Problem | None:
    """A volume sample's target whose 3D box is not six integers inside the volume with
    volume, or that has no 3D mask (its 2D box and mask must be absent)."""
    box = target.bbox_3d
    shape = list(view.get("shape") or ())
    if target.bbox_xyxy is not None or target.mask_rle is not None:
        return "schema", f"target {target.object_id} of a volume sample has a 2D box or mask"
    if (
        box is None
        or len(box) != 2
        or any(len(corner) != 3 or not all(isinstance(v, int) for v in corner) for corner in box)
        or len(shape) != 3
    ):
        return "schema", f"bbox_3d {box} is not two corners of three integers in a volume of shape {shape}"
    low, high = box
    if any(lo < 0 or hi > n for lo, hi, n in zip(low, high, shape, strict=True)):
        return "box_outside_image", f"box {box} outside the volume of shape {shape}"
    if any(hi <= lo for lo, hi in zip(low, high, strict=True)):
        return "box_degenerate", f"box {box} has no volume"
    mask = target.mask_3d or {}
    if mask.get("file") != view.get("objects") or mask.get("value") != target.object_id:
        return "box_mask_mismatch", f"target {target.object_id} has no 3D mask in {view.get('objects')}"
    return None


def _query_problem(sample: Sample, min_words: int, max_words: int) -> _Problem | None:
    """A query of the wrong length, with template leftovers or bare numbers, that leaks how
    the image was made, or that is not one clinical sentence."""
    query = sample.query.strip()
    words = query.split()
    if not min_words <= len(words) <= max_words:
        return "query_length", f"{len(words)} words; expected {min_words}..{max_words}"
    slot = _SLOT.search(query)
    if slot:
        return "unfilled_slot", f"template or markup left in the query: {slot.group(0)!r}"
    number = _NUMBER.search(query)
    if number:
        return "leaked_number", f"a bare number {number.group(0)!r} (only measurements with units may appear)"
    return _leak_problem(query, sample.case_id) or _register_problem(query)


@lru_cache(maxsize=1)
def _leak_words() -> tuple[re.Pattern[str], tuple[tuple[str, re.Pattern[str]], ...]]:
    """The vocabulary's leak words: one pattern that finds any of them, and each word's
    own pattern (to name the first word of the vocabulary a query holds)."""
    words = vocabulary()["leaks"]["words"]
    each = tuple((w, re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])", re.IGNORECASE)) for w in words)
    alternatives = "|".join(re.escape(w) for w in words) or r"(?!x)x"
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE), each


@lru_cache(maxsize=4096)
def _case_id_pattern(case_id: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(case_id)}\b")


def _leak_problem(query: str, case_id: str) -> _Problem | None:
    """A query that mentions the rendering, a file, the case id or a label id."""
    any_word, each = _leak_words()
    if any_word.search(query):
        word = next(w for w, pattern in each if pattern.search(query))
        return "leaked_rendering", f"the query mentions {word!r}"
    if _FILE.search(query) or _case_id_pattern(case_id).search(query) and len(case_id) > 3:
        return "leaked_identifier", "the query names a file or the case id"
    if _LABEL_ID.search(query):
        return "leaked_identifier", "the query names a label id"
    return None


def _register_problem(query: str) -> _Problem | None:
    """A query that is not a single clinical sentence in English."""
    letters = sum(ch.isascii() and (ch.isalpha() or ch in " -',.?;:()/%³") or ch.isdigit() for ch in query)
    if letters < 0.95 * len(query) or _REGISTER.search(query) or query[-1] not in ".?":
        return (
            "register",
            "not a single clinical sentence in English "
            "(chatter, first person, stray characters or no final punctuation)",
        )
    return None
