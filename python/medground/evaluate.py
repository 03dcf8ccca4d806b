"""Scoring grounding predictions against ``samples.jsonl``: ``medground eval``.

The evaluator is explicit about coordinates. Each model family writes boxes in its own
convention, and the convention is named once for the whole run (``--format``), never
guessed per prediction: public evaluators that guess between 0-1, 0-1000 and pixels, or
keep the better of two guesses, inflate scores.

======================  =================================================================
format                  what a predicted number means
======================  =================================================================
``qwen2.5-vl``          absolute pixels of the image after Qwen2.5-VL's ``smart_resize``
                        (factor 28, ``min_pixels``/``max_pixels``), mapped back by the
                        ratios of the stored and resized sizes
``qwen2-vl``,           0-1000, normalised to the image's width and height
``qwen3-vl``,
``internvl``,
``qwen-vl``
``norm1``               0-1, normalised to the image's width and height
``pixel``               pixels of the stored image
======================  =================================================================

Boxes are compared in the stored image's continuous pixel-edge convention (DESIGN.md,
"Coordinates"): ``[x_min, y_min, x_max, y_max]`` with the max exclusive, area
``(x_max - x_min) * (y_max - y_min)``.

A sample with one target scores the first predicted box: accuracy at IoU 0.3/0.5/0.7/0.9,
mean IoU and centre hits (the predicted box's centre inside the target box). A sample
with several targets (``multi_object``) is matched one to one (Hungarian) and scores
precision, recall and F1 at IoU 0.5, summed over all such samples. A missing prediction
or one no box can be read from is a miss, and is counted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

__all__ = [
    "BREAKDOWNS",
    "FORMATS",
    "IOU_THRESHOLDS",
    "QWEN25_FACTOR",
    "QWEN25_MAX_PIXELS",
    "QWEN25_MIN_PIXELS",
    "CoordinateFormat",
    "EvalFileError",
    "GroundTruth",
    "Matching",
    "Prediction",
    "SampleScore",
    "centre_inside",
    "eval_command",
    "evaluate",
    "format_report",
    "iou",
    "load_ground_truth",
    "load_predictions",
    "match_boxes",
    "parse_boxes",
    "read_jsonl",
    "resolve_format",
    "samples_file",
    "score_sample",
    "smart_resize",
]

Box = tuple[float, float, float, float]

# format -> how its numbers map to stored-image pixels: "resized" (Qwen2.5-VL), a scale
# that multiplies width/height (0-1000 is 1/1000 of the side), or None for pixels.
FORMATS: dict[str, str | float | None] = {
    "qwen2.5-vl": "resized",
    "qwen2-vl": 1 / 1000,
    "qwen3-vl": 1 / 1000,
    "internvl": 1 / 1000,
    "qwen-vl": 1 / 1000,
    "norm1": 1.0,
    "pixel": None,
}

QWEN25_FACTOR = 28
QWEN25_MIN_PIXELS = 56 * 56
QWEN25_MAX_PIXELS = 28 * 28 * 1280
IOU_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
MATCH_THRESHOLD = 0.5
BREAKDOWNS = ("dataset", "modality", "label", "query_type", "split", "same_label_distractors")
NONE_KEY = "(none)"


class EvalFileError(ValueError):
    """A ground-truth or prediction file that cannot be read; the message names file and line."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


# --- coordinates -------------------------------------------------------------------------


