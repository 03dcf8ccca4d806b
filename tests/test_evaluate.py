"""Grounding evaluation (medground eval) and prediction (medground predict).

Expected numbers are worked out by hand in the comments: Qwen2.5-VL's resize, every
coordinate convention, IoU, Hungarian matching and the breakdown sums.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from medground.backends import EncodedImage, Request, Response
from medground.boxes import GROUNDING_FAMILIES as FORMATS
from medground.boxes import convention, smart_resize
from medground.cli import eval_command, predict_command
from medground.evaluate import centre_inside, iou, load_ground_truth, match_boxes, parse_boxes
from medground.evaluate.match import _hungarian
from medground.predict import grounding_prompt, predict
from medground.records import Sample, Target
from medground.runfolder import RecordFileError as EvalFileError

# --- helpers -------------------------------------------------------------------------------


def make_sample(
    sample_id: str,
    boxes: list[list[int]],
    *,
    width: int = 765,
    height: int = 572,
    label: str = "kidney tumor",
    dataset: str = "kits",
    modality: str = "CT",
    split: str | None = "test",
    query_type: str = "direct",
    distractor_labels: tuple[str, ...] = (),
    query: str = "Locate the kidney tumor.",
) -> dict[str, Any]:
    """A samples.jsonl record (through records.Sample, so the fields are the real ones)."""
    targets = [
        Target(
            label_id=1,
            label=label,
            component_id=k + 1,
            bbox_xyxy=box,
            area_px=0,
            mask_rle={"size": [height, width], "counts": ""},
            bbox_3d=None,
            cues={},
        )
        for k, box in enumerate(boxes)
    ]
    distractors = [{"label": name, "component_id": 100 + k, "values": {}} for k, name in enumerate(distractor_labels)]
    return Sample(
        id=sample_id,
        dataset=dataset,
        case_id=sample_id,
        patient_id=sample_id,
        split=split,
        image=f"images/{dataset}/{sample_id}.png",
        width=width,
        height=height,
        modality=modality,
        view=None,
        query=query,
        query_type=query_type,
        targets=targets,
        referring_attributes={},
        distractors=distractors,
        synthesis={"backend": "template"},
    ).to_dict()


def write_gt(folder: Path, samples: list[dict[str, Any]], *, images: bool = False) -> Path:
    """An output folder with samples.jsonl (and blank images of the right sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    if images:
        for s in samples:
            path = folder / s["image"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (s["width"], s["height"]), color=len(s["id"])).save(path)
    return folder


def write_preds(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run_eval(gt: Path, pred: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- Qwen2.5-VL's resize and the conventions ---------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "kwargs", "expected"),
    [
        # 572/28 = 20.43 -> 20*28 = 560; 765/28 = 27.32 -> 27*28 = 756; 560*756 = 423360 is in range.
        (572, 765, {}, (560, 756)),
        # 512/28 = 18.29 -> 18*28 = 504.
        (512, 512, {}, (504, 504)),
        # Already multiples of 28: unchanged.
        (112, 196, {}, (112, 196)),
        # 1512*1988 > 1003520: beta = sqrt(3e6/1003520) = 1.72902; 1500/beta/28 = 30.98 -> 840,
        # 2000/beta/28 = 41.31 -> 1148.
        (1500, 2000, {}, (840, 1148)),
        # 28*28 < 3136: beta = sqrt(3136/600) = 2.28619; 20*beta/28 = 1.63 -> ceil 2 -> 56,
        # 30*beta/28 = 2.45 -> ceil 3 -> 84.
        (20, 30, {}, (56, 84)),
        # max_pixels 256*28*28 = 200704 < 504*504: beta = sqrt(262144/200704) = 8/7; 512*7/8 = 448 = 16*28.
        (512, 512, {"max_pixels": 256 * 28 * 28}, (448, 448)),
    ],
)
def test_smart_resize_matches_hand_computed_sizes(height, width, kwargs, expected):
    assert smart_resize(height, width, **kwargs) == expected


@pytest.mark.parametrize(
    ("height", "width", "kwargs", "message"),
    [
        (0, 10, {}, "positive"),
        (10, 2500, {}, "aspect ratio"),
        (100, 100, {"min_pixels": 10, "max_pixels": 5}, "min_pixels"),
    ],
)
def test_smart_resize_rejects_what_the_processor_rejects(height, width, kwargs, message):
    with pytest.raises(ValueError, match=message):
        smart_resize(height, width, **kwargs)


@pytest.mark.parametrize(
    ("name", "box", "expected"),
    [
        ("pixel", [10, 20, 30, 40], (10, 20, 30, 40)),
        # 0.2*765 = 153, 0.25*572 = 143, 0.6*765 = 459, 0.75*572 = 429.
        ("norm1", [0.2, 0.25, 0.6, 0.75], (153, 143, 459, 429)),
        ("qwen2-vl", [200, 250, 600, 750], (153, 143, 459, 429)),
        ("qwen3-vl", [200, 250, 600, 750], (153, 143, 459, 429)),
        ("internvl", [200, 250, 600, 750], (153, 143, 459, 429)),
        ("qwen-vl", [200, 250, 600, 750], (153, 143, 459, 429)),
        # Resized 756x560: x * 765/756, y * 572/560; 84 -> 85, 140 -> 143, 420 -> 425 and 429.
        ("qwen2.5-vl", [84, 140, 420, 420], (85, 143, 425, 429)),
        # Corners come in any order.
        ("internvl", [600, 750, 200, 250], (153, 143, 459, 429)),
    ],
)
def test_each_convention_maps_to_stored_pixels(name, box, expected):
    assert convention(name).to_pixels(box, 765, 572) == pytest.approx(expected)


def test_qwen25_resize_parameters_are_configurable():
    # max_pixels 256*28*28 resizes 512x512 to 448x448, so 448 maps back to 512 (not 455.1 via 504).
    fmt = convention("qwen2.5-vl", max_pixels=256 * 28 * 28)
    assert fmt.to_pixels([0, 0, 448, 224], 512, 512) == pytest.approx((0, 0, 512, 256))
    default = convention("qwen2.5-vl").to_pixels([0, 0, 448, 224], 512, 512)
    assert default == pytest.approx((0, 0, 448 * 512 / 504, 224 * 512 / 504))
    assert fmt.describe() == {"name": "qwen2.5-vl", "factor": 28, "min_pixels": 3136, "max_pixels": 200704}
    assert convention("internvl").describe() == {"name": "norm1000"}
    with pytest.raises(ValueError, match="box convention must be one of"):
        convention("qwen")


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Qwen2.5-VL / Qwen3-VL JSON, fenced, several objects, and cut short by max_tokens.
        ('```json\n[\n  {"bbox_2d": [84, 140, 420, 420], "label": "kidney tumor"}\n]\n```', [(84, 140, 420, 420)]),
        (
            '[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5.5, 6, 7, 8], "label": "b"}]',
            [(1, 2, 3, 4), (5.5, 6, 7, 8)],
        ),
        (
            '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8], "lab',
            [(1, 2, 3, 4), (5, 6, 7, 8)],
        ),
        # bbox_2d wins over other lists in the answer.
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "the [10, 20, 30, 40] one"}]', [(1, 2, 3, 4)]),
        # Qwen2-VL, with its special tokens and with them stripped by the server.
        (
            "<|object_ref_start|>the tumor<|object_ref_end|><|box_start|>(153,143),(459,429)<|box_end|>",
            [(153, 143, 459, 429)],
        ),
        ("the tumor(153,143),(459,429)", [(153, 143, 459, 429)]),
        # Qwen-VL.
        ("<ref>the tumor</ref><box>(10, 20), (30, 40)</box>", [(10, 20, 30, 40)]),
        # InternVL, one and several boxes.
        ("<ref>the tumor</ref><box>[[200, 250, 600, 750]]</box>", [(200, 250, 600, 750)]),
        ("<ref>tumors</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>", [(1, 2, 3, 4), (5, 6, 7, 8)]),
        # Plain lists.
        ("The box is [0.2, 0.25, 0.6, 0.75].", [(0.2, 0.25, 0.6, 0.75)]),
        ("[12, 30, 40, 50] and [1, 1, 2, 2]", [(12, 30, 40, 50), (1, 1, 2, 2)]),
        # Nothing to read.
        ("I cannot find a tumor in this image.", []),
        ("[1, 2, 3]", []),
        ("", []),
    ],
)
def test_parse_boxes_reads_every_family_syntax(text, expected):
    assert parse_boxes(text) == expected


