"""Model backends: the openai backend against a real chat-completions server on loopback,
the vllm backend's requests and parsing with a stand-in engine, image preparation, the VLM
synthesizer end to end on a phantom case, and the VLM judge."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from chatserver import ChatServer, Reply, completion
from medground.backends import Request, make_backend
from medground.backends.images import draw_boxes, png_data_url, prepare_image
from medground.backends.openai import OpenAIBackend
from medground.backends.prompts import available_prompts, load_prompt
from medground.backends.schema import AnswerError, parse_answer, schema_errors
from medground.backends.vllm import VllmBackend
from medground.boxes import FAMILIES, family_for_model
from medground.generate import draft_case
from medground.synth import TemplateSynthesizer, VlmSynthesizer, make_synthesizer
from medground.verify import JudgeItem, Verifier
from medground.verify.vlm_judge import VlmJudge
from phantom_cases import liver_phantom

KEY_ENV = "MEDGROUND_TEST_API_KEY"
KEY = "sk-test-5ecret-0123456789abcdef"
VERDICT = load_prompt("judge_v1").schema


def verdict_request(key: str, *, image: np.ndarray | None = None) -> Request:
    content: list[dict[str, Any]] = [{"type": "text", "text": key}]
    images: tuple[np.ndarray, ...] = ()
    if image is not None:
        content.insert(0, {"type": "image", "index": 0})
        images = (image,)
    return Request(
        id=key,
        messages=[{"role": "system", "content": "Answer JSON."}, {"role": "user", "content": content}],
        images=images,
        schema=VERDICT,
        schema_name="verdict",
    )


GOOD = json.dumps({"verdict": "yes", "confidence": 0.9, "reason": "clearly the boxed lesion"})


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


# ----------------------------------------------------------------------------- openai backend


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


# ----------------------------------------------------------------------------- config


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


# ----------------------------------------------------------------------------- vllm backend (stand-in engine)


@dataclass
class FakeCompletion:
    text: str
    finish_reason: str = "stop"


@dataclass
class FakeOutput:
    outputs: list[FakeCompletion]


class FakeLLM:
    """``vllm.LLM`` with the same ``chat`` signature; answers by a function of the conversation."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.engine_args = {"model": model, **kwargs}
        self.calls: list[tuple[list[list[dict[str, Any]]], Any, dict[str, Any]]] = []
        self.answer: Callable[[list[dict[str, Any]]], FakeCompletion] = lambda c: FakeCompletion(GOOD)

    def chat(
        self,
        messages,
        sampling_params=None,
        use_tqdm=True,
        lora_request=None,
        chat_template=None,
        chat_template_content_format="auto",
        add_generation_prompt=True,
        continue_final_message=False,
        tools=None,
        chat_template_kwargs=None,
        mm_processor_kwargs=None,
    ):
        self.calls.append(
            (messages, sampling_params, {"use_tqdm": use_tqdm, "chat_template_kwargs": chat_template_kwargs})
        )
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        if any("too long" in ChatServer.key_of({"messages": c}) for c in conversations) and len(conversations) > 1:
            raise ValueError("prompt length exceeds max_model_len")
        if any("too long" in ChatServer.key_of({"messages": c}) for c in conversations):
            raise ValueError("prompt length 40000 exceeds max_model_len 32768")
        return [FakeOutput([self.answer(c)]) for c in conversations]


def fake_vllm(monkeypatch, *, current: bool = True) -> types.ModuleType:
    """Stand-ins for ``vllm`` and ``vllm.sampling_params`` (current or pre-0.12 names)."""
    vllm = types.ModuleType("vllm")
    params = types.ModuleType("vllm.sampling_params")

    @dataclass
    class SamplingParams:
        temperature: float = 1.0
        top_p: float = 1.0
        max_tokens: int | None = 16
        seed: int | None = None
        structured_outputs: Any = None
        guided_decoding: Any = None

    @dataclass
    class JsonConstraint:
        json: Any = None

    params.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    if current:
        params.StructuredOutputsParams = JsonConstraint  # type: ignore[attr-defined]
    else:
        params.GuidedDecodingParams = JsonConstraint  # type: ignore[attr-defined]
    vllm.LLM = FakeLLM  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    vllm.sampling_params = params  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)
    return vllm


