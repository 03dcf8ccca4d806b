"""Model stages batched across cases (pipeline/batching.py): the queue, the stand-in engine
with its cost model, and whole runs on a local Ray instance whose outputs must not depend
on batch size, arrival order, engine crashes or the transport (engine in an actor or an
OpenAI-compatible server)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from medground.backends import Request, Response
from medground.backends.simulated import SimulatedEngine, SimulatedServer, simulated_answer
from medground.pipeline import run
from medground.pipeline.batching import BatchQueue, QueueSettings
from medground.pipeline.config import load_run_config

OUTPUTS = ("samples.jsonl", "rejected.jsonl", "errors.jsonl", "skipped.jsonl", "manifest.json")


def request(key: str, seed: int = 0) -> Request:
    return Request(id=key, messages=[{"role": "user", "content": key}], seed=seed)


def echo(calls: list[int], delay: float = 0.0):
    async def engine(batch: list[Request]) -> list[Response]:
        calls.append(len(batch))
        await asyncio.sleep(delay)
        return [Response(r.id, None, None, None, f"answer to {r.id}") for r in batch]

    return engine


# ---------------------------------------------------------------------------- the queue


def test_requests_of_many_callers_share_full_batches_and_get_their_own_answers() -> None:
    calls: list[int] = []

    async def main() -> list[list[Response]]:
        queue = BatchQueue([echo(calls, 0.05)], max_batch=8, wait_s=0.5)
        callers = [queue.submit([request(f"c{c}-r{r}") for r in range(3)]) for c in range(16)]
        return await asyncio.gather(*callers)

    answers = asyncio.run(main())
    assert calls == [8] * 6  # 48 requests, full batches only (none waited 0.5 s)
    for c, responses in enumerate(answers):
        assert [r.text for r in responses] == [f"answer to c{c}-r{r}" for r in range(3)]


def test_a_lone_request_waits_no_longer_than_batch_wait_s() -> None:
    calls: list[int] = []

    async def main() -> float:
        queue = BatchQueue([echo(calls)], max_batch=256, wait_s=0.1)
        started = time.perf_counter()
        await queue.submit([request("alone")])
        return time.perf_counter() - started

    waited = asyncio.run(main())
    assert calls == [1] and 0.09 <= waited < 1.0


def test_requests_arriving_while_the_engine_is_busy_fill_the_next_batch() -> None:
    """The engine is never idle while requests wait, and what arrives during a call goes
    into the next batch whole."""
    calls: list[int] = []

    async def main() -> QueueSettings:
        queue = BatchQueue([echo(calls, 0.2)], max_batch=100, wait_s=0.01)
        first = asyncio.ensure_future(queue.submit([request("first")]))
        await asyncio.sleep(0.05)  # the first batch (1 request) is running
        later = [queue.submit([request(f"late{i}")]) for i in range(50)]
        await asyncio.gather(first, *later)
        return queue.stats

    stats = asyncio.run(main())
    assert calls == [1, 50] and stats.batches == 2 and stats.mean_batch == 25.5


def test_a_batch_waits_through_short_pauses_but_not_past_its_oldest_requests_patience() -> None:
    """Requests trickling in (cases being prepared one after another) fill whole batches; a
    pause longer than ``wait_s`` sends what is there; and no request waits past
    ``max_wait_s``, however steady the trickle."""

    async def trickle(queue: BatchQueue, count: int, every: float) -> None:
        calls = []
        for i in range(count):
            calls.append(asyncio.ensure_future(queue.submit([request(str(i))])))
            await asyncio.sleep(every)
        await asyncio.gather(*calls)

    calls: list[int] = []
    asyncio.run(trickle(BatchQueue([echo(calls)], max_batch=25, wait_s=0.5), 60, 0.01))
    assert calls == [25, 25, 10]
    calls.clear()
    asyncio.run(trickle(BatchQueue([echo(calls)], max_batch=100, wait_s=5.0, max_wait_s=0.2), 20, 0.05))
    assert len(calls) >= 3 and max(calls) < 20 and sum(calls) == 20


def test_slots_keep_that_many_calls_in_flight() -> None:
    """The openai shape: one request per call, ``slots`` calls at once."""
    active, most = 0, 0

    async def engine(batch: list[Request]) -> list[Response]:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.02)
        active -= 1
        return [Response(r.id, text="ok") for r in batch]

    async def main() -> None:
        queue = BatchQueue([engine], max_batch=1, wait_s=0.0, slots=6)
        await asyncio.gather(*(queue.submit([request(str(i))]) for i in range(40)))

    asyncio.run(main())
    assert most == 6


def test_replicas_share_one_queue() -> None:
    """Two engines take batches from the same queue at once: 40 requests in batches of 10
    go two to each engine, the engines running at the same time."""
    from concurrency import Concurrency

    first: list[int] = []
    second: list[int] = []
    busy = Concurrency()

    def engine(calls: list[int]):
        async def call(batch: list[Request]) -> list[Response]:
            calls.append(len(batch))
            with busy:
                await asyncio.sleep(0.1)
            return [Response(r.id, text="ok") for r in batch]

        return call

    async def main() -> None:
        queue = BatchQueue([engine(first), engine(second)], max_batch=10, wait_s=0.0)
        await asyncio.gather(*(queue.submit([request(f"{i}")]) for i in range(40)))

    asyncio.run(main())
    assert first == [10, 10] and second == [10, 10] and busy.most == 2


def test_a_failed_engine_call_is_retried_and_then_reported() -> None:
    failures = {"left": 1}

    async def flaky(batch: list[Request]) -> list[Response]:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the replica died")
        return [Response(r.id, text="ok") for r in batch]

    async def broken(batch: list[Request]) -> list[Response]:
        raise RuntimeError("CUDA error: out of memory")

    async def main(engine, retries: int) -> tuple[list[Response], BatchQueue]:
        queue = BatchQueue([engine], max_batch=4, wait_s=0.0, retries=retries, backoff_s=0.0)
        return await queue.submit([request("a"), request("b")]), queue

    answers, queue = asyncio.run(main(flaky, 3))
    assert [a.text for a in answers] == ["ok", "ok"] and queue.stats.retries == 1
    answers, queue = asyncio.run(main(broken, 2))
    assert {a.reason for a in answers} == {"backend_error"} and queue.stats.failed_batches == 1
    assert "failed 3 times: RuntimeError: CUDA error: out of memory" in answers[0].detail


def test_cases_of_a_worker_compute_one_at_a_time_and_wait_together() -> None:
    """A CPU worker's cases take turns computing, and give the turn up while they wait for
    model answers: never two computing at once, all waiting at once."""
    import threading

    from concurrency import Concurrency
    from medground.pipeline.batching import CpuTurns

    turns = CpuTurns()
    computing, waiting = Concurrency(), Concurrency()

    def case() -> None:
        with turns.computing():
            for _ in range(2):
                with computing:
                    time.sleep(0.02)
                with CpuTurns.waiting(), waiting:
                    time.sleep(0.2)

    threads = [threading.Thread(target=case) for _ in range(5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert computing.most == 1 and waiting.most >= 4
    assert time.monotonic() - started < 1.6  # the waits overlapped (one after another: 2.2 s)
    with CpuTurns.waiting():  # no turn held on this thread: nothing to give up
        pass


# ---------------------------------------------------------------------------- the stand-in engine


def test_the_stand_in_engine_costs_t0_plus_t1_n_per_step() -> None:
    engine = SimulatedEngine(cost_t0_s=0.05, cost_per_prompt_s=0.001, max_batch=100)
    assert engine.cost(100) == pytest.approx(0.15) and engine.cost(250) == pytest.approx(0.15 * 2 + 0.05 + 0.05)
    started = time.perf_counter()
    engine.run([request(str(i)) for i in range(150)])
    assert time.perf_counter() - started >= 0.05 * 2 + 0.15 and engine.steps == 2 and engine.prompts == 150


def test_answers_do_not_depend_on_the_batch() -> None:
    """Alone, in a batch or shuffled, a request gets the same answer: its seed and text
    decide it, never its neighbours."""
    data = '<data>\n{\n "plain_phrasing": "the liver",\n "attributes": [{"name": "category"}]\n}\n</data>'
    requests = [
        Request(str(i), [{"role": "user", "content": f"Query type: descriptive. x\n{data}"}], seed=i, schema_name=name)
        for i in range(12)
        for name in ("referring_queries", "grounding_verdict")
    ]
    engine = SimulatedEngine(cost_t0_s=0.0, cost_per_prompt_s=0.0)
    together = {(r.id, r.schema_name): a.text for r, a in zip(requests, engine.run(requests), strict=True)}
    shuffled = requests[:]
    random.Random(3).shuffle(shuffled)
    apart = {(r.id, r.schema_name): engine.run([r])[0].text for r in shuffled}
    assert together == apart
    words = {json.loads(together[(str(i), "referring_queries")])["queries"][0]["query"] for i in range(12)}
    assert len(words) == 4  # the seed picks the verb: a mixed-up answer would show
    assert simulated_answer([{"role": "user", "content": "hi"}], "other", 0) == "I cannot answer that."


# ---------------------------------------------------------------------------- whole runs on Ray


SIM = """
[synthesis]
backend = "simulated"
cost_t0_s = 0.02
cost_per_prompt_s = 0.0005
{synthesis}

