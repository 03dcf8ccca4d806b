"""Scoring (medground eval): each family in its convention, multi-object matching, misses,
the breakdowns and the split. Expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ground_truth import breakdown_fixture as _breakdown_fixture
from ground_truth import make_sample, run_eval, write_gt, write_preds
from medground.boxes import smart_resize
from medground.cli import eval_command


@pytest.mark.parametrize(
    ("name", "text", "box"),
    [
        (
            "qwen2.5-vl",
            '```json\n[{"bbox_2d": [84, 140, 420, 420], "label": "kidney tumor"}]\n```',
            [85, 143, 425, 429],
        ),
        ("qwen3-vl", '[{"bbox_2d": [200, 250, 600, 750], "label": "kidney tumor"}]', [153, 143, 459, 429]),
        (
            "qwen2-vl",
            "<|object_ref_start|>it<|object_ref_end|><|box_start|>(200,250),(600,750)<|box_end|>",
            [153, 143, 459, 429],
        ),
        ("qwen-vl", "<ref>it</ref><box>(200,250),(600,750)</box>", [153, 143, 459, 429]),
        ("internvl", "<ref>it</ref><box>[[200, 250, 600, 750]]</box>", [153, 143, 459, 429]),
        ("norm1", "[0.2, 0.25, 0.6, 0.75]", [153, 143, 459, 429]),
        ("pixel", "[153, 143, 459, 429]", [153, 143, 459, 429]),
    ],
)
def test_eval_scores_each_family_in_its_convention(tmp_path, name, text, box):
    gt = write_gt(tmp_path / "out", [make_sample("s1", [box])])
    pred = write_preds(tmp_path / "preds.jsonl", [{"id": "s1", "text": text}])
    single = run_eval(gt, pred, "--format", name)["overall"]["single"]
    assert single["samples"] == 1
    assert single["acc@0.9"] == 1.0 and single["centre_hit"] == 1.0
    assert single["miou"] == pytest.approx(1.0)


def test_qwen25_box_on_a_resized_image_and_the_wrong_convention(tmp_path):
    # 765x572 is resized to 756x560: the model's [84,140,420,420] is [85,143,425,429] here.
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[85, 143, 425, 429]])])
    pred = write_preds(tmp_path / "preds.jsonl", [{"id": "s1", "text": '[{"bbox_2d": [84, 140, 420, 420]}]'}])
    assert run_eval(gt, pred, "--format", "qwen2.5-vl")["overall"]["single"]["miou"] == pytest.approx(1.0)
    # Read as stored pixels it is off: overlap 335 x 277 = 92795, union 97240 + 94080 - 92795 = 98525.
    pixel = run_eval(gt, pred, "--format", "pixel")["overall"]["single"]
    assert pixel["miou"] == pytest.approx(92795 / 98525)
    # With max_pixels 200704: beta = sqrt(437580/200704) = 1.47656; 572/beta/28 = 13.8 -> 364,
    # 765/beta/28 = 18.5 -> 504. The box maps to [127.5, 220, 637.5, 660]: overlap
    # 297.5 x 209 = 62177.5, union 97240 + 510*440 - 62177.5 = 259462.5.
    assert smart_resize(572, 765, max_pixels=256 * 28 * 28) == (364, 504)
    small = run_eval(gt, pred, "--format", "qwen2.5-vl", "--max-pixels", str(256 * 28 * 28))["overall"]["single"]
    assert small["miou"] == pytest.approx(62177.5 / 259462.5)
    assert run_eval(gt, pred, "--format", "qwen2.5-vl", "--max-pixels", "1003520")["format"]["max_pixels"] == 1003520


def test_a_prediction_in_the_wrong_convention_is_not_rescued(tmp_path):
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[153, 143, 459, 429]])])
    pred = write_preds(tmp_path / "preds.jsonl", [{"id": "s1", "text": "<box>[[200, 250, 600, 750]]</box>"}])
    assert run_eval(gt, pred, "--format", "internvl")["overall"]["single"]["acc@0.5"] == 1.0
    # As pixels: overlap 259 x 179 = 46361; union 306*286 + 400*500 - 46361 = 241155.
    as_pixels = run_eval(gt, pred, "--format", "pixel")["overall"]["single"]
    assert as_pixels["miou"] == pytest.approx(46361 / 241155)
    assert as_pixels["acc@0.3"] == 0.0
    # As 0-1: [153000, 143000, ...] lies far outside the image.
    assert run_eval(gt, pred, "--format", "norm1")["overall"]["single"]["miou"] == 0.0


def test_multi_object_samples_are_matched_one_to_one(tmp_path):
    truth = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    gt = write_gt(
        tmp_path / "out",
        [
            make_sample("m1", truth, width=100, height=100, query_type="multi_object"),
            make_sample("m2", [[0, 0, 50, 50], [50, 50, 100, 100]], width=100, height=100, query_type="multi_object"),
            make_sample("m3", [[0, 0, 10, 10], [20, 0, 30, 10]], width=100, height=100, query_type="multi_object"),
        ],
    )
    pred = write_preds(
        tmp_path / "preds.jsonl",
        [
            # Hits B (exact) and A (IoU 0.5); the third box is a false positive.
            {"id": "m1", "bboxes": [[100, 100, 110, 110], [20, 0, 30, 10], [0, 0, 10, 5]]},
            # InternVL 0-1000 on 100x100: [[0,0,500,500]] is [0,0,50,50]; one of two found.
            {"id": "m2", "text": "<box>[[0, 0, 500, 500]]</box>"},
            # m3 has no prediction: both of its boxes are missed.
        ],
    )
    # Boxes given as numbers are in the run's convention too: m1's are pixels.
    report = run_eval(
        gt, write_preds(tmp_path / "m1.jsonl", [json.loads(pred.read_text().splitlines()[0])]), "--format", "pixel"
    )
    multi = report["overall"]["multi"]
    # m1: 3 predicted, 2 hits; m2 and m3 missing (5 true boxes missed): P = 2/3, R = 2/7.
    assert (multi["samples"], multi["predicted_boxes"], multi["true_boxes"], multi["matched@0.5"]) == (3, 3, 7, 2)
    assert multi["precision@0.5"] == pytest.approx(2 / 3)
    assert multi["recall@0.5"] == pytest.approx(2 / 7)
    assert multi["f1@0.5"] == pytest.approx(2 * (2 / 3) * (2 / 7) / (2 / 3 + 2 / 7))
    assert report["overall"]["single"]["samples"] == 0 and report["overall"]["single"]["miou"] is None

    both = run_eval(gt, pred, "--format", "internvl")["overall"]["multi"]
    # As 0-1000, m1's boxes shrink to a tenth: [2,0,3,1] etc. hit nothing; m2 hits 1 of 2.
    assert (both["predicted_boxes"], both["matched@0.5"], both["true_boxes"]) == (4, 1, 7)


def test_unparseable_and_missing_predictions_are_counted_misses(tmp_path):
    gt = write_gt(tmp_path / "out", [make_sample(f"s{k}", [[153, 143, 459, 429]]) for k in range(4)])
    pred = write_preds(
        tmp_path / "preds.jsonl",
        [
            {"id": "s0", "text": "[153, 143, 459, 429]"},
            {"id": "s1", "text": "I cannot see a kidney tumor."},
            {"id": "s2", "bboxes": []},
            {"id": "elsewhere", "bbox": [0, 0, 1, 1]},
        ],
    )
    report = run_eval(gt, pred, "--format", "pixel")
    assert report["counts"] == {"samples": 4, "predicted": 3, "missing": 1, "unparseable": 2, "extra_predictions": 1}
    single = report["overall"]["single"]
    assert single["samples"] == 4 and single["acc@0.5"] == 0.25 and single["miou"] == 0.25
    assert single["centre_hit"] == 0.25
    table = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "pixel"])
    assert table.exit_code == 0, table.output
    summary = "4 samples: 3 predicted (2 unparseable), 1 missing; 1 predictions for ids not in the ground truth"
    assert summary in table.output


def test_breakdowns_partition_the_samples(tmp_path):
    gt, pred = _breakdown_fixture(tmp_path)
    report = run_eval(gt, pred, "--format", "pixel")
    overall = report["overall"]
    assert (overall["samples"], overall["missing"], overall["unparseable"]) == (5, 1, 1)
    single = overall["single"]
    assert single["samples"] == 4
    assert (single["acc@0.3"], single["acc@0.5"], single["acc@0.7"]) == (0.5, 0.5, 0.25)
    assert single["miou"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert overall["multi"]["f1@0.5"] == pytest.approx(2 / 3)  # P = 1/1, R = 1/2

    breakdowns = report["breakdowns"]
    assert list(breakdowns) == [
        "dataset",
        "modality",
        "label",
        "query_type",
        "split",
        "same_label_distractors",
        "subset",
    ]
    for name, groups in breakdowns.items():
        for key in ("samples", "missing", "unparseable"):
            assert sum(g[key] for g in groups.values()) == overall[key], (name, key)
        assert sum(g["single"]["samples"] for g in groups.values()) == single["samples"], name
        for key in ("samples", "predicted_boxes", "true_boxes", "matched@0.5"):
            assert sum(g["multi"][key] for g in groups.values()) == overall["multi"][key], (name, key)
        iou_sum = sum(g["single"]["miou"] * g["single"]["samples"] for g in groups.values() if g["single"]["samples"])
        assert iou_sum == pytest.approx(single["miou"] * single["samples"])

    assert {k: g["samples"] for k, g in breakdowns["same_label_distractors"].items()} == {"0": 2, "1": 2, "2": 1}
    assert {k: g["samples"] for k, g in breakdowns["split"].items()} == {"test": 2, "train": 1, "val": 1, "(none)": 1}
    assert {k: g["samples"] for k, g in breakdowns["label"].items()} == {
        "kidney": 1,
        "kidney tumor": 2,
        "lesion": 1,
        "liver tumor": 1,
    }
    assert breakdowns["dataset"]["lits"]["single"]["acc@0.5"] == 1.0
    assert breakdowns["dataset"]["lits"]["single"]["acc@0.7"] == 0.0
    assert breakdowns["modality"]["dermoscopy"]["missing"] == 1
    assert breakdowns["query_type"]["multi_object"]["multi"]["recall@0.5"] == 0.5
    # The appearance-only subset (s1: IoU 1; s4: 1 of 2 matched) and the rest.
    assert {k: g["samples"] for k, g in breakdowns["subset"].items()} == {"appearance": 2, "(none)": 3}
    assert breakdowns["subset"]["appearance"]["single"]["acc@0.5"] == 1.0
    assert breakdowns["subset"]["appearance"]["multi"]["recall@0.5"] == 0.5
    assert breakdowns["subset"]["(none)"]["single"]["miou"] == pytest.approx((0 + 0 + 0.5) / 3)


def test_split_selects_the_samples_scored(tmp_path):
    gt, pred = _breakdown_fixture(tmp_path)
    report = run_eval(gt, pred, "--format", "pixel", "--split", "test")
    assert report["counts"]["samples"] == 2 and report["counts"]["extra_predictions"] == 2
    args = ["--gt", str(gt), "--pred", str(pred), "--format", "pixel", "--split", "nope"]
    result = CliRunner().invoke(eval_command, args)
    assert result.exit_code == 1 and "no samples with split 'nope'" in result.output
