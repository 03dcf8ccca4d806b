"""The medground command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from medground.cli import main


def test_run_demo_prints_and_writes_the_region_table(tmp_path):
    result = CliRunner().invoke(main, ["run", "--demo", "--out", str(tmp_path), "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "components (26-connected)" in result.output
    data = json.loads((tmp_path / "regions.json").read_text())
    n = len(data["regions"]["label"])
    assert n > 5
    assert data["regions"]["label"] == list(range(1, n + 1))
    assert set(data["regions"]["class"]) <= {1, 2, 3}
    assert f"... {n - 5} more" in result.output


def test_run_without_demo_explains():
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2
    assert "medground run --demo" in result.output
