"""How full the model stages keep their engine (issue: model stages that keep the GPU full).

The demo scaled up (``--volumes`` CT phantoms and ``--photos`` dermoscopy phantoms, several
thousand drafts) runs on a local Ray instance with ``--cpus`` simulated CPU workers, its
synthesis and judging done by the stand-in engine (``backend = "simulated"``), whose call
of a batch of n prompts costs ``t0 + t1·n`` seconds with at most ``max_batch`` prompts —
the shape of a batched GPU engine. For each stage it reports the mean batch against the
maximum, the engine's busy share of the span it served (first request to last answer) and
of the whole run, and requests/s against the ideal (every prompt in a full batch:
``max_batch / (t0 + t1·max_batch)``). Then the OpenAI-compatible path against a loopback
server with a per-request latency and a concurrency limit: the share of time the client
held its configured number of requests in flight (per stage, from the queue: the share of the
span with all ``concurrency`` slots busy; and at the server, both stages together).

Run: python bench/model_batching.py [--cpus 2 8] [--volumes 30 --photos 30] [--t0 0.5 --t1 0.03]
Writes bench/model_batching.json; the table is pasted into bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from medground import phantoms
from medground.backends.simulated import SimulatedServer
from medground.pipeline import run
from medground.pipeline.config import load_run_config

HERE = Path(__file__).resolve().parent

SIMULATED = """
[synthesis]
backend = "simulated"
cost_t0_s = {t0}
cost_per_prompt_s = {t1}
max_batch = {max_batch}

[verification.visual]
backend = "vlm"
engine = "simulated"
cost_t0_s = {t0}
cost_per_prompt_s = {t1}
max_batch = {max_batch}
"""

OPENAI = """
[synthesis]
backend = "openai"
model = "simulated"
base_url = "{url}"
concurrency = {in_flight}
timeout_s = 120

[verification.visual]
backend = "vlm"
model = "simulated"
base_url = "{url}"
concurrency = {in_flight}
timeout_s = 120
"""


def _ray(cpus: int) -> Any:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return ray


def _timed_run(config: Path, cpus: int) -> tuple[Any, float]:
    """The run's summary and wall seconds on a fresh local Ray instance of ``cpus`` CPUs."""
    ray = _ray(cpus)
    try:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            summary = run(load_run_config(config), Path(out) / "run", progress=False)
            wall = time.perf_counter() - started
            if summary.failed:
                print((Path(out) / "run" / "errors.jsonl").read_text()[:2000])
    finally:
        ray.shutdown()
    return summary, wall


def simulated(data: Path, cpus: int, t0: float, t1: float, max_batch: int) -> dict[str, Any]:
    config = data / f"simulated-{cpus}.toml"
    config.write_text((data / "run.toml").read_text() + SIMULATED.format(t0=t0, t1=t1, max_batch=max_batch))
    summary, wall = _timed_run(config, cpus)
    ideal = max_batch / (t0 + t1 * max_batch)
    row: dict[str, Any] = {
        "cpus": cpus,
        "cases": summary.cases,
        "failed": summary.failed,
        "wall_s": wall,
        "ideal_requests_per_s": ideal,
    }
    for kind, stats in summary.model_stats.items():
        row[kind] = {
            "requests": stats["requests"],
            "batches": stats["batches"],
            "mean_batch": stats["mean_batch"],
            "batch_fill": stats["batch_fill"],
            "busy_share_of_span": stats["engine_busy_share"],
            "busy_share_of_run": stats["engine_busy_s"] / wall,
            "requests_per_s": stats["requests_per_s"],
            "of_ideal": stats["requests_per_s"] / ideal,
        }
    return row


def openai(data: Path, cpus: int, in_flight: int, latency: float) -> dict[str, Any]:
    config = data / "openai.toml"
    with SimulatedServer(latency_s=latency, concurrency=in_flight) as server:
        config.write_text((data / "run.toml").read_text() + OPENAI.format(url=server.base_url, in_flight=in_flight))
        summary, wall = _timed_run(config, cpus)
        return {
            "cpus": cpus,
            "in_flight": in_flight,
            "latency_s": latency,
            "requests": server.requests,
            "wall_s": wall,
            "held_share": server.in_flight_share(in_flight),
            "mean_in_flight": sum(n * s for n, s in server.durations.items())
            / max(1e-9, sum(server.durations.values())),
            "stages": {
                kind: {
                    "requests_per_s": s["requests_per_s"],
                    "slots_full_share": s["slots_full_share"],
                    "mean_in_flight": s["engine_busy_share"] * in_flight,
                }
                for kind, s in summary.model_stats.items()
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--volumes", type=int, default=30)
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--t0", type=float, default=0.5, help="engine seconds per step")
    parser.add_argument("--t1", type=float, default=0.03, help="engine seconds per prompt in a step")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=128)
    parser.add_argument("--latency", type=float, default=4.0, help="loopback server seconds per request")
    parser.add_argument("--only", choices=["simulated", "openai"], help="run one of the two parts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        phantoms.demo_dataset(data, volumes=args.volumes, photos=args.photos)
        results: dict[str, Any] = {"engine": {"t0": args.t0, "t1": args.t1, "max_batch": args.max_batch}}
        if args.only != "openai":
            results["simulated"] = [simulated(data, c, args.t0, args.t1, args.max_batch) for c in args.cpus]
            for row in results["simulated"]:
                print(json.dumps(row))
        if args.only != "simulated":
            results["openai"] = openai(data, min(args.cpus), args.in_flight, args.latency)
            print(json.dumps(results["openai"]))
    name = "model_batching.json" if args.only is None else f"model_batching_{args.only}.json"
    (HERE / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
