"""A stand-in model engine with a cost model, for tests, benchmarks and capacity planning.

No GPU and no weights: :class:`SimulatedEngine` answers the pipeline's two model requests
(query synthesis and visual judging) the way a cooperative model would, and costs what a
batched GPU engine costs — a call of ``n`` prompts takes ``t0 + t1·n`` seconds of wall
time (``cost_t0_s``, ``cost_per_prompt_s``), in chunks of at most ``max_batch`` prompts.
It keeps the figures a benchmark needs (calls, prompts, busy seconds). Select it with
``backend = "simulated"`` in ``[synthesis]`` or ``engine = "simulated"`` in
``[verification.visual]``: a run then exercises the whole model path (batching queue,
replicas, retries) at the speed of the modelled engine.

Answers depend only on the request (its text and its sampling seed), never on the batch
it came in, so outputs must not change with batch size or arrival order: the property the
pipeline's batching is tested against.

:class:`SimulatedServer` is the same model behind an OpenAI-compatible HTTP server on
loopback, with a per-request latency and a concurrency limit; it records how many
requests were in flight over time (``in_flight_share``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medground.backends.base import Request, Response, answer_from_text, config_integer, config_number
from medground.backends.prompts import DATA_CLOSE, DATA_OPEN

__all__ = ["CONFIG_KEYS", "SimulatedEngine", "SimulatedServer", "simulated_answer"]

#: Keys the simulated engine reads from its section (besides the common ones).
CONFIG_KEYS = frozenset({"cost_t0_s", "cost_per_prompt_s", "max_batch", "fail_on_call"})

IMAGE_TOKENS = 256
_VERBS = ("Locate", "Find", "Show", "Point to")


def _user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content
    return str([part["text"] for part in content if part.get("type") == "text"][-1])


def _data_block(text: str) -> dict[str, Any] | None:
    if DATA_OPEN + "\n" not in text:
        return None
    try:  # the block itself (the instructions may name its markers before it)
        return dict(json.loads(text.rsplit(DATA_OPEN + "\n", 1)[1].split("\n" + DATA_CLOSE, 1)[0]))
    except (ValueError, TypeError):
        return None


def simulated_answer(messages: Sequence[Mapping[str, Any]], schema_name: str, seed: int | None) -> str:
    """The stand-in model's answer text to a chat request: a synthesis request gets a query
    worded from the plain phrasing and attributes it was given (the verb chosen by the
    seed), a judge request a confident yes; anything else a short refusal to answer."""
    text = _user_text(messages)
    data = _data_block(text)
    if schema_name == "referring_queries" and data is not None:
        query_type = text.split("Query type: ", 1)[1].split(".", 1)[0] if "Query type: " in text else "descriptive"
        phrase = str(data.get("plain_phrasing", "the structure"))
        names = [str(a["name"]) for a in data.get("attributes", [])]
        verb = _VERBS[(seed or 0) % len(_VERBS)]
        query = f"Outline {phrase} in this image." if query_type == "multi_object" else f"{verb} {phrase}."
        return json.dumps({"queries": [{"query": query, "query_type": query_type, "attributes": names}]})
    if schema_name == "grounding_verdict":
        return json.dumps({"verdict": "yes", "confidence": 0.9, "reason": "The outlined region matches the query."})
    return "I cannot answer that."


class SimulatedEngine:
    """A batched engine with a cost model (``backend = "simulated"``).

    Args:
        model: the name it reports (records carry it).
        cost_t0_s: the fixed cost of one engine step over a batch, in seconds.
        cost_per_prompt_s: the added cost of each prompt in the batch.
        max_batch: the most prompts one step takes; a larger call runs in several steps.
        fail_on_call: when set, the process exits (as a crashed GPU worker would) on this
            call number (1-based), once per marker file — for the crash-recovery tests.
    """

    name = "simulated"

    def __init__(
        self,
        model: str = "simulated",
        *,
        cost_t0_s: float = 0.5,
        cost_per_prompt_s: float = 0.02,
        max_batch: int = 256,
        fail_on_call: str | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.model = model
        self.t0, self.t1, self.max_batch = float(cost_t0_s), float(cost_per_prompt_s), int(max_batch)
        self.fail_on_call = fail_on_call
        self.calls = self.steps = self.prompts = 0
        self.busy_s = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SimulatedEngine:
        model = config.get("model", "simulated")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        fail = config.get("fail_on_call")
        if fail is not None and not isinstance(fail, str):
            raise ValueError("fail_on_call must be 'N:MARKER_FILE'")
        return cls(
            model,
            cost_t0_s=config_number(config, "cost_t0_s", 0.5, 0.0, 60.0),
            cost_per_prompt_s=config_number(config, "cost_per_prompt_s", 0.02, 0.0, 60.0),
            max_batch=config_integer(config, "max_batch", 256, 1),
            fail_on_call=fail,
        )

    def __repr__(self) -> str:
        return f"SimulatedEngine(model={self.model!r}, t0={self.t0:g}s, t1={self.t1:g}s, max_batch={self.max_batch})"

    def close(self) -> None:
        pass

    def cost(self, n: int) -> float:
        """Seconds a call of ``n`` prompts takes."""
        full, rest = divmod(n, self.max_batch)
        return full * (self.t0 + self.t1 * self.max_batch) + ((self.t0 + self.t1 * rest) if rest else 0.0)

    def _maybe_crash(self) -> None:
        if self.fail_on_call is None:
            return
        number, _, marker = self.fail_on_call.partition(":")
        if self.calls == int(number) and marker:
            from pathlib import Path

            path = Path(marker)
            if not path.exists():
                path.write_text("crashed once\n")
                import os

                os._exit(70)

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """One response per request, after the modelled time of the batch."""
        if not requests:
            return []
        self.calls += 1
        self._maybe_crash()
        started = time.perf_counter()
        time.sleep(self.cost(len(requests)))
        seconds = time.perf_counter() - started
        self.steps += -(-len(requests) // self.max_batch)
        self.prompts += len(requests)
        self.busy_s += seconds
        out = []
        for request in requests:
            text = simulated_answer(request.messages, request.schema_name, request.seed)
            response = answer_from_text(request, text, seconds=seconds)
            # Tokens as a VLM would count them, roughly: 4 characters a token, 256 an image.
            prompt = len(json.dumps(request.messages)) // 4 + IMAGE_TOKENS * len(request.images)
            out.append(replace(response, prompt_tokens=prompt, completion_tokens=len(text) // 4))
        return out


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.owner.model, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        owner.arrived()
        try:
            with owner.slots:
                time.sleep(owner.latency_s)
                fmt = payload.get("response_format") or {}
                name = (fmt.get("json_schema") or {}).get("name", "") if isinstance(fmt, dict) else ""
                text = simulated_answer(payload.get("messages", []), name, payload.get("seed"))
            body = {
                "id": "cmpl-simulated",
                "object": "chat.completion",
                "model": owner.model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            }
            self._send(200, body)
        finally:
            owner.left()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    owner: SimulatedServer


class SimulatedServer:
    """The stand-in model as an OpenAI-compatible server on 127.0.0.1 (use as a context
    manager). Each chat request takes ``latency_s`` once one of ``concurrency`` slots is
    free; the server keeps the time each count of requests in flight lasted."""

    def __init__(self, *, model: str = "simulated", latency_s: float = 0.05, concurrency: int = 256) -> None:
        self.model, self.latency_s = model, float(latency_s)
        self.slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.requests = 0
        self._since: float | None = None
        self._last = 0.0
        self.durations: dict[int, float] = {}  # in-flight count -> seconds it lasted
        self.httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _tick(self, change: int) -> None:
        now = time.perf_counter()
        with self._lock:
            if self._since is None:
                self._since = now
            else:
                self.durations[self.in_flight] = self.durations.get(self.in_flight, 0.0) + now - self._last
            self._last = now
            self.in_flight += change
            self.requests += change > 0

    def arrived(self) -> None:
        self._tick(+1)

    def left(self) -> None:
        self._tick(-1)

    def in_flight_share(self, at_least: int) -> float:
        """The share of the time from the first request to the last answer during which at
        least ``at_least`` requests were in flight."""
        total = sum(self.durations.values())
        return sum(s for n, s in self.durations.items() if n >= at_least) / total if total else 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> SimulatedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
