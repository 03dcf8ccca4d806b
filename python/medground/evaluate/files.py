"""What ``eval`` and ``predict`` read: the ground truth of a run folder and a predictions file.

Errors name the file and the line (:class:`medground.runfolder.RecordFileError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medground.boxes import (
    GROUNDING_FAMILIES,
    QWEN25_MAX_PIXELS,
    QWEN25_MIN_PIXELS,
    Box,
    BoxConvention,
    convention,
)
from medground.evaluate.parse import parse_boxes
from medground.records import Sample, dumps, is_volume_sample
from medground.runfolder import RecordFileError, RunFolder, read_jsonl, split_name

__all__ = [
    "BREAKDOWNS",
    "NONE_KEY",
    "GroundTruth",
    "Prediction",
    "ViewObject",
    "ground_truths",
    "load_ground_truth",
    "load_predictions",
    "resolve_convention",
    "resolve_format",
    "samples_file",
]

BREAKDOWNS = ("dataset", "modality", "label", "query_type", "split", "same_label_distractors", "subset")
#: One of the view's objects as the samples record it: its label and box (a target's
#: box, one per visible part, or a distractor's).
ViewObject = tuple[str, Box]
NONE_KEY = "(none)"


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
        expression: The referring expression (None when absent).
        subset: ``appearance`` for a query that says no position or side word, else None.
        others: The view's other objects (the sample's ``distractors`` that record a box),
            as ``(label, box)``.
        absent_label: For an absent query (``query_type = "absent"``, no target), the label
            it names (its ``referring_attributes.category``); None for the others.
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
    expression: str | None = None
    others: tuple[ViewObject, ...] = ()
    subset: str | None = None
    absent_label: str | None = None

    @property
    def absent(self) -> bool:
        """Whether the query is about a structure absent from the image (no target: the
        right answer is no box)."""
        return self.query_type == "absent"

    @property
    def multi(self) -> bool:
        """Whether the sample is scored by matching (several targets or ``multi_object``)."""
        return not self.absent and (len(self.boxes) != 1 or self.query_type == "multi_object")

    @property
    def named(self) -> tuple[str, ...]:
        """The labels the query names: its targets' (one per box), or an absent query's one."""
        if self.absent:
            return (self.absent_label,) if self.absent_label is not None else ()
        return self.labels

    def group(self, breakdown: str) -> str:
        """The sample's group in one of :data:`BREAKDOWNS` (an absent query's label is the
        one it names)."""
        if breakdown == "label":
            names = sorted(set(self.named))
            return " + ".join(names) if names else NONE_KEY
        if breakdown == "same_label_distractors":
            return str(self.same_label_distractors)
        value = getattr(self, breakdown)
        return NONE_KEY if value is None else str(value)

    @property
    def objects(self) -> tuple[ViewObject, ...]:
        """Every object of the view as the sample records it: the targets (one box per
        visible part) and the other objects."""
        return tuple(zip(self.labels, self.boxes, strict=True)) + self.others


def _shown(value: Any) -> str:
    """A value read from a record, as an error message quotes it: JSON as the file had it
    (NaN and Infinity included, which medground never writes), anything else by its repr."""
    return json.dumps(value, default=repr)


#: The types a box's numbers have when read from JSON (a bool is an int to isinstance).
_JSON_NUMBERS = (int, float)


def _box(value: Any, path: Path, line: int, what: str) -> Box:
    # Most boxes are four JSON numbers whose sum is finite (then so is each): checked in
    # one pass; anything else (numpy numbers, a bool, an overflowing sum) takes the full check.
    if type(value) is list and len(value) == 4:
        x1, y1, x2, y2 = value
        if (
            type(x1) in _JSON_NUMBERS
            and type(y1) in _JSON_NUMBERS
            and type(x2) in _JSON_NUMBERS
            and type(y2) in _JSON_NUMBERS
            and math.isfinite(x1 + y1 + x2 + y2)
        ):
            return (float(x1), float(y1), float(x2), float(y2))
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise RecordFileError(path, line, f"{what} must be 4 finite numbers [x1, y1, x2, y2], got {_shown(value)}")
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)


def samples_file(gt: Path | str) -> Path:
    """``gt`` itself, or ``gt/samples.jsonl`` when ``gt`` is an output folder."""
    gt = Path(gt)
    return RunFolder(gt).samples_path if gt.is_dir() else gt


def load_ground_truth(gt: Path | str, *, split: str | None = None) -> list[GroundTruth]:
    """Reads the samples of an output folder (or of a ``samples.jsonl``); volume samples,
    scored in 3D, are left to :func:`medground.evaluate.volume.load_volume_truths`.

    Args:
        gt: The output folder of ``medground run`` or its ``samples.jsonl``.
        split: Keep only the samples of this split (None keeps all).

    Returns:
        The samples, in file order.

    Raises:
        RecordFileError: For unreadable files, bad JSON, records that are not samples,
            malformed boxes or duplicate ids, naming the file and line.
    """
    path = samples_file(gt)
    folder = RunFolder(path.parent)
    if not path.is_file():
        raise RecordFileError(path, None, "cannot read: No such file or directory")
    truths: list[GroundTruth] = []
    seen: dict[str, int] = {}
    for line, sample in folder.samples(name=path.name):
        if is_volume_sample(sample):
            continue  # scored in 3D (medground.evaluate.volume)
        if sample.id in seen:
            raise RecordFileError(path, line, f"duplicate id {sample.id!r} (first on line {seen[sample.id]})")
        seen[sample.id] = line
        truth = _truth(sample, path, line, folder)
        if split is None or sample.split == split_name(split):
            truths.append(truth)
    return truths


def ground_truths(records: Iterable[Mapping[str, Any]], source: Path | str) -> list[GroundTruth]:
    """The ground truth of sample records already in memory (the run's accepted samples,
    as the dataset card reads them); errors name ``source`` and the record's line.

    Raises:
        RecordFileError: As :func:`load_ground_truth`.
    """
    path = Path(source)
    folder = RunFolder(path.parent)
    truths = []
    for line, record in enumerate(records, start=1):
        try:
            sample = Sample.from_dict(dict(record))
        except (TypeError, ValueError) as error:
            raise RecordFileError(path, line, str(error)) from error
        if not is_volume_sample(sample):
            truths.append(_truth(sample, path, line, folder))
    return truths


def _truth(sample: Sample, path: Path, line: int, folder: RunFolder) -> GroundTruth:
    """What the evaluator needs of one sample, its boxes checked."""
    width, height = sample.width, sample.height
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise RecordFileError(path, line, f"width and height must be positive integers, got {width!r}, {height!r}")
    absent = sample.query_type == "absent"
    if absent and sample.targets:
        raise RecordFileError(path, line, "an absent query has no targets")
    if not absent and not sample.targets:
        raise RecordFileError(path, line, "targets must be a non-empty list")
    named = sample.referring_attributes.get("category") if absent else None
    if absent and not isinstance(named, str):
        raise RecordFileError(path, line, "an absent query's referring_attributes.category must name its label")
    boxes = tuple(_box(t.bbox_xyxy, path, line, f"targets[{k}].bbox_xyxy") for k, t in enumerate(sample.targets))
    for k, t in enumerate(sample.targets):
        if not isinstance(t.label, str):
            raise RecordFileError(path, line, f"targets[{k}].label must be a string, got {_shown(t.label)}")
    labels = tuple(t.label for t in sample.targets)
    same_label = sum(1 for d in sample.distractors if isinstance(d, dict) and d.get("label") in labels)
    others = tuple(
        (str(d["label"]), _box(d["bbox_xyxy"], path, line, f"distractors[{k}].bbox_xyxy"))
        for k, d in enumerate(sample.distractors)
        if isinstance(d, dict) and isinstance(d.get("label"), str) and d.get("bbox_xyxy") is not None
    )
    return GroundTruth(
        id=sample.id,
        width=width,
        height=height,
        boxes=boxes,
        labels=labels,
        dataset=sample.dataset,
        modality=sample.modality,
        split=sample.split,
        query_type=sample.query_type,
        same_label_distractors=same_label,
        query=sample.query,
        image=folder.path(sample.image) if sample.image else None,
        expression=sample.referring_expression,
        others=others,
        subset=sample.subset,
        absent_label=named,
    )


@dataclass(frozen=True)
class Prediction:
    """One prediction line: the model's raw text, or boxes already read.

    Attributes:
        id: Sample id.
        text: The raw answer (None when the line gives boxes).
        boxes: The boxes of a ``bbox``/``bboxes`` line (None when the line gives text).
        format: The convention the line records (``medground predict`` writes it), if any.
        line: Line number in the file, for messages.
        convention: The box convention the line records (``boxes``: a
            :meth:`~medground.boxes.BoxConvention.describe` record), if any.
    """

    id: str
    text: str | None
    boxes: tuple[Box, ...] | None
    format: str | None
    line: int
    convention: dict[str, Any] | None = None

    def raw_boxes(self) -> list[Box]:
        """The predicted boxes in the prediction's own convention (parsed from the text)."""
        if self.boxes is not None:
            return list(self.boxes)
        return parse_boxes(self.text or "")


