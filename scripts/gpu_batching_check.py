"""Checks on a real GPU that the model stages keep it full: the demo, scaled up, through
``medground run`` on a local Ray instance with a VLM writing and judging every query.

Needs a CUDA GPU, ``pip install 'medground[vllm]'`` and the model's weights on disk (a
folder, or a Hugging Face id already in the local cache); or ``--base-url`` for a running
OpenAI-compatible server (``vllm serve MODEL``). Nothing is downloaded by this script.

    python scripts/gpu_batching_check.py --model /models/Qwen2.5-VL-7B-Instruct
    python scripts/gpu_batching_check.py --model Qwen/Qwen2.5-VL-7B-Instruct --base-url http://127.0.0.1:8000/v1
    python scripts/gpu_batching_check.py --engine simulated      # the plumbing, without a GPU

Prints one JSON object per model stage and a summary line:

* ``requests``, ``batches``, ``mean_batch``, ``batch_fill`` (mean batch / ``max_batch``);
* ``requests_per_s`` and ``tokens_per_s`` (prompt + completion tokens the engine reported);
* ``engine_busy_share``: the engine's time inside batch calls over the span it served;
* ``gpu_busy_share``: the mean NVML utilisation of the GPUs over that span (needs
  ``nvidia-ml-py``; null without it);
* where the pipeline waits: ``mean_wait_s`` (a request's wait for its batch and a free
  engine: the CPU side waiting on the GPU) against ``1 - engine_busy_share`` (the engine
  waiting on the CPU side).

Exit status 0 when every stage answered; the run folder is kept with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from medground import phantoms
from medground.pipeline import run
from medground.pipeline.config import load_run_config


class GpuMeter:
    """Samples the GPUs' utilisation through NVML every ``interval`` seconds (no-op without it)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.samples: list[tuple[float, float]] = []
        self.interval = interval
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no NVML: the figure is reported as null
            self._nvml, self._handles = None, []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            rates = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
            self.samples.append((time.time(), sum(rates) / len(rates) / 100.0))

    def __enter__(self) -> GpuMeter:
        if self._handles:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def busy(self, start: float, end: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= end]
        return sum(inside) / len(inside) if inside else None


def section(args: argparse.Namespace, stage: str) -> str:
    backend = "backend = " + ('"vlm"' if stage == "judge" else f'"{args.engine}"')
    lines = [backend, f'model = "{args.model}"']
    if stage == "judge":
        lines.append(f'engine = "{args.engine}"')
    if args.engine == "openai":
        lines += [f'base_url = "{args.base_url}"', f"concurrency = {args.in_flight}", "timeout_s = 300"]
    else:
        lines += [f"max_batch = {args.max_batch}", f"num_replicas = {args.replicas}"]
        if args.engine == "vllm":
            lines += ["num_gpus = 1", f"max_num_seqs = {args.max_batch}"]
        else:
            lines += ["cost_t0_s = 0.2", "cost_per_prompt_s = 0.004"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simulated", help="a model folder or cached Hugging Face id")
    parser.add_argument("--base-url", help="an OpenAI-compatible server (then --engine is openai)")
    parser.add_argument("--engine", choices=["vllm", "openai", "simulated"], default=None)
    parser.add_argument("--volumes", type=int, default=24, help="CT phantoms in the scaled demo")
    parser.add_argument("--photos", type=int, default=24, help="dermoscopy phantoms in the scaled demo")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPU workers of the local Ray instance")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--replicas", type=int, default=1, help="engine replicas (one GPU each)")
    parser.add_argument("--in-flight", type=int, default=128, help="requests in flight (openai)")
    parser.add_argument("--out", type=Path, help="keep the run folder here")
    args = parser.parse_args(argv)
    args.engine = args.engine or ("openai" if args.base_url else "vllm")
    if args.engine == "openai" and not args.base_url:
        parser.error("--engine openai needs --base-url")

    import ray

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "demo"
        phantoms.demo_dataset(data, volumes=args.volumes, photos=args.photos)
        config = data / "check.toml"
        config.write_text(
            (data / "run.toml").read_text()
            + f"\n[synthesis]\n{section(args, 'synthesis')}\n\n[verification.visual]\n{section(args, 'judge')}\n"
        )
        out = args.out or Path(folder) / "run"
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            with GpuMeter() as meter:
                started = time.perf_counter()
                summary = run(load_run_config(config), out, progress=False)
                wall = time.perf_counter() - started
        finally:
            ray.shutdown()
    stages = summary.model_stats.values()
    ok = bool(stages) and all(s["requests"] and not s["failed_batches"] for s in stages)
    for kind, stats in summary.model_stats.items():
        span = stats["span_s"]
        start = stats["first_request_at"] or 0.0
        report = {
            "stage": kind,
            "engine": stats["engine"],
            "requests": stats["requests"],
            "batches": stats["batches"],
            "mean_batch": round(stats["mean_batch"], 1),
            "batch_fill": round(stats["batch_fill"], 3),
            "requests_per_s": round(stats["requests_per_s"], 2),
            "tokens_per_s": round(stats["tokens"] / span, 1) if span else 0.0,
            "engine_busy_share": round(stats["engine_busy_share"], 3),
            "gpu_busy_share": meter.busy(start, start + span),
            "mean_wait_s": round(stats["mean_wait_s"], 3),
        }
        print(json.dumps(report))
    print(
        f"{summary.cases} cases, {summary.accepted} accepted, {summary.rejected} rejected in {wall:.1f} s "
        f"on {args.cpus} CPU workers: " + ("OK" if ok else "FAILED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
