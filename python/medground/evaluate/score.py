"""Scoring predictions against the samples, overall and by every breakdown.

A sample with one target scores the first predicted box: accuracy at IoU 0.3/0.5/0.7/0.9,
mean IoU and centre hits (the predicted box's centre inside the target box). A sample with
several targets (``multi_object``) is matched one to one (Hungarian) and scores precision,
recall and F1 at IoU 0.5, summed over all such samples. A missing prediction or one no box
can be read from is a miss, and is counted.

An absent query (``query_type = "absent"``: the structure it names is not in the image, no
target) is scored on its own: an answer with no box read from it is a correct rejection,
any box a false positive, and no answer at all is missing. Absent queries count in a
group's ``samples`` and ``missing`` (so breakdowns still add up) and in its ``absent``
metrics (``samples``, ``rejected``, ``false_positive``, ``rejection_accuracy``), never in
``single`` or ``multi``: the accuracies of the queries with a target are over those alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medground.boxes import Box, BoxConvention
from medground.evaluate.files import BREAKDOWNS, NONE_KEY, GroundTruth, Prediction
from medground.evaluate.match import centre_inside, iou, match_boxes

__all__ = ["IOU_THRESHOLDS", "SampleScore", "evaluate", "oracle", "score_sample"]

IOU_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


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
        absent: Whether the query is about an absent structure (no target).
        rejected: For an absent query, whether the answer gave no box (a correct rejection).
    """

    id: str
    status: str
    multi: bool
    iou: float
    centre_hit: bool
    n_predicted: int
    n_truth: int
    hits: int
    absent: bool = False
    rejected: bool = False


def score_sample(truth: GroundTruth, prediction: Prediction | None, fmt: BoxConvention) -> SampleScore:
    """Scores one sample's prediction in the run's coordinate convention.

    Args:
        truth: The sample.
        prediction: Its prediction, or None when there is none.
        fmt: The convention every prediction of the run is in.

    Returns:
        The sample's score; a missing or unreadable prediction scores as a miss, except for
        an absent query, where an answer with no box is a correct rejection.
    """
    raw = prediction.raw_boxes() if prediction is not None else []
    if truth.absent:
        status = "missing" if prediction is None else "scored"
        rejected = prediction is not None and not raw
        return SampleScore(truth.id, status, False, 0.0, False, len(raw), 0, 0, absent=True, rejected=rejected)
    status = "missing" if prediction is None else ("scored" if raw else "unparseable")
    boxes = [fmt.to_pixels(b, truth.width, truth.height) for b in raw]
    if truth.multi:
        matching = match_boxes(boxes, truth.boxes)
        return SampleScore(truth.id, status, True, 0.0, False, len(boxes), len(truth.boxes), matching.hits)
    if not boxes:
        return SampleScore(truth.id, status, False, 0.0, False, 0, 1, 0)
    first, target = boxes[0], truth.boxes[0]
    return SampleScore(truth.id, status, False, iou(first, target), centre_inside(first, target), len(boxes), 1, 0)


def oracle(truth: GroundTruth, fmt: BoxConvention) -> Prediction:
    """The prediction of a perfect model that answers in ``fmt``: the true boxes written in
    the convention (rounded as an export writes them)."""

    def written(box: Box) -> Box:
        x1, y1, x2, y2 = (float(v) for v in fmt.from_pixels(box, truth.width, truth.height))
        return (x1, y1, x2, y2)

    return Prediction(truth.id, None, tuple(written(b) for b in truth.boxes), fmt.name, 0)


