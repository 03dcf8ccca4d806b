"""One case never takes down a run: its outputs are named and written as that case's
business (an undecodable file name, a value JSON cannot hold), the folder belongs to one
run at a time, a killed run's partial files go on resume, no input is dropped without a
record, and a run that made nothing says so in its exit status."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from medground.cli import main
from medground.pipeline import load_run_config, run
from medground.pipeline import worker as worker_module
from medground.pipeline.store import OutputFolder
from photo_cases import photos, strict_lines


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


def test_a_case_whose_outputs_cannot_be_written_is_that_cases_error(tmp_path: Path) -> None:
    """A NaN in one case's records (a model's confidence, a measure) never reaches a file as
    ``NaN``: the case fails at ``write`` with the reason, its images are removed, and the
    other cases are written (the runner's write step, fed the cases' real results)."""
    from medground.io import find_cases
    from medground.pipeline.runner import _write, assemble

    spec_path = photos(tmp_path / "data", ["a", "b", "c"])
    config = load_run_config(spec_path)
    folder = OutputFolder(tmp_path / "out")
    folder.prepare(config.fingerprint, config.describe(), resume=False)
    for files in find_cases(config.datasets[0]).cases:
        result = worker_module.process_case(config.datasets[0], files)
        if files.case_id == "b":
            result.accepted[0]["targets"][0]["area_mm2"] = float("nan")
        _write(folder, result)
    manifest = assemble(folder, config)
    assert len(manifest["errors"]) == 1
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


def dots(folder: Path, count: int, max_objects: int | None = None) -> Path:
    """A microscopy-like image with ``count`` separate round nuclei (an instance label)."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    side = 12 * int(np.ceil(np.sqrt(count))) + 12
    yy, xx = np.mgrid[0:side, 0:side]
    mask = np.zeros((side, side), np.uint8)
    for index in range(count):
        cy, cx = 12 + 12 * (index // int(np.ceil(np.sqrt(count)))), 12 + 12 * (index % int(np.ceil(np.sqrt(count))))
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = 1
    photo = np.where(mask > 0, 60, 200).astype(np.uint8)
    Image.fromarray(np.stack([photo] * 3, axis=-1)).save(folder / "images" / "a.png")
    Image.fromarray(mask * 255).save(folder / "masks" / "a.png")
    spec = folder / "spec.toml"
    extra = f"[render]\nmax_objects = {max_objects}\n" if max_objects is not None else ""
    spec.write_text(
        f'name = "dots"\nmodality = "microscopy"\ndisplay = "image"\nroot = "{folder}"\n'
        f'[cases]\nimage = "images/{{case}}.png"\nmask = "masks/{{case}}.png"\nmask_mode = "binary"\n'
        f'[labels]\n1 = "nucleus"\n[label_kinds]\nnucleus = "instance"\n{extra}'
    )
    return spec


def test_a_crowded_view_asks_nothing_and_says_why(tmp_path: Path) -> None:
    """Over ``[render] max_objects`` a view makes no drafts (uniqueness among that many
    look-alikes is neither cheap nor meaningful) and every target gets a record."""
    spec = dots(tmp_path / "a", 40, max_objects=30)
    crowded = run(load_run_config(spec), tmp_path / "o1", use_ray=False, progress=False)
    skipped = strict_lines(tmp_path / "o1" / "skipped.jsonl")
    reasons = [r for r in skipped if r["reason"] == "crowded_view"]
    assert crowded.accepted == 0 and len(reasons) == 40
    assert "40 objects in the view, over [render] max_objects = 30" in reasons[0]["detail"]
    fine = run(load_run_config(dots(tmp_path / "b", 40)), tmp_path / "o2", use_ray=False, progress=False)
    assert fine.accepted > 0


def test_a_case_that_kills_or_hangs_its_worker_is_that_cases_error(tmp_path: Path) -> None:
    """``--no-ray`` runs cases in a supervised worker process: a case that aborts it (as an
    allocation failure in native code does) or blocks in a call no timer interrupts is an
    error naming what happened, and the next case runs in a fresh worker."""
    from crashing import crash_or_hang
    from medground.io import find_cases
    from medground.pipeline.isolate import CaseWorker

    spec = load_run_config(photos(tmp_path / "data", ["a", "abort", "hang", "z"])).datasets[0]
    cases = {files.case_id: files for files in find_cases(spec).cases}
    with CaseWorker(crash_or_hang, timeout_s=1.0, grace_s=1.0) as worker:
        results = {name: worker.run(spec, cases[name]) for name in ("a", "abort", "hang", "z")}
        assert worker.restarts == 2
    assert results["a"].error is None and results["a"].accepted
    assert results["z"].error is None and results["z"].accepted
    assert results["abort"].error["stage"] == "worker" and "killed by SIGABRT" in results["abort"].error["error"]
    assert (
        results["hang"].error["stage"] == "worker"
        and "no result 2 s after it started" in results["hang"].error["error"]
    )


_SCRIPT = """
import sys
from pathlib import Path
from medground.pipeline import load_run_config, run

def main():
    summary = run(load_run_config(Path(sys.argv[1])), Path(sys.argv[2]), use_ray=False, progress=False)
    print("accepted", summary.accepted)
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_is_told_so(tmp_path: Path, guarded: bool) -> None:
    """The worker is a spawned process that imports the script's main module: a script
    that runs the pipeline at import (no ``if __name__ == "__main__":``) makes every worker
    exit before its first case. The run stops at once saying so, instead of recording each
    case as a worker that "exited with status 1"; the guarded script runs."""
    import subprocess
    import sys

    spec = photos(tmp_path / "data", ["a", "b"])
    script = tmp_path / "make.py"
    script.write_text(_SCRIPT + ('if __name__ == "__main__":\n    main()\n' if guarded else "main()\n"))
    done = subprocess.run(
        [sys.executable, str(script), str(spec), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    if guarded:
        assert done.returncode == 0, done.stderr
        assert "accepted" in done.stdout and int(done.stdout.split()[-1]) > 0
    else:
        assert done.returncode != 0
        assert "WorkerStartError" in done.stderr and "before it could take a case" in done.stderr
        assert 'if __name__ == "__main__":' in done.stderr
        assert (
            not (tmp_path / "out" / "errors.jsonl").exists()
            or "exited with status" not in (tmp_path / "out" / "errors.jsonl").read_text()
        )


def test_a_worker_that_does_not_start_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that has not said it started within ``START_S`` (its imports stuck) is
    killed and the run stops saying so, rather than wait for it without end."""
    from medground.io import find_cases
    from medground.pipeline import isolate

    spec = load_run_config(photos(tmp_path / "data", ["a"])).datasets[0]
    [files] = find_cases(spec).cases
    monkeypatch.setattr(isolate, "START_S", 0.0)  # a spawned interpreter takes longer than that
    worker = isolate.CaseWorker(worker_module.process_case, timeout_s=None)
    with pytest.raises(isolate.WorkerStartError, match="did not start within 0 s"):
        worker.run(spec, files)
    worker.close()


def test_time_and_memory_budgets_make_errors_not_casualties(tmp_path: Path) -> None:
    """``[run] case_timeout_s`` and ``case_memory_gb``: a case over either is an error with
    the budget named, in the worker that ran it; the run itself finishes."""
    spec = photos(tmp_path / "data", ["a", "b"])
    slow = tmp_path / "slow.toml"
    slow.write_text(spec.read_text() + "[run]\ncase_timeout_s = 0.001\n")
    summary = run(load_run_config(slow), tmp_path / "o1", use_ray=False, progress=False)
    errors = strict_lines(tmp_path / "o1" / "errors.jsonl")
    assert summary.failed == 2 and {e["stage"] for e in errors} == {"budget"}
    assert all("over the case time budget (0.001 s)" in e["error"] for e in errors)
    # A 600 x 600 x 300 CT decodes to 216 MB (and its label map to 108 MB): over 0.15 GB.
    big = tmp_path / "big"
    (big / "img").mkdir(parents=True)
    (big / "seg").mkdir()
    labels = np.zeros((600, 600, 300), np.uint8)
    labels[200:400, 200:400, 100:200] = 1
    nib.save(nib.Nifti1Image(np.zeros((600, 600, 300), np.int16), np.diag([0.7, 0.7, 1.5, 1])), big / "img" / "a.nii")
    nib.save(nib.Nifti1Image(labels, np.diag([0.7, 0.7, 1.5, 1])), big / "seg" / "a.nii")
    ct = (
        f'name = "big"\nmodality = "CT"\nroot = "{big}"\n[cases]\nimage = "img/{{case}}.nii"\n'
        'mask = "seg/{case}.nii"\n[labels]\n1 = "liver"\n[run]\ncase_memory_gb = 0.15\n'
    )
    (big / "spec.toml").write_text(ct)
    run(load_run_config(big / "spec.toml"), tmp_path / "o2", use_ray=False, progress=False)
    [error] = strict_lines(tmp_path / "o2" / "errors.jsonl")
    assert "over the case memory budget (0.15 GB)" in error["error"] and error["stage"] == "load"


@pytest.mark.parametrize(
    ("line", "message"),
    [("case_timeout_s = -1", "case_timeout_s must be a positive number"), ("cpus = 3", "unknown key.*cpus")],
)
def test_run_budget_settings_are_checked(tmp_path: Path, line: str, message: str) -> None:
    from medground.io.errors import SpecError

    spec = photos(tmp_path / "data", ["a"])
    spec.write_text(spec.read_text() + f"[run]\n{line}\n")
    with pytest.raises(SpecError, match=message):
        load_run_config(spec)


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


def test_an_unreachable_ray_address_is_reported_at_once(tmp_path: Path) -> None:
    """Nothing listens on the port: the run says so within the connect timeout instead of
    hanging in ray.init, and writes nothing."""
    import socket
    import time

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = photos(tmp_path / "data", ["a"])
    started = time.perf_counter()
    result = CliRunner().invoke(
        main, ["run", str(spec), "--out", str(tmp_path / "out"), "--ray-address", f"127.0.0.1:{port}", "--quiet"]
    )
    assert result.exit_code == 1 and "nothing answers there" in result.output
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "out").exists()
