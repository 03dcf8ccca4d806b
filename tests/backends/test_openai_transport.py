"""The openai client's transport against loopback servers that misbehave: proxies never
used for loopback, redirects never followed, answers capped in size, a deadline on the whole
request, the key scrubbed from everything a server echoes it into, and the check a run
makes of its backend before it starts."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatserver import ChatServer, Reply, completion
from medground.backends import BackendUnavailable, Request, check_backend
from medground.backends.openai import DEFAULT_MAX_RESPONSE_BYTES, OpenAIBackend
from model_requests import GOOD, KEY, KEY_ENV, verdict_request

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def client(server: ChatServer, **settings: Any) -> OpenAIBackend:
    options: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "max_retries": 0,
        "timeout_s": 5.0,
        "sleep": lambda seconds: None,
        **settings,
    }
    return OpenAIBackend("test-model", **options)


def plain_request(key: str) -> Request:
    """A request for a plain-text answer (what `medground predict` sends)."""
    return Request(id=key, messages=[{"role": "user", "content": [{"type": "text", "text": key}]}])


class Listener:
    """A TCP port that accepts connections and counts them (a proxy nobody should use)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def proxy(monkeypatch) -> Iterator[Listener]:
    listener = Listener()
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, listener.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield listener
    listener.close()


