"""A chat-completions server on loopback with scripted answers, for the model backends'
tests (shared through the ``serve`` fixture in conftest.py)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: str | None, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}],
    }


@dataclass
class Reply:
    """What the scripted server sends for one attempt."""

    status: int = 200
    body: Any = None  # a dict is sent as JSON, bytes or str as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Script = Callable[[str, int, dict[str, Any]], Reply]


class ChatServer:
    """A chat-completions server on 127.0.0.1 that answers as a script says.

    Requests are keyed by the text of their last content part; the server counts attempts
    per key, the requests in flight (and the most at once), and keeps every payload and
    Authorization header it received."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.authorizations: list[str | None] = []
        self.payloads: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = server.key_of(payload)
                with server.lock:
                    server.counts[key] += 1
                    attempt = server.counts[key]
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    server.authorizations.append(self.headers.get("Authorization"))
                    server.payloads.append(payload)
                counted = True
                try:
                    if self.path != "/v1/chat/completions":
                        reply = Reply(404, {"error": f"no route {self.path}"})
                    else:
                        reply = server.script(
                            key, attempt, {**payload, "_authorization": self.headers.get("Authorization")}
                        )
                    time.sleep(reply.delay)
                    # Done before answering: once the client has the answer it may send the
                    # next request, which must not find this one still counted.
                    with server.lock:
                        server.active -= 1
                    counted = False
                    body = reply.body
                    data = (
                        json.dumps(body).encode()
                        if isinstance(body, (dict, list))
                        else body.encode()
                        if isinstance(body, str)
                        else (body or b"")
                    )
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    if counted:
                        with server.lock:
                            server.active -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client gave up on a slow answer: expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
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