# --- geometry and matching -----------------------------------------------------------------


def test_iou_and_centre_hits_by_hand():
    assert iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)  # 5x5 overlap of two 100s
    assert iou([0, 0, 10, 10], [0, 0, 10, 5]) == 0.5
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert iou([5, 5, 5, 5], [0, 0, 10, 10]) == 0.0
    assert iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0
    # Continuous edges: pixel columns 0..9 are [0, 10), not 11 columns.
    assert iou([0, 0, 10, 10], [0, 0, 11, 10]) == pytest.approx(100 / 110)
    assert centre_inside([0, 0, 10, 10], [5, 5, 6, 6])  # centre (5, 5) on the min edges: inside
    assert not centre_inside([0, 0, 10, 10], [0, 0, 5, 5])  # on the max edges: outside


def test_matching_is_one_to_one_and_not_greedy_in_order():
    truth = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    predicted = [[100, 100, 110, 110], [20, 0, 30, 10], [0, 0, 10, 5], [21, 0, 30, 10]]
    matching = match_boxes(predicted, truth)
    # B is claimed by an exact box and a 0.9 box; only one may have it. A gets its 0.5 box.
    assert matching.hits == 2
    assert {(p, t) for p, t, value in matching.pairs if value >= 0.5} == {(1, 1), (2, 0)}
    assert len({p for p, _, _ in matching.pairs}) == len(matching.pairs) == 3


