"""``medground run``: cases to verified samples, on Ray or in-process, resumable.

The driver finds the cases, skips those already finished (``--resume``), and keeps a
bounded number of case tasks in flight (backpressure: twice the cluster's CPUs), writing
each result as it arrives. Case tasks are pure functions of their inputs, so Ray may
retry one that died with its worker; a case that fails on its data is recorded in
``errors.jsonl`` and the run goes on. At the end the canonical files are assembled from
the per-case shards (``store.py``), splits assigned per patient, and the dataset card
written.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground import __version__
from medground.backends import check_backend
from medground.io.discover import CaseFiles, find_cases, leads_outside, reads_into, resolve_labels
from medground.io.schema import DatasetSpec
from medground.pipeline.batching import BATCHED, ModelQueue, QueueSettings
from medground.pipeline.card import write_card
from medground.pipeline.config import RunConfig
from medground.pipeline.isolate import GRACE_S, CaseWorker
from medground.pipeline.splits import assign_splits, check_splits, read_split_file
from medground.pipeline.store import CaseResult, OutputFolder, case_key
from medground.pipeline.worker import case_actor_class, case_name, process_case
from medground.records import dumps
from medground.runfolder import ERRORS, MANIFEST, REJECTED, SAMPLES, SKIPPED, atomic_write, write_jsonl
from medground.verify import Funnel

__all__ = ["RunSummary", "assemble", "check_models", "plan", "run"]


@dataclass
class RunSummary:
    cases: int = 0
    skipped_done: int = 0
    failed: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    out: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    nodes: int = 0  # Ray nodes that ran this invocation's cases (0 in-process)
    dropped: int = 0  # input files that gave no case (unpaired, duplicate ids, ...)
    model_stats: dict[str, Any] = field(default_factory=dict)  # per model stage on Ray (batching.py)


def plan(config: RunConfig, limit: int | None = None) -> list[tuple[DatasetSpec, CaseFiles]]:
    """Every case of every dataset, in (dataset, case id) order; ``limit`` per dataset."""
    return _plan(config, limit)[0]


def _plan(
    config: RunConfig, limit: int | None = None
) -> tuple[list[tuple[DatasetSpec, CaseFiles]], list[dict[str, Any]]]:
    """The cases, and one ``skipped.jsonl`` record per input the datasets' patterns found
    but no case uses (an image without a mask, a mask without an image, two files for one
    case id, a symlink out of the dataset folder): nothing is dropped without a record."""
    work: list[tuple[DatasetSpec, CaseFiles]] = []
    dropped: list[dict[str, Any]] = []
    for spec in config.datasets:
        index = find_cases(spec)
        # Structure names are numbered over all cases, so ids never depend on --limit.
        spec = resolve_labels(spec, index)
        work.extend((spec, files) for files in index.cases[:limit])
        for path in index.unpaired_images:
            dropped.append(_dropped(spec, "image_without_mask", f"{path}: no mask matches {spec.cases.mask!r}"))
        for path in index.unpaired_masks:
            dropped.append(_dropped(spec, "mask_without_image", f"{path}: no image matches {spec.cases.image!r}"))
        for problem in index.problems:
            dropped.append(_dropped(spec, "ambiguous_input", problem))
        for path in index.outside:
            dropped.append(_dropped(spec, "outside_dataset_folder", leads_outside(path, spec.root)))
    return work, dropped


def check_models(config: RunConfig, *, engines_here: bool = True) -> None:
    """Checks the run's model backends once, before any case: a model server that is down,
    does not serve the model or lacks its key, and a vLLM engine that could not be built
    (vLLM missing, the model not there to load, a bad setting), stop the run with a clear
    error instead of turning every draft into a rejection.

    Args:
        config: the run's settings.
        engines_here: False when the vLLM engines load on the nodes of a Ray cluster the run
            joins (``--ray-address``), not on this machine: what they need (vLLM, the model
            files) is then not looked for here.

    Raises:
        BackendUnavailable: (a ValueError) naming the section and what is wrong.
    """
    visual = config.verification.visual
    if config.synthesis.uses_model and (engines_here or config.synthesis.backend != "vllm"):
        check_backend(config.synthesis.table, "synthesis")
    if visual.backend == "vlm" and (engines_here or visual.engine != "vllm"):
        check_backend(visual.table, "verification.visual")


def _dropped(spec: DatasetSpec, reason: str, detail: str) -> dict[str, Any]:
    return {"dataset": spec.name, "reason": reason, "detail": detail}


def _outside_datasets(out: Path, config: RunConfig) -> None:
    """Refuses an output folder whose images a dataset's patterns would read (inside its
    folder, under a pattern such as ``**/*.png``): they would become inputs of the next run."""
    for spec in config.datasets:
        pattern = reads_into(spec, out)
        if pattern is not None:
            raise ValueError(
                f"--out {out} is inside the folder of dataset {spec.name!r} ({spec.root}), where its pattern "
                f"{pattern!r} would read the images the run writes; choose another --out"
            )


class _Progress:
    """One status line: cases done, samples accepted and rejected, rate and time left."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled and total > 0
        self.done = self.accepted = self.rejected = self.failed = 0
        self.start = time.perf_counter()

    def update(self, result: CaseResult) -> None:
        self.done += 1
        self.accepted += len(result.accepted)
        self.rejected += len(result.rejected)
        self.failed += result.error is not None
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        line = (
            f"\rcases {self.done}/{self.total}  accepted {self.accepted}  rejected {self.rejected}  "
            f"failed {self.failed}  {rate:.2f} cases/s  ~{left:.0f} s left "
        )
        sys.stderr.write(line)
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _in_process(work: list[tuple[DatasetSpec, CaseFiles]], config: RunConfig) -> Iterator[CaseResult]:
    """The cases one at a time in a supervised worker process (``isolate.py``): a case that
    kills or hangs its process is that case's error, and the next case gets a fresh one."""
    if not work:
        return  # nothing to do: no worker process to start
    timeout = config.budget.case_timeout_s
    call = functools.partial(
        process_case,
        seed=config.seed,
        verification=config.verification,
        synthesis=config.synthesis,
        budget=(timeout, config.budget.memory_bytes(1)),
    )
    with CaseWorker(call, timeout_s=timeout) as worker:
        for spec, files in work:
            yield worker.run(spec, files)


#: Model requests a case is expected to make (sizes the cases each CPU worker runs at once).
REQUESTS_PER_CASE = 16


def _model_queues(ray: Any, config: RunConfig) -> tuple[dict[str, Any], dict[str, QueueSettings]]:
    """One batching queue per model stage (``batching.py``): the synthesizer's and the
    judge's, each feeding its engine replicas (GPU actors) or its HTTP client."""
    visual = config.verification.visual
    stages: dict[str, tuple[str, Any, float]] = {}
    if config.synthesis.uses_model:
        stages["synthesizer"] = (config.synthesis.backend, config.synthesis.table, config.synthesis.num_gpus)
    if visual.backend == "vlm":
        stages["judge"] = (str(visual.engine), visual.table, visual.num_gpus)
    settings = {kind: QueueSettings.of(engine, table) for kind, (engine, table, _) in stages.items()}
    needed = sum(stages[k][2] * s.replicas for k, s in settings.items() if s.engine in BATCHED)
    available = float(ray.cluster_resources().get("GPU", 0))
    if needed > available:
        raise ValueError(
            f"the model replicas need {needed:g} GPU(s) (num_gpus × num_replicas in [synthesis] / "
            f"[verification.visual]); the Ray cluster has {available:g}"
        )
    queues = {}
    for kind, (_, table, gpus) in stages.items():
        options = {"num_cpus": 0, "max_concurrency": 100_000, "max_restarts": 3}
        queues[kind] = ray.remote(ModelQueue).options(**options).remote(kind, dict(table), settings[kind], gpus)
    return queues, settings


def cases_per_worker(config: RunConfig, settings: dict[str, QueueSettings], workers: int) -> int:
    """Cases each CPU worker runs at once: 1 without a model; with one, enough that the
    requests waiting on the queues fill four times the engines' capacity (``[run]
    cases_per_worker`` overrides)."""
    if config.budget.cases_per_worker is not None:
        return config.budget.cases_per_worker
    if not settings:
        return 1
    capacity = max(s.capacity for s in settings.values())
    return max(2, min(64, -(-4 * capacity // (max(1, workers) * REQUESTS_PER_CASE))))


#: Seconds to wait for a Ray cluster's address to accept a connection.
CONNECT_TIMEOUT_S = 10.0


def _reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuses a HOST:PORT (or ray://HOST:PORT) cluster address nothing answers on within
    ``timeout``: ``ray.init`` would otherwise wait on it for minutes. ``auto`` is Ray's to
    resolve (it fails at once when no cluster is running here)."""
    import socket

    target = address.removeprefix("ray://")
    if target == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--ray-address {address}: nothing answers there within {timeout:g} s ({error}); "
            "start the cluster (ray start --head) or check the address"
        ) from None


def _ray_init(address: str | None) -> Any:
    import ray

    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address:
        options["address"] = address  # run() has checked that it answers
    else:
        # A local instance sized to the machine; "local" never joins a stale cluster.
        options.update(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False)
    node_ip = os.environ.get("MEDGROUND_RAY_NODE_IP")
    if node_ip:
        options["_node_ip_address"] = node_ip
    ray.init(**options)
    return ray


@dataclass
class _Job:
    spec: DatasetSpec
    files: CaseFiles
    actor: int = 0
    started: float = 0.0
    tries: int = 0
    collateral: bool = False  # its worker was killed for another case's overrun
    killed: str = ""  # why its worker was killed for this case's overrun ("" when it was not)
    checked: float = 0.0  # when the driver last asked its worker how it runs

    def retry(self) -> bool:
        """Whether the case goes again after its worker died: always when it was killed for
        another case, once otherwise, never when it overran itself."""
        if self.collateral:
            return True
        if self.killed or self.tries > 0:
            return False
        self.tries += 1
        return True


def _on_ray(
    work: list[tuple[DatasetSpec, CaseFiles]],
    config: RunConfig,
    address: str | None,
    model_stats: dict[str, Any] | None = None,
) -> Iterator[CaseResult]:
    """The cases on a pool of CPU worker actors (one per CPU of the cluster, each running
    :func:`cases_per_worker` cases at once), their model requests batched across cases by
    the model queues. A worker that dies costs its cases one retry; a case that overruns its
    time budget by the grace period has its worker killed (the worker restarts, the other
    cases it held go again) and becomes an error."""
    ray = _ray_init(address)
    queues, settings = _model_queues(ray, config)
    workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per = cases_per_worker(config, settings, workers)
    timeout = config.budget.case_timeout_s
    # Memory: this machine's share for the cases a node runs at once, set once per worker.
    share = config.budget.memory_bytes(os.cpu_count() or 1)
    memory = None if share is None else share * (per if config.budget.case_memory_gb is not None else 1)
    options = {"num_cpus": 1, "max_concurrency": per, "max_restarts": -1, "max_task_retries": 0}
    actor_class = case_actor_class(ray)
    actors = [actor_class.options(**options).remote(memory) for _ in range(workers)]
    kwargs = {
        "seed": config.seed,
        "verification": config.verification,
        "synthesis": config.synthesis,
        "models": queues,
        "budget": (timeout, None),
    }
    pool = _Pool(ray, actors, per, kwargs)
    queue = collections.deque(_Job(spec, files) for spec, files in work)
    try:
        while queue or pool.pending:
            while queue and pool.has_room():
                pool.submit(queue.popleft())
            for job, result in pool.collect():
                if result is not None:
                    yield result
                elif job.retry():
                    queue.appendleft(job)  # a pure function of its inputs: run it again
                else:
                    yield _worker_failed(job, pool.errors.pop(id(job)))
            if timeout is not None:
                _kill_overruns(ray, pool.pending, actors, timeout)
        if model_stats is not None:
            model_stats.update({kind: ray.get(handle.stats.remote()) for kind, handle in queues.items()})
    finally:
        for handle in [*actors, *queues.values()]:
            with contextlib.suppress(Exception):
                ray.kill(handle)


#: Cases handed to each CPU worker beyond the ``cases_per_worker`` it runs at once: they wait
#: in the actor's queue and start the moment a running case ends, while the driver fetches
#: and writes that case's result (else the worker idles through both: the writing alone is
#: ≈ 0.12 s a real-size CT case). A waiting case holds no memory and is never blamed for an overrun (its time
#: counts from when it starts computing).
CASES_AHEAD = 1


class _Pool:
    """The CPU worker actors and the cases each holds (runs, and :data:`CASES_AHEAD` waiting)."""

    def __init__(self, ray: Any, actors: list[Any], per: int, kwargs: dict[str, Any]) -> None:
        self.ray, self.actors, self.per, self.kwargs = ray, actors, per, kwargs
        self.load = [0] * len(actors)
        self.pending: dict[Any, _Job] = {}
        self.errors: dict[int, Exception] = {}
        self._specs: dict[str, Any] = {}

    def has_room(self) -> bool:
        return sum(self.load) < len(self.actors) * (self.per + CASES_AHEAD)

    def submit(self, job: _Job) -> None:
        if job.spec.name not in self._specs:
            self._specs[job.spec.name] = self.ray.put(job.spec)
        job.actor = min(range(len(self.actors)), key=self.load.__getitem__)
        job.started, job.collateral, job.killed, job.checked = time.monotonic(), False, "", 0.0
        self.load[job.actor] += 1
        ref = self.actors[job.actor].process.remote(self._specs[job.spec.name], job.files, **self.kwargs)
        self.pending[ref] = job

    def collect(self) -> Iterator[tuple[_Job, CaseResult | None]]:
        """The cases that finished within a second: each with its result, or None when its
        worker died (the error kept in :attr:`errors`)."""
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
        for ref in ready:
            job = self.pending.pop(ref)
            self.load[job.actor] -= 1
            try:
                yield job, self.ray.get(ref)
            except self.ray.exceptions.RayError as error:
                self.errors[id(job)] = error
                yield job, None


#: Seconds the driver waits for a worker to say how its cases run (and between two asks).
STATUS_WAIT_S = 10.0


def _kill_overruns(ray: Any, pending: dict[Any, _Job], actors: list[Any], timeout: float) -> None:
    """Kills the worker of a case still running a grace period past its time budget (a
    native call the in-case watchdog cannot interrupt); the worker restarts, and the other
    cases it held are marked to run again.

    A case's time counts from when it started computing, not from when it was handed over:
    the driver asks a worker that holds a case for longer than the budget and the grace
    (:meth:`~medground.pipeline.worker.CaseActor.status`, answered from its own thread), and
    blames only the cases that have *run* that long — never the cases waiting for the turn
    a stuck case holds. A worker that cannot answer (a native call holding the interpreter)
    is killed for the case that has waited longest, its other cases going again."""
    now = time.monotonic()
    limit = timeout + GRACE_S
    due: dict[int, list[_Job]] = collections.defaultdict(list)
    for job in pending.values():
        if not job.killed and not job.collateral and now - job.started > limit and now - job.checked > STATUS_WAIT_S:
            due[job.actor].append(job)
    for actor in due:
        held = [job for job in pending.values() if job.actor == actor]
        try:
            status = ray.get(actors[actor].status.remote(), timeout=STATUS_WAIT_S)
        except Exception:  # noqa: BLE001 - a worker that cannot answer is stuck as a whole
            culprits = [min(held, key=lambda job: job.started)]
            reason = f"its worker stopped answering while the case had run {limit:g} s or more"
        else:
            culprits = _stuck(held, status, limit)
            reason = f"still running {limit:g} s after it started (its {timeout:g} s time budget, {GRACE_S:g} s grace)"
        if not culprits:  # the late cases wait for a turn or for memory: ask again later
            for job in due[actor]:
                job.checked = now
            continue
        ray.kill(actors[actor], no_restart=False)
        for job in held:
            if job in culprits:
                job.killed = reason
            else:
                job.collateral = True


def _stuck(held: list[_Job], status: dict[str, Any], limit: float) -> list[_Job]:
    """The cases of a worker that have run past ``limit`` s and are stuck there: those that
    hold the CPU turn, or, when no case holds it, those stuck waiting elsewhere (a model
    answer that never comes). A case waiting for the turn another case holds is its victim,
    however long it has waited."""
    running, holders = status["running"], set(status["holders"])

    def over(job: _Job) -> bool:
        return float(running.get(case_name(job.spec, job.files), 0.0)) > limit

    holding = [job for job in held if case_name(job.spec, job.files) in holders]
    if holding:
        return [job for job in holding if over(job)]
    return [job for job in held if over(job)]


def _worker_failed(job: _Job, error: Exception) -> CaseResult:
    spec, files = job.spec, job.files
    failed = CaseResult(spec.name, files.case_id, files.patient_id, spec.modality)
    if job.killed:
        detail = f"{job.killed}; its worker was killed"
    else:
        # The worker died (out of memory on a huge volume, a crash), twice: this case fails,
        # the run goes on, and --resume tries it again.
        text = str(error).strip()
        detail = f"{type(error).__name__}: {text.splitlines()[0] if text else 'worker failed'}"
    failed.error = {"case_id": files.case_id, "stage": "worker", "error": f"{files.image}: {detail}"}
    return failed


def run(
    config: RunConfig,
    out: Path,
    *,
    ray_address: str | None = None,
    resume: bool = False,
    limit: int | None = None,
    use_ray: bool = True,
    progress: bool = True,
    allowed: tuple[str, ...] = (),
    on_result: Callable[[CaseResult], None] | None = None,
) -> RunSummary:
    """Runs the pipeline into ``out``.

    Args:
        config: datasets and settings.
        out: the output folder (created; must be empty or, with ``resume``, hold this run).
        ray_address: join this Ray cluster ("auto" or HOST:PORT); None starts a local instance.
        resume: skip cases already finished in ``out``.
        limit: at most this many cases per dataset.
        use_ray: False runs every case in this process (no Ray).
        allowed: names that may already be in ``out`` (the demo's generated data).
        on_result: called after each case is written (progress hooks, tests).

    Raises:
        BackendUnavailable: a model backend cannot be used (checked before anything is
            written: the key variable, the server, the model it serves; vLLM and the model
            files, unless the engines load on a cluster joined with ``ray_address``).
    """
    started = time.perf_counter()
    _outside_datasets(out, config)
    check_models(config, engines_here=not (use_ray and ray_address))
    if use_ray and ray_address:
        _reachable(ray_address)  # before the folder is touched
    folder = OutputFolder(out)
    folder.lock()
    try:
        folder.prepare(config.fingerprint, config.describe(), resume=resume, allowed=allowed)
        work, dropped = _plan(config, limit)
        done = folder.finished() if resume else set()
        todo = [(spec, files) for spec, files in work if case_key(spec.name, files.case_id) not in done]
        summary = RunSummary(cases=len(work), skipped_done=len(work) - len(todo), out=out, dropped=len(dropped))
        meter = _Progress(len(todo), progress)
        results = (
            _on_ray(todo, config, ray_address, summary.model_stats) if use_ray and todo else _in_process(todo, config)
        )
        nodes = set()
        for result in results:
            result = _write(folder, result)
            nodes.add(result.node)
            meter.update(result)
            if on_result is not None:
                on_result(result)
        keys = {case_key(spec.name, files.case_id) for spec, files in work}
        summary.manifest = assemble(folder, config, keys, dropped)
    finally:
        folder.unlock()
    summary.nodes = len(nodes - {None})
    summary.failed = len(summary.manifest["errors"])
    summary.accepted = summary.manifest["counts"]["accepted"]
    summary.rejected = summary.manifest["counts"]["rejected"]
    summary.seconds = time.perf_counter() - started
    return summary


def _write(folder: OutputFolder, result: CaseResult) -> CaseResult:
    """Writes a case's result; a result that cannot be named or written (a value JSON cannot
    hold, a file name the file system refuses) becomes that case's error instead. Only a
    failure to record even the error (the disk is full) stops the run."""
    try:
        folder.write(result)
        return result
    except Exception as error:  # noqa: BLE001 - one case's outputs must not stop the run
        for relative in result.images:
            with contextlib.suppress(OSError):
                (folder.root / relative).unlink(missing_ok=True)
        failed = CaseResult(result.dataset, result.case_id, result.patient_id, result.modality, node=result.node)
        failed.error = {"case_id": result.case_id, "stage": "write", "error": f"{type(error).__name__}: {error}"}
        folder.write(failed)
        return failed


def coverage(shards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per label (``dataset/label``): cases it is present in, cases with a sample of it,
    its samples, and why the cases without one have none (most frequent first)."""
    table: dict[str, dict[str, Any]] = {}
    for shard in shards:
        if shard["error"] is not None:
            continue
        sampled: dict[str, int] = {}
        for record in shard["accepted"]:
            for label in {t["label"] for t in record["targets"]}:
                sampled[label] = sampled.get(label, 0) + 1
        missing = {r["label"]: r["detail"] for r in shard["skipped"] if r.get("reason") == "no_sample"}
        for label in sorted(set(sampled) | set(missing)):
            row = table.setdefault(
                f"{shard['dataset']}/{label}", {"cases": 0, "cases_with_samples": 0, "samples": 0, "reasons": {}}
            )
            row["cases"] += 1
            if label in sampled:
                row["cases_with_samples"] += 1
                row["samples"] += sampled[label]
            else:
                for part in missing[label].split(", "):
                    reason = part.rsplit(" ×", 1)[0]
                    row["reasons"][reason] = row["reasons"].get(reason, 0) + 1
    for row in table.values():
        row["reasons"] = dict(sorted(row["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return dict(sorted(table.items()))


def laterality_checks(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The laterality self-check over the run: how each case's midline was found, and the
    cases whose sides were withheld because side-named structures disagree with it."""
    sources: dict[str, int] = {}
    withheld = []
    for shard in shards:
        checks = shard.get("checks") or {}
        midline = checks.get("midline")
        source = "none" if midline is None else midline["source"]
        sources[source] = sources.get(source, 0) + 1
        if (checks.get("laterality") or {}).get("withheld"):
            withheld.append({"case": shard["key"], "conflicts": checks["laterality"]["conflicts"]})
    return {"midline_sources": dict(sorted(sources.items())), "withheld": withheld}


def assemble(
    folder: OutputFolder,
    config: RunConfig,
    keys: set[str] | None = None,
    dropped: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Builds samples.jsonl, rejected.jsonl, errors.jsonl, manifest.json and the card from
    the shards (only those of ``keys`` when given: the cases of this config and limit);
    ``dropped`` inputs (files no case uses) go first in skipped.jsonl and in the manifest."""
    shards = [s for s in folder.read_shards() if keys is None or s["key"] in keys]
    fixed = read_split_file(config.split.file) if config.split.file else None
    patients = [(s["dataset"], s["modality"], s["patient_id"]) for s in shards]
    splits = assign_splits(patients, ratios=config.split.ratios, seed=config.seed, fixed=fixed)
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = list(dropped or [])
    funnel = Funnel()
    for shard in shards:
        split = splits.get(shard["patient_id"])
        for record in shard["accepted"]:
            accepted.append({**record, "split": split})
        for record in shard["rejected"]:
            rejected.append({**record, "split": split})
        if shard["error"] is not None:
            errors.append({"dataset": shard["dataset"], **shard["error"]})
        skipped.extend({"dataset": shard["dataset"], **s} for s in shard["skipped"])
        if shard["funnel"]:
            funnel.merge(Funnel.from_dict(shard["funnel"]))
    root = folder.root
    write_jsonl(root / SAMPLES, accepted)
    write_jsonl(root / REJECTED, rejected)
    write_jsonl(root / ERRORS, errors)
    write_jsonl(root / SKIPPED, skipped)
    split_check = check_splits(accepted)
    manifest = {
        "medground_version": __version__,
        "fingerprint": config.fingerprint,
        "config": config.describe(),
        "cases": {"finished": [s["key"] for s in shards], "failed": [f"{e['dataset']}/{e['case_id']}" for e in errors]},
        "counts": {
            "cases": len(shards),
            "accepted": len(accepted),
            "rejected": len(rejected),
            "errors": len(errors),
            "skipped_targets": len(skipped) - len(dropped or []),
            "dropped_inputs": len(dropped or []),
        },
        "funnel": funnel.to_dict(),
        "splits": split_check,
        "errors": errors,
        "dropped_inputs": list(dropped or []),
        "coverage": coverage(shards),
        "laterality": laterality_checks(shards),
    }
    atomic_write(root / MANIFEST, dumps(manifest, indent=2, default=str).encode())
    write_card(root, manifest, accepted)
    return manifest
