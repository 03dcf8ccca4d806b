"""The vllm backend's requests and parsing with a stand-in engine (no GPU), what it says
when vLLM is missing, and the check before a run (vLLM importable, the model folder or the
Hugging Face cache) that loads nothing."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chatserver import ChatServer
from medground.backends import BackendUnavailable, check_backend, make_backend
from medground.backends.vllm import VllmBackend, hf_hub_cache
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


def _model_folder(folder: Path, *files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_text("{}" if name.endswith(".json") else "weights")
    return folder


@pytest.fixture
def hf_env(monkeypatch, tmp_path: Path) -> Path:
    """A Hugging Face cache of this test's own (HF_HOME), downloads allowed until a test
    sets HF_HUB_OFFLINE."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("VLLM_USE_MODELSCOPE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path / "hf-home" / "hub"


def test_check_backend_vllm_says_what_to_install(monkeypatch, tmp_path: Path, hf_env: Path) -> None:
    """Before any case: vLLM missing is found without loading anything, and the message says
    what to install (with the section's name when the run gives one)."""
    monkeypatch.setitem(sys.modules, "vllm", None)
    folder = _model_folder(tmp_path / "qwen", "config.json", "model.safetensors")
    with pytest.raises(
        BackendUnavailable, match=r"needs vLLM, which is not installed: pip install 'medground\[vllm\]'"
    ):
        check_backend({"backend": "vllm", "model": str(folder)})
    with pytest.raises(BackendUnavailable, match=r"^\[verification\.visual\] backend 'vllm' needs vLLM"):
        check_backend({"backend": "vlm", "model": str(folder)}, "verification.visual")  # no base_url: vllm
    with pytest.raises(BackendUnavailable, match="needs model = a local model folder or a Hugging Face repo id"):
        check_backend({"backend": "vllm"})


def test_check_backend_vllm_finds_the_model_folder(monkeypatch, tmp_path: Path, hf_env: Path) -> None:
    fake_vllm(monkeypatch)
    missing = tmp_path / "missing"
    with pytest.raises(BackendUnavailable, match=f"model = '{missing}': no such folder$"):
        check_backend({"backend": "vllm", "model": str(missing)})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackendUnavailable, match=r"model = './models/qwen': no such folder \(relative to "):
        check_backend({"backend": "vllm", "model": "./models/qwen"})
    with pytest.raises(BackendUnavailable, match="is neither a folder .* nor a Hugging Face repo id"):
        check_backend({"backend": "vllm", "model": "models/qwen/v2"})

    empty = _model_folder(tmp_path / "empty", "model.safetensors")
    with pytest.raises(BackendUnavailable, match="the folder has no config.json"):
        check_backend({"backend": "vllm", "model": str(empty)})
    unfinished = _model_folder(tmp_path / "unfinished", "config.json", "tokenizer.json")
    with pytest.raises(BackendUnavailable, match=r"config.json but no weights \(\*.safetensors, \*.bin, \*.pt\)"):
        check_backend({"backend": "vllm", "model": str(unfinished)})
    with pytest.raises(BackendUnavailable, match="is a file; it must be a model folder"):
        check_backend({"backend": "vllm", "model": str(unfinished / "config.json")})

    for weights in ("model-00001-of-00002.safetensors", "pytorch_model.bin"):
        folder = _model_folder(tmp_path / weights, "config.json", weights)
        check_backend({"backend": "vllm", "model": str(folder)})  # nothing loaded: fine
        check_backend({"backend": "vlm", "engine": "vllm", "model": str(folder)})
    gguf = tmp_path / "model.Q4_K_M.gguf"  # one file, which vLLM loads as it is
    gguf.write_text("gguf")
    check_backend({"backend": "vllm", "model": str(gguf)})
    with pytest.raises(BackendUnavailable, match=r"^\[synthesis\] the vllm backend cannot be used: .*gpu_memory"):
        check_backend({"backend": "vllm", "model": str(folder), "gpu_memory_utilization": 1.5}, "synthesis")


def test_check_backend_vllm_looks_in_the_hugging_face_cache(monkeypatch, tmp_path: Path, hf_env: Path, caplog) -> None:
    fake_vllm(monkeypatch)
    monkeypatch.chdir(tmp_path)
    snapshot = hf_env / "models--Qwen--Qwen2.5-VL-7B-Instruct" / "snapshots" / "0123abcd"
    _model_folder(snapshot, "config.json", "model-00001-of-00005.safetensors")
    _model_folder(hf_env / "models--Org--Unfinished" / "snapshots" / "4567", "config.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_backend({"backend": "vllm", "model": "Qwen/Qwen2.5-VL-7B-Instruct"})  # in the cache
    with pytest.raises(BackendUnavailable) as absent:
        check_backend({"backend": "vllm", "model": "Org/Absent"})
    message = str(absent.value)
    assert message.startswith("model = 'Org/Absent' is not a folder (relative to ")
    assert f"not in the Hugging Face cache ({hf_env}), and HF_HUB_OFFLINE is set" in message
    assert "hf download Org/Absent" in message
    with pytest.raises(BackendUnavailable, match="holds its config.json but no weights"):
        check_backend({"backend": "vllm", "model": "Org/Unfinished"})

    # HF_HUB_CACHE wins over HF_HOME; TRANSFORMERS_OFFLINE forbids downloads too.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    with pytest.raises(BackendUnavailable, match=r"elsewhere\), and TRANSFORMERS_OFFLINE is set"):
        check_backend({"backend": "vllm", "model": "Qwen/Qwen2.5-VL-7B-Instruct"})

    # Online, a model not in the cache is downloaded when vLLM loads it: said, not refused.
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with caplog.at_level(logging.WARNING, logger="medground.backends.vllm"):
        check_backend({"backend": "vllm", "model": "Org/Absent"})
        check_backend({"backend": "vllm", "model": "Org/Unfinished"})
    assert "vLLM will download it from the Hub when it loads" in caplog.text
    assert "Org/Absent" in caplog.text and str(tmp_path / "elsewhere") in caplog.text


def test_the_hugging_face_cache_is_found_as_huggingface_hub_finds_it(monkeypatch, tmp_path: Path) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hf_hub_cache() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_hub_cache() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", "~/hf")
    assert hf_hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert hf_hub_cache() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hf_hub_cache() == tmp_path / "hub"


def test_vllm_responses_carry_the_engines_token_counts() -> None:
    """A vLLM RequestOutput's prompt and completion token ids are counted on the response
    (tokens/s in scripts/gpu_batching_check.py); an output without them counts 0."""
    from types import SimpleNamespace

    from medground.backends.vllm import VllmBackend
    from model_requests import GOOD, verdict_request

    request = verdict_request("count me")
    counted = SimpleNamespace(
        prompt_token_ids=list(range(700)),
        outputs=[SimpleNamespace(text=GOOD, finish_reason="stop", token_ids=[1] * 31)],
    )
    bare = SimpleNamespace(outputs=[SimpleNamespace(text=GOOD, finish_reason="stop")])
    response = VllmBackend._response(request, counted, 0.1)
    assert response.ok and (response.prompt_tokens, response.completion_tokens) == (700, 31)
    assert VllmBackend._response(request, bare, 0.1).prompt_tokens == 0