def smart_resize(height: int, width: int, *, factor: int = QWEN25_FACTOR, min_pixels: int = QWEN25_MIN_PIXELS,
                 max_pixels: int = QWEN25_MAX_PIXELS) -> tuple[int, int]:
    """The size Qwen2-VL/Qwen2.5-VL's processor resizes an image to, as ``(height, width)``.

    Each side is rounded to the nearest multiple of ``factor``; if the area is then above
    ``max_pixels`` (below ``min_pixels``) both sides are scaled down (up) by the same factor
    and floored (ceiled) to multiples of ``factor``, which keeps the aspect ratio. The
    arithmetic follows the processor's own so that boxes map back exactly.

    Args:
        height: Stored image height in pixels.
        width: Stored image width in pixels.
        factor: Patch size times merge size (28 for Qwen2-VL and Qwen2.5-VL).
        min_pixels: Smallest area the processor allows.
        max_pixels: Largest area the processor allows.

    Returns:
        ``(resized_height, resized_width)``, both multiples of ``factor``.

    Raises:
        ValueError: For non-positive sizes, an aspect ratio above 200 (the processor
            refuses those), or ``min_pixels > max_pixels``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels must not exceed max_pixels, got {min_pixels} > {max_pixels}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class CoordinateFormat:
    """One model family's box convention, and the way back to stored-image pixels.

    Attributes:
        name: A key of :data:`FORMATS`.
        min_pixels: Qwen2.5-VL's ``min_pixels`` (used by ``qwen2.5-vl`` only).
        max_pixels: Qwen2.5-VL's ``max_pixels`` (used by ``qwen2.5-vl`` only).
    """

    name: str
    min_pixels: int = QWEN25_MIN_PIXELS
    max_pixels: int = QWEN25_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.name not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.name!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}")

    def to_pixels(self, box: Sequence[float], width: int, height: int) -> Box:
        """Maps a box in this convention to pixels of the ``width`` x ``height`` stored image.

        Corners are put in order (min before max); nothing is clipped.
        """
        x1, y1, x2, y2 = (float(v) for v in box)
        rule = FORMATS[self.name]
        if rule == "resized":
            resized_h, resized_w = smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            sx, sy = width / resized_w, height / resized_h
        elif rule is None:
            sx = sy = 1.0
        else:
            assert isinstance(rule, float)
            sx, sy = rule * width, rule * height
        return (min(x1, x2) * sx, min(y1, y2) * sy, max(x1, x2) * sx, max(y1, y2) * sy)

    def describe(self) -> dict[str, Any]:
        """The convention as a JSON-ready record (resize parameters only where they matter)."""
        out: dict[str, Any] = {"name": self.name}
        if FORMATS[self.name] == "resized":
            out.update(factor=QWEN25_FACTOR, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return out


# --- parsing -----------------------------------------------------------------------------

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
        found = [tuple(float(v) for v in match.groups()) for match in pattern.finditer(text)]
        if found:
            return found  # type: ignore[return-value]
    return []


# --- geometry ----------------------------------------------------------------------------


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x_min, y_min, x_max, y_max]`` boxes (continuous
    pixel edges, area ``(x_max - x_min) * (y_max - y_min)``); 0 when the union is empty."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def centre_inside(predicted: Sequence[float], truth: Sequence[float]) -> bool:
    """Whether the centre of ``predicted`` lies in ``truth`` (half-open: max edges excluded)."""
    cx, cy = (predicted[0] + predicted[2]) / 2, (predicted[1] + predicted[3]) / 2
    return truth[0] <= cx < truth[2] and truth[1] <= cy < truth[3]


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of predicted to true boxes.

    Attributes:
        pairs: ``(predicted index, true index, IoU)`` for every matched pair.
        hits: Pairs with IoU at or above the threshold (true positives).
        n_predicted: Number of predicted boxes.
        n_truth: Number of true boxes.
    """

    pairs: tuple[tuple[int, int, float], ...]
    hits: int
    n_predicted: int
    n_truth: int


def match_boxes(predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], *,
                threshold: float = MATCH_THRESHOLD) -> Matching:
    """Hungarian one-to-one matching of predicted to true boxes.

    The matching maximises the number of pairs with IoU >= ``threshold`` and, among those
    matchings, the summed IoU, so a pair of near misses never costs a hit.

    Args:
        predicted: Predicted boxes (stored-image pixels).
        truth: True boxes (stored-image pixels).
        threshold: IoU at which a matched pair counts as a hit.

    Returns:
        The matching.
    """
    overlaps = [[iou(p, t) for t in truth] for p in predicted]
    pairs = _match(overlaps, threshold)
    hits = sum(1 for _, _, value in pairs if value >= threshold)
    return Matching(tuple(pairs), hits, len(predicted), len(truth))


