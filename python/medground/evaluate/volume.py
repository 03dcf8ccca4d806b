"""Scoring 3D grounding: volume samples (``view.axis = "volume"``) against 3D boxes.

One convention, named ``voxel`` in every report: ``[i_min, j_min, k_min, i_max, j_max,
k_max]`` in the voxel indices of the sample's volume file (the case's volume in its closest
RAS+ orientation), max exclusive — the sample's ``bbox_3d``, flattened. A prediction line
gives ``{"id", "bbox_3d": [...]}``, ``{"id", "bboxes_3d": [[...], ...]}`` or ``{"id",
"text"}``, whose text is read for six-number lists ``[i0, j0, k0, i1, j1, k1]`` (or a JSON
``"bbox_3d"`` key). A sample with one target scores the first box: accuracy at 3D IoU 0.25
and 0.5, mean IoU and centre hits (the box's centre inside the target's box); one with
several targets is matched one to one at IoU 0.5 (precision, recall, F1), as in 2D. A
missing answer or one no box can be read from is a miss, and is counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medground.evaluate.match import centre_inside, iou, match_boxes
from medground.records import Sample, dumps, is_volume_sample
from medground.runfolder import RecordFileError, RunFolder, read_jsonl, split_name

__all__ = [
    "VOLUME_CONVENTION",
    "VOLUME_THRESHOLDS",
    "VolumePrediction",
    "VolumeTruth",
    "format_volume_report",
    "load_volume_predictions",
    "load_volume_truths",
    "parse_boxes_3d",
    "score_volumes",
    "volume_truths",
]

Box3 = tuple[float, float, float, float, float, float]
VOLUME_CONVENTION = "voxel"
VOLUME_THRESHOLDS = (0.25, 0.5)
_BREAKDOWNS = ("dataset", "query_type", "split", "subset")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SIX = re.compile(r"\[\s*" + r"\s*,\s*".join([f"({_NUM})"] * 6) + r"\s*\]")


@dataclass(frozen=True)
class VolumeTruth:
    """What the 3D evaluator needs of one volume sample."""

    id: str
    shape: tuple[int, int, int]
    boxes: tuple[Box3, ...]
    labels: tuple[str, ...]
    query_type: str
    dataset: str
    split: str | None
    subset: str | None

    @property
    def multi(self) -> bool:
        return len(self.boxes) != 1 or self.query_type == "multi_object"

    def group(self, breakdown: str) -> str:
        value = getattr(self, breakdown)
        return "(none)" if value is None else str(value)


@dataclass(frozen=True)
class VolumePrediction:
    """One prediction line for a volume sample: boxes given, or text to read them from."""

    id: str
    text: str | None
    boxes: tuple[Box3, ...] | None

    def raw_boxes(self) -> list[Box3]:
        return list(self.boxes) if self.boxes is not None else parse_boxes_3d(self.text or "")


def parse_boxes_3d(text: str) -> list[Box3]:
    """The six-number boxes ``[i0, j0, k0, i1, j1, k1]`` a model wrote, in order."""
    return [_box3(match.groups(), Path("-"), 0, "text") for match in _SIX.finditer(text)]


def _box3(value: Any, path: Path, line: int, what: str) -> Box3:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 6
        or not all(
            isinstance(v, (int, float, str)) and not isinstance(v, bool) and math.isfinite(float(v)) for v in value
        )
    ):
        raise RecordFileError(
            path, line, f"{what} must be 6 finite numbers [i0, j0, k0, i1, j1, k1], got {dumps(value)}"
        )
    i0, j0, k0, i1, j1, k1 = (float(v) for v in value)
    return (i0, j0, k0, i1, j1, k1)


def _truth(sample: Sample, path: Path, line: int) -> VolumeTruth:
    view = sample.view or {}
    shape = view.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise RecordFileError(path, line, f"a volume sample's view.shape must be 3 positive integers, got {shape!r}")
    if not sample.targets:
        raise RecordFileError(path, line, "targets must be a non-empty list")
    boxes = []
    for k, target in enumerate(sample.targets):
        box = target.bbox_3d
        if not (isinstance(box, list) and len(box) == 2 and all(isinstance(c, list) for c in box)):
            raise RecordFileError(path, line, f"targets[{k}].bbox_3d must be [[i, j, k]_min, [i, j, k]_max]")
        boxes.append(_box3([*box[0], *box[1]], path, line, f"targets[{k}].bbox_3d"))
    return VolumeTruth(
        id=sample.id,
        shape=(shape[0], shape[1], shape[2]),
        boxes=tuple(boxes),
        labels=tuple(t.label for t in sample.targets),
        query_type=sample.query_type,
        dataset=sample.dataset,
        split=sample.split,
        subset=sample.subset,
    )


def volume_truths(records: Iterable[tuple[int, Sample]], path: Path, split: str | None = None) -> list[VolumeTruth]:
    """The volume samples among ``(line, sample)`` pairs (of ``split`` when given)."""
    out = []
    for line, sample in records:
        if is_volume_sample(sample) and (split is None or sample.split == split_name(split)):
            out.append(_truth(sample, path, line))
    return out


def load_volume_truths(gt: Path | str, *, split: str | None = None) -> list[VolumeTruth]:
    """The volume samples of an output folder (or of its ``samples.jsonl``)."""
    gt = Path(gt)
    folder = RunFolder(gt) if gt.is_dir() else RunFolder(gt.parent)
    path = folder.samples_path if gt.is_dir() else gt
    if not path.is_file():
        raise RecordFileError(path, None, "cannot read: No such file or directory")
    return volume_truths(folder.samples(name=path.name), path, split)


def load_volume_predictions(pred: Path | str, ids: Iterable[str]) -> dict[str, VolumePrediction]:
    """The lines of a predictions file for the volume samples ``ids``: ``bbox_3d``,
    ``bboxes_3d`` (voxel convention) or ``text``. Other lines are left to the 2D reader."""
    wanted = set(ids)
    path = Path(pred)
    out: dict[str, VolumePrediction] = {}
    for line, record in read_jsonl(path):
        key = str(record.get("id"))
        if key not in wanted:
            continue
        if key in out:
            raise RecordFileError(path, line, f"duplicate id {key!r}")
        if "bbox_3d" in record:
            out[key] = VolumePrediction(key, None, (_box3(record["bbox_3d"], path, line, "bbox_3d"),))
        elif "bboxes_3d" in record:
            given = record["bboxes_3d"]
            if not isinstance(given, list):
                raise RecordFileError(path, line, f"'bboxes_3d' must be a list of boxes, got {dumps(given)}")
            boxes = tuple(_box3(b, path, line, f"bboxes_3d[{k}]") for k, b in enumerate(given))
            out[key] = VolumePrediction(key, None, boxes)
        elif isinstance(record.get("text"), str):
            out[key] = VolumePrediction(key, record["text"], None)
        else:
            raise RecordFileError(path, line, "a volume sample's prediction gives 'bbox_3d', 'bboxes_3d' or 'text'")
    return out


class _Tally:
    def __init__(self) -> None:
        self.samples = self.missing = self.unparseable = 0
        self.single = self.centre = 0
        self.iou_sum = 0.0
        self.acc = dict.fromkeys(VOLUME_THRESHOLDS, 0)
        self.multi = self.predicted = self.truth = self.hits = 0

    def add(self, truth: VolumeTruth, prediction: VolumePrediction | None) -> None:
        self.samples += 1
        boxes = prediction.raw_boxes() if prediction is not None else []
        self.missing += prediction is None
        self.unparseable += prediction is not None and not boxes
        if truth.multi:
            self.multi += 1
            matching = match_boxes(boxes, truth.boxes)
            self.predicted += len(boxes)
            self.truth += len(truth.boxes)
            self.hits += matching.hits
            return
        self.single += 1
        if boxes:
            overlap = iou(boxes[0], truth.boxes[0])
            self.iou_sum += overlap
            self.centre += centre_inside(boxes[0], truth.boxes[0])
            for threshold in VOLUME_THRESHOLDS:
                self.acc[threshold] += overlap >= threshold

    def to_dict(self) -> dict[str, Any]:
        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        precision, recall = ratio(self.hits, self.predicted), ratio(self.hits, self.truth)
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if self.multi else None)
        return {
            "samples": self.samples,
            "missing": self.missing,
            "unparseable": self.unparseable,
            "single": {
                "samples": self.single,
                **{f"acc@{t}": ratio(self.acc[t], self.single) for t in VOLUME_THRESHOLDS},
                "miou": ratio(self.iou_sum, self.single),
                "centre_hit": ratio(self.centre, self.single),
            },
            "multi": {
                "samples": self.multi,
                "predicted_boxes": self.predicted,
                "true_boxes": self.truth,
                "matched@0.5": self.hits,
                "precision@0.5": precision,
                "recall@0.5": recall,
                "f1@0.5": f1,
            },
        }


def score_volumes(truths: Sequence[VolumeTruth], predictions: Mapping[str, VolumePrediction]) -> dict[str, Any]:
    """3D scores of volume samples, overall and by dataset, query type, split and subset
    (module docstring); ``ceiling`` scores the true boxes themselves (1.0 where scored)."""
    overall, ceiling = _Tally(), _Tally()
    groups: dict[str, dict[str, _Tally]] = {name: {} for name in _BREAKDOWNS}
    for truth in truths:
        prediction = predictions.get(truth.id)
        overall.add(truth, prediction)
        ceiling.add(truth, VolumePrediction(truth.id, None, truth.boxes))
        for name in _BREAKDOWNS:
            groups[name].setdefault(truth.group(name), _Tally()).add(truth, prediction)
    return {
        "convention": VOLUME_CONVENTION,
        "boxes": "[i_min, j_min, k_min, i_max, j_max, k_max]: voxel indices of the sample's volume file, max exclusive",
        "overall": overall.to_dict(),
        "ceiling": ceiling.to_dict(),
        "breakdowns": {name: {k: v.to_dict() for k, v in sorted(groups[name].items())} for name in _BREAKDOWNS},
    }


def format_volume_report(report: Mapping[str, Any]) -> str:
    """:func:`score_volumes` as a plain-text table (ratios in percent)."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    header = f"{'':<24}{'n':>6}{'miss':>6}{'acc@0.25':>10}{'acc@0.5':>9}{'mIoU':>7}{'centre':>8}{'F1@0.5':>8}"
    lines = [
        f"volume samples (3D boxes, convention {report['convention']}: {report['boxes']})",
        header,
        "-" * len(header),
    ]

    def row(name: str, tally: Mapping[str, Any]) -> str:
        single, multi = tally["single"], tally["multi"]
        return (
            f"{name[:23]:<24}{tally['samples']:>6}{tally['missing']:>6}{pct(single['acc@0.25']):>10}"
            f"{pct(single['acc@0.5']):>9}{pct(single['miou']):>7}{pct(single['centre_hit']):>8}{pct(multi['f1@0.5']):>8}"
        )

    lines += [row("all", report["overall"]), row("ceiling", report["ceiling"])]
    for name, groups in report["breakdowns"].items():
        lines.append(f"{name}:")
        lines += [row(f"  {key}", tally) for key, tally in groups.items()]
    return "\n".join(lines)
