"""A chat-completions server on loopback with scripted answers, for the model backends'
tests (shared through the ``serve`` fixture in conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: str | None, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}],
    }


#: The models ``GET /v1/models`` lists unless a test says otherwise (those the tests ask for).
MODELS = ("test-model", "m", "Qwen/Qwen2.5-VL-7B-Instruct", "google/medgemma-4b-it")


@dataclass
class Reply:
    """What the scripted server sends for one attempt."""

    status: int = 200
    body: Any = None  # a dict is sent as JSON, bytes or str as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0  # > 0: the whole answer (status line, headers, body) a byte at a time, this far apart
    length: bool = True  # False: no Content-Length, the body ends when the connection closes

    def encoded(self) -> bytes:
        body = self.body
        if isinstance(body, (dict, list)):
            return json.dumps(body).encode()
        return body.encode() if isinstance(body, str) else (body or b"")


Script = Callable[[str, int, dict[str, Any]], Reply]


class _Handler(BaseHTTPRequestHandler):
    """Answers for the :class:`ChatServer` that owns the HTTP server."""

    server: _Server

    def do_GET(self) -> None:
        chat = self.server.chat
        with chat.lock:
            chat.gets.append((self.path, self.headers.get("Authorization")))
        if chat.models_reply is not None:
            self.answer(chat.models_reply)
        elif self.path == "/v1/models":
            listed = [{"id": m, "object": "model", "owned_by": "test"} for m in chat.models]
            self.answer(Reply(body={"object": "list", "data": listed}))
        else:
            self.answer(Reply(404, {"error": f"no route {self.path}"}))

    def do_POST(self) -> None:
        chat = self.server.chat
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = chat.key_of(payload)
        with chat.lock:
            chat.counts[key] += 1
            attempt = chat.counts[key]
            chat.active += 1
            chat.max_active = max(chat.max_active, chat.active)
            chat.authorizations.append(self.headers.get("Authorization"))
            chat.payloads.append(payload)
        counted = True
        try:
            if self.path != "/v1/chat/completions":
                reply = Reply(404, {"error": f"no route {self.path}"})
            else:
                reply = chat.script(key, attempt, {**payload, "_authorization": self.headers.get("Authorization")})
            time.sleep(reply.delay)
            # Done before answering: once the client has the answer it may send the
            # next request, which must not find this one still counted.
            with chat.lock:
                chat.active -= 1
            counted = False
            self.answer(replace(reply, delay=0.0))
        finally:
            if counted:
                with chat.lock:
                    chat.active -= 1

    def answer(self, reply: Reply) -> None:
        time.sleep(reply.delay)
        data = reply.encoded()
        if reply.trickle > 0:
            head = [f"HTTP/1.0 {reply.status} Scripted", "Content-Type: application/json"]
            head += [f"Content-Length: {len(data)}"] if reply.length else []
            head += [f"{name}: {value}" for name, value in reply.headers.items()]
            raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
            for index in range(len(raw)):  # until the client hangs up
                self.wfile.write(raw[index : index + 1])
                time.sleep(reply.trickle)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        if reply.length:
            self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a client with dozens of requests in flight on
    # a loaded machine then sees refused connections a real server (uvicorn: 2048) never gives.
    request_queue_size = 128
    chat: ChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client gave up on a slow answer: expected here


class ChatServer:
    """A chat-completions server on 127.0.0.1 that answers as a script says.

    Requests are keyed by the text of their last content part; the server counts attempts
    per key, the requests in flight (and the most at once), and keeps every payload and
    Authorization header it received. ``GET /v1/models`` lists :attr:`models`, or answers
    :attr:`models_reply` when a test sets one (``gets`` records those requests' paths and
    Authorization headers)."""

    def __init__(self, script: Script, models: tuple[str, ...] = MODELS) -> None:
        self.script = script
        self.models = models
        self.models_reply: Reply | None = None
        self.gets: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.authorizations: list[str | None] = []
        self.payloads: list[dict[str, Any]] = []
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.chat = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @staticmethod
    def key_of(payload: dict[str, Any]) -> str:
        content = payload["messages"][-1]["content"]
        if isinstance(content, str):
            return content
        return [p["text"] for p in content if p["type"] == "text"][-1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
