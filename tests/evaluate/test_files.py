"""Ground-truth and prediction files: the box format comes from the flag or the
predictions, never a guess; a bad line names its file and line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ground_truth import make_sample, run_eval, write_gt, write_preds
from medground.cli import eval_command
from medground.evaluate import load_ground_truth
from medground.runfolder import RecordFileError as EvalFileError


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


@pytest.mark.parametrize(
    ("box", "fine"),
    [
        ([0, 0, 10, 10], True),
        ([0.5, 1, 10.25, 10], True),
        ([1e308, 1e308, 1.5e308, 1.5e308], True),  # finite numbers whose sum is not
        ([0, 0, True, 10], False),
        ([0, 0, float("nan"), 10], False),
        ([0, 0, float("inf"), 10], False),
        ([0, 0, "10", 10], False),
        ([0, 0, 10, 10, 10], False),
        ({"x": 0}, False),
    ],
)
def test_a_box_is_four_finite_numbers(tmp_path, box, fine):
    """Boxes in ground truth are checked one by one: four finite JSON numbers (no bool, no
    NaN or infinity, however the numbers add up), each read as a float."""
    sample = make_sample("s1", [[0, 0, 10, 10]])
    sample["targets"][0]["bbox_xyxy"] = box
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(sample) + "\n")
    if fine:
        (truth,) = load_ground_truth(path)
        assert truth.boxes[0] == tuple(float(v) for v in box)
        assert all(type(v) is float for v in truth.boxes[0])
    else:
        with pytest.raises(EvalFileError, match=r"samples.jsonl:1: targets\[0\].bbox_xyxy must be 4 finite numbers"):
            load_ground_truth(path)