[verification.visual]
backend = "vlm"
engine = "simulated"
cost_t0_s = 0.02
cost_per_prompt_s = 0.0005
{judge}
"""


def config(demo: Path, name: str, synthesis: str = "", judge: str = "") -> Path:
    path = demo / name
    base = (demo / "run.toml").read_text()
    path.write_text(base + SIM.format(synthesis=synthesis, judge=judge))
    return path


def outputs(out: Path, *, config: bool = True) -> dict[str, bytes]:
    """The run's files, byte for byte (the manifest without the config file's path: each
    variant here is its own file; without the config at all when the variant adds a key)."""
    found = {name: (out / name).read_bytes() for name in OUTPUTS}
    manifest = json.loads(found["manifest.json"])
    manifest["config"].pop("source")
    if not config:
        manifest.pop("config"), manifest.pop("fingerprint")
    found["manifest.json"] = json.dumps(manifest).encode()
    return found


@pytest.fixture(scope="module")
def local_ray(monkeypatch_module):
    ray = pytest.importorskip("ray")
    monkeypatch_module.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.2", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def in_process(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batching") / "in-process"
    summary = run(load_run_config(config(demo_data, "sim.toml")), out, use_ray=False, progress=False)
    assert summary.accepted > 100 and summary.model_stats == {}
    return out


@pytest.mark.parametrize("max_batch", [1, 7, 256])
def test_outputs_are_the_same_whatever_the_batch_size(
    local_ray, in_process: Path, demo_data: Path, tmp_path: Path, max_batch: int
) -> None:
    """Byte-identical to the in-process run (one case's requests at a time) at batch sizes
    1, 7 and 256 on Ray, where requests of several cases share batches."""
    setting = f"max_batch = {max_batch}"
    path = config(demo_data, f"sim{max_batch}.toml", setting, setting)
    summary = run(load_run_config(path), tmp_path / "out", progress=False)
    assert outputs(tmp_path / "out") == outputs(in_process)
    stats = summary.model_stats
    assert set(stats) == {"synthesizer", "judge"}
    assert stats["synthesizer"]["max_batch"] == max_batch and stats["synthesizer"]["retries"] == 0
    # Each reference is one request (queries repeated on spread slices are kept once); the
    # judge sees every draft that passed the rules, and the stand-in says yes to each.
    assert stats["synthesizer"]["requests"] >= summary.accepted + summary.rejected
    assert stats["judge"]["requests"] == summary.accepted
    if max_batch == 1:
        assert stats["synthesizer"]["batches"] == stats["synthesizer"]["requests"]
    else:  # requests of several cases shared batches
        assert stats["synthesizer"]["mean_batch"] > 3


def test_two_replicas_share_the_work_and_change_nothing(
    local_ray, in_process: Path, demo_data: Path, tmp_path: Path
) -> None:
    """``num_replicas = 2``: both replicas run batches from the one queue; the outputs are
    the in-process run's."""
    path = config(demo_data, "replicas.toml", "max_batch = 16\nnum_replicas = 2", "num_replicas = 2")
    summary = run(load_run_config(path), tmp_path / "out", progress=False)
    assert outputs(tmp_path / "out") == outputs(in_process)
    busy = summary.model_stats["synthesizer"]["replica_busy_s"]
    assert len(busy) == 2 and min(busy) > 0


def test_a_dead_replica_is_restarted_and_its_batch_sent_again(
    local_ray, in_process: Path, demo_data: Path, tmp_path: Path
) -> None:
    """The synthesizer's replica process exits on its second call (as a GPU worker that
    crashes): Ray restarts it, the queue sends the batch again, nothing changes."""
    marker = tmp_path / "crashed"
    path = config(demo_data, "crash.toml", f'max_batch = 16\nfail_on_call = "2:{marker}"')
    summary = run(load_run_config(path), tmp_path / "out", progress=False)
    assert marker.exists() and summary.model_stats["synthesizer"]["retries"] >= 1
    assert outputs(tmp_path / "out", config=False) == outputs(in_process, config=False)


def normalised(out: Path) -> list[dict]:
    """The records with the engine's name taken out (the one thing the transport changes)."""
    records = []
    for name in ("samples.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            record = json.loads(line)
            record["synthesis"].pop("backend")
            for stage in (record.get("verification") or {}).values():
                if isinstance(stage, dict) and isinstance(stage.get("info"), dict):
                    stage["info"].pop("backend", None)
            records.append(record)
    return records


def test_the_openai_path_keeps_its_requests_in_flight_and_answers_the_same(
    local_ray, in_process: Path, demo_data: Path, tmp_path: Path
) -> None:
    """The same model behind a loopback OpenAI-compatible server: the queue keeps
    ``concurrency`` requests in flight across cases, and the records are the stand-in
    engine's, but for the engine's name."""
    with SimulatedServer(latency_s=0.1, concurrency=64) as server:
        table = f'model = "simulated"\nbase_url = "{server.base_url}"\nconcurrency = 8'
        path = demo_data / "openai.toml"
        path.write_text(
            (demo_data / "run.toml").read_text()
            + f'\n[synthesis]\nbackend = "openai"\n{table}\n\n[verification.visual]\nbackend = "vlm"\n{table}\n'
        )
        summary = run(load_run_config(path), tmp_path / "out", progress=False)
        assert server.in_flight_share(8) > 0.5, (server.in_flight_share(8), server.durations)
    assert normalised(tmp_path / "out") == normalised(in_process)
    assert summary.model_stats["synthesizer"]["engine"] == "openai"
    assert summary.model_stats["synthesizer"]["slots"] == 8
    assert summary.model_stats["synthesizer"]["slots_full_share"] > 0.5