def test_matching_maximises_hits_before_summed_iou():
    # A = [0,0,10,10], B = [0,0,10,5]; p = A, q = [0,2,10,12].
    # IoU(p,A) = 1, IoU(p,B) = 0.5, IoU(q,A) = 80/120 = 0.667, IoU(q,B) = 30/120 = 0.25.
    # Most summed IoU is p-A + q-B = 1.25 with one hit; p-B + q-A = 1.167 has two.
    matching = match_boxes([[0, 0, 10, 10], [0, 2, 10, 12]], [[0, 0, 10, 10], [0, 0, 10, 5]])
    assert matching.hits == 2
    assert [(p, t) for p, t, _ in matching.pairs] == [(0, 1), (1, 0)]


def test_hungarian_fallback_is_exact_and_used_without_scipy(monkeypatch):
    optimize = pytest.importorskip("scipy.optimize")
    rng = random.Random(0)
    for _ in range(300):
        n, m = rng.randint(1, 7), rng.randint(1, 7)
        weights = [[rng.random() for _ in range(m)] for _ in range(n)]
        rows, cols = optimize.linear_sum_assignment(weights, maximize=True)
        best = sum(weights[i][j] for i, j in zip(rows, cols, strict=True))
        pairs = _hungarian(weights)
        assert len(pairs) == min(n, m)
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)
        assert sum(weights[i][j] for i, j in pairs) == pytest.approx(best)
    with_scipy = match_boxes([[0, 0, 10, 10], [0, 2, 10, 12]], [[0, 0, 10, 10], [0, 0, 10, 5]])
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import now fails
    assert match_boxes([[0, 0, 10, 10], [0, 2, 10, 12]], [[0, 0, 10, 10], [0, 0, 10, 5]]) == with_scipy


# --- eval ----------------------------------------------------------------------------------


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


