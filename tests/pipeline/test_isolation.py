"""One case never takes down a run: its outputs are named and written as that case's
business (an undecodable file name, a value JSON cannot hold), the folder belongs to one
run at a time, a killed run's partial files go on resume, no input is dropped without a
record, and a run that made nothing says so in its exit status."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from medground.cli import main
from medground.pipeline import load_run_config, run
from medground.pipeline import worker as worker_module
from medground.pipeline.store import OutputFolder


def photos(folder: Path, names: list[str | bytes], *, pattern: str = "images/{case}.png") -> Path:
    """A dermoscopy-like set: one photograph with a round lesion per name (bytes: a raw,
    possibly undecodable, file name); returns the spec."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:120, 0:150]
    for index, name in enumerate(names):
        stem = os.fsdecode(name) if isinstance(name, bytes) else name
        lesion = (yy - 60) ** 2 + (xx - 70 - 3 * index) ** 2 < 28**2
        photo = np.stack([110 + 90 * lesion, 80 + 30 * lesion, 60 + 20 * lesion], axis=-1).astype(np.uint8)
        Image.fromarray(photo).save(folder / "images" / f"{stem}.png")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(folder / "masks" / f"{stem}.png")
    spec = folder / "spec.toml"
    spec.write_text(
        f'name = "photos"\nmodality = "dermoscopy"\ndisplay = "image"\nroot = "{folder}"\n'
        f'[cases]\nimage = "{pattern}"\nmask = "masks/{{case}}.png"\nmask_mode = "binary"\n'
        '[labels]\n1 = "melanocytic lesion"\n'
    )
    return spec


def strict_lines(path: Path) -> list[dict]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line]


def test_an_undecodable_file_name_is_one_case_like_any_other(tmp_path: Path) -> None:
    spec = photos(tmp_path / "data", ["a", b"caf\xe9-latin1", "c"])
    config = load_run_config(spec)
    summary = run(config, tmp_path / "out", use_ray=False, progress=False)
    assert summary.cases == 3 and summary.failed == 0
    samples = strict_lines(tmp_path / "out" / "samples.jsonl")
    assert {s["case_id"] for s in samples} == {"a", "caf\\xe9-latin1", "c"}
    for sample in samples:
        assert (tmp_path / "out" / sample["image"]).is_file()
    again = run(config, tmp_path / "out", use_ray=False, progress=False, resume=True)
    assert again.skipped_done == 3 and again.failed == 0


def test_a_case_whose_outputs_cannot_be_written_is_that_cases_error(tmp_path: Path, monkeypatch) -> None:
    """A NaN in one case's records (a model's confidence, a measure) never reaches a file as
    ``NaN``: the case fails at ``write`` with the reason, its images are removed, and the
    other cases are written."""
    spec = photos(tmp_path / "data", ["a", "b", "c"])
    real = worker_module.process_case

    def poisoned(spec, files, **options):
        result = real(spec, files, **options)
        if files.case_id == "b":
            result.accepted[0]["targets"][0]["area_mm2"] = float("nan")
        return result

    monkeypatch.setattr("medground.pipeline.runner.process_case", poisoned)
    summary = run(load_run_config(spec), tmp_path / "out", use_ray=False, progress=False)
    assert summary.failed == 1
    [error] = strict_lines(tmp_path / "out" / "errors.jsonl")
    assert error["case_id"] == "b" and error["stage"] == "write" and "Out of range float" in error["error"]
    samples = strict_lines(tmp_path / "out" / "samples.jsonl")
    assert {s["case_id"] for s in samples} == {"a", "c"}
    assert not (tmp_path / "out" / "images" / "photos" / "b.png").exists()
    json.loads((tmp_path / "out" / "manifest.json").read_text(), parse_constant=lambda c: 1 / 0)


def test_one_run_per_folder(tmp_path: Path) -> None:
    spec = photos(tmp_path / "data", ["a"])
    other = OutputFolder(tmp_path / "out")
    other.lock()
    try:
        with pytest.raises(ValueError, match="in use by another medground run"):
            run(load_run_config(spec), tmp_path / "out", use_ray=False, progress=False)
    finally:
        other.unlock()
    assert run(load_run_config(spec), tmp_path / "out", use_ray=False, progress=False).accepted > 0