class _Tally:
    """Running sums of one group's scores."""

    def __init__(self) -> None:
        self.samples = self.missing = self.unparseable = 0
        self.single = self.centre = 0
        self.iou_sum = 0.0
        self.acc = dict.fromkeys(IOU_THRESHOLDS, 0)
        self.multi = self.n_predicted = self.n_truth = self.hits = 0
        self.absent = self.rejected = self.false_positive = 0

    def add(self, score: SampleScore) -> None:
        self.samples += 1
        self.missing += score.status == "missing"
        self.unparseable += score.status == "unparseable"
        if score.absent:
            self.absent += 1
            self.rejected += score.rejected
            self.false_positive += score.status == "scored" and not score.rejected
            return
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
            "samples": self.samples,
            "missing": self.missing,
            "unparseable": self.unparseable,
            "single": single,
            "multi": {
                "samples": self.multi,
                "predicted_boxes": self.n_predicted,
                "true_boxes": self.n_truth,
                "matched@0.5": self.hits,
                "precision@0.5": precision,
                "recall@0.5": recall,
                "f1@0.5": f1,
            },
            "absent": {
                "samples": self.absent,
                "rejected": self.rejected,
                "false_positive": self.false_positive,
                "rejection_accuracy": ratio(self.rejected, self.absent),
            },
        }


def evaluate(
    truths: Sequence[GroundTruth],
    predictions: Mapping[str, Prediction],
    fmt: BoxConvention,
    *,
    format_name: str | None = None,
) -> dict[str, Any]:
    """Scores predictions against samples, overall and by every breakdown.

    Args:
        truths: The samples to score (every one counts; a missing prediction is a miss).
        predictions: Predictions by sample id; ids not among ``truths`` are counted as
            ``extra_predictions`` and otherwise ignored.
        fmt: The convention every prediction is in.
        format_name: The model family the predictions came from (recorded; the
            convention's name by default).

    Returns:
        A JSON-ready report: ``format`` (the family's name, its ``convention`` and resize
        parameters), ``counts``
        (``samples``, ``predicted``, ``missing``, ``unparseable``, ``extra_predictions``),
        ``overall`` and ``breakdowns[name][group]`` metrics, each with ``samples``,
        ``missing``, ``unparseable``, ``single`` (``samples``, ``acc@0.3`` ... ``acc@0.9``,
        ``miou``, ``centre_hit``) and ``multi`` (``samples``, ``predicted_boxes``,
        ``true_boxes``, ``matched@0.5``, ``precision@0.5``, ``recall@0.5``, ``f1@0.5``) and
        ``absent`` (``samples``, ``rejected``, ``false_positive``, ``rejection_accuracy``:
        correct rejections over absent queries, a missing answer counting as none).
        Ratios are in [0, 1], None where a group has no sample of that kind. The groups of
        every breakdown partition the samples, so their counts add up to the overall ones.
        ``ceiling`` holds the same metrics for the ground truth itself written in ``fmt``
        and read back (:func:`oracle`): the best the format lets a perfect model score.
    """
    overall, ceiling = _Tally(), _Tally()
    groups: dict[str, dict[str, _Tally]] = {name: {} for name in BREAKDOWNS}
    for truth in truths:
        score = score_sample(truth, predictions.get(truth.id), fmt)
        overall.add(score)
        ceiling.add(score_sample(truth, oracle(truth, fmt), fmt))
        for name in BREAKDOWNS:
            groups[name].setdefault(truth.group(name), _Tally()).add(score)
    ids = {t.id for t in truths}
    summary = overall.to_dict()
    return {
        "format": {**fmt.describe(), "name": format_name or fmt.name, "convention": fmt.name},
        "counts": {
            "samples": overall.samples,
            "predicted": overall.samples - overall.missing,
            "missing": overall.missing,
            "unparseable": overall.unparseable,
            "extra_predictions": sum(1 for key in predictions if key not in ids),
        },
        "overall": summary,
        "ceiling": ceiling.to_dict(),
        "breakdowns": {
            name: {key: groups[name][key].to_dict() for key in sorted(groups[name], key=_group_order)}
            for name in BREAKDOWNS
        },
    }


def _group_order(key: str) -> tuple[int, int, str]:
    return (1, 0, key) if key == NONE_KEY else (0, int(key), "") if key.isdigit() else (0, 0, key)