def _breakdown_fixture(tmp_path: Path) -> tuple[Path, Path]:
    gt = write_gt(
        tmp_path / "out",
        [
            # 1 same-label distractor (the other kidney tumor; the kidney does not count).
            make_sample("s1", [[0, 0, 10, 10]], distractor_labels=("kidney tumor", "kidney")),
            make_sample(
                "s2", [[0, 0, 10, 10]], label="kidney", query_type="descriptive", distractor_labels=("kidney",)
            ),
            make_sample("s3", [[0, 0, 10, 10]], label="lesion", dataset="isic", modality="dermoscopy", split="train"),
            make_sample("s4", [[0, 0, 10, 10], [20, 0, 30, 10]], query_type="multi_object", split=None),
            make_sample(
                "s5",
                [[0, 0, 10, 10]],
                label="liver tumor",
                dataset="lits",
                query_type="relational",
                split="val",
                distractor_labels=("liver tumor", "liver tumor", "liver"),
            ),
        ],
    )
    pred = write_preds(
        tmp_path / "preds.jsonl",
        [
            {"id": "s1", "bbox": [0, 0, 10, 10]},  # IoU 1
            {"id": "s2", "text": "no idea"},  # unparseable
            # s3 missing
            {"id": "s4", "bboxes": [[20, 0, 30, 10]]},  # 1 of 2
            {"id": "s5", "bbox": [0, 0, 10, 5]},  # IoU 0.5
        ],
    )
    return gt, pred


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
    assert list(breakdowns) == ["dataset", "modality", "label", "query_type", "split", "same_label_distractors"]
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


def test_the_table_shows_every_breakdown(tmp_path):
    gt, pred = _breakdown_fixture(tmp_path)
    args = ["--gt", str(gt / "samples.jsonl"), "--pred", str(pred), "--format", "pixel"]
    result = CliRunner().invoke(eval_command, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "format pixel"
    header = next(line for line in lines if "acc@.5" in line)
    assert all(title in header for title in ("mIoU", "centre", "P@.5", "R@.5", "F1@.5"))
    row = next(line for line in lines if line.startswith("all "))
    assert row.split() == [
        "all",
        "5",
        "1",
        "1",
        "50.0",
        "50.0",
        "25.0",
        "25.0",
        "37.5",
        "50.0",
        "1",
        "100.0",
        "50.0",
        "66.7",
    ]
    for name in ("dataset", "modality", "label", "query_type", "split", "same_label_distractors"):
        assert name in lines
    assert any(line.split()[:2] == ["liver", "tumor"] for line in lines)
    assert "(none)" in result.output
    qwen = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "qwen2.5-vl"])
    assert qwen.output.splitlines()[0] == "format qwen2.5-vl, factor 28, min_pixels 3136, max_pixels 1003520"


def test_split_selects_the_samples_scored(tmp_path):
    gt, pred = _breakdown_fixture(tmp_path)
    report = run_eval(gt, pred, "--format", "pixel", "--split", "test")
    assert report["counts"]["samples"] == 2 and report["counts"]["extra_predictions"] == 2
    args = ["--gt", str(gt), "--pred", str(pred), "--format", "pixel", "--split", "nope"]
    result = CliRunner().invoke(eval_command, args)
    assert result.exit_code == 1 and "no samples with split 'nope'" in result.output