def test_proxies_from_the_environment_are_never_used_for_loopback(serve, proxy, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    server = serve(lambda key, attempt, payload: Reply(body=completion(GOOD)))
    for base_url in (server.base_url, server.base_url.replace("127.0.0.1", "localhost")):
        backend = client(server, base_url=base_url)
        (response,) = backend.run([verdict_request("good")])
        assert response.ok, response
        backend.check()  # GET /models: no proxy either
    assert proxy.accepted == 0
    assert len(server.payloads) == 2 and len(server.gets) == 2
    assert set(server.authorizations) | {auth for _, auth in server.gets} == {f"Bearer {KEY}"}


def test_a_remote_server_goes_through_the_proxy_the_environment_names(serve, monkeypatch) -> None:
    """The environment's proxy is still honoured for remote hosts (here the "proxy" is a
    loopback server, which answers 404 for the absolute URL it is asked for)."""
    server = serve(lambda key, attempt, payload: Reply(body=completion(GOOD)))
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, f"http://127.0.0.1:{server.httpd.server_address[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    backend = OpenAIBackend("test-model", base_url="http://models.medground.test/v1", max_retries=0, timeout_s=5.0)
    (response,) = backend.run([verdict_request("good")])
    assert response.reason == "http_404"
    assert ChatServer.key_of(server.payloads[0]) == "good"


def test_redirects_are_never_followed_and_the_key_never_leaves_the_origin(serve, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    elsewhere = serve(lambda key, attempt, payload: Reply(body=completion(GOOD)))
    elsewhere_models = elsewhere.base_url + "/models"

    def script(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        code = int(key.split("-")[1])
        return Reply(code, "", {"Location": elsewhere.base_url + "/chat/completions"})

    server = serve(script)
    backend = client(server, max_retries=3)
    responses = backend.run([verdict_request(f"redirect-{code}") for code in (301, 302, 303, 307, 308)])
    for response in responses:
        assert response.reason == "redirect", response
        assert f"to http://127.0.0.1:{elsewhere.httpd.server_address[1]}" in response.detail
        assert "never followed" in response.detail and "set base_url" in response.detail
        assert response.attempts == 1  # not retried
    assert elsewhere.payloads == [] and elsewhere.gets == []
    assert set(server.counts.values()) == {1}

    server.models_reply = Reply(302, "", {"Location": elsewhere_models})
    with pytest.raises(BackendUnavailable, match="redirected.*never followed"):
        backend.check()
    assert elsewhere.gets == [] and elsewhere.authorizations == []


def test_answers_past_the_size_cap_are_abandoned(serve, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    big = b'{"choices": [{"message": {"content": "' + b"x" * (3 * 1024 * 1024) + b'"}}]}'

    def script(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        if key == "declared":
            return Reply(body=big)
        if key == "undeclared":  # no Content-Length: the cap is found while reading
            return Reply(body=big, length=False)
        if key == "error":
            return Reply(500, b"e" * (3 * 1024 * 1024))
        return Reply(body=completion(GOOD))

    server = serve(script)
    assert client(server).max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 32 * 1024 * 1024
    backend = client(server, max_response_bytes=1024 * 1024, max_retries=2)
    declared, undeclared, error, small = backend.run(
        [verdict_request(k) for k in ("declared", "undeclared", "error", "small")]
    )
    for response in (declared, undeclared):
        assert response.reason == "response_too_large", response
        assert "max_response_bytes = 1048576" in response.detail and response.attempts == 1
    assert error.reason == "http_500" and len(error.detail) < 400  # an excerpt, not the body
    assert small.ok
    with pytest.raises(ValueError, match="max_response_bytes"):
        client(server, max_response_bytes=0)


def test_the_timeout_bounds_the_whole_request_against_a_trickling_server(serve, monkeypatch) -> None:
    """A server that sends its answer a byte every 50 ms never lets a socket read time out;
    the request is still cut at timeout_s."""
    monkeypatch.setenv(KEY_ENV, KEY)

    def script(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        return Reply(body=completion(GOOD), trickle=0.05, length=key != "undeclared")

    server = serve(script)
    backend = client(server, timeout_s=0.6, max_retries=1)
    started = time.monotonic()
    responses = backend.run([verdict_request("declared"), verdict_request("undeclared")])
    elapsed = time.monotonic() - started
    for response in responses:
        assert response.reason == "timeout", response
        assert "within 0.6 s" in response.detail and response.attempts == 2
        assert response.seconds < 2.5
    assert elapsed < 3.0  # the full answer would take over 15 s

    server.models_reply = Reply(body={"data": [{"id": "test-model"}]}, trickle=0.05)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="timeout"):
        backend.check()
    assert time.monotonic() - started < 2.0


def test_name_resolution_counts_against_the_deadline(serve, monkeypatch) -> None:
    """A resolver that hangs (getaddrinfo made to wait far past timeout_s) holds the request
    no longer than its deadline: the attempt is a timeout, retried like one. A name that
    resolves at once reaches the server at the address it resolved to; an unknown name is a
    connection failure."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(KEY_ENV, KEY)
    server = serve(lambda key, attempt, payload: Reply(body=completion(GOOD)))
    port = server.httpd.server_address[1]
    resolve = socket.getaddrinfo
    release = threading.Event()
    asked: list[str] = []

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        if host == "slow.medground.test":
            release.wait(10)  # a resolver that hangs (released when the test ends)
        if host in ("slow.medground.test", "fast.medground.test"):
            return resolve("127.0.0.1", *args, **kwargs)
        if host == "unknown.medground.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        fast = client(server, base_url=f"http://fast.medground.test:{port}/v1")
        (response,) = fast.run([verdict_request("good")])
        assert response.ok, response
        fast.check()
        assert asked.count("fast.medground.test") == 2 and len(server.payloads) == 1

        slow = client(server, base_url=f"http://slow.medground.test:{port}/v1", timeout_s=0.5, max_retries=1)
        started = time.monotonic()
        (response,) = slow.run([verdict_request("slow")])
        assert response.reason == "timeout", response
        assert "within 0.5 s" in response.detail and response.attempts == 2
        assert time.monotonic() - started < 2.0  # two attempts of 0.5 s; the resolver holds on for 10 s
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"slow\.medground\.test:\d+/v1 cannot be used: timeout"):
            slow.check()
        assert time.monotonic() - started < 1.5
        assert len(server.payloads) == 1 and len(server.gets) == 1  # nothing reached the server

        unknown = client(server, base_url=f"http://unknown.medground.test:{port}/v1")
        (response,) = unknown.run([verdict_request("unknown")])
        assert response.reason == "connection" and "Name or service not known" in response.detail
    finally:
        release.set()


class Silent:
    """A TCP port that accepts connections and never says a word on them (a TLS server
    that never answers the client's hello)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.held: list[socket.socket] = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(connection)  # open, silent

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        for connection in self.held:
            connection.close()
        self.sock.close()


def test_the_tls_handshake_counts_against_the_deadline(monkeypatch) -> None:
    """An https base_url whose server accepts the connection and never answers the TLS
    hello: the handshake is cut at timeout_s, for a request and for the check before a run."""
    monkeypatch.setenv(KEY_ENV, KEY)
    silent = Silent()
    try:
        backend = OpenAIBackend(
            "test-model",
            base_url=f"https://127.0.0.1:{silent.port}/v1",
            api_key_env=KEY_ENV,
            timeout_s=0.5,
            max_retries=0,
        )
        started = time.monotonic()
        (response,) = backend.run([verdict_request("tls")])
        assert response.reason == "timeout", response
        assert "within 0.5 s" in response.detail
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="cannot be used: timeout"):
            backend.check()
        assert time.monotonic() - started < 1.5
        assert len(silent.held) == 2  # both reached the server, and waited there for the handshake
    finally:
        silent.close()


def echo(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
    """A server that echoes the request's Authorization header wherever it can."""
    auth = payload["_authorization"]
    if key == "in_a_field":
        return Reply(body=completion(json.dumps({"verdict": "yes", "confidence": 0.9, "reason": auth})))
    if key == "off_schema":
        return Reply(body=completion(json.dumps({"verdict": auth, "confidence": 0.9, "reason": "x"})))
    if key == "not_json":
        return Reply(body=completion(f"I was called with {auth}"))
    if key == "plain":
        return Reply(body=completion(f"[{{'bbox_2d': [1, 2, 3, 4]}}] {auth}"))
    if key == "error_cut":  # the key straddles where an excerpt is cut
        return Reply(500, "x" * 290 + auth)
    if key == "not_chat_cut":
        return Reply(200, "y" * 190 + auth)
    if key == "refusal":
        body = completion(None)
        body["choices"][0]["message"]["refusal"] = f"no, {auth}"
        return Reply(body=body)
    if key == "reason_phrase":
        return Reply(502, json.dumps({"error": {"message": f"upstream refused {auth}"}}))
    return Reply(404, "")


def test_the_key_is_scrubbed_from_everything_a_server_echoes_it_into(serve, monkeypatch, caplog) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    server = serve(echo)
    backend = client(server)
    schema_keys = ["in_a_field", "off_schema", "not_json", "error_cut", "not_chat_cut", "refusal", "reason_phrase"]
    responses = backend.run([*(verdict_request(k) for k in schema_keys), plain_request("plain")])
    by_id = {r.id: r for r in responses}
    assert by_id["in_a_field"].ok and by_id["in_a_field"].data["reason"] == "Bearer ***"
    assert by_id["off_schema"].reason == "schema_violation" and "Bearer ***" in by_id["off_schema"].detail
    assert by_id["not_json"].reason == "malformed_json"
    assert by_id["plain"].ok and by_id["plain"].text.endswith("Bearer ***")
    assert by_id["refusal"].reason == "refused" and "***" in by_id["refusal"].detail
    everything = json.dumps([r.__dict__ for r in responses]) + caplog.text + repr(responses)
    assert f"Bearer {KEY}" in server.authorizations  # the key was sent...
    assert KEY not in everything  # ...and is in nothing that came back,
    assert KEY[:7] not in everything  # not even in part where an excerpt was cut.

    # The check before a run scrubs too (a model list or an error that echoes the key).
    server.models_reply = Reply(401, f"bad key {KEY}")
    with pytest.raises(BackendUnavailable) as refused:
        backend.check()
    assert f"refused the key in {KEY_ENV}" in str(refused.value) and KEY not in str(refused.value)
    server.models_reply = Reply(body={"data": [{"id": f"model-for-{KEY}"}]})
    with pytest.raises(BackendUnavailable) as unlisted:
        backend.check()
    assert "model-for-***" in str(unlisted.value) and KEY not in str(unlisted.value)


def test_check_backend_before_a_run(serve, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    server = serve(lambda key, attempt, payload: Reply(body=completion(GOOD)))
    settings = {"backend": "openai", "model": "test-model", "base_url": server.base_url, "api_key_env": KEY_ENV}
    check_backend(settings)  # listed: fine
    check_backend({**settings, "backend": "vlm", "model": "google/medgemma-4b-it"})  # the judge's section
    assert server.gets[0] == ("/v1/models", f"Bearer {KEY}")
    check_backend({"backend": "template"})  # no model: nothing to check

    with pytest.raises(BackendUnavailable, match=r"does not serve model 'other-model' \(it lists 'test-model', 'm'"):
        check_backend({**settings, "model": "other-model"})
    server.models_reply = Reply(404, {"error": "no such route"})
    with pytest.raises(BackendUnavailable, match="answered GET /models with HTTP 404"):
        check_backend(settings)
    server.models_reply = Reply(body="<html>a login page</html>")
    with pytest.raises(BackendUnavailable, match="no model list"):
        check_backend(settings)

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}/v1 cannot be used: connection"):
        check_backend({**settings, "base_url": f"http://127.0.0.1:{port}/v1"})

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BackendUnavailable, match=f"{KEY_ENV}.*not set"):
        check_backend(settings)
    with pytest.raises(BackendUnavailable, match="timeout_s"):
        check_backend({**settings, "api_key_env": None, "timeout_s": "slow"})


def test_the_client_refuses_a_key_in_place_of_a_variable_name_without_echoing_it(monkeypatch) -> None:
    secret = "sk-live-0123456789abcdefSECRET"
    for settings in ({"api_key_env": secret}, {"base_url": f"https://user:{secret}@api.example.com/v1"}):
        with pytest.raises(ValueError) as error:
            OpenAIBackend("m", **settings)
        assert secret not in str(error.value) and "SECRET" not in str(error.value)
    monkeypatch.delenv("MEDGROUND_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match="MEDGROUND_UNSET_KEY.*not set"):
        OpenAIBackend("m", api_key_env="MEDGROUND_UNSET_KEY")