@pytest.mark.parametrize("current", [True, False], ids=["structured_outputs", "guided_decoding"])
def test_vllm_backend_builds_requests_and_parses_answers(monkeypatch, current: bool) -> None:
    fake_vllm(monkeypatch, current=current)
    backend = make_backend(
        {
            "backend": "vllm",
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "tensor_parallel_size": 2,
            "gpu_memory_utilization": 0.8,
            "max_model_len": 16384,
            "temperature": 0.0,
            "seed": 7,
            "chat_template_kwargs": {"enable_thinking": False},
        }
    )
    assert isinstance(backend, VllmBackend)
    llm = backend.llm
    assert isinstance(llm, FakeLLM)
    assert llm.engine_args == {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "limit_mm_per_prompt": {"image": 2},
        "dtype": "auto",
        "trust_remote_code": False,
        "enforce_eager": False,
        "max_model_len": 16384,
        "seed": 7,
    }
    answers = {
        "good": FakeCompletion(GOOD),
        "malformed": FakeCompletion("The lesion is boxed. Yes."),
        "schema": FakeCompletion('{"verdict": "yes"}'),
        "truncated": FakeCompletion('{"verdict": "yes", "confi', "length"),
    }
    llm.answer = lambda conversation: answers[ChatServer.key_of({"messages": conversation})]
    image = np.full((20, 30), 128, np.uint8)
    requests = [verdict_request(name, image=np.repeat(image[..., None], 3, axis=2)) for name in answers]
    requests[1] = replace(requests[1], seed=99)
    responses = backend.run(requests)

    assert [(r.id, r.reason) for r in responses] == [
        ("good", None),
        ("malformed", "malformed_json"),
        ("schema", "schema_violation"),
        ("truncated", "truncated"),
    ]
    assert responses[0].data == json.loads(GOOD)
    assert len(llm.calls) == 1  # one batched chat call
    conversations, params, options = llm.calls[0]
    assert options == {"use_tqdm": False, "chat_template_kwargs": {"enable_thinking": False}}
    assert len(conversations) == len(params) == 4
    system, user = conversations[0]
    assert system == {"role": "system", "content": "Answer JSON."}
    assert user["content"][0]["type"] == "image_url"
    assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert user["content"][1] == {"type": "text", "text": "good"}
    constraint = params[0].structured_outputs if current else params[0].guided_decoding
    other = params[0].guided_decoding if current else params[0].structured_outputs
    assert constraint.json == VERDICT and other is None
    assert (params[0].temperature, params[0].max_tokens, params[0].seed, params[1].seed) == (0.0, 1024, 7, 99)


def test_vllm_backend_isolates_a_failing_request(monkeypatch) -> None:
    fake_vllm(monkeypatch)
    backend = VllmBackend("some/model", llm=FakeLLM("some/model"))
    responses = backend.run([verdict_request("good"), verdict_request("too long"), verdict_request("good")])
    assert [r.reason for r in responses] == [None, "backend_error", None]
    assert "max_model_len" in responses[1].detail
    assert len(backend.llm.calls) == 4  # the batch, then each request alone


