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

Boxes are compared in the stored image's continuous pixel-edge convention
(docs/RECORDS.md, "Coordinates"): ``[x_min, y_min, x_max, y_max]`` with the max exclusive,
area ``(x_max - x_min) * (y_max - y_min)``. The conventions themselves live in
:mod:`medground.boxes`, shared with export and predict.

Modules: :mod:`~medground.evaluate.parse` (boxes out of answers),
:mod:`~medground.evaluate.match` (IoU, Hungarian matching), :mod:`~medground.evaluate.files`
(ground truth and predictions), :mod:`~medground.evaluate.score` (scores and breakdowns),
:mod:`~medground.evaluate.report` (the table), :mod:`~medground.evaluate.baselines` (answers
that never read the query, scored the same way: ``eval --baselines`` and the dataset card);
``medground eval`` is in :mod:`medground.cli`.

The package reads only records and box conventions (layers 0-1), so it sits low in the
layers (docs/ARCHITECTURE.md): the pipeline's dataset card scores the baselines with it.

A sample with one target scores the first predicted box: accuracy at IoU 0.3/0.5/0.7/0.9,
mean IoU and centre hits (the predicted box's centre inside the target box). A sample
with several targets (``multi_object``) is matched one to one (Hungarian) and scores
precision, recall and F1 at IoU 0.5, summed over all such samples. A missing prediction
or one no box can be read from is a miss, and is counted.
"""

from __future__ import annotations

from medground.evaluate.baselines import BASELINES, format_baselines, label_priors, score_baselines
from medground.evaluate.files import (
    BREAKDOWNS,
    GroundTruth,
    Prediction,
    ground_truths,
    load_ground_truth,
    load_predictions,
    resolve_convention,
    resolve_format,
    samples_file,
)
from medground.evaluate.match import Matching, centre_inside, iou, match_boxes
from medground.evaluate.parse import parse_boxes
from medground.evaluate.report import format_report
from medground.evaluate.score import IOU_THRESHOLDS, SampleScore, evaluate, score_sample

__all__ = [
    "BASELINES",
    "BREAKDOWNS",
    "IOU_THRESHOLDS",
    "GroundTruth",
    "Matching",
    "Prediction",
    "SampleScore",
    "centre_inside",
    "evaluate",
    "format_baselines",
    "format_report",
    "ground_truths",
    "iou",
    "label_priors",
    "load_ground_truth",
    "load_predictions",
    "match_boxes",
    "parse_boxes",
    "resolve_convention",
    "resolve_format",
    "samples_file",
    "score_baselines",
    "score_sample",
]