def _match(overlaps: list[list[float]], threshold: float) -> list[tuple[int, int, float]]:
    if not overlaps or not overlaps[0]:
        return []
    n, m = len(overlaps), len(overlaps[0])
    # A hit outweighs any sum of IoUs (at most min(n, m)), so hits are maximised first.
    bonus = min(n, m) + 1.0
    weights = [[(bonus if v >= threshold else 0.0) + v for v in row] for row in overlaps]
    return [(i, j, overlaps[i][j]) for i, j in _max_weight_assignment(weights)]


def _max_weight_assignment(weights: list[list[float]]) -> list[tuple[int, int]]:
    """A maximum-weight assignment of min(rows, cols) pairs: scipy's when it is installed,
    else the O(n^2 m) Hungarian algorithm below (the sizes here are a handful of boxes)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _hungarian(weights)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return sorted((int(i), int(j)) for i, j in zip(rows, cols))


def _hungarian(weights: list[list[float]]) -> list[tuple[int, int]]:
    """Exact maximum-weight assignment (Kuhn-Munkres with potentials, shortest augmenting
    paths); rectangular matrices are transposed so that rows <= columns."""
    transposed = len(weights) > len(weights[0])
    cost = [list(col) for col in zip(*weights)] if transposed else [list(row) for row in weights]
    n, m = len(cost), len(cost[0])
    cost = [[-v for v in row] for row in cost]  # minimise the negated weights
    inf = math.inf
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner = [0] * (m + 1)  # owner[j]: 1-based row assigned to column j (0: none)
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        min_slack = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                slack = cost[i0 - 1][j - 1] - u[i0] - v[j]
                if slack < min_slack[j]:
                    min_slack[j], way[j] = slack, j0
                if min_slack[j] < delta:
                    delta, j1 = min_slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    min_slack[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    return sorted((j, i) for i, j in pairs) if transposed else sorted(pairs)


# --- files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """What the evaluator needs of one ``samples.jsonl`` line.

    Attributes:
        id: Sample id.
        width: Stored image width in pixels.
        height: Stored image height in pixels.
        boxes: The targets' ``bbox_xyxy`` in stored-image pixels.
        labels: The targets' labels.
        dataset, modality, split, query_type: As in the sample (None when absent).
        same_label_distractors: Distractors whose label is one of the targets' labels.
        query: The query text (None when absent).
        image: The image path, resolved against the output folder (None when absent).
    """

    id: str
    width: int
    height: int
    boxes: tuple[Box, ...]
    labels: tuple[str, ...]
    dataset: str | None
    modality: str | None
    split: str | None
    query_type: str | None
    same_label_distractors: int
    query: str | None = None
    image: Path | None = None

    @property
    def multi(self) -> bool:
        """Whether the sample is scored by matching (several targets or ``multi_object``)."""
        return len(self.boxes) != 1 or self.query_type == "multi_object"

    def group(self, breakdown: str) -> str:
        """The sample's group in one of :data:`BREAKDOWNS`."""
        if breakdown == "label":
            names = sorted(set(self.labels))
            return " + ".join(names) if names else NONE_KEY
        if breakdown == "same_label_distractors":
            return str(self.same_label_distractors)
        value = getattr(self, breakdown)
        return NONE_KEY if value is None else str(value)


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; errors name the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise EvalFileError(path, None, f"cannot read: {error.strerror or error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalFileError(path, number, f"not valid JSON ({error.msg} at column {error.colno})") from error
        if not isinstance(record, dict):
            raise EvalFileError(path, number, f"expected a JSON object, got {type(record).__name__}")
        yield number, record


def _box(value: Any, path: Path, line: int, what: str) -> Box:
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise EvalFileError(path, line, f"{what} must be 4 finite numbers [x1, y1, x2, y2], got {json.dumps(value)}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def samples_file(gt: Path | str) -> Path:
    """``gt`` itself, or ``gt/samples.jsonl`` when ``gt`` is an output folder."""
    gt = Path(gt)
    return gt / "samples.jsonl" if gt.is_dir() else gt


def load_ground_truth(gt: Path | str, *, split: str | None = None) -> list[GroundTruth]:
    """Reads the samples of an output folder (or of a ``samples.jsonl``).

    Args:
        gt: The output folder of ``medground run`` or its ``samples.jsonl``.
        split: Keep only the samples of this split (None keeps all).

    Returns:
        The samples, in file order.

    Raises:
        EvalFileError: For unreadable files, bad JSON, missing fields or duplicate ids,
            naming the file and line.
    """
    path = samples_file(gt)
    root = path.parent
    samples: list[GroundTruth] = []
    seen: dict[str, int] = {}
    for line, record in read_jsonl(path):
        for key in ("id", "width", "height", "targets"):
            if key not in record:
                raise EvalFileError(path, line, f"sample has no {key!r}")
        sample_id = str(record["id"])
        if sample_id in seen:
            raise EvalFileError(path, line, f"duplicate id {sample_id!r} (first on line {seen[sample_id]})")
        seen[sample_id] = line
        width, height = record["width"], record["height"]
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise EvalFileError(path, line, f"width and height must be positive integers, got {width!r}, {height!r}")
        targets = record["targets"]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
            raise EvalFileError(path, line, "targets must be a non-empty list of objects")
        boxes = tuple(_box(t.get("bbox_xyxy"), path, line, f"targets[{k}].bbox_xyxy") for k, t in enumerate(targets))
        labels = tuple(str(t["label"]) for t in targets if t.get("label") is not None)
        distractors = record.get("distractors") or []
        same_label = sum(1 for d in distractors if isinstance(d, dict) and d.get("label") in labels)
        if split is not None and record.get("split") != split:
            continue
        image = record.get("image")
        samples.append(GroundTruth(
            id=sample_id, width=width, height=height, boxes=boxes, labels=labels,
            dataset=record.get("dataset"), modality=record.get("modality"), split=record.get("split"),
            query_type=record.get("query_type"), same_label_distractors=same_label,
            query=record.get("query"), image=root / image if image else None,
        ))
    return samples


@dataclass(frozen=True)
class Prediction:
    """One prediction line: the model's raw text, or boxes already read.

    Attributes:
        id: Sample id.
        text: The raw answer (None when the line gives boxes).
        boxes: The boxes of a ``bbox``/``bboxes`` line (None when the line gives text).
        format: The convention the line records (``medground predict`` writes it), if any.
        line: Line number in the file, for messages.
    """

    id: str
    text: str | None
    boxes: tuple[Box, ...] | None
    format: str | None
    line: int

    def raw_boxes(self) -> list[Box]:
        """The predicted boxes in the prediction's own convention (parsed from the text)."""
        if self.boxes is not None:
            return list(self.boxes)
        return parse_boxes(self.text or "")


def load_predictions(pred: Path | str) -> dict[str, Prediction]:
    """Reads a predictions JSONL: ``{"id", "text"}``, ``{"id", "bbox"}`` or ``{"id", "bboxes"}``.

    Boxes given as numbers are in the run's convention like boxes in text. Other keys are
    ignored, except ``format``, which :func:`resolve_format` checks against ``--format``.

    Raises:
        EvalFileError: For bad JSON, a line without ``id``, a line with none or several of
            ``text``/``bbox``/``bboxes``, malformed boxes or duplicate ids (file and line named).
    """
    path = Path(pred)
    predictions: dict[str, Prediction] = {}
    for line, record in read_jsonl(path):
        if "id" not in record:
            raise EvalFileError(path, line, "prediction has no 'id'")
        sample_id = str(record["id"])
        if sample_id in predictions:
            raise EvalFileError(path, line, f"duplicate id {sample_id!r} (first on line {predictions[sample_id].line})")
        given = [key for key in ("text", "bbox", "bboxes") if key in record]
        if len(given) != 1:
            raise EvalFileError(path, line, f"give exactly one of 'text', 'bbox', 'bboxes', got {given or 'none'}")
        text: str | None = None
        boxes: tuple[Box, ...] | None = None
        if given[0] == "text":
            text = record["text"]
            if not isinstance(text, str):
                raise EvalFileError(path, line, f"'text' must be a string, got {json.dumps(text)}")
        elif given[0] == "bbox":
            boxes = (_box(record["bbox"], path, line, "bbox"),)
        else:
            if not isinstance(record["bboxes"], list):
                raise EvalFileError(path, line, f"'bboxes' must be a list of boxes, got {json.dumps(record['bboxes'])}")
            boxes = tuple(_box(b, path, line, f"bboxes[{k}]") for k, b in enumerate(record["bboxes"]))
        fmt = record.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise EvalFileError(path, line, f"'format' must be a string, got {json.dumps(fmt)}")
        predictions[sample_id] = Prediction(sample_id, text, boxes, fmt, line)
    return predictions


def resolve_format(predictions: Mapping[str, Prediction], path: Path | str, name: str | None) -> str:
    """The run's format: ``name`` if given, else the one format every prediction records.

    Raises:
        EvalFileError: When a prediction records another format than ``name``, or when
            ``name`` is None and the predictions record none or several.
    """
    recorded = {p.format for p in predictions.values()}
    if name is not None:
        for p in sorted(predictions.values(), key=lambda p: p.line):
            if p.format is not None and p.format != name:
                raise EvalFileError(path, p.line, f"prediction records format {p.format!r} but --format is {name!r}")
        return name
    if recorded == {None} or not recorded:
        raise EvalFileError(path, None, f"the predictions record no format; give --format ({', '.join(FORMATS)})")
    if None in recorded or len(recorded) > 1:
        found = ", ".join(sorted(str(f) for f in recorded))
        raise EvalFileError(path, None, f"the predictions record different formats ({found}); give --format")
    (only,) = recorded
    assert only is not None
    return only


# --- scoring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleScore:
    """One sample's result.

    Attributes:
        id: Sample id.
        status: ``scored``, ``unparseable`` (no box could be read) or ``missing`` (no prediction).
        multi: Whether the sample is scored by matching.
        iou: IoU of the first predicted box with the target (single-target samples; 0 for misses).
        centre_hit: Whether that box's centre lies in the target box.
        n_predicted: Predicted boxes (matched samples).
        n_truth: True boxes.
        hits: Matched pairs at IoU >= 0.5 (matched samples).
    """

    id: str
    status: str
    multi: bool
    iou: float
    centre_hit: bool
    n_predicted: int
    n_truth: int
    hits: int


def score_sample(truth: GroundTruth, prediction: Prediction | None, fmt: CoordinateFormat) -> SampleScore:
    """Scores one sample's prediction in the run's coordinate convention.

    Args:
        truth: The sample.
        prediction: Its prediction, or None when there is none.
        fmt: The convention every prediction of the run is in.

    Returns:
        The sample's score; a missing or unreadable prediction scores as a miss.
    """
    raw = prediction.raw_boxes() if prediction is not None else []
    status = "missing" if prediction is None else ("scored" if raw else "unparseable")
    boxes = [fmt.to_pixels(b, truth.width, truth.height) for b in raw]
    if truth.multi:
        matching = match_boxes(boxes, truth.boxes)
        return SampleScore(truth.id, status, True, 0.0, False, len(boxes), len(truth.boxes), matching.hits)
    if not boxes:
        return SampleScore(truth.id, status, False, 0.0, False, 0, 1, 0)
    first, target = boxes[0], truth.boxes[0]
    return SampleScore(truth.id, status, False, iou(first, target), centre_inside(first, target), len(boxes), 1, 0)


class _Tally:
    """Running sums of one group's scores."""

    def __init__(self) -> None:
        self.samples = self.missing = self.unparseable = 0
        self.single = self.centre = 0
        self.iou_sum = 0.0
        self.acc = dict.fromkeys(IOU_THRESHOLDS, 0)
        self.multi = self.n_predicted = self.n_truth = self.hits = 0

    def add(self, score: SampleScore) -> None:
        self.samples += 1
        self.missing += score.status == "missing"
        self.unparseable += score.status == "unparseable"
        if score.multi:
            self.multi += 1
            self.n_predicted += score.n_predicted
            self.n_truth += score.n_truth
            self.hits += score.hits
            return
        self.single += 1
        self.iou_sum += score.iou
        self.centre += score.centre_hit
        for t in IOU_THRESHOLDS:
            self.acc[t] += score.iou >= t

    def to_dict(self) -> dict[str, Any]:
        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        precision, recall = ratio(self.hits, self.n_predicted), ratio(self.hits, self.n_truth)
        if self.multi == 0:
            f1 = None
        elif self.hits == 0:
            f1 = 0.0
        else:
            assert precision is not None and recall is not None
            f1 = 2 * precision * recall / (precision + recall)
        single: dict[str, Any] = {"samples": self.single}
        single.update({f"acc@{t}": ratio(self.acc[t], self.single) for t in IOU_THRESHOLDS})
        single.update(miou=ratio(self.iou_sum, self.single), centre_hit=ratio(self.centre, self.single))
        return {
            "samples": self.samples, "missing": self.missing, "unparseable": self.unparseable,
            "single": single,
            "multi": {"samples": self.multi, "predicted_boxes": self.n_predicted, "true_boxes": self.n_truth,
                      "matched@0.5": self.hits, "precision@0.5": precision, "recall@0.5": recall, "f1@0.5": f1},
        }


def evaluate(truths: Sequence[GroundTruth], predictions: Mapping[str, Prediction],
             fmt: CoordinateFormat) -> dict[str, Any]:
    """Scores predictions against samples, overall and by every breakdown.

    Args:
        truths: The samples to score (every one counts; a missing prediction is a miss).
        predictions: Predictions by sample id; ids not among ``truths`` are counted as
            ``extra_predictions`` and otherwise ignored.
        fmt: The convention every prediction is in.

    Returns:
        A JSON-ready report: ``format`` (name and resize parameters), ``counts``
        (``samples``, ``predicted``, ``missing``, ``unparseable``, ``extra_predictions``),
        ``overall`` and ``breakdowns[name][group]`` metrics, each with ``samples``,
        ``missing``, ``unparseable``, ``single`` (``samples``, ``acc@0.3`` ... ``acc@0.9``,
        ``miou``, ``centre_hit``) and ``multi`` (``samples``, ``predicted_boxes``,
        ``true_boxes``, ``matched@0.5``, ``precision@0.5``, ``recall@0.5``, ``f1@0.5``).
        Ratios are in [0, 1], None where a group has no sample of that kind. The groups of
        every breakdown partition the samples, so their counts add up to the overall ones.
    """
    overall = _Tally()
    groups: dict[str, dict[str, _Tally]] = {name: {} for name in BREAKDOWNS}
    for truth in truths:
        score = score_sample(truth, predictions.get(truth.id), fmt)
        overall.add(score)
        for name in BREAKDOWNS:
            groups[name].setdefault(truth.group(name), _Tally()).add(score)
    ids = {t.id for t in truths}
    summary = overall.to_dict()
    return {
        "format": fmt.describe(),
        "counts": {
            "samples": overall.samples,
            "predicted": overall.samples - overall.missing,
            "missing": overall.missing,
            "unparseable": overall.unparseable,
            "extra_predictions": sum(1 for key in predictions if key not in ids),
        },
        "overall": summary,
        "breakdowns": {
            name: {key: groups[name][key].to_dict() for key in sorted(groups[name], key=_group_order)}
            for name in BREAKDOWNS
        },
    }


def _group_order(key: str) -> tuple[int, int, str]:
    return (1, 0, key) if key == NONE_KEY else (0, int(key), "") if key.isdigit() else (0, 0, key)


# --- report ------------------------------------------------------------------------------

_COLUMNS = [("n", 6), ("miss", 5), ("unpars", 6), ("acc@.3", 7), ("acc@.5", 7), ("acc@.7", 7), ("acc@.9", 7),
            ("mIoU", 6), ("centre", 7), ("multi", 6), ("P@.5", 6), ("R@.5", 6), ("F1@.5", 6)]


def _row(name: str, metrics: Mapping[str, Any], width: int) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    single, multi = metrics["single"], metrics["multi"]
    cells = [str(metrics["samples"]), str(metrics["missing"]), str(metrics["unparseable"]),
             *(pct(single[f"acc@{t}"]) for t in IOU_THRESHOLDS), pct(single["miou"]), pct(single["centre_hit"]),
             str(multi["samples"]), pct(multi["precision@0.5"]), pct(multi["recall@0.5"]), pct(multi["f1@0.5"])]
    return f"{name:<{width}}" + "".join(f"{cell:>{w + 1}}" for cell, (_, w) in zip(cells, _COLUMNS))


def format_report(report: Mapping[str, Any]) -> str:
    """The report of :func:`evaluate` as a plain-text table (ratios in percent)."""
    fmt, counts = report["format"], report["counts"]
    resize = "".join(f", {k} {v}" for k, v in fmt.items() if k != "name")
    lines = [
        f"format {fmt['name']}{resize}",
        (f"{counts['samples']} samples: {counts['predicted']} predicted ({counts['unparseable']} unparseable), "
         f"{counts['missing']} missing; {counts['extra_predictions']} predictions for ids not in the ground truth "
         "(ignored)"),
        ("single-target samples: accuracy at IoU, mean IoU, centre hits; multi-object samples: "
         "Hungarian matching, precision/recall/F1 at IoU 0.5 (all in %)"),
        "",
    ]
    names = [str(k) for groups in report["breakdowns"].values() for k in groups]
    width = max([len(n) + 2 for n in names] + [len(n) for n in BREAKDOWNS] + [8])
    header = f"{'':<{width}}" + "".join(f"{title:>{w + 1}}" for title, w in _COLUMNS)
    lines += [header, "-" * len(header), _row("all", report["overall"], width)]
    for name, groups in report["breakdowns"].items():
        lines.append(f"{name}")
        lines += [_row(f"  {key}", metrics, width) for key, metrics in groups.items()]
    return "\n".join(lines)


# --- command -----------------------------------------------------------------------------


@click.command("eval")
@click.option("--gt", "gt", required=True, type=click.Path(exists=True, path_type=Path),
              help="An output folder of `medground run`, or its samples.jsonl.")
@click.option("--pred", "pred", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Predictions JSONL: {id, text} or {id, bbox} or {id, bboxes} per line.")
@click.option("--format", "format_name", type=click.Choice(list(FORMATS)),
              help="The predictions' coordinate convention (default: the one the predictions record).")
@click.option("--min-pixels", type=int, default=QWEN25_MIN_PIXELS, show_default=True,
              help="qwen2.5-vl only: the processor's min_pixels.")
@click.option("--max-pixels", type=int, default=QWEN25_MAX_PIXELS, show_default=True,
              help="qwen2.5-vl only: the processor's max_pixels.")
@click.option("--split", default=None, help="Score only the samples of this split (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_command(gt: Path, pred: Path, format_name: str | None, min_pixels: int, max_pixels: int,
                 split: str | None, as_json: bool) -> None:
    """Score grounding predictions against the samples of an output folder.

    The coordinate convention is fixed for the whole run by --format (or recorded in the
    predictions by `medground predict`), never guessed per prediction.
    """
    try:
        truths = load_ground_truth(gt, split=split)
        predictions = load_predictions(pred)
        name = resolve_format(predictions, pred, format_name)
        fmt = CoordinateFormat(name, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if not truths:
        where = f" with split {split!r}" if split is not None else ""
        raise click.ClickException(f"{samples_file(gt)}: no samples{where} to score")
    try:
        report = evaluate(truths, predictions, fmt)
    except ValueError as error:  # an image Qwen2.5-VL's processor would refuse (aspect ratio)
        raise click.ClickException(str(error)) from error
    report.update(gt=str(samples_file(gt)), pred=str(pred), split=split)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