def load_predictions(pred: Path | str, *, skip: Collection[str] = ()) -> dict[str, Prediction]:
    """Reads a predictions JSONL: ``{"id", "text"}``, ``{"id", "bbox"}`` or ``{"id", "bboxes"}``.

    Boxes given as numbers are in the run's convention like boxes in text. Other keys are
    ignored, except ``format``, which :func:`resolve_format` checks against ``--format``,
    (lines whose id is in ``skip``, the volume samples, are left out),
    and ``boxes`` (the convention ``predict`` assumed), which :func:`resolve_convention` reads.

    Raises:
        RecordFileError: For bad JSON, a line without ``id``, a line with none or several of
            ``text``/``bbox``/``bboxes``, malformed boxes or duplicate ids (file and line named).
    """
    path = Path(pred)
    predictions: dict[str, Prediction] = {}
    for line, record in read_jsonl(path):
        if "id" not in record:
            raise RecordFileError(path, line, "prediction has no 'id'")
        sample_id = str(record["id"])
        if sample_id in skip:
            continue  # a volume sample's line (medground.evaluate.volume reads it)
        if sample_id in predictions:
            raise RecordFileError(
                path, line, f"duplicate id {sample_id!r} (first on line {predictions[sample_id].line})"
            )
        given = [key for key in ("text", "bbox", "bboxes") if key in record]
        if len(given) != 1:
            raise RecordFileError(path, line, f"give exactly one of 'text', 'bbox', 'bboxes', got {given or 'none'}")
        text: str | None = None
        boxes: tuple[Box, ...] | None = None
        if given[0] == "text":
            text = record["text"]
            if not isinstance(text, str):
                raise RecordFileError(path, line, f"'text' must be a string, got {_shown(text)}")
        elif given[0] == "bbox":
            boxes = (_box(record["bbox"], path, line, "bbox"),)
        else:
            if not isinstance(record["bboxes"], list):
                raise RecordFileError(path, line, f"'bboxes' must be a list of boxes, got {_shown(record['bboxes'])}")
            boxes = tuple(_box(b, path, line, f"bboxes[{k}]") for k, b in enumerate(record["bboxes"]))
        fmt, recorded = _recorded(record, path, line)
        predictions[sample_id] = Prediction(sample_id, text, boxes, fmt, line, recorded)
    return predictions


