"""The vllm backend's requests and parsing with a stand-in engine (no GPU), and what it says
when vLLM is missing."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chatserver import ChatServer
from medground.backends import make_backend
from medground.backends.vllm import VllmBackend
from model_requests import GOOD, VERDICT, verdict_request
from vllm_stand_in import FakeCompletion, FakeLLM, fake_vllm


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