def test_format_comes_from_the_flag_or_the_predictions_never_a_guess(tmp_path):
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[153, 143, 459, 429]]), make_sample("s2", [[0, 0, 10, 10]])])
    recorded = write_preds(
        tmp_path / "recorded.jsonl",
        [
            {"id": "s1", "text": "<box>[[200, 250, 600, 750]]</box>", "format": "internvl"},
            {"id": "s2", "text": "<box>[[0, 0, 13, 17]]</box>", "format": "internvl"},
        ],
    )
    assert run_eval(gt, recorded)["format"] == {"name": "internvl", "convention": "norm1000"}
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(recorded), "--format", "pixel"])
    assert result.exit_code == 1
    assert f"{recorded}:1: prediction records format 'internvl' but --format is 'pixel'" in result.output

    bare = write_preds(tmp_path / "bare.jsonl", [{"id": "s1", "text": "[1, 2, 3, 4]"}])
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(bare)])
    assert result.exit_code == 1 and "record no format; give --format" in result.output
    mixed = write_preds(
        tmp_path / "mixed.jsonl",
        [{"id": "s1", "text": "x", "format": "internvl"}, {"id": "s2", "text": "x", "format": "norm1"}],
    )
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(mixed)])
    assert result.exit_code == 1 and "different formats (internvl, norm1)" in result.output


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "s1", "text": "[1, 2, 3, 4]"}', '{"id": "s2", "text": '], ":2: not valid JSON"),
        (['{"id": "s1", "text": "a"}', "", '["s2"]'], ":3: expected a JSON object, got list"),
        (['{"text": "a"}'], ":1: prediction has no 'id'"),
        (['{"id": "s1", "text": "a"}', '{"id": "s1", "text": "b"}'], ":2: duplicate id 's1' (first on line 1)"),
        (['{"id": "s1", "text": "a", "bbox": [1, 2, 3, 4]}'], ":1: give exactly one of 'text', 'bbox', 'bboxes'"),
        (['{"id": "s1", "bbox": [1, 2, 3]}'], ":1: bbox must be 4 finite numbers"),
        (['{"id": "s1", "bboxes": [[1, 2, 3, 4], [1, "2", 3, 4]]}'], ":1: bboxes[1] must be 4 finite numbers"),
        (['{"id": "s1", "text": null}'], ":1: 'text' must be a string"),
    ],
)
def test_bad_prediction_lines_name_the_file_and_line(tmp_path, lines, message):
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[0, 0, 10, 10]])])
    pred = tmp_path / "preds.jsonl"
    pred.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "pixel"])
    assert result.exit_code == 1
    assert f"{pred}{message}" in result.output


def test_bad_ground_truth_lines_name_the_file_and_line(tmp_path):
    good = make_sample("s1", [[0, 0, 10, 10]])
    broken = make_sample("s2", [[0, 0, 10, 10]])
    broken["targets"][0]["bbox_xyxy"] = [0, 0, 10]
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(EvalFileError, match=r"samples.jsonl:2: targets\[0\].bbox_xyxy must be 4 finite numbers"):
        load_ground_truth(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(EvalFileError, match="samples.jsonl:2: duplicate id 's1'"):
        load_ground_truth(tmp_path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "width"}) + "\n")
    pred = write_preds(tmp_path / "preds.jsonl", [])
    result = CliRunner().invoke(eval_command, ["--gt", str(path), "--pred", str(pred), "--format", "pixel"])
    assert result.exit_code == 1 and f"{path}:1: sample has no 'width'" in result.output


# --- predict -------------------------------------------------------------------------------


def test_every_family_has_a_grounding_prompt():
    for name in FORMATS:
        for multi in (False, True):
            prompt = grounding_prompt("Locate the kidney tumor. ", name, multi=multi, width=765, height=572)
            assert "Locate the kidney tumor." in prompt and "{" not in prompt
    assert grounding_prompt("Find it.", "internvl", multi=False, width=1, height=1).endswith("<ref>Find it.</ref>")
    assert "JSON" in grounding_prompt("Find it.", "qwen2.5-vl", multi=False, width=1, height=1)
    assert "765x572" in grounding_prompt("Find it.", "pixel", multi=False, width=765, height=572)
    with pytest.raises(ValueError, match="format must be one of"):
        grounding_prompt("Find it.", "gpt", multi=False, width=1, height=1)