def _recorded(record: dict[str, Any], path: Path, line: int) -> tuple[str | None, dict[str, Any] | None]:
    """The ``format`` and ``boxes`` (convention) a prediction line records, if any."""
    fmt = record.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise RecordFileError(path, line, f"'format' must be a string, got {_shown(fmt)}")
    boxes = record.get("boxes")
    if boxes is not None and not (isinstance(boxes, dict) and "name" in boxes):
        raise RecordFileError(path, line, f"'boxes' must be a box convention record, got {_shown(boxes)}")
    return fmt, boxes


def resolve_format(predictions: Mapping[str, Prediction], path: Path | str, name: str | None) -> str:
    """The run's format: ``name`` if given, else the one format every prediction records.

    Raises:
        RecordFileError: When a prediction records another format than ``name``, or when
            ``name`` is None and the predictions record none or several.
    """
    recorded = {p.format for p in predictions.values()}
    if name is not None:
        for p in sorted(predictions.values(), key=lambda p: p.line):
            if p.format is not None and p.format != name:
                raise RecordFileError(path, p.line, f"prediction records format {p.format!r} but --format is {name!r}")
        return name
    if recorded == {None} or not recorded:
        raise RecordFileError(
            path, None, f"the predictions record no format; give --format ({', '.join(GROUNDING_FAMILIES)})"
        )
    if None in recorded or len(recorded) > 1:
        found = ", ".join(sorted(str(f) for f in recorded))
        raise RecordFileError(path, None, f"the predictions record different formats ({found}); give --format")
    (only,) = recorded
    assert only is not None
    return only


def resolve_convention(
    predictions: Mapping[str, Prediction],
    path: Path | str,
    name: str,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> BoxConvention:
    """The box convention of the run's format ``name``: the one the predictions record
    (``predict`` writes it on every line), else the format's default.

    ``min_pixels``/``max_pixels`` (Qwen2.5-VL's processor limits) replace the defaults for
    predictions that record no convention, and must agree with a recorded one.

    Raises:
        RecordFileError: When the predictions record different conventions, one that is not
            the format's, or limits other than ``min_pixels``/``max_pixels``.
    """
    recorded = {dumps(p.convention, sort_keys=True): p for p in predictions.values() if p.convention is not None}
    given = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if not recorded:
        return convention(
            name,
            min_pixels=QWEN25_MIN_PIXELS if min_pixels is None else min_pixels,
            max_pixels=QWEN25_MAX_PIXELS if max_pixels is None else max_pixels,
        )
    if len(recorded) > 1:
        lines = sorted(p.line for p in recorded.values())
        raise RecordFileError(path, lines[-1], "the predictions record different box conventions")
    (first,) = recorded.values()
    assert first.convention is not None
    try:
        found = BoxConvention.from_description(first.convention)
    except ValueError as error:
        raise RecordFileError(path, first.line, str(error)) from error
    expected = convention(name).name
    if found.name != expected:
        raise RecordFileError(path, first.line, f"predictions record boxes {found.name!r}, not {name}'s {expected!r}")
    if found.resized:
        for key, value in given.items():
            if value is not None and value != getattr(found, key):
                raise RecordFileError(
                    path,
                    first.line,
                    f"predictions record {key} {getattr(found, key)} but --{key.replace('_', '-')} is {value}",
                )
    return found
