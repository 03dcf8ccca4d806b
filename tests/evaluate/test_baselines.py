"""Shortcut baselines (``medground eval --baselines``): each answer is what it claims, a
split built so that the label prior is exact scores ~100% for it, and a label the train
split lacks is said in the table, not a crash. Expected boxes are worked out by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ground_truth import make_sample, write_gt, write_preds
from medground.cli import eval_command
from medground.evaluate import BASELINES, label_priors, load_ground_truth, score_baselines
from medground.evaluate.baselines import baseline_boxes


def baselines_json(gt, *args: str) -> dict:
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--baselines", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def prior_split(tmp_path):
    """Train: five kidney boxes whose per-coordinate median, normalised, is
    (0.2, 0.25, 0.6, 0.75) (three exact, one smaller and one larger on every coordinate,
    on images of other sizes). Test: every box is that prior scaled to its image."""
    train = [
        make_sample("t1", [[20, 25, 60, 75]], width=100, height=100, label="kidney", split="train"),
        make_sample("t2", [[80, 50, 240, 150]], width=400, height=200, label="kidney", split="train"),
        make_sample("t3", [[40, 25, 120, 75]], width=200, height=100, label="kidney", split="train"),
        make_sample("t4", [[0, 0, 10, 10]], width=100, height=100, label="kidney", split="train"),
        make_sample("t5", [[90, 90, 100, 100]], width=100, height=100, label="kidney", split="train"),
    ]
    test = [
        make_sample(
            "e1", [[20, 25, 60, 75]], width=100, height=100, label="kidney", others=(("kidney", [0, 0, 5, 5]),)
        ),
        make_sample("e2", [[100, 50, 300, 150]], width=500, height=200, label="kidney"),
        make_sample(
            "e3", [[60, 100, 180, 300]], width=300, height=400, label="kidney", others=(("liver", [0, 0, 1, 1]),)
        ),
    ]
    return write_gt(tmp_path / "out", train + test)


def test_the_prior_baseline_scores_perfectly_where_every_test_box_is_the_train_prior(tmp_path):
    gt = prior_split(tmp_path)
    truths = load_ground_truth(gt)
    assert label_priors([t for t in truths if t.split == "train"]) == {("kits", "kidney"): (0.2, 0.25, 0.6, 0.75)}
    result = baselines_json(gt)
    assert result["split"] == "test" and result["samples"] == 3 and result["train_samples"] == 5
    prior = result["baselines"]["prior"]["overall"]
    assert prior["missing"] == 0
    assert prior["single"]["acc@0.5"] == 1.0 and prior["single"]["acc@0.9"] == 1.0
    assert prior["single"]["miou"] == pytest.approx(1.0)
    # The same boxes moved to the centre are not the answer: e1's prior box [20, 25, 60, 75]
    # centred is [30, 25, 70, 75], IoU 30*50 / (2*40*50 - 30*50) = 0.6.
    centre = result["baselines"]["centre"]["overall"]["single"]
    assert centre["acc@0.9"] < 1.0
    assert result["baselines"]["centre"]["breakdowns"]["label"]["kidney"]["single"]["miou"] < 1.0


def test_the_prior_is_a_median_not_a_mean(tmp_path):
    # One far-off train box moves a mean, never the median of three.
    truths = load_ground_truth(
        write_gt(
            tmp_path / "out",
            [
                make_sample("a", [[10, 10, 20, 20]], width=100, height=100, split="train"),
                make_sample("b", [[10, 10, 20, 20]], width=100, height=100, split="train"),
                make_sample("c", [[80, 80, 100, 100]], width=100, height=100, split="train"),
            ],
        )
    )
    assert label_priors(truths) == {("kits", "kidney tumor"): (0.1, 0.1, 0.2, 0.2)}


@pytest.fixture
def hand_made(tmp_path):
    """Train gives "lesion" the prior (0.1, 0.2, 0.3, 0.4) and each kidney its own. Test:
    s1's target is a small lesion among a larger lesion and the liver (100 x 80 image);
    s2 names both kidneys; s3 names a label the train split lacks."""
    samples = [
        make_sample("t1", [[10, 20, 30, 40]], width=100, height=100, label="lesion", split="train"),
        make_sample("t2", [[0, 0, 10, 10]], width=100, height=100, labels=["kidney_left"], split="train"),
        make_sample("t3", [[90, 90, 100, 100]], width=100, height=100, labels=["kidney_right"], split="train"),
        make_sample(
            "s1",
            [[10, 10, 20, 20]],
            width=100,
            height=80,
            label="lesion",
            others=(("lesion", [50, 40, 90, 70]), ("liver", [0, 0, 100, 80])),
        ),
        make_sample(
            "s2",
            [[80, 70, 100, 80], [0, 0, 20, 10]],
            width=100,
            height=80,
            labels=["kidney_right", "kidney_left"],
            query_type="multi_object",
            others=(("liver", [30, 20, 60, 50]),),
        ),
        make_sample("s3", [[5, 5, 15, 15]], width=100, height=80, label="spleen", others=(("liver", [0, 0, 50, 50]),)),
    ]
    gt = write_gt(tmp_path / "out", samples)
    truths = {t.id: t for t in load_ground_truth(gt)}
    priors = label_priors([t for t in truths.values() if t.split == "train"])
    return gt, truths, priors


def test_each_baseline_is_what_it_claims(hand_made):
    _, truths, priors = hand_made
    s1, s2, s3 = truths["s1"], truths["s2"], truths["s3"]
    # prior: (0.1, 0.2, 0.3, 0.4) of a 100 x 80 image.
    assert baseline_boxes("prior", s1, priors) == [pytest.approx((10, 16, 30, 32))]
    # centre: the prior's 20 x 16 box centred in the image.
    assert baseline_boxes("centre", s1, priors) == [pytest.approx((40, 32, 60, 48))]
    # largest: the larger lesion (1200 px² against the target's 100), never the liver.
    assert baseline_boxes("largest", s1, priors) == [(50, 40, 90, 70)]
    # random: one of the image's three objects, whatever their label.
    assert baseline_boxes("random", s1, priors)[0] in {(10, 10, 20, 20), (50, 40, 90, 70), (0, 0, 100, 80)}
    # One box per named label: both kidneys' priors, each kidney's own (only) box.
    assert baseline_boxes("prior", s2, priors) == [pytest.approx((90, 72, 100, 80)), pytest.approx((0, 0, 10, 8))]
    assert baseline_boxes("largest", s2, priors) == [(80, 70, 100, 80), (0, 0, 20, 10)]
    assert len(baseline_boxes("random", s2, priors)) == 2
    assert len(set(baseline_boxes("random", s2, priors))) == 2  # two different objects
    # No train sample of the spleen: no prior, so no prior or centre box.
    assert baseline_boxes("prior", s3, priors) == [] and baseline_boxes("centre", s3, priors) == []
    assert baseline_boxes("largest", s3, priors) == [(5, 5, 15, 15)]
    with pytest.raises(ValueError, match="unknown baseline 'oracle'"):
        baseline_boxes("oracle", s1, priors)


def test_the_random_baseline_depends_on_the_seed_and_the_sample_never_the_order(hand_made):
    _, truths, priors = hand_made
    s1 = truths["s1"]
    picks = [baseline_boxes("random", s1, priors, seed=seed)[0] for seed in range(40)]
    assert len(set(picks)) == 3  # every object is drawn by some seed
    assert picks == [baseline_boxes("random", s1, priors, seed=seed)[0] for seed in range(40)]
    forward = score_baselines(list(truths.values()), seed=7)["baselines"]["random"]
    backward = score_baselines(list(truths.values())[::-1], seed=7)["baselines"]["random"]
    assert forward["overall"] == backward["overall"]


def test_the_scores_are_evals_scores(hand_made):
    gt, _, _ = hand_made
    result = baselines_json(gt)
    # largest: s1 scores IoU 0 (the larger lesion), s3 IoU 1 (the spleen is alone), s2
    # matches both kidneys.
    largest = result["baselines"]["largest"]["overall"]
    assert largest["single"]["samples"] == 2 and largest["single"]["acc@0.5"] == 0.5
    assert largest["multi"]["matched@0.5"] == 2 and largest["multi"]["recall@0.5"] == 1.0
    # The same answers as a predictions file give the same scores through eval.
    pred = write_preds(
        gt.parent / "largest.jsonl",
        [
            {"id": "s1", "bbox": [50, 40, 90, 70]},
            {"id": "s2", "bboxes": [[80, 70, 100, 80], [0, 0, 20, 10]]},
            {"id": "s3", "bbox": [5, 5, 15, 15]},
        ],
    )
    out = CliRunner().invoke(
        eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "pixel", "--split", "test", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["overall"] == largest


def test_a_label_without_train_samples_is_said_not_a_crash(hand_made):
    gt, _, _ = hand_made
    result = baselines_json(gt)
    assert result["no_prior"] == [{"dataset": "kits", "label": "spleen", "samples": 1}]
    # s3 has no prior box: a miss for prior and centre, scored for the others.
    assert result["baselines"]["prior"]["overall"]["missing"] == 1
    assert result["baselines"]["centre"]["overall"]["missing"] == 1
    assert result["baselines"]["largest"]["overall"]["missing"] == 0
    text = CliRunner().invoke(eval_command, ["--gt", str(gt), "--baselines"])
    assert text.exit_code == 0, text.output
    assert "no train samples for kits/spleen: prior and centre give it no box" in text.output
    lines = text.output.splitlines()
    first = lines.index("all") + 1
    assert [line.split()[0] for line in lines[first : first + 4]] == list(BASELINES)


def test_baselines_with_predictions_and_on_another_split(hand_made):
    gt, _, _ = hand_made
    pred = write_preds(gt.parent / "p.jsonl", [{"id": "s1", "bbox": [10, 10, 20, 20]}])
    out = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "pixel", "--baselines"])
    assert out.exit_code == 0, out.output
    assert "format pixel" in out.output and "shortcut baselines" in out.output
    report = json.loads(
        CliRunner()
        .invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "pixel", "--baselines", "--json"])
        .output
    )
    assert report["baselines"]["samples"] == 3
    # The train split scored against its own priors; no test sample is read.
    assert baselines_json(gt, "--split", "train")["samples"] == 3
    # Neither predictions nor baselines: nothing to do.
    none = CliRunner().invoke(eval_command, ["--gt", str(gt)])
    assert none.exit_code == 2 and "give --pred" in none.output


def test_a_split_with_no_samples_says_so(tmp_path):
    gt = write_gt(tmp_path / "out", [make_sample("t1", [[0, 0, 10, 10]], split="train")])
    out = CliRunner().invoke(eval_command, ["--gt", str(gt), "--baselines"])
    assert out.exit_code == 0, out.output
    assert "no test samples to score" in out.output
