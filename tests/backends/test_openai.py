"""The openai backend against a real chat-completions server on loopback (answers, retries,
rejections, concurrency, images, the API key), and make_backend reading the run config."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from chatserver import ChatServer, Reply, completion
from medground.backends import Request, make_backend
from medground.backends.openai import OpenAIBackend
from medground.synth import TemplateSynthesizer, VlmSynthesizer, make_synthesizer
from model_requests import GOOD, KEY, KEY_ENV, VERDICT, verdict_request


def refusal() -> Reply:
    """A completion that refuses instead of answering."""
    body = completion(None)
    body["choices"][0]["message"]["refusal"] = "I cannot help with that."
    return Reply(body=body)


#: Scenario name → its reply to the ``attempt``-th request (from 1) with ``payload``.
SCENARIOS: dict[str, Callable[[int, dict[str, Any]], Reply]] = {
    "good": lambda attempt, payload: Reply(body=completion(GOOD)),
    "fenced": lambda attempt, payload: Reply(
        body=completion(f"<think>the box is on a lesion</think>\n```json\n{GOOD}\n```")
    ),
    "malformed": lambda attempt, payload: Reply(body=completion('{"verdict": "yes", "confidence": 0.9, reason: oops}')),
    "schema": lambda attempt, payload: Reply(body=completion(json.dumps({"verdict": "maybe", "confidence": 1.7}))),
    "truncated": lambda attempt, payload: Reply(
        body=completion('{"verdict": "yes", "confidence": 0.', finish_reason="length")
    ),
    "refused": lambda attempt, payload: refusal(),
    "not_chat": lambda attempt, payload: Reply(body="<html>proxy error page</html>"),
    "flaky_500": lambda attempt, payload: (
        Reply(500, {"error": "overloaded"}) if attempt <= 2 else Reply(body=completion(GOOD))
    ),
    "always_503": lambda attempt, payload: Reply(503, {"error": "unavailable"}),
    "rate_limited": lambda attempt, payload: (
        Reply(429, {"error": "slow down"}, {"Retry-After": "2"}) if attempt == 1 else Reply(body=completion(GOOD))
    ),
    "bad_request": lambda attempt, payload: Reply(400, {"error": "unsupported response_format"}),
    "slow": lambda attempt, payload: Reply(body=completion(GOOD), delay=1.0),
    # A misbehaving proxy that echoes the request's credentials in its error page.
    "echo_key": lambda attempt, payload: Reply(500, f"upstream failed for {payload['_authorization']}"),
}


def scenario(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
    """Answers by the request's text (the scenario's name): one of ``SCENARIOS``, or ``busy…``
    (a good answer, a little late)."""
    if key in SCENARIOS:
        return SCENARIOS[key](attempt, payload)
    if key.startswith("busy"):
        return Reply(body=completion(GOOD), delay=0.4)
    return Reply(404, {"error": f"unknown scenario {key}"})


def backend_for(server: ChatServer, **settings: Any) -> OpenAIBackend:
    config = {
        "backend": "openai",
        "model": "test-model",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "timeout_s": 0.4,
        "max_retries": 2,
        "backoff_s": 0.0,
        "concurrency": 4,
        **settings,
    }
    backend = make_backend(config)
    assert isinstance(backend, OpenAIBackend)
    return backend


def test_openai_backend_answers_retries_and_rejections(serve, monkeypatch, caplog) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    server = serve(scenario)
    backend = backend_for(server)
    waits: list[float] = []
    backend._sleep = waits.append  # record the backoff instead of waiting it out
    names = [
        "good",
        "fenced",
        "malformed",
        "schema",
        "truncated",
        "refused",
        "not_chat",
        "flaky_500",
        "always_503",
        "rate_limited",
        "bad_request",
        "slow",
    ]
    caplog.set_level(logging.DEBUG)
    responses = backend.run([verdict_request(n) for n in names])
    by_id = {r.id: r for r in responses}
    assert [r.id for r in responses] == names  # in request order

    for name in ("good", "fenced", "flaky_500", "rate_limited"):
        assert by_id[name].ok, by_id[name]
        assert by_id[name].data == json.loads(GOOD)
    expected = {
        "malformed": "malformed_json",
        "schema": "schema_violation",
        "truncated": "truncated",
        "refused": "refused",
        "not_chat": "malformed_response",
        "always_503": "http_503",
        "bad_request": "http_400",
        "slow": "timeout",
    }
    for name, reason in expected.items():
        assert (by_id[name].ok, by_id[name].reason) == (False, reason), by_id[name]
        assert by_id[name].data is None and by_id[name].detail
    assert "'maybe' is not one of" in by_id["schema"].detail and "maximum 1" in by_id["schema"].detail
    assert "0.4 s" in by_id["slow"].detail

    # Retries: 429/5xx/timeouts are retried (max_retries = 2 → at most 3 attempts); the rest are not.
    attempts = {
        "good": 1,
        "malformed": 1,
        "schema": 1,
        "bad_request": 1,
        "flaky_500": 3,
        "always_503": 3,
        "rate_limited": 2,
        "slow": 3,
    }
    for name, count in attempts.items():
        assert server.counts[name] == count, name
        assert by_id[name].attempts == count, name
    assert 2.0 in waits  # Retry-After: 2 honoured (the waits are recorded here, not slept)
    assert by_id["slow"].seconds < 2.5  # three attempts cut at 0.4 s each, not three 1 s answers

    # What was sent: the model, the JSON schema as response_format, sampling settings.
    payload = next(p for p in server.payloads if ChatServer.key_of(p) == "good")
    assert payload["model"] == "test-model"
    assert payload["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": VERDICT, "strict": True},
    }
    assert payload["temperature"] == 0.2 and payload["max_tokens"] == 1024

    # The key reached the server, and nowhere else.
    assert set(server.authorizations) == {f"Bearer {KEY}"}
    assert KEY not in caplog.text
    assert "retry" in caplog.text  # retries are logged, without the key
    assert KEY not in repr(responses) and KEY not in repr(backend)
    assert KEY not in json.dumps([r.__dict__ for r in responses])


def test_openai_backend_bounds_concurrency(serve, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    server = serve(scenario)
    backend = backend_for(server, concurrency=3, timeout_s=5.0)
    responses = backend.run([verdict_request(f"busy-{i}") for i in range(12)])
    assert all(r.ok for r in responses)
    # 12 slow requests: never more than 3 at once, and (barring a stalled machine) they overlap.
    assert 2 <= server.max_active <= 3
    assert sum(server.counts.values()) == 12


def test_openai_backend_keeps_the_token_counts_the_server_reports(serve, monkeypatch) -> None:
    """``usage`` gives a response's token counts (what throughput in tokens/s is made of);
    an answer without it, or with nonsense in it, counts 0."""
    monkeypatch.setenv(KEY_ENV, KEY)

    def answer(key: str, attempt: int, payload: dict) -> Reply:
        body = completion(GOOD)
        if key.endswith("counted"):
            body["usage"] = {"prompt_tokens": 812, "completion_tokens": 23, "total_tokens": 835}
        elif key.endswith("nonsense"):
            body["usage"] = {"prompt_tokens": -1, "completion_tokens": "many"}
        return Reply(body=body)

    backend = backend_for(serve(answer))
    counted, silent, nonsense = backend.run([verdict_request(k) for k in ("counted", "silent", "nonsense")])
    assert counted.ok and (counted.prompt_tokens, counted.completion_tokens) == (812, 23)
    assert silent.ok and (silent.prompt_tokens, silent.completion_tokens) == (0, 0)
    assert nonsense.ok and (nonsense.prompt_tokens, nonsense.completion_tokens) == (0, 0)


def test_openai_backend_sends_images_as_png_data_urls(serve, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    server = serve(scenario)
    backend = make_backend({"backend": "openai", "model": "m", "base_url": server.base_url})
    image = np.zeros((30, 40, 3), np.uint8)
    image[5:10, 5:20] = (255, 0, 0)
    (response,) = backend.run([verdict_request("good", image=image)])
    assert response.ok
    assert server.authorizations == [None]  # no api_key_env: no key sent
    parts = server.payloads[0]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, image)


def test_openai_backend_never_leaks_the_key(monkeypatch, caplog) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    with ChatServer(scenario) as server:
        backend = backend_for(server, max_retries=1)
        backend._sleep = lambda seconds: None
        # A server that echoes the credentials, and a broken request (an image it does not have).
        broken = Request(
            id="broken", messages=[{"role": "user", "content": [{"type": "image", "index": 3}]}], schema=VERDICT
        )
        echoed, failed = backend.run([verdict_request("echo_key"), broken])
    assert echoed.reason == "http_500" and "***" in echoed.detail and KEY not in echoed.detail
    assert failed.reason == "backend_error" and "image part 3" in failed.detail
    assert f"Bearer {KEY}" in server.authorizations
    assert KEY not in caplog.text and KEY not in repr([echoed, failed])

    # Errors name the variable, never a value.
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV) as error:
        make_backend({"backend": "openai", "model": "m", "api_key_env": KEY_ENV})
    assert KEY not in str(error.value)
    monkeypatch.setenv(KEY_ENV, KEY)
    for bad in ({"base_url": "ftp://example"}, {"timeout_s": -1}, {"concurrency": 0}, {"temperature": "hot"}):
        with pytest.raises(ValueError) as error:
            make_backend({"backend": "openai", "model": "m", "api_key_env": KEY_ENV, **bad})
        assert KEY not in str(error.value)
        assert next(iter(bad)) in str(error.value)


def test_openai_backend_connection_refused_is_a_failure(monkeypatch) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(
        "m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0.0, sleep=lambda s: None
    )
    (response,) = backend.run([verdict_request("good")])
    assert (response.reason, response.attempts) == ("connection", 2)


def test_make_backend_reads_the_run_config(monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = make_backend(
        {
            "backend": "vlm",
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": KEY_ENV,
            "temperature": 0.0,
            "max_tokens": 256,
            "concurrency": 2,
            "response_format": "json_object",
            "threshold": 0.7,
        }
    )
    assert isinstance(backend, OpenAIBackend)
    assert (backend.sampling.temperature, backend.sampling.max_tokens, backend.concurrency) == (0.0, 256, 2)
    assert backend.payload(verdict_request("x"), [])["response_format"] == {"type": "json_object"}
    with pytest.raises(ValueError, match="template"):
        make_backend({"backend": "template"})
    with pytest.raises(ValueError, match="'llamacpp'"):
        make_backend({"backend": "llamacpp", "model": "m"})
    with pytest.raises(ValueError, match="model"):
        make_backend({"backend": "openai"})
    with pytest.raises(ValueError, match="response_format"):
        make_backend({"backend": "openai", "model": "m", "response_format": "xml"})
    assert isinstance(make_synthesizer({}), TemplateSynthesizer)
    assert isinstance(make_synthesizer({"backend": "openai", "model": "m"}), VlmSynthesizer)
