"""Absent queries (``query_type = "absent"``, no target): an answer with no box is a correct
rejection, any box a false positive, and neither touches the accuracies of the queries
with a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ground_truth import make_sample, run_eval, write_gt, write_preds
from medground.boxes import convention
from medground.evaluate import evaluate, format_report, ground_truths, load_ground_truth, score_baselines
from medground.evaluate.files import Prediction
from medground.runfolder import RecordFileError

BOX = [100, 100, 200, 180]


def absent(sample_id: str, label: str = "kidney tumor", **options: Any) -> dict:
    return make_sample(
        sample_id,
        [],
        query_type="absent",
        label=label,
        query=f"Locate the {label}.",
        attributes={"category": label, "absent_from": "view"},
        **options,
    )


def folder(tmp_path: Path) -> Path:
    samples = [
        make_sample("hit", [BOX]),
        make_sample("miss", [BOX]),
        absent("rejected"),
        absent("boxed"),
        absent("silent"),
        absent("unanswered"),
    ]
    return write_gt(tmp_path / "gt", samples)


def test_no_box_for_an_absent_query_is_a_correct_rejection_and_any_box_a_false_positive(tmp_path: Path) -> None:
    gt = folder(tmp_path)
    pred = write_preds(
        tmp_path / "pred.jsonl",
        [
            {"id": "hit", "bbox": BOX},
            {"id": "miss", "bbox": [0, 0, 10, 10]},
            {"id": "rejected", "text": "The kidney tumor is not present in this image."},
            {"id": "boxed", "text": '```json\n[{"bbox_2d": [1, 2, 30, 40], "label": "kidney tumor"}]\n```'},
            {"id": "silent", "bboxes": []},
        ],
    )
    report = run_eval(gt, pred, "--format", "pixel")
    overall = report["overall"]
    assert overall["absent"] == {"samples": 4, "rejected": 2, "false_positive": 1, "rejection_accuracy": 0.5}
    # The positives' accuracy is over the two queries with a target only.
    assert overall["single"]["samples"] == 2
    assert overall["single"]["acc@0.5"] == 0.5
    assert overall["multi"]["samples"] == 0
    # Absent queries count in n and miss (breakdowns add up), never as unparseable.
    assert overall["samples"] == 6 and overall["missing"] == 1 and overall["unparseable"] == 0
    group = report["breakdowns"]["query_type"]["absent"]
    assert group["absent"]["samples"] == 4 and group["single"]["samples"] == 0
    assert report["breakdowns"]["label"]["kidney tumor"]["absent"]["samples"] == 4
    # The ground truth through the format and back rejects every absent query.
    assert report["ceiling"]["absent"]["rejection_accuracy"] == 1.0


def test_absent_queries_leave_the_positive_scores_unchanged(tmp_path: Path) -> None:
    positives = [make_sample("a", [BOX]), make_sample("b", [BOX], query="Find the kidney tumor.")]
    truths = ground_truths(positives, tmp_path / "samples.jsonl")
    with_absent = ground_truths([*positives, absent("c"), absent("d")], tmp_path / "samples.jsonl")
    predictions = {
        "a": Prediction("a", None, ((100.0, 100.0, 200.0, 180.0),), None, 0),
        "b": Prediction("b", None, ((0.0, 0.0, 5.0, 5.0),), None, 0),
        "c": Prediction("c", None, ((100.0, 100.0, 200.0, 180.0),), None, 0),
        "d": Prediction("d", "no", None, None, 0),
    }
    pixel = convention("pixel")
    before, after = evaluate(truths, predictions, pixel), evaluate(with_absent, predictions, pixel)
    assert after["overall"]["single"] == before["overall"]["single"]
    assert after["overall"]["absent"]["rejection_accuracy"] == 0.5
    # The table shows the absent columns only where there are absent queries.
    assert "rej" in format_report(after) and "rej" not in format_report(before)


def test_an_absent_sample_must_name_its_label_and_have_no_target(tmp_path: Path) -> None:
    bad = make_sample("x", [BOX], query_type="absent", attributes={"category": "kidney tumor"})
    with pytest.raises(RecordFileError, match="absent query has no targets"):
        load_ground_truth(write_gt(tmp_path / "a", [bad]))
    nameless = make_sample("y", [], query_type="absent")
    with pytest.raises(RecordFileError, match="category"):
        load_ground_truth(write_gt(tmp_path / "b", [nameless]))
    empty = make_sample("z", [], query_type="direct")
    with pytest.raises(RecordFileError, match="non-empty"):
        load_ground_truth(write_gt(tmp_path / "c", [empty]))


def test_baselines_answer_absent_queries_from_the_label_they_name(tmp_path: Path) -> None:
    samples = [
        make_sample("train", [BOX], split="train"),
        make_sample("test", [BOX], split="test"),
        absent("named", split="test", others=(("liver", [10, 10, 50, 50]),)),
        absent("no-prior", label="spleen", split="test"),
    ]
    result = score_baselines(ground_truths(samples, tmp_path / "samples.jsonl"))
    absent_of = {name: b["overall"]["absent"] for name, b in result["baselines"].items()}
    # prior and centre box the kidney tumor's prior (a false positive) but have none for the spleen;
    # largest finds no object of either label in the image; random picks the liver where there is one.
    assert absent_of["prior"] == {"samples": 2, "rejected": 1, "false_positive": 1, "rejection_accuracy": 0.5}
    assert absent_of["centre"]["rejected"] == 1
    assert absent_of["largest"]["rejection_accuracy"] == 1.0
    assert absent_of["random"] == {"samples": 2, "rejected": 1, "false_positive": 1, "rejection_accuracy": 0.5}
    assert result["no_prior"] == []
    for b in result["baselines"].values():
        assert b["overall"]["missing"] == 0
