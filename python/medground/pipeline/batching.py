"""Model stages that keep the engine full: one queue per model stage, batches across cases.

On Ray, every case's model requests (synthesis drafts, judge verdicts) go to one
:class:`ModelQueue` per stage — an async Ray actor — instead of to a model of their own.
The queue gathers the requests of all the cases in flight and hands them to the engine
in batches of up to ``max_batch`` prompts, as soon as an engine slot is free and either a
batch is full, or no request has arrived for ``batch_wait_s`` (the stream paused: waiting
longer would only idle the engine), or its oldest request has waited ``max_batch_wait_s``;
each case gets its own answers back, in its own order. The engines are:

* ``vllm`` and ``simulated``: ``num_replicas`` replica actors (``num_gpus`` each; one per
  GPU or tensor-parallel group) sharing the one queue, one batch at a time each.
* ``openai``: the HTTP client, inside the queue actor, with ``concurrency`` requests in
  flight across the whole run (one request per slot), however many CPUs the driver has.

The CPU side never waits idle on a model: each CPU worker (a threaded case actor, see
``runner.py``) runs several cases at once, so while one case waits for its answers the
next is being prepared; the number of cases per worker is sized so that enough requests
are waiting to fill the engine's batches.

Crash safety: a replica that dies is restarted by Ray and the batch it held is sent again
(``retries`` times, then its requests fail as ``backend_error``). Answers depend on each
request alone (its own sampling seed), never on the batch it shared, so outputs are the
same whatever the batch size, arrival order or retries, and a killed run resumes
byte-identically.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from medground.backends import Request, Response, make_backend

__all__ = ["BatchQueue", "CpuTurns", "ModelQueue", "QueueSettings", "QueueStats", "QueuedBackend", "Replica"]

Engine = Callable[[list[Request]], Awaitable[list[Response]]]

#: Engines that take batches of prompts and run on a GPU in replica actors.
BATCHED = frozenset({"vllm", "simulated"})


@dataclass(frozen=True)
class QueueSettings:
    """How one model stage's queue batches (read from its run-config section).

    Attributes:
        engine: ``vllm``, ``simulated`` or ``openai``.
        max_batch: prompts per engine call (``max_batch``, default 256; 1 for ``openai``,
            whose server batches by itself).
        wait_s: the longest pause in arrivals a forming batch waits through while an engine
            slot is free (``batch_wait_s``, default 1.0): requests still coming (cases being
            prepared) fill it; a pause longer than this sends it as it is.
        max_wait_s: the longest the oldest request of a forming batch waits
            (``max_batch_wait_s``, default 30).
        replicas: engine replicas sharing the queue (``num_replicas``; 1 for ``openai``).
        slots: calls each replica runs at once (1 for batched engines; ``concurrency`` for
            ``openai``, default 64).
    """

    engine: str
    max_batch: int = 256
    wait_s: float = 1.0
    replicas: int = 1
    slots: int = 1
    max_wait_s: float = 30.0

    @classmethod
    def of(cls, engine: str, table: Mapping[str, Any]) -> QueueSettings:
        wait = float(table.get("batch_wait_s", 1.0))
        longest = float(table.get("max_batch_wait_s", 30.0))
        if engine == "openai":
            return cls(engine, 1, wait, 1, int(table.get("concurrency", 64)), longest)
        return cls(engine, int(table.get("max_batch", 256)), wait, int(table.get("num_replicas", 1)), 1, longest)

    @property
    def capacity(self) -> int:
        """Prompts the engines take at once."""
        return self.max_batch * self.replicas * self.slots


@dataclass
class QueueStats:
    """What a queue did: requests, batches, the engines' busy time and the span it served
    (``first_request`` and ``last_answer`` are wall-clock times, comparable across processes)."""

    requests: int = 0
    batches: int = 0
    max_batch: int = 0
    retries: int = 0
    failed_batches: int = 0
    engine_busy_s: float = 0.0
    first_request: float | None = None
    last_answer: float | None = None
    waiting_s: float = 0.0  # summed over requests: from arrival to dispatch
    tokens: int = 0  # prompt + completion tokens the engine reported
    slots_full_s: float = 0.0  # time every engine slot had a call in flight

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    @property
    def span_s(self) -> float:
        if self.first_request is None or self.last_answer is None:
            return 0.0
        return self.last_answer - self.first_request

    def to_dict(self, engines: int = 1) -> dict[str, Any]:
        out = asdict(self)
        out.pop("first_request"), out.pop("last_answer")
        span = self.span_s
        out.update(
            first_request_at=self.first_request,
            span_s=span,
            mean_batch=self.mean_batch,
            batch_fill=self.mean_batch / self.max_batch if self.max_batch else 0.0,
            engine_busy_share=self.engine_busy_s / (span * engines) if span > 0 else 0.0,
            requests_per_s=self.requests / span if span > 0 else 0.0,
            slots_full_share=self.slots_full_s / span if span > 0 else 0.0,
            mean_wait_s=self.waiting_s / self.requests if self.requests else 0.0,
        )
        return out


class BatchQueue:
    """Requests from many callers, batched onto engines (asyncio; no Ray needed).

    Args:
        engines: one awaitable call per engine replica: a batch in, its responses out (in order).
        max_batch: the most requests in one call.
        wait_s: the longest pause in arrivals a forming batch waits through while a slot is free.
        max_wait_s: the longest its oldest request waits.
        slots: calls each engine runs at once.
        retries: how many times a batch whose engine call raised is sent again.
        backoff_s: the pause before a retry (doubled each time).
        busy: returns an engine's own busy seconds when it keeps them (else the queue
            counts the wall time of its calls).
    """

    def __init__(
        self,
        engines: Sequence[Engine],
        *,
        max_batch: int,
        wait_s: float = 1.0,
        max_wait_s: float = 30.0,
        slots: int = 1,
        retries: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        if not engines or max_batch < 1 or slots < 1:
            raise ValueError("a batch queue needs an engine, max_batch >= 1 and slots >= 1")
        self.engines = list(engines)
        self.max_batch, self.wait_s, self.max_wait_s, self.slots = max_batch, wait_s, max_wait_s, slots
        self._last_arrival = 0.0
        self._active = 0
        self._changed = 0.0
        self.retries, self.backoff_s = retries, backoff_s
        self.stats = QueueStats(max_batch=max_batch)
        self._pending: deque[tuple[Request, asyncio.Future[Response], float]] = deque()
        self._wake: asyncio.Event | None = None
        self._free: asyncio.Queue[int] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def _start(self) -> None:
        if self._dispatcher is not None:
            return
        self._wake = asyncio.Event()
        self._free = asyncio.Queue()
        for _ in range(self.slots):
            for index in range(len(self.engines)):
                self._free.put_nowait(index)
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def submit(self, requests: Sequence[Request]) -> list[Response]:
        """The responses to ``requests``, in their order, once all are answered."""
        if not requests:
            return []
        self._start()
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        if self.stats.first_request is None:
            self.stats.first_request = time.time()
        futures = []
        for request in requests:
            future: asyncio.Future[Response] = loop.create_future()
            self._pending.append((request, future, now))
            futures.append(future)
        self.stats.requests += len(requests)
        self._last_arrival = now
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        assert self._wake is not None
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not predicate():
            self._wake.clear()
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return False
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return predicate()
        return True

    async def _dispatch(self) -> None:
        assert self._free is not None
        while True:
            engine = await self._free.get()
            await self._wait_for(lambda: bool(self._pending), None)
            assert self._wake is not None
            while len(self._pending) < self.max_batch:
                # Full, or the stream paused, or the oldest request has waited long enough;
                # each arrival pushes the pause's deadline on.
                due = min(self._last_arrival + self.wait_s, self._pending[0][2] + self.max_wait_s)
                left = due - time.perf_counter()
                if left <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
            count = min(self.max_batch, len(self._pending))
            batch = [self._pending.popleft() for _ in range(count)]
            now = time.perf_counter()
            self.stats.waiting_s += sum(now - arrived for _, _, arrived in batch)
            task = asyncio.get_running_loop().create_task(self._run(engine, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, engine: int, batch: list[tuple[Request, asyncio.Future[Response], float]]) -> None:
        assert self._free is not None
        requests = [request for request, _, _ in batch]
        self._slot_change(+1)
        responses: list[Response] | None = None
        problem = ""
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                responses = await self.engines[engine](requests)
                self.stats.engine_busy_s += time.perf_counter() - started
                if len(responses) != len(requests):
                    raise RuntimeError(f"the engine answered {len(responses)} of {len(requests)} requests")
                break
            except Exception as error:  # noqa: BLE001 - a dead replica: Ray restarts it, the batch goes again
                responses = None
                problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                if attempt < self.retries:
                    self.stats.retries += 1
                    await asyncio.sleep(self.backoff_s * 2**attempt)
        if responses is None:
            self.stats.failed_batches += 1
            responses = [
                Response(r.id, None, "backend_error", f"the model engine failed {self.retries + 1} times: {problem}")
                for r in requests
            ]
        self._slot_change(-1)
        self.stats.batches += 1
        self.stats.tokens += sum(r.prompt_tokens + r.completion_tokens for r in responses)
        self.stats.last_answer = time.time()
        for (_, future, _), response in zip(batch, responses, strict=True):
            if not future.done():
                future.set_result(response)
        self._free.put_nowait(engine)

    def _slot_change(self, change: int) -> None:
        """Keeps the time every slot was busy (the openai path's in-flight count held)."""
        now = time.perf_counter()
        if self._active == self.slots * len(self.engines):
            self.stats.slots_full_s += now - self._changed
        self._active += change
        self._changed = now


class Replica:
    """One engine replica (a Ray actor with ``num_gpus``): runs batches, keeps its busy time."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.backend = make_backend(table)
        self.busy_s = 0.0

    def run(self, requests: list[Request]) -> list[Response]:
        started = time.perf_counter()
        try:
            return self.backend.run(requests)
        finally:
            self.busy_s += time.perf_counter() - started

    def busy(self) -> float:
        return self.busy_s

    def describe(self) -> tuple[str, str]:
        return self.backend.name, self.backend.model


class ModelQueue:
    """The queue of one model stage, as an async Ray actor (see the module docstring)."""

    def __init__(self, kind: str, table: Mapping[str, Any], settings: QueueSettings, num_gpus: float) -> None:
        import ray

        self.kind, self.settings = kind, settings
        self._replicas: list[Any] = []
        self._local: Any = None
        engines: list[Engine]
        if settings.engine in BATCHED:
            options = {"num_gpus": num_gpus, "num_cpus": 0, "max_restarts": settings.replicas + 3}
            replica = ray.remote(Replica).options(**options)
            self._replicas = [replica.remote(dict(table)) for _ in range(settings.replicas)]
            engines = [self._replica_engine(replica) for replica in self._replicas]
            self.name, self.model = ray.get(self._replicas[0].describe.remote())
        else:
            from concurrent.futures import ThreadPoolExecutor

            self._local = make_backend(table)
            self._pool = ThreadPoolExecutor(max_workers=settings.slots, thread_name_prefix=f"medground-{kind}")
            engines = [self._in_pool]
            self.name, self.model = self._local.name, self._local.model
        self.queue = BatchQueue(
            engines,
            max_batch=settings.max_batch,
            wait_s=settings.wait_s,
            max_wait_s=settings.max_wait_s,
            slots=settings.slots,
        )

    @staticmethod
    def _replica_engine(replica: Any) -> Engine:
        async def call(batch: list[Request]) -> list[Response]:
            answer: list[Response] = await replica.run.remote(batch)
            return answer

        return call

    async def _in_pool(self, batch: list[Request]) -> list[Response]:
        loop = asyncio.get_running_loop()
        answer: list[Response] = await loop.run_in_executor(self._pool, self._local.run, batch)
        return answer

    async def submit(self, requests: list[Request]) -> list[Response]:
        return await self.queue.submit(requests)

    def describe(self) -> tuple[str, str]:
        return self.name, self.model

    async def stats(self) -> dict[str, Any]:
        stats = self.queue.stats
        busy: list[float] = []
        if self._replicas:
            busy = [float(await replica.busy.remote()) for replica in self._replicas]
            stats.engine_busy_s = sum(busy)
        engines = len(self._replicas) or self.settings.slots
        return {
            "kind": self.kind,
            "engine": self.settings.engine,
            **asdict(self.settings),
            **stats.to_dict(engines),
            "replica_busy_s": busy,
        }


_turn = threading.local()


class CpuTurns:
    """One case computes at a time in a CPU worker (it has one CPU, and Python one GIL):
    a case holds the turn while it computes and gives it up while it waits for model
    answers (:meth:`waiting`), so the next case is prepared meanwhile — in order, instead of
    every case of the worker crawling along at once."""

    def __init__(self, cpus: int = 1) -> None:
        self._slots = threading.Semaphore(cpus)
        self._holders: set[str] = set()
        self._lock = threading.Lock()

    @property
    def holders(self) -> set[str]:
        """The names of the blocks that hold a turn now (see :meth:`computing`)."""
        with self._lock:
            return set(self._holders)

    @contextlib.contextmanager
    def computing(self, name: str = "") -> Iterator[None]:
        """The block computes with a turn (taken on entry, given back on exit); ``name``
        says who holds it while it does (:attr:`holders`)."""
        self._slots.acquire()
        self._hold(name)
        try:
            yield
        finally:
            self._give_up()
            self._slots.release()

    def _hold(self, name: str) -> None:
        _turn.held, _turn.name = self, name
        with self._lock:
            self._holders.add(name)

    def _give_up(self) -> None:
        with self._lock:
            self._holders.discard(getattr(_turn, "name", ""))
        _turn.held = None

    @staticmethod
    @contextlib.contextmanager
    def waiting() -> Iterator[None]:
        """The block waits without the turn this thread holds, if any."""
        held: CpuTurns | None = getattr(_turn, "held", None)
        if held is None:
            yield
            return
        name = _turn.name
        held._give_up()
        held._slots.release()
        try:
            yield
        finally:
            held._slots.acquire()
            held._hold(name)


class QueuedBackend:
    """A :class:`~medground.backends.Backend` whose requests go to a :class:`ModelQueue`
    actor: what a case's synthesizer and judge use on Ray (the engine's name and model are
    the queue's, so records are the same as with the engine in process)."""

    RETRIES = 3

    def __init__(self, queue: Any) -> None:
        import ray

        self.queue = queue
        self.name, self.model = ray.get(queue.describe.remote())

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """The responses, in order. The queue actor is restarted by Ray when it dies; the
        requests it held are sent again (a few times, then the case fails)."""
        import ray

        if not requests:
            return []
        for attempt in range(self.RETRIES + 1):
            try:
                with CpuTurns.waiting():  # another case of this worker computes meanwhile
                    return list(ray.get(self.queue.submit.remote(list(requests))))
            except ray.exceptions.RayActorError:
                if attempt == self.RETRIES:
                    raise
                time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        pass
