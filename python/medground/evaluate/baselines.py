"""Shortcut baselines: answers that never read the query, scored like a model's.

A grounding test split is only worth its score if its queries must be read to be
answered (in RefCOCO a model that sees only the category already reaches most of the
score; Cirik et al. 2018). Each baseline answers every sample of the scored split (the
test split) from what a model could know without the referring words: the label(s) the
query names, the image's size and the boxes of the objects in the image. They are scored
by :func:`medground.evaluate.score.evaluate`, with the same metrics as ``medground eval``,
so a model's score reads directly against them.

===========  ==========================================================================
baseline     the answer, one box per distinct label among the sample's targets
===========  ==========================================================================
``prior``    the label's prior box: the per-coordinate median of the label's target boxes
             over the train split, each normalised by its image's width and height, scaled
             to the sample's image (a label is ``dataset/label``)
``largest``  the box of the largest object of the label in the image (box area; the
             sample's targets, one box per visible part, and its distractors: every other
             object of the view, as the sample records them)
``centre``   a box centred in the image with the label prior's width and height
``random``   a seeded random choice among the boxes of every object in the image (the
             targets' and the distractors', any label; as many as there are labels), the
             seed a hash of ``seed`` and the sample id, so it does not depend on order
===========  ==========================================================================

A label with no target in the train split has no prior: ``prior`` and ``centre`` give that
label no box, and a sample left with no box scores as a miss (``missing``); the result
lists those labels (``no_prior``) and the table says so.

An absent query (no target) is answered the same way from the label it names: a baseline
that gives it no box (``largest``: no object of the label in the image; ``prior`` and
``centre`` without a prior; ``random`` in an image without objects) rejects it correctly,
any box is a false positive.
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from medground.boxes import Box, convention
from medground.evaluate.files import BREAKDOWNS, GroundTruth, Prediction
from medground.evaluate.report import format_rows
from medground.evaluate.score import evaluate
from medground.runfolder import split_name

__all__ = [
    "BASELINES",
    "LabelKey",
    "baseline_boxes",
    "format_baselines",
    "label_priors",
    "score_baselines",
]

BASELINES = ("prior", "largest", "centre", "random")
#: A label as the priors key it: ``(dataset, label)`` (the same name in two datasets may
#: be two different things).
LabelKey = tuple[str | None, str]


def _named(truth: GroundTruth) -> list[str]:
    """The distinct labels of the sample's targets, in order (an absent query's label): what
    its query names."""
    return list(dict.fromkeys(truth.named))


def label_priors(train: Sequence[GroundTruth]) -> dict[LabelKey, Box]:
    """The prior box of each label over ``train``: the per-coordinate median of its target
    boxes, each divided by its image's width and height (so in [0, 1])."""
    found: dict[LabelKey, list[Box]] = {}
    for truth in train:
        for label, (x1, y1, x2, y2) in zip(truth.labels, truth.boxes, strict=True):
            w, h = truth.width, truth.height
            found.setdefault((truth.dataset, label), []).append((x1 / w, y1 / h, x2 / w, y2 / h))
    priors: dict[LabelKey, Box] = {}
    for key, boxes in found.items():
        x1, y1, x2, y2 = (statistics.median(b[k] for b in boxes) for k in range(4))
        priors[key] = (x1, y1, x2, y2)
    return priors


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _rng(seed: int, sample_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def baseline_boxes(name: str, truth: GroundTruth, priors: Mapping[LabelKey, Box], *, seed: int = 0) -> list[Box]:
    """The boxes baseline ``name`` answers ``truth`` with, in stored-image pixels (none
    when it has no answer: a label without a prior)."""
    w, h = truth.width, truth.height
    labels = _named(truth)
    if name == "prior":
        return [
            (p[0] * w, p[1] * h, p[2] * w, p[3] * h)
            for p in (priors.get((truth.dataset, label)) for label in labels)
            if p is not None
        ]
    if name == "centre":
        out = []
        for label in labels:
            p = priors.get((truth.dataset, label))
            if p is not None:
                bw, bh = (p[2] - p[0]) * w, (p[3] - p[1]) * h
                out.append(((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2))
        return out
    objects = truth.objects
    if name == "largest":
        # max keeps the first of equal areas: the targets come first, in record order.
        found = (max((box for lab, box in objects if lab == label), key=_area, default=None) for label in labels)
        return [box for box in found if box is not None]
    if name == "random":
        return [box for _, box in _rng(seed, truth.id).sample(objects, min(len(labels), len(objects)))]
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")


def score_baselines(
    truths: Sequence[GroundTruth], *, split: str = "test", train_split: str = "train", seed: int = 0
) -> dict[str, Any]:
    """Scores every baseline on the samples of ``split``, the priors learned on ``train_split``.

    Args:
        truths: The run's samples (every split: the train samples give the priors).
        split: The split scored.
        train_split: The split the label priors are learned on.
        seed: The seed of the ``random`` baseline.

    Returns:
        A JSON-ready record: ``split``, ``train_split``, ``samples`` (scored),
        ``train_samples``, ``labels_with_prior``, ``seed``, ``no_prior`` (``{dataset,
        label, samples}`` for each label of the scored split the train split lacks) and
        ``baselines[name]``: ``counts``, ``overall`` and ``breakdowns`` as
        :func:`~medground.evaluate.score.evaluate` reports them.
    """
    split, train_split = split_name(split) or split, split_name(train_split) or train_split
    scored = [t for t in truths if t.split == split]
    train = [t for t in truths if t.split == train_split]
    priors = label_priors(train)
    lacking = Counter(
        (t.dataset, label) for t in scored if not t.absent for label in _named(t) if (t.dataset, label) not in priors
    )
    pixel = convention("pixel")
    results = {}
    for name in BASELINES:
        predictions = {}
        for truth in scored:
            boxes = baseline_boxes(name, truth, priors, seed=seed)
            if boxes or truth.absent:  # no box for an absent query is an answer: a rejection
                predictions[truth.id] = Prediction(truth.id, None, tuple(boxes), "pixel", 0)
        report = evaluate(scored, predictions, pixel)
        results[name] = {key: report[key] for key in ("counts", "overall", "breakdowns")}
    return {
        "split": split,
        "train_split": train_split,
        "samples": len(scored),
        "train_samples": len(train),
        "labels_with_prior": len(priors),
        "seed": seed,
        "no_prior": [
            {"dataset": dataset, "label": label, "samples": n}
            for (dataset, label), n in sorted(lacking.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))
        ],
        "baselines": results,
    }


#: The breakdowns the baselines table shows (every one is in the JSON).
TABLE_BREAKDOWNS = ("query_type", "subset")


def format_baselines(result: Mapping[str, Any], breakdowns: Sequence[str] = TABLE_BREAKDOWNS) -> str:
    """The baselines of :func:`score_baselines` as a plain-text table (ratios in percent):
    every baseline over the scored split, then by each of ``breakdowns``."""
    lines = [
        (
            f"shortcut baselines (answers that never read the query) on the {result['split']} split: "
            f"{result['samples']} samples; label priors from {result['train_samples']} "
            f"{result['train_split']} samples ({result['labels_with_prior']} labels)"
        ),
        (
            "prior: the label's median train box (normalised) scaled to the image; largest: the largest object "
            "of the label in the image; centre: the prior's size centred in the image; random: a seeded random "
            f"object of the image (seed {result['seed']}); one box per named label"
        ),
    ]
    for row in result["no_prior"]:
        lines.append(
            f"no {result['train_split']} samples for {row['dataset']}/{row['label']}: prior and centre give it "
            f"no box ({row['samples']} {result['split']} samples; a sample left with none is a miss)"
        )
    if not result["samples"]:
        lines.append(f"no {result['split']} samples to score")
        return "\n".join(lines)
    blocks: list[tuple[str, dict[str, Any]]] = [("all", {n: b["overall"] for n, b in result["baselines"].items()})]
    for breakdown in breakdowns:
        if breakdown not in BREAKDOWNS:
            raise ValueError(f"unknown breakdown {breakdown!r}; choose from {', '.join(BREAKDOWNS)}")
        first = next(iter(result["baselines"].values()))
        for group in first["breakdowns"][breakdown]:
            rows = {n: b["breakdowns"][breakdown][group] for n, b in result["baselines"].items()}
            blocks.append((f"{breakdown} {group}", rows))
    lines.append("")
    lines += format_rows(blocks)
    return "\n".join(lines)