def test_partial_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    spec = photos(tmp_path / "data", ["a", "b"])
    config = load_run_config(spec)
    out = tmp_path / "out"
    # Killed while writing run.json: only its temporary file exists; a new run starts there.
    out.mkdir()
    (out / ".run.json.k2j4.tmp").write_bytes(b'{"fingerp')
    run(config, out, use_ray=False, progress=False)
    reference = (out / "samples.jsonl").read_bytes()
    # Killed while writing images and the canonical files: resume removes what was partial.
    strays = [
        out / ".samples.jsonl.x1.tmp",
        out / "images" / "photos" / ".a.png.zz.tmp",
        out / "shards" / ".s.json.q.tmp",
    ]
    for stray in strays:
        stray.write_bytes(b"partial")
    run(config, out, use_ray=False, progress=False, resume=True)
    assert not any(stray.exists() for stray in strays)
    assert (out / "samples.jsonl").read_bytes() == reference


def test_out_where_the_dataset_would_read_it_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = photos(data, ["a"], pattern="**/{case}.png")
    with pytest.raises(ValueError, match=r"inside the folder of dataset 'photos'.*\*\*/\{case\}\.png"):
        run(load_run_config(spec), data / "out", use_ray=False, progress=False)
    assert not (data / "out").exists()
    # An anchored pattern never reaches into the folder: allowed.
    anchored = photos(tmp_path / "data2", ["a"])
    assert run(load_run_config(anchored), tmp_path / "data2" / "out", use_ray=False, progress=False).accepted > 0


def test_inputs_that_gave_no_case_are_recorded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = photos(data, ["a", "b", "c"])
    (data / "masks" / "b.png").unlink()
    (data / "images" / "c.png").unlink()
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "out"), "--no-ray", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 input file(s) gave no case" in result.output
    skipped = strict_lines(tmp_path / "out" / "skipped.jsonl")
    dropped = {r["reason"]: r["detail"] for r in skipped if r["reason"] in ("image_without_mask", "mask_without_image")}
    assert dropped["image_without_mask"].startswith(str(data / "images" / "b.png"))
    assert dropped["mask_without_image"].startswith(str(data / "masks" / "c.png"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["dropped_inputs"] == 2 and len(manifest["dropped_inputs"]) == 2


def test_a_run_that_made_nothing_fails(tmp_path: Path) -> None:
    empty = photos(tmp_path / "empty", [])
    result = CliRunner().invoke(main, ["run", str(empty), "--out", str(tmp_path / "o1"), "--no-ray", "--quiet"])
    assert result.exit_code == 1 and "no case found" in result.output
    broken = photos(tmp_path / "broken", ["a", "b"])
    for name in ("a", "b"):
        (tmp_path / "broken" / "images" / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = CliRunner().invoke(main, ["run", str(broken), "--out", str(tmp_path / "o2"), "--no-ray", "--quiet"])
    assert result.exit_code == 1 and "every case failed (2)" in result.output
    assert len(strict_lines(tmp_path / "o2" / "errors.jsonl")) == 2
    blank = photos(tmp_path / "blank", ["a"])
    Image.fromarray(np.zeros((120, 150), np.uint8)).save(tmp_path / "blank" / "masks" / "a.png")
    result = CliRunner().invoke(main, ["run", str(blank), "--out", str(tmp_path / "o3"), "--no-ray", "--quiet"])
    assert result.exit_code == 1 and "no case produced a sample" in result.output


def test_symlinks_out_of_the_dataset_folder_are_not_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = photos(data, ["a", "b", "c"])
    elsewhere = photos(tmp_path / "elsewhere", ["b", "c"]).parent  # readable images, outside data
    (data / "store").mkdir()
    (data / "images" / "a.png").rename(data / "store" / "a.png")
    (data / "images" / "a.png").symlink_to(Path("..") / "store" / "a.png")  # stays inside: read
    (data / "images" / "b.png").unlink()
    (data / "images" / "b.png").symlink_to(elsewhere / "images" / "b.png")
    (data / "masks" / "c.png").unlink()
    (data / "masks" / "c.png").symlink_to(elsewhere / "masks" / "c.png")
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "out"), "--no-ray", "--quiet"])
    assert result.exit_code == 0, result.output
    assert {r["case_id"] for r in strict_lines(tmp_path / "out" / "samples.jsonl")} == {"a"}
    skipped = strict_lines(tmp_path / "out" / "skipped.jsonl")
    outside = sorted(r["detail"] for r in skipped if r["reason"] == "outside_dataset_folder")
    assert len(outside) == 2
    for detail, link, target in zip(
        outside, ("images/b.png", "masks/c.png"), ("images/b.png", "masks/c.png"), strict=True
    ):
        assert detail.startswith(f"{data / link}: leads outside the dataset folder {data}")
        assert f"(to {elsewhere / target})" in detail and "not read" in detail
    # What the links would have brought is recorded as unpaired, never read.
    reasons = {r["reason"]: r["detail"] for r in skipped if "case_id" not in r}
    assert reasons["mask_without_image"].startswith(str(data / "masks" / "b.png"))
    assert reasons["image_without_mask"].startswith(str(data / "images" / "c.png"))
