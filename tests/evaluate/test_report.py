"""The evaluation table: every breakdown, and the format line."""

from __future__ import annotations

from click.testing import CliRunner

from ground_truth import breakdown_fixture as _breakdown_fixture
from medground.cli import eval_command


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
    # The ground truth through pixel boxes and back is exact: every measure at 100, no miss.
    ceiling = next(line for line in lines if line.startswith("ceiling "))
    assert ceiling.split() == ["ceiling", "5", "0", "0", *["100.0"] * 6, "1", *["100.0"] * 3]
    assert lines.index(ceiling) == lines.index(row) + 1
    for name in ("dataset", "modality", "label", "query_type", "split", "same_label_distractors"):
        assert name in lines
    assert any(line.split()[:2] == ["liver", "tumor"] for line in lines)
    assert "(none)" in result.output
    qwen = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), "--format", "qwen2.5-vl"])
    assert qwen.output.splitlines()[0] == "format qwen2.5-vl, factor 28, min_pixels 3136, max_pixels 12845056"
