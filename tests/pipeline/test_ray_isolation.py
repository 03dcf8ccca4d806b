"""One case never takes down a Ray run: budgets inside the CPU worker actors' case threads,
a hard kill for a case stuck in a native call, and a driver killed at random moments
whose run resumes byte-identically with no Ray process left behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from medground.pipeline import run, runner
from medground.pipeline.config import load_run_config
from photo_cases import photos, strict_lines

RAY_ENV = {"MEDGROUND_RAY_NODE_IP": "127.0.0.2", "RAY_AUTH_MODE": "disabled"}
MODELS = """
[synthesis]
backend = "simulated"
cost_t0_s = 0.05
cost_per_prompt_s = 0.002
max_batch = 32

[verification.visual]
backend = "vlm"
engine = "simulated"
cost_t0_s = 0.05
cost_per_prompt_s = 0.002
"""
OUTPUTS = ("samples.jsonl", "rejected.jsonl", "errors.jsonl", "skipped.jsonl", "manifest.json")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.2", log_to_driver=False
        )
        yield ray
        ray.shutdown()


def test_a_case_stuck_in_a_native_call_has_its_worker_killed(local_ray, tmp_path: Path, monkeypatch) -> None:
    """``hang``'s image is a FIFO nobody writes: opening it blocks in the kernel, where no
    watchdog reaches. Past its budget (twice: the wait for memory to start, and the case)
    and the grace period the driver kills its worker
    actor; the case is an error saying so, the worker restarts and the other cases (some
    held by the same worker) are made as in a run without it."""
    spec = photos(tmp_path / "data", ["a", "b", "hang", "y", "z"])
    (tmp_path / "data" / "images" / "hang.png").unlink()
    os.mkfifo(tmp_path / "data" / "images" / "hang.png")
    slow = tmp_path / "run.toml"
    # A budget the other cases keep with room to spare on a loaded machine (a fresh worker's
    # first case pays for its imports).
    slow.write_text(spec.read_text() + "[run]\ncase_timeout_s = 8\ncases_per_worker = 1\n")
    monkeypatch.setattr(runner, "GRACE_S", 2.0)
    started = time.monotonic()
    summary = run(load_run_config(slow), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 90
    errors = strict_lines(tmp_path / "out" / "errors.jsonl")
    # One case per worker: the case runs on the actor's main thread, where the budget's signal
    # interrupts even the blocked open() (stage budget); otherwise the driver kills it (worker).
    assert [e["case_id"] for e in errors] == ["hang"] and errors[0]["stage"] in {"budget", "worker"}
    assert summary.cases == 5 and summary.failed == 1
    made = {r["case_id"] for r in strict_lines(tmp_path / "out" / "samples.jsonl")}
    assert made == {"a", "b", "y", "z"}


def test_a_stuck_case_is_blamed_alone_among_the_cases_it_starves(local_ray, tmp_path: Path, monkeypatch) -> None:
    """Three cases per worker: the stuck case holds its worker's CPU turn, and the cases
    handed to that worker before and after it wait for the turn past the time that would
    have been theirs. The driver asks the worker (from its control thread) which case has
    run that long: only ``hang`` is an error, the others are made as in a run without it."""
    names = ["a", "b", "c", "hang", "x", "y", "z"]
    spec = photos(tmp_path / "data", names)
    (tmp_path / "data" / "images" / "hang.png").unlink()
    os.mkfifo(tmp_path / "data" / "images" / "hang.png")
    slow = tmp_path / "run.toml"
    # Stand-in models: a case gives its turn up while it waits for their answers, so ``hang``
    # can take the turn from a case handed over before it.
    slow.write_text(spec.read_text() + MODELS + "[run]\ncase_timeout_s = 8\ncases_per_worker = 3\n")
    monkeypatch.setattr(runner, "GRACE_S", 2.0)
    monkeypatch.setattr(runner, "STATUS_WAIT_S", 2.0)
    started = time.monotonic()
    summary = run(load_run_config(slow), tmp_path / "out", progress=False)
    assert time.monotonic() - started < 120
    errors = strict_lines(tmp_path / "out" / "errors.jsonl")
    assert [e["case_id"] for e in errors] == ["hang"], errors
    assert errors[0]["stage"] == "worker" and "still running 10 s after it started" in errors[0]["error"]
    assert summary.cases == len(names) and summary.failed == 1
    made = {r["case_id"] for r in strict_lines(tmp_path / "out" / "samples.jsonl")}
    assert made == set(names) - {"hang"}


def test_a_worker_says_which_cases_hold_the_turn_and_how_long_they_ran(monkeypatch) -> None:
    """The status a worker gives the driver: the turn's holders and each running case's
    seconds (a case waiting for its turn is not running yet)."""
    import threading

    from medground.pipeline import worker
    from medground.pipeline.worker import CaseActor

    # The actor here lives in the test process: its collector is not the actor's to freeze.
    monkeypatch.setattr(worker, "settle_collector", lambda: False)
    monkeypatch.setattr(worker, "keep_freed_memory", lambda: False)
    actor = CaseActor(None)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with actor._turns.computing("d/first"):
            actor._started["d/first"] = time.monotonic() - 5.0
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    status = actor.status()
    assert status["holders"] == ["d/first"] and status["running"]["d/first"] >= 5.0
    release.set()
    thread.join(10)
    assert actor.status()["holders"] == []


def test_each_worker_holds_its_next_case_while_it_runs_one() -> None:
    """A worker runs ``cases_per_worker`` cases at once and one more waits in its queue, so
    it starts that case the moment one ends instead of idling while the driver fetches and
    writes the result; the waiting cases spread over the workers."""
    handed: list[tuple[int, str]] = []

    class Worker:
        def __init__(self, n: int) -> None:
            self.process = SimpleNamespace(remote=lambda spec, files, **_: handed.append((n, files)) or object())

    for per in (1, 3):
        handed.clear()
        pool = runner._Pool(SimpleNamespace(put=lambda value: value), [Worker(0), Worker(1)], per, {})
        queue = [runner._Job(SimpleNamespace(name="d"), f"case{i}") for i in range(20)]
        while pool.has_room():
            pool.submit(queue.pop(0))
        assert len(handed) == 2 * (per + runner.CASES_AHEAD) == len(pool.pending)
        assert sorted(n for n, _ in handed) == [0] * (per + 1) + [1] * (per + 1)


def test_the_time_budget_holds_in_a_case_thread(local_ray, tmp_path: Path) -> None:
    """Cases run as threads of the worker actors, where no signal arrives: the watchdog
    raises in the case's thread, the case is an error naming the budget, and the worker
    goes on to the next case."""
    spec = photos(tmp_path / "data", ["a", "b", "c"])
    slow = tmp_path / "slow.toml"
    slow.write_text(spec.read_text() + "[run]\ncase_timeout_s = 0.001\ncases_per_worker = 2\n")
    summary = run(load_run_config(slow), tmp_path / "out", progress=False)
    errors = strict_lines(tmp_path / "out" / "errors.jsonl")
    assert summary.failed == 3 and {e["stage"] for e in errors} == {"budget"}
    assert all("over the case time budget (0.001 s)" in e["error"] for e in errors)
    fine = run(load_run_config(spec), tmp_path / "again", progress=False)  # the workers are not left broken
    made = {r["case_id"] for r in strict_lines(tmp_path / "again" / "samples.jsonl")}
    assert fine.failed == 0 and made == {"a", "b", "c"}


def _ray_processes() -> set[int]:
    """Live (not zombie) processes of a Ray instance: raylet, GCS, workers, agents."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if status.split(") ", 1)[1].startswith("Z"):
            continue
        if any(word in command for word in ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard/agent")):
            found.add(int(pid))
    return found


def test_a_ray_run_killed_at_random_moments_resumes_byte_identically(demo_data: Path, tmp_path: Path) -> None:
    """The driver of a local Ray instance, its queries written and judged by the stand-in
    model through the batching queues, is SIGKILLed at random moments, three times, and
    resumed each time: the outputs, manifest included, equal an uninterrupted in-process
    run's, and no Ray process outlives the runs."""
    config = demo_data / "killed.toml"
    config.write_text((demo_data / "run.toml").read_text() + MODELS)
    reference = tmp_path / "reference"
    run(load_run_config(config), reference, use_ray=False, progress=False)
    before = _ray_processes()
    env = {**os.environ, **RAY_ENV}
    out = tmp_path / "killed"
    base = [sys.executable, "-m", "medground.cli", "run", str(config), "--out", str(out), "--quiet"]
    rng = random.Random(17)
    for attempt in range(3):
        command = base + (["--resume"] if attempt else [])
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(4.0, 12.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = subprocess.run(base + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(out.rglob("*.tmp"))
    # Ray's own processes see their raylet gone and leave (its agents check every few seconds).
    deadline = time.monotonic() + 120
    while (left := _ray_processes() - before) and time.monotonic() < deadline:
        time.sleep(2)
    assert not left, f"Ray processes left behind: {left}"


def test_a_worker_admits_a_case_only_while_memory_allows(monkeypatch) -> None:
    """Several cases in flight per worker must not mean several real-size volumes in memory:
    past half the worker's budget a case waits for the running ones to finish (one case
    always runs), and never longer than its time budget."""
    import threading

    from concurrency import Concurrency
    from medground.pipeline import worker
    from medground.pipeline.batching import CpuTurns

    waiting = Concurrency()

    def case(spec, files, **kwargs):
        """A case that spends its time waiting for model answers (its CPU turn given up)."""
        with CpuTurns.waiting(), waiting:
            time.sleep(0.2)
        return files

    monkeypatch.setattr(worker, "process_case", case)
    monkeypatch.setattr(worker, "keep_freed_memory", lambda: False)  # the test process's allocator as it is
    actor = worker.CaseActor(None)  # no limit on this test process

    def cases(count: int, memory: int, budget: float) -> float:
        """Runs ``count`` cases at once under ``memory``; the most admitted at once is kept
        in ``waiting.most``; returns the seconds they took."""
        actor._memory, waiting.most = memory, 0
        threads = [
            threading.Thread(
                target=actor.process,
                args=(SimpleNamespace(name="d"), SimpleNamespace(case_id=str(i))),
                kwargs={"budget": (budget, None)},
            )
            for i in range(count)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started

    assert cases(4, 1000, 5.0) >= 0.8 and waiting.most == 1  # far over the budget: one at a time
    cases(4, 10**15, 5.0)
    assert waiting.most == 4  # plenty: all at once
    cases(3, 1000, 0.1)
    assert waiting.most >= 2  # over again, but the wait ends with the case's time budget


def test_a_worker_uses_the_cpus_ray_gave_it(local_ray) -> None:
    """A CPU worker actor holds one of the node's CPUs: its kernels run on one thread (and
    its images encode in turn, not ahead), whatever the node's core count."""
    from medground.pipeline.worker import case_actor_class

    actor = case_actor_class(local_ray).options(num_cpus=1).remote(None)
    try:
        assert local_ray.get(actor.status.remote(), timeout=60)["threads"] == 1
    finally:
        local_ray.kill(actor)
