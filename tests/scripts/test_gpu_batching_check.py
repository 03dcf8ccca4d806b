"""scripts/gpu_batching_check.py (the GPU batching check) run against the stand-in engine, so
its plumbing — scaled demo, run on a local Ray instance, per-stage figures — is exercised
without a GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def test_gpu_batching_check_reports_every_stage_with_the_stand_in_engine(capsys, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    path = Path(__file__).resolve().parents[2] / "scripts" / "gpu_batching_check.py"
    module_spec = importlib.util.spec_from_file_location("gpu_batching_check", path)
    assert module_spec and module_spec.loader
    check = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(check)
    status = check.main(
        ["--engine", "simulated", "--volumes", "2", "--photos", "2", "--cpus", "2", "--max-batch", "64"]
    )
    printed = capsys.readouterr().out.strip().splitlines()
    assert status == 0, printed
    stages = [json.loads(line) for line in printed[:-1]]
    assert [s["stage"] for s in stages] == ["synthesizer", "judge"]
    for stage in stages:
        assert stage["engine"] == "simulated" and stage["requests"] > 0 and stage["batches"] > 0
        assert 0 < stage["mean_batch"] <= 64 and 0 < stage["engine_busy_share"] <= 1.0
        assert stage["tokens_per_s"] > 0 and stage["gpu_busy_share"] is None  # no NVML here
    assert printed[-1].endswith("OK") and "on 2 CPU workers" in printed[-1]