class _ChatServer(ThreadingHTTPServer):
    """A loopback chat-completions server answering from a script keyed by query."""

    def __init__(self, answers: dict[str, str], fail_once: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.answers = answers
        self.fail_once = set(fail_once)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class _ChatHandler(BaseHTTPRequestHandler):
    server: _ChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        prompt = next(part["text"] for part in content if part["type"] == "text")
        query = next(q for q in self.server.answers if q in prompt)
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "body": body, "prompt": prompt, "auth": self.headers.get("Authorization")}
            )
            fail = query in self.server.fail_once
            self.server.fail_once.discard(query)
        if fail:
            self._reply(500, {"error": {"message": "scripted failure"}})
        else:
            self._reply(
                200,
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": self.server.answers[query]}}]},
            )

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chat_server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    servers: list[_ChatServer] = []

    def start(answers: dict[str, str], fail_once: set[str] = frozenset()) -> _ChatServer:
        server = _ChatServer(answers, fail_once)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        server.thread = thread  # type: ignore[attr-defined]
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
        server.thread.join(timeout=5)  # type: ignore[attr-defined]


def test_predict_against_a_chat_server_resumes_then_eval_scores_it(tmp_path, chat_server, monkeypatch):
    gt = write_gt(
        tmp_path / "out",
        [
            # 765x572 -> 756x560 (x * 84/85, y * 140/143).
            make_sample("s1", [[85, 143, 425, 429]], query="Locate the larger kidney tumor."),
            # 512x512 -> 504x504 (* 63/64).
            make_sample("s2", [[64, 128, 256, 320]], width=512, height=512, query="Find the liver lesion."),
            # 200x100 -> 196x112 (x * 49/50, y * 28/25).
            make_sample(
                "s3",
                [[0, 0, 50, 50], [100, 25, 150, 75]],
                width=200,
                height=100,
                query_type="multi_object",
                query="Locate all kidney tumors in this image.",
            ),
            make_sample("s4", [[0, 0, 10, 10]], split="train", query="Point to the spleen."),
        ],
        images=True,
    )
    server = chat_server(
        {
            "Locate the larger kidney tumor.": '```json\n[{"bbox_2d": [84, 140, 420, 420], '
            '"label": "kidney tumor"}]\n```',
            "Find the liver lesion.": '[{"bbox_2d": [63, 126, 252, 315], "label": "liver lesion"}]',
            "Locate all kidney tumors in this image.": '```json\n[{"bbox_2d": [98, 28, 147, 84], '
            '"label": "kidney tumor"}, '
            '{"bbox_2d": [0, 0, 49, 56], "label": "kidney tumor"}]\n```',
            "Point to the spleen.": "[]",
        },
        fail_once={"Find the liver lesion."},
    )
    monkeypatch.setenv("MEDGROUND_TEST_KEY", "sekret")
    out = tmp_path / "preds.jsonl"
    args = [
        "--gt",
        str(gt),
        "--backend",
        "openai",
        "--model",
        "qwen25vl-test",
        "--format",
        "qwen2.5-vl",
        "--out",
        str(out),
        "--base-url",
        f"http://127.0.0.1:{server.server_port}/v1",
        "--api-key-env",
        "MEDGROUND_TEST_KEY",
        "--batch-size",
        "2",
        "--timeout",
        "10",
        "--max-retries",
        "0",
    ]

    first = CliRunner().invoke(predict_command, args)
    assert first.exit_code == 1
    assert "3 samples: 2 answered now, 0 already in" in first.output
    assert "1 queries got no answer; rerun the same command" in first.output and "HTTP 500" in first.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s1", "s3"]

    second = CliRunner().invoke(predict_command, args)
    assert second.exit_code == 0, second.output
    assert "3 samples: 1 answered now, 2 already in" in second.output
    assert len(server.requests) == 4  # s1, s2 (failed), s3, then s2 again; never the train sample s4

    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sekret"
    assert request["body"]["model"] == "qwen25vl-test"
    image_part = request["body"]["messages"][0]["content"][0]
    prefix = "data:image/png;base64,"
    assert image_part["image_url"]["url"].startswith(prefix)
    sent = base64.b64decode(image_part["image_url"]["url"][len(prefix) :])
    by_prompt = {r["prompt"]: r for r in server.requests}
    assert "Locate the larger kidney tumor. Output its bbox coordinates using JSON format." in by_prompt
    assert (
        "Locate all kidney tumors in this image. Output the bbox coordinates of each one using JSON format."
    ) in by_prompt
    assert sent in {(gt / f"images/kits/{s}.png").read_bytes() for s in ("s1", "s2", "s3")}

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["s1", "s3", "s2"]
    assert {(line["format"], line["model"], line["prompt_version"]) for line in lines} == {
        ("qwen2.5-vl", "qwen25vl-test", "grounding-v1")
    }

    report = run_eval(gt, out, "--split", "test")  # the format recorded by predict
    assert report["format"]["name"] == "qwen2.5-vl"
    assert report["counts"] == {"samples": 3, "predicted": 3, "missing": 0, "unparseable": 0, "extra_predictions": 0}
    single, multi = report["overall"]["single"], report["overall"]["multi"]
    assert single["samples"] == 2 and single["acc@0.9"] == 1.0 and single["miou"] == pytest.approx(1.0)
    assert (multi["matched@0.5"], multi["precision@0.5"], multi["recall@0.5"]) == (2, 1.0, 1.0)


