"""The medground command line."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medground.cli import main


def test_run_without_demo_explains():
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2
    assert "--preset NAME --data DIR" in result.output


def test_run_a_preset(shared_data, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--preset",
            "cxr_lung",
            "--data",
            str(shared_data / "cxr_lung"),
            "--out",
            str(out),
            "--no-ray",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["case_id"] for s in samples} == {"1", "2", "3", "4"}
    result = CliRunner().invoke(main, ["run", "--preset", "kitz", "--data", str(tmp_path)])
    assert result.exit_code == 1 and "unknown preset 'kitz'" in result.output


def test_presets_lists_the_shipped_specs():
    result = CliRunner().invoke(main, ["presets"])
    assert result.exit_code == 0 and {"kits", "msd_liver", "cxr_lung"} <= set(result.output.split())


def _toy_dataset(folder: Path) -> Path:
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    mask = np.zeros((8, 8, 5), np.uint8)
    mask[1:4, 1:4, 1:3] = 1
    mask[5:7, 5:7, 2:4] = 1
    mask[6, 1, 1] = 9
    for case in ("c1", "c2"):
        (folder / "img").mkdir(exist_ok=True)
        (folder / "seg").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.int16), affine), folder / "img" / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), folder / "seg" / f"{case}.nii.gz")
    (folder / "img" / "c3.nii.gz").write_bytes(b"broken")
    (folder / "seg" / "c3.nii.gz").write_bytes(b"broken")
    spec = folder / "spec.toml"
    spec.write_text(
        'name = "toy"\nmodality = "CT"\n[cases]\nimage = "img/{case}.nii.gz"\nmask = "seg/{case}.nii.gz"\n'
        '[labels]\n1 = "lesion"\n2 = "liver"\n'
    )
    return spec


def test_inspect_reports_cases_labels_orientation_and_failures(tmp_path):
    spec = _toy_dataset(tmp_path)
    result = CliRunner().invoke(main, ["inspect", str(spec)])
    assert result.exit_code == 1, result.output  # c3 fails to load
    assert "cases found: 3; 1 failed to load" in result.output
    assert "c3" in result.output and "img/c3.nii.gz: unreadable" in result.output
    assert "8x8x5" in result.output and "LPS" in result.output
    assert "declared but never seen: 1 (2 liver)" in result.output
    assert "undeclared id 9 (named unknown_9) in 2 case(s)" in result.output
    report = json.loads(CliRunner().invoke(main, ["inspect", str(spec), "--json"]).output)
    assert report["cases_found"] == 3 and report["unknown_labels"] == ["unknown_9"]
    assert report["cases"][0]["labels"] == {"1": 26, "9": 1} and report["cases"][0]["axcodes"] == "LPS"
    assert report["labels_seen"] == {"1": 2, "9": 2}
    quick = json.loads(
        CliRunner().invoke(main, ["inspect", str(spec), "--json", "--headers-only", "--limit", "2"]).output
    )
    assert [c["shape"] for c in quick["cases"]] == [[8, 8, 5], [8, 8, 5]] and quick["labels_seen"] is None


def test_inspect_one_case_lists_components(tmp_path):
    spec = _toy_dataset(tmp_path)
    result = CliRunner().invoke(main, ["inspect", str(spec), "--case", "c1"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " lesion " in line)
    assert row.split()[2] == "2"  # two components
    assert "unknown_9" in result.output
    assert "template draft(s)" in result.output
    result = CliRunner().invoke(main, ["inspect", str(spec), "--case", "nope"])
    assert result.exit_code == 1 and "case 'nope' not found" in result.output


def test_inspect_a_preset_on_real_data(shared_data):
    result = CliRunner().invoke(main, ["inspect", "--preset", "cxr_lung", "--data", str(shared_data / "cxr_lung")])
    assert result.exit_code == 0, result.output
    assert "cases found: 4" in result.output and "IL" in result.output


def test_cli_demo(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "--demo", "--no-ray", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "samples accepted" in result.output and (tmp_path / "medground-demo" / "samples.jsonl").is_file()
    again = CliRunner().invoke(main, ["run", "--demo", "--no-ray", "--quiet"])
    assert again.exit_code == 0 and "8 already done" in again.output


def test_inspect_one_case_of_a_run_config(demo_data: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", str(demo_data / "run.toml"), "--case", "lesion001"])
    assert result.exit_code == 0, result.output
    assert "skin lesion" in result.output and "side None" in result.output and "template draft(s)" in result.output
    result = CliRunner().invoke(main, ["inspect", str(demo_data / "run.toml"), "--case", "nope"])
    assert result.exit_code == 1 and "not found in demo_ct, demo_skin" in result.output


@pytest.mark.parametrize(("dtype", "big"), [(np.uint32, 4_000_000_000), (np.uint64, 2**63 + 5)])
def test_inspect_lists_huge_label_ids_as_undeclared(tmp_path: Path, dtype: type, big: int) -> None:
    # A bincount over such ids would allocate 30 GiB (uint32) or refuse the map (uint64).
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    mask = np.zeros((8, 8, 5), dtype)
    mask[1:4, 1:4, 1:3] = 1
    mask[5:7, 5:7, 2:4] = big
    for folder in ("img", "seg"):
        (tmp_path / folder).mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.int16), affine), tmp_path / "img" / "c1.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine, dtype=dtype), tmp_path / "seg" / "c1.nii.gz")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "toy"\nmodality = "CT"\n[cases]\nimage = "img/{case}.nii.gz"\nmask = "seg/{case}.nii.gz"\n'
        '[labels]\n1 = "lesion"\n'
    )
    result = CliRunner().invoke(main, ["inspect", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"undeclared id {big} (named unknown_{big}) in 1 case(s)" in result.output
    report = json.loads(CliRunner().invoke(main, ["inspect", str(spec), "--json"]).output)
    assert report["cases"][0]["labels"] == {"1": 18, str(big): 8}
    assert CliRunner().invoke(main, ["inspect", str(spec), "--case", "c1"]).exit_code == 0


def test_a_deeply_nested_config_is_a_clean_error(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for command in (["run", str(config), "--no-ray", "--out", str(tmp_path / "out")], ["inspect", str(config)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1 and not isinstance(result.exception, RecursionError), result.output
        assert f"{config}: invalid TOML (arrays or tables nested too deeply to read)" in result.output


def test_a_read_only_output_folder_is_a_clean_error(demo_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        try:
            (out / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("file permissions are not enforced here (running as root)")
        for where, message in (
            (out, "cannot write to the output folder"),
            (out / "sub", "cannot make the output folder"),
        ):
            result = CliRunner().invoke(
                main, ["run", str(demo_data / "run.toml"), "--no-ray", "--quiet", "--out", str(where)]
            )
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
            assert f"Error: {message} {where}: Permission denied" in result.output
        assert not any(out.iterdir())  # the check leaves nothing behind
    finally:
        out.chmod(0o755)


def test_an_output_folder_under_a_file_is_a_clean_error(demo_data: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    where = tmp_path / "file" / "out"
    result = CliRunner().invoke(main, ["run", str(demo_data / "run.toml"), "--no-ray", "--quiet", "--out", str(where)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: cannot make the output folder {where}: Not a directory" in result.output