def test_vllm_backend_missing_gives_the_install_command(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'medground\[vllm\]'"):
        make_backend({"backend": "vllm", "model": "Qwen/Qwen2.5-VL-7B-Instruct"})
    with pytest.raises(FileNotFoundError, match="model folder"):
        make_backend({"backend": "vllm", "model": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        make_backend({"backend": "vllm", "model": "m", "gpu_memory_utilization": 1.5})


# ----------------------------------------------------------------------------- answers and images


def test_answers_are_parsed_and_checked() -> None:
    assert parse_answer(f"Sure, here it is: {GOOD} Hope that helps.", VERDICT)["verdict"] == "yes"
    for text, reason in (
        (None, "malformed_json"),
        ("", "malformed_json"),
        ("[1, 2]", "schema_violation"),
        ('{"verdict": "yes", "confidence": true, "reason": "x"}', "schema_violation"),
        ('{"verdict": "yes", "confidence": 0.5, "reason": "x", "extra": 1}', "schema_violation"),
    ):
        with pytest.raises(AnswerError) as error:
            parse_answer(text, VERDICT)
        assert error.value.reason == reason
    schema = {
        "type": "object",
        "required": ["n"],
        "properties": {
            "n": {"type": "integer"},
            "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}},
        },
    }
    assert schema_errors({"n": 2.0, "tags": ["ab"]}, schema) == []
    assert schema_errors({"tags": []}, schema) == [
        "$: missing required property 'n'",
        "$.tags: 0 items, at least 1 required",
    ]
    assert schema_errors({"n": 1, "tags": ["a"]}, schema) == ["$.tags[0]: shorter than 2 characters"]
    assert set(available_prompts()) >= {"synthesis_v1", "judge_v1"}


@pytest.mark.parametrize(
    ("model", "family", "multiple"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", 28),
        ("/models/lingshu-7b", "qwen2.5-vl", 28),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl", 28),
        ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl", 32),
        ("OpenGVLab/InternVL3-8B", "internvl", 1),
        ("google/medgemma-4b-it", "gemma3", 1),
        ("gpt-4o", "default", 1),
    ],
)
@pytest.mark.parametrize("shape", [(90, 90), (512, 512), (2048, 1536, 3), (300, 41)])
def test_images_are_prepared_per_family_and_boxes_map_back(model: str, family: str, multiple: int, shape) -> None:
    chosen = family_for_model(model)
    assert chosen.name == family
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    before = image.copy()
    prepared, prep = prepare_image(image, chosen)
    np.testing.assert_array_equal(image, before)
    height, width = prepared.shape[:2]
    assert prepared.dtype == np.uint8 and prepared.shape[2] == 3
    assert (width, height) == prep.size and prep.source_size == (shape[1], shape[0])
    if chosen.square:
        assert width == height == chosen.square
    else:
        assert width % multiple == 0 and height % multiple == 0
        assert width * height <= chosen.max_pixels
        assert width * height >= min(chosen.min_pixels, shape[0] * shape[1]) * 0.8
    box = [3, 5, min(shape[1], 40), min(shape[0], 30)]
    np.testing.assert_allclose(prep.to_source(prep.to_prepared(box)), box, atol=1e-9)
    marked = draw_boxes(prepared, [prep.to_prepared(box)])
    assert not np.array_equal(marked, prepared)
    assert json.dumps(prep.to_dict())


def test_draw_boxes_outlines_outside_the_box() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    marked = draw_boxes(image, [[10, 10, 20, 20]], width=2)
    red = (marked == (255, 0, 0)).all(axis=2)
    assert not red[10:20, 10:20].any()  # the object's own pixels stay clean
    assert red[8:22, 8:22].any() and red.sum() > 0
    assert not image.any()
    assert png_data_url(marked).startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="dtype"):
        prepare_image(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="family"):
        prepare_image(np.zeros((4, 4), np.uint8), "nope")
    assert set(FAMILIES) >= {"qwen2-vl", "qwen3-vl", "internvl", "gemma3", "default"}


# ----------------------------------------------------------------------------- synthesizer and judge on a phantom


def phantom(tmp_path: Path):
    """The liver phantom of tests/test_verify.py (three hypodense lesions)."""
    return liver_phantom(tmp_path)


def view_inputs(spec, case):
    """The first view of the case with its cues and references (what draft_case hands a synthesizer)."""
    from medground.anchors import find_anchors
    from medground.cues import case_context, compute_cues
    from medground.refer import refer_view
    from medground.views import build_views

    filters = spec.anchors
    components, anchors = find_anchors(case, filters)
    views = build_views(
        case, components, anchors, spec.render, spec.modality, radiological=spec.is_radiological, filters=filters
    )
    context = case_context(case, components, anchors, spec.modality)
    view = views[0]
    cues = compute_cues(view, anchors, context, spec.modality)
    references, _ = refer_view(view, cues, spec.body_region)
    return view, cues, references


def red_pixels(image: np.ndarray) -> int:
    return int(((image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)).sum())


def decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_vlm_synthesizer_end_to_end_on_a_phantom(serve, tmp_path: Path, monkeypatch) -> None:
    spec, case = phantom(tmp_path)
    view, cues, references = view_inputs(spec, case)
    assert len(references) >= 6
    clean_before = view.image.copy()
    files_before = sorted(tmp_path.rglob("*"))

    # The "model" answers each reference with the template's wording of it, except a few
    # scripted failures: malformed JSON, an answer of the wrong type (schema), a missing
    # attribute, and a server that keeps failing.
    template = TemplateSynthesizer(seed=0)
    probe = VlmSynthesizer(OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://127.0.0.1:9/v1"), seed=3)
    requests, _ = probe.requests(view, cues, references, modality=spec.modality, body_region=spec.body_region)
    answers: dict[str, Reply] = {}
    for position, (reference, request) in enumerate(zip(references, requests, strict=True)):
        key = request.messages[-1]["content"][-1]["text"]
        (worded,), _ = template.synthesize(
            view, cues, [reference], modality=spec.modality, body_region=spec.body_region
        )
        item = {"query": worded.query, "query_type": worded.query_type, "attributes": list(reference.attributes)}
        if position == 0:
            answers[key] = Reply(body=completion('{"queries": [{"query": "Locate the liver."'))
        elif position == 1:
            answers[key] = Reply(body=completion(json.dumps({"queries": [{**item, "query_type": "spatial"}]})))
        elif position == 2:
            answers[key] = Reply(body=completion(json.dumps({"queries": [{**item, "attributes": []}]})))
        elif position == 3:
            answers[key] = Reply(500, {"error": "engine crashed"})
        else:
            answers[key] = Reply(body=completion(json.dumps({"queries": [item]})))
    server = serve(lambda key, attempt, payload: answers[key])
    monkeypatch.setenv(KEY_ENV, KEY)
    synthesizer = VlmSynthesizer.from_config(
        {
            "backend": "openai",
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "max_retries": 1,
            "backoff_s": 0.0,
            "temperature": 0.7,
        },
        seed=3,
    )
    samples, failures = synthesizer.synthesize(
        view, cues, references, modality=spec.modality, body_region=spec.body_region
    )

    # Nothing dropped: every reference is a sample or a recorded failure.
    assert len(samples) + len(failures) == len(references)
    reasons = [f["rejection"]["reason"] for f in failures]
    assert reasons[:4] == ["malformed_json", "schema_violation", "missing_attribute", "http_500"]
    assert set(reasons[4:]) <= {"duplicate_query"}
    for failure in failures:
        assert failure["rejection"]["stage"] == "synthesis" and failure["rejection"]["detail"]
        assert failure["synthesis"]["backend"] == "openai" and failure["targets"]
    assert failures[0]["synthesis"]["answer"].startswith('{"queries"')
    assert server.counts[requests[3].messages[-1]["content"][-1]["text"]] == 2  # retried once

    # The drafts: same fields as the template's, the synthesis recorded, the attributes kept.
    assert samples
    for sample in samples:
        assert sample.synthesis["backend"] == "openai"
        assert sample.synthesis["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
        assert sample.synthesis["prompt_version"] == "vlm-synthesis-v1"
        assert sample.synthesis["seed"] == 3
        assert sample.synthesis["image_prep"]["family"] == "qwen2.5-vl"
        assert sample.query and sample.image.startswith("images/phantom/")
        reference = next(
            r
            for r in references
            if r.targets == tuple(t.component_id for t in sample.targets)
            and dict(r.attributes) == sample.referring_attributes
        )
        assert sample.synthesis["attributes_used"] == list(reference.attributes)
    assert len({s.id for s in samples} | {f["id"] for f in failures}) == len(references)

    # They verify like the template's wording of the same references.
    facts = draft_case(case, spec).facts[samples[0].image]
    verifier = Verifier()
    for sample in samples:
        _, failed = verifier.verify(
            sample,
            facts,
            view.image,
            view.values,
            body_region=spec.body_region,
            oriented=True,
            labels=spec.labels.values(),
        )
        assert failed is None, (sample.query, failed)

    # The prompt: clean image, marked copy (red box), the attributes and cues, the schema.
    # (requests run concurrently: pick a single-target one with a category by its text, not by arrival)
    chosen = next(
        request
        for reference, request in zip(references, requests, strict=True)
        if "category" in reference.attributes and reference.query_type != "multi_object"
    )
    payload = next(p for p in server.payloads if ChatServer.key_of(p) == chosen.messages[-1]["content"][-1]["text"])
    content = payload["messages"][-1]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    clean, marked = decode(content[0]["image_url"]["url"]), decode(content[1]["image_url"]["url"])
    assert clean.shape == marked.shape and clean.shape[0] % 28 == 0
    assert red_pixels(clean) == 0 and red_pixels(marked) > 0
    text = content[-1]["text"]
    assert "Attributes the query must use" in text and "category:" in text and '"size_class"' in text
    schema = payload["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["queries"]["maxItems"] == 1
    assert payload["temperature"] == 0.7 and isinstance(payload["seed"], int)

    # Exported images carry no overlay, and nothing was written to disk.
    np.testing.assert_array_equal(view.image, clean_before)
    assert sorted(tmp_path.rglob("*")) == files_before

    # The same answers give the same drafts (seeded, ids stable).
    again, _ = synthesizer.synthesize(view, cues, references, modality=spec.modality, body_region=spec.body_region)
    assert [s.to_dict() for s in again] == [s.to_dict() for s in samples]
    assert template.synthesize(view, cues, references, modality=spec.modality, body_region=spec.body_region)[1] == []


def test_vlm_judge_accepts_rejects_and_records(serve, tmp_path: Path) -> None:
    spec, case = phantom(tmp_path)
    drafts = draft_case(case, spec)
    view = drafts.views[0]
    base = next(s for s in drafts.samples if s.targets[0].label == "liver lesion")
    replies = {
        "yes": completion(
            json.dumps({"verdict": "yes", "confidence": 0.92, "reason": "The hypodense lesion is boxed."})
        ),
        "no": completion(json.dumps({"verdict": "no", "confidence": 0.8, "reason": "The box holds another lesion."})),
        "unsure": completion(json.dumps({"verdict": "yes", "confidence": 0.3, "reason": "Hard to see."})),
        "garbage": completion("I think so, yes!"),
        "off": completion(json.dumps({"verdict": "probably", "confidence": 0.9, "reason": "x"})),
    }

    def script(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        name = next(n for n in replies if f'Query: "Locate the {n} liver lesion."' in key)
        return Reply(body=replies[name])

    server = serve(script)
    judge = VlmJudge.from_config(
        {"backend": "vlm", "model": "google/medgemma-4b-it", "base_url": server.base_url, "threshold": 0.5}
    )
    samples = [replace(base, query=f"Locate the {name} liver lesion.") for name in replies]
    results = judge.judge([JudgeItem(s, view.image, view.values) for s in samples])
    assert [(r.stage, r.passed, r.reason) for r in results] == [
        ("visual", True, None),
        ("visual", False, "judge_rejected"),
        ("visual", False, "judge_unsure"),
        ("visual", False, "judge_failed"),
        ("visual", False, "judge_failed"),
    ]
    assert results[0].info == {
        "judge": "vlm",
        "backend": "openai",
        "model": "google/medgemma-4b-it",
        "prompt_version": "vlm-judge-v1",
        "threshold": 0.5,
        "verdict": "yes",
        "confidence": 0.92,
        "reason": "The hypodense lesion is boxed.",
    }
    assert "another lesion" in results[1].detail
    assert results[3].info["failure"] == "malformed_json" and results[4].info["failure"] == "schema_violation"
    assert results[0].to_dict()["passed"] is True and results[1].to_dict()["reason"] == "judge_rejected"

    # One call, one draft; the image it saw is the stored one padded to a square, box drawn.
    single = judge(samples[0], view.image)
    assert single.passed
    content = server.payloads[-1]["messages"][-1]["content"]
    seen = decode(content[0]["image_url"]["url"])
    assert seen.shape == (896, 896, 3)
    assert ((seen[..., 0] == 255) & (seen[..., 1] == 0)).any()
    assert "radiological display" in content[-1]["text"]
    assert server.payloads[-1]["response_format"]["json_schema"]["schema"] == VERDICT
    with pytest.raises(ValueError, match="threshold"):
        VlmJudge(judge.backend, threshold=1.5)


# ----------------------------------------------------------------------------- the GPU check script, without a GPU


def scripted_model(conversation: list[dict[str, Any]]) -> str:
    """A stand-in VLM: words the plain phrasing it is given, and says yes to every judgement."""
    text = ChatServer.key_of({"messages": conversation})
    if text.startswith("Image 1 is"):
        phrase = text.split('A plain phrasing of them: "', 1)[1].split('"', 1)[0]
        block = text.split("no other property):\n", 1)[1].split("\nA plain phrasing", 1)[0]
        names = [line[2:].split(":", 1)[0] for line in block.splitlines()]
        query_type = text.split("Query type: ", 1)[1].split(".", 1)[0]
        query = f"Locate {phrase}." if query_type != "multi_object" else f"Outline {phrase} in this image."
        return json.dumps({"queries": [{"query": query, "query_type": query_type, "attributes": names}]})
    return json.dumps({"verdict": "yes", "confidence": 0.8, "reason": "The outlined object matches the query."})


def test_vllm_check_script_runs_on_real_data_with_a_stand_in_engine(
    shared_data: Path, monkeypatch, capsys, tmp_path: Path
) -> None:
    import importlib.util

    fake_vllm(monkeypatch)
    monkeypatch.setattr(
        FakeLLM,
        "__init__",
        lambda self, model, **kwargs: (
            setattr(self, "calls", []),
            setattr(self, "answer", lambda c: FakeCompletion(scripted_model(c))),
        )[0],
    )
    path = Path(__file__).resolve().parents[1] / "scripts" / "vllm_check.py"
    module_spec = importlib.util.spec_from_file_location("vllm_check", path)
    assert module_spec and module_spec.loader
    check = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(check)
    out = tmp_path / "check.jsonl"
    status = check.main(
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--data", str(shared_data), "--references", "2", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "backend vllm" in printed and "image family qwen2.5-vl" in printed and printed.rstrip().endswith("OK")
    for name in ("ct_abdomen", "cxr_lung", "kvasir", "ph2"):
        assert f"== {name}" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["kind"] for r in records} == {"draft", "verdict"}
    assert all(r["passed"] for r in records if r["kind"] == "verdict")
