"""A stand-in for ``vllm`` (``LLM.chat`` and the sampling parameters, current or pre-0.12
names): the vllm backend's and scripts/vllm_check.py's tests run without a GPU."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatserver import ChatServer
from model_requests import GOOD


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