def test_predict_repairs_a_cut_line_and_refuses_another_format(tmp_path):
    samples = [make_sample(f"s{k}", [[0, 0, 10, 10]], query=f"Find tumor {k}.") for k in range(3)]
    gt = write_gt(tmp_path / "out", samples, images=True)
    truths = load_ground_truth(gt)
    out = tmp_path / "preds.jsonl"
    out.write_text(
        json.dumps({"id": "s0", "text": "[0, 0, 10, 10]", "format": "pixel", "model": "m"}) + "\n" + '{"id": "s1", "te'
    )
    asked: list[list[str]] = []

    class Backend:
        """A stand-in backend: answers every grounding request but s2's."""

        name, model = "stand-in", "m"

        def run(self, requests: list[Request]) -> list[Response]:
            asked.append([request.id for request in requests])
            for request in requests:
                text = request.messages[0]["content"][1]["text"].lower()
                assert "answer with its bounding box" in text and not request.schema
                assert isinstance(request.images[0], EncodedImage) and request.images[0].mime == "image/png"
            return [
                Response(r.id, text="[0, 0, 10, 10]") if r.id != "s2" else Response(r.id, reason="timeout")
                for r in requests
            ]

        def close(self) -> None:
            pass

    ask = Backend()
    summary = predict(truths, ask, out, format_name="pixel", model="m", batch_size=8)
    assert asked == [["s1", "s2"]]
    assert (summary.total, summary.skipped, summary.answered, summary.failed) == (3, 1, 1, 1)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s0", "s1"]

    with pytest.raises(EvalFileError, match=r"preds.jsonl:1: answer of format 'pixel', not 'internvl'"):
        predict(truths, ask, out, format_name="internvl", model="m")
    with pytest.raises(EvalFileError, match=r"answer of model 'm', not 'other'"):
        predict(truths, ask, out, format_name="pixel", model="other")


def test_predict_vllm_without_vllm_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[0, 0, 10, 10]])], images=True)
    result = CliRunner().invoke(
        predict_command,
        [
            "--gt",
            str(gt),
            "--backend",
            "vllm",
            "--model",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "--format",
            "qwen2.5-vl",
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
    )
    assert result.exit_code == 1
    assert "pip install 'medground[vllm]'" in result.output
    assert not (tmp_path / "p.jsonl").exists()


def test_predict_without_samples_of_the_split(tmp_path):
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[0, 0, 10, 10]], split="train")], images=True)
    result = CliRunner().invoke(
        predict_command,
        [
            "--gt",
            str(gt),
            "--backend",
            "openai",
            "--model",
            "m",
            "--format",
            "pixel",
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
    )
    assert result.exit_code == 1 and "no samples with split 'test'" in result.output
