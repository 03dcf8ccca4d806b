"""Model backends: one small protocol for query synthesis and visual judging alike.

A backend takes a batch of :class:`Request` (chat messages, the images they show, the JSON
schema of the answer) and returns one :class:`Response` per request, in order: the parsed,
schema-checked answer, or a failure with a stable reason code and a detail. A backend never
raises for one bad request; the callers turn failures into recorded rejections.

Backends, chosen by the run config (``[synthesis]`` or ``[verification.visual]``, see
:func:`make_backend`):

* ``openai``: chat completions against any OpenAI-compatible base URL (``vllm serve``, a
  hosted API), standard library only (:mod:`medground.backends.openai`).
* ``vllm``: an in-process ``vllm.LLM`` on the local GPUs (:mod:`medground.backends.vllm`;
  ``pip install medground[vllm]``).
* ``simulated``: a stand-in engine with a cost model and no weights, answering as a
  cooperative model would (:mod:`medground.backends.simulated`): for tests, benchmarks and
  capacity planning of the batching path.
* ``template``: no model; synthesis uses :class:`medground.synth.TemplateSynthesizer`.

Failure reason codes: ``timeout`` (no complete answer within ``timeout_s``, the whole
attempt), ``connection``, ``http_<status>`` (after retries where retrying makes sense),
``redirect`` (never followed), ``response_too_large`` (past ``max_response_bytes``),
``malformed_response`` (not a chat completion), ``refused`` (the model declined),
``truncated`` (stopped at ``max_tokens`` before the JSON closed), ``malformed_json``
(including ``NaN``/``Infinity``, which JSON does not have), ``schema_violation``,
``empty_answer`` (a plain-text request answered with nothing) and ``backend_error`` (the
engine failed on it).

:func:`check_backend` checks a configured backend once before a run or a ``medground
predict`` (``openai``: its key variable set, its server up and serving the model; ``vllm``:
vLLM importable and the model there to load, without loading it), raising
:class:`BackendUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medground.backends import openai, simulated, vllm
from medground.backends.base import (
    COMMON_KEYS,
    Backend,
    BackendUnavailable,
    EncodedImage,
    Request,
    Response,
    SamplingSettings,
    answer_from_text,
    image_url,
    resolve_messages,
)
from medground.backends.openai import OpenAIBackend
from medground.backends.simulated import SimulatedEngine
from medground.backends.vllm import VllmBackend

__all__ = [
    "BACKENDS",
    "COMMON_KEYS",
    "Backend",
    "BackendUnavailable",
    "EncodedImage",
    "OpenAIBackend",
    "Request",
    "Response",
    "SamplingSettings",
    "SimulatedEngine",
    "VllmBackend",
    "answer_from_text",
    "check_backend",
    "config_keys",
    "image_url",
    "make_backend",
    "resolve_messages",
]

BACKENDS = ("template", "vllm", "openai", "simulated")
_KEYS = {"openai": openai.CONFIG_KEYS, "vllm": vllm.CONFIG_KEYS, "simulated": simulated.CONFIG_KEYS}
#: Keys of the Ray batching queue (``pipeline/batching.py``) for the engines that batch.
QUEUE_KEYS = frozenset({"max_batch", "batch_wait_s", "max_batch_wait_s", "num_replicas"})


def make_backend(config: Mapping[str, Any]) -> Backend:
    """The model backend a run-config section asks for.

    Reads ``backend`` (``openai`` | ``vllm``; ``vlm``, the judge's name in
    ``[verification.visual]``, means ``openai`` when a ``base_url`` is given and ``vllm``
    otherwise, unless ``engine`` says which), ``model`` and the backend's own keys:

    * both: ``temperature`` (0.2), ``top_p`` (1.0), ``max_tokens`` (1024), ``image_family``
      (from the model name), ``seed``.
    * ``openai``: ``base_url`` (``http://127.0.0.1:8000/v1``), ``api_key_env`` (the name of
      the environment variable holding the key; none sent without it), ``timeout_s`` (60,
      the whole attempt's wall time), ``max_retries`` (4), ``concurrency`` (64 requests in
      flight; on Ray, across the whole run), ``backoff_s`` (1.0), ``max_backoff_s`` (30), ``max_retry_after_s`` (120),
      ``response_format`` (``json_schema`` | ``json_object`` | ``none``),
      ``max_response_bytes`` (32 MiB).
    * ``vllm``: ``tensor_parallel_size`` (1), ``gpu_memory_utilization`` (0.9),
      ``max_model_len``, ``limit_mm_per_prompt`` ({image = 2}), ``dtype`` (auto),
      ``trust_remote_code`` (false), ``enforce_eager`` (false), ``max_num_seqs``.
    * ``simulated``: ``cost_t0_s`` (0.5), ``cost_per_prompt_s`` (0.02), ``max_batch`` (256).
    * on Ray, the batching queue (:mod:`medground.pipeline.batching`): ``max_batch`` (256),
      ``batch_wait_s`` (1.0), ``max_batch_wait_s`` (30) and ``num_replicas`` (1) for
      ``vllm`` and ``simulated``.

    Other keys of the section (the synthesizer's or judge's own) are left to their readers.

    Raises:
        ValueError: for ``template`` (it needs no backend), an unknown backend, a missing
            model or a bad setting (the message names it).
        ImportError: for ``vllm`` when vLLM is not installed.
    """
    kind = _kind(config)
    if kind == "template":
        raise ValueError(
            "backend 'template' runs without a model (medground.synth.TemplateSynthesizer); "
            "choose 'vllm' or 'openai' for a model backend"
        )
    if kind == "openai":
        return OpenAIBackend.from_config(config)
    if kind == "vllm":
        return VllmBackend.from_config(config)
    if kind == "simulated":
        return SimulatedEngine.from_config(config)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {kind!r}")


def _kind(config: Mapping[str, Any]) -> Any:
    kind = config.get("backend", "template")
    if kind == "vlm":
        kind = config.get("engine") or ("openai" if config.get("base_url") else "vllm")
    return kind


def check_backend(config: Mapping[str, Any], section: str | None = None) -> None:
    """Checks once, before any case, that the model backend a run-config section asks for
    can be used, so that a misconfigured run stops at once instead of rejecting every draft.

    ``openai``: the settings are valid, the key variable (``api_key_env``) is set, and the
    server answers ``GET {base_url}/models`` listing ``model``. ``vllm``: what can be
    checked without loading the model (:func:`medground.backends.vllm.check`): vLLM
    importable, ``model`` a local folder with ``config.json`` and weights or a Hugging Face
    repo id in the local cache (or downloadable: ``HF_HUB_OFFLINE`` unset), the settings
    valid. ``template``: nothing.

    Args:
        config: the section (``[synthesis]``, ``[verification.visual]``, or what
            ``medground predict`` builds from its options).
        section: the section's name, put before the message (``synthesis``).

    Raises:
        BackendUnavailable: saying what is wrong (never holding the key).
    """
    try:
        kind = _kind(config)
        if kind == "openai":
            try:
                backend = OpenAIBackend.from_config(config)
            except ValueError as error:
                raise BackendUnavailable(f"the openai backend cannot be used: {error}") from None
            backend.check()
        elif kind == "vllm":
            vllm.check(config)
    except BackendUnavailable as error:
        if section is None:
            raise
        raise BackendUnavailable(f"[{section}] {error}") from None


def config_keys(kind: str) -> frozenset[str]:
    """The run-config keys a model backend reads (``openai`` or ``vllm``)."""
    if kind not in _KEYS:
        raise ValueError(f"backend must be openai, vllm or simulated, got {kind!r}")
    queue = QUEUE_KEYS if kind != "openai" else frozenset({"batch_wait_s", "max_batch_wait_s"})
    return COMMON_KEYS | _KEYS[kind] | queue
