"""The ``vllm`` backend: an in-process ``vllm.LLM`` on this machine's GPUs.

A batch of requests becomes one ``llm.chat(conversations, sampling_params=[…])`` call:
vLLM schedules them together (continuous batching), images travel as PNG data URLs in
OpenAI-style ``image_url`` parts, and each request's answer is constrained to its JSON
schema: ``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))`` on
current vLLM, ``SamplingParams(guided_decoding=GuidedDecodingParams(json=schema))`` on the
releases before it (the older names were removed in vLLM 0.12). Answers are parsed and
checked against the schema either way.

vLLM is an optional extra, imported only when this backend is built:
``pip install 'medground[vllm]'`` on a machine with a CUDA GPU.

:func:`check` finds, before a run loads the engine, what can be found without loading it:
vLLM importable, the settings valid, and the model there to load (a local folder with its
``config.json`` and weights, or a Hugging Face repo id in the local cache or downloadable).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from medground.backends.base import (
    BackendUnavailable,
    Request,
    Response,
    SamplingSettings,
    answer_from_text,
    config_integer,
    config_model,
    config_number,
    image_url,
    resolve_messages,
)

__all__ = [
    "CONFIG_KEYS",
    "INSTALL_HINT",
    "WEIGHT_FILES",
    "VllmBackend",
    "build_sampling_params",
    "check",
    "hf_hub_cache",
    "import_vllm",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'medground[vllm]'"
#: The run-config keys of this backend (beyond ``backends.COMMON_KEYS``).
CONFIG_KEYS = frozenset(
    {
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "limit_mm_per_prompt",
        "dtype",
        "trust_remote_code",
        "enforce_eager",
        "max_num_seqs",
        "chat_template_kwargs",
        "mm_processor_kwargs",
    }
)


def import_vllm() -> ModuleType:
    """The ``vllm`` module, or an ImportError that says what to install.

    Raises:
        ImportError: when vLLM is not installed.
    """
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise ImportError(
            f"backend 'vllm' needs vLLM, which is not installed: {INSTALL_HINT} "
            "(on a machine with a CUDA GPU), or use backend = 'openai' with a running server"
        ) from exc


#: The weight files vLLM's default loader reads from a model folder (safetensors, else PyTorch).
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")
#: A Hugging Face repo id: ``NAME`` or ``ORG/NAME`` (as ``huggingface_hub`` validates it).
_REPO_ID = re.compile(r"(?:[\w.-]+/)?[\w.-]{1,96}")
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, found as ``huggingface_hub`` finds it:
    ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else ``HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        return Path(os.path.expandvars(hub)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _hf_offline() -> str | None:
    """The variable that forbids downloads from the Hub, if one is set."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in _TRUE:
            return name
    return None


def _weights(folder: Path) -> list[Path]:
    return [path for pattern in WEIGHT_FILES for path in folder.glob(pattern)]


_NOT_LOADED = object()  # stands for the engine where only the settings are checked


def check(config: Mapping[str, Any]) -> None:
    """Checks, without loading the model, that the ``vllm`` backend a run-config section asks
    for can be built where this runs: vLLM importable, ``model`` there to load, the settings
    valid.

    ``model`` is a local folder when it exists (it must hold ``config.json`` and weights,
    ``*.safetensors``, ``*.bin`` or ``*.pt``; a ``.gguf`` file is taken as it is), and
    otherwise a Hugging Face repo id (``ORG/NAME``): found in the hub cache
    (:func:`hf_hub_cache`, a snapshot with ``config.json``), or, unless ``HF_HUB_OFFLINE``
    forbids it, downloaded by vLLM when it loads (said in a warning, not an error). With
    ``VLLM_USE_MODELSCOPE`` set the model comes from ModelScope, whose cache is not looked at.

    Raises:
        BackendUnavailable: naming the setting and what is wrong with it.
    """
    model = config_model(config)
    if not isinstance(model, str) or not model.strip():
        raise BackendUnavailable(
            f"the vllm backend needs model = a local model folder or a Hugging Face repo id, got {model!r}"
        )
    try:
        import_vllm()
    except ImportError as error:
        raise BackendUnavailable(str(error)) from None
    except Exception as error:  # installed, but broken (a CUDA or torch mismatch, say)
        raise BackendUnavailable(
            f"backend 'vllm': vLLM is installed but cannot be imported ({type(error).__name__}: {error}); "
            f"reinstall it ({INSTALL_HINT}) to match this machine's CUDA and torch"
        ) from None
    _check_model(model)
    try:
        VllmBackend.from_config(config, llm=_NOT_LOADED)  # the settings, read as a run reads them
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise BackendUnavailable(f"the vllm backend cannot be used: {error}") from None


def _check_model(model: str) -> None:
    """``model`` is a folder vLLM can load, or a repo id it finds in the cache or may download."""
    setting = f"model = {model!r}"
    path = Path(model).expanduser()
    if path.is_dir():
        _check_folder(path, setting)
        return
    if path.exists():
        if path.suffix.lower() == ".gguf":
            return  # a single GGUF file, which vLLM loads as it is
        raise BackendUnavailable(
            f"{setting} is a file; it must be a model folder (config.json and the weights) or a Hugging Face repo id"
        )
    relative = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    if model.startswith(("/", "./", "../", "~")):
        raise BackendUnavailable(f"{setting}: no such folder{relative}")
    if not _REPO_ID.fullmatch(model) or "--" in model or ".." in model:
        raise BackendUnavailable(f"{setting} is neither a folder{relative} nor a Hugging Face repo id (ORG/NAME)")
    if os.environ.get("VLLM_USE_MODELSCOPE", "").strip().upper() in _TRUE:
        return  # a ModelScope id: its cache is ModelScope's own
    _check_cached(model, f"{setting} is not a folder{relative} and")


def _check_folder(path: Path, setting: str) -> None:
    if not (path / "config.json").is_file():
        raise BackendUnavailable(
            f"{setting}: the folder has no config.json, so it is not a Hugging Face model folder; "
            "point model at the folder that holds config.json and the weights"
        )
    if not _weights(path):
        raise BackendUnavailable(
            f"{setting}: the folder has config.json but no weights ({', '.join(WEIGHT_FILES)}); "
            "the download may be unfinished"
        )


def _check_cached(model: str, what: str) -> None:
    """A repo id: in the hub cache, or allowed to be downloaded."""
    cache = hf_hub_cache()
    snapshots = cache / f"models--{model.replace('/', '--')}" / "snapshots"
    configured = [s for s in sorted(snapshots.glob("*")) if (s / "config.json").is_file()]
    offline = _hf_offline()
    if offline is None:
        if not configured:
            log.warning(
                "%s not in the Hugging Face cache (%s): vLLM will download it from the Hub when it loads", what, cache
            )
        return
    if not configured:
        raise BackendUnavailable(
            f"{what} not in the Hugging Face cache ({cache}), and {offline} is set, so it cannot be downloaded: "
            f"download it first (hf download {model}), point HF_HUB_CACHE or HF_HOME at the cache that holds it, "
            f"or unset {offline}"
        )
    if not any(_weights(s) for s in configured):
        raise BackendUnavailable(
            f"model = {model!r}: the Hugging Face cache ({cache}) holds its config.json but no weights "
            f"({', '.join(WEIGHT_FILES)}), and {offline} is set, so they cannot be downloaded: "
            f"finish the download (hf download {model}) or unset {offline}"
        )


def build_sampling_params(
    schema: dict[str, Any], sampling: SamplingSettings, seed: int | None = None, module: ModuleType | None = None
) -> tuple[Any, str]:
    """vLLM sampling parameters that constrain the answer to ``schema``.

    Args:
        schema: the answer's JSON schema (empty: a plain-text answer).
        sampling: temperature, top_p, max_tokens.
        seed: the request's sampling seed.
        module: ``vllm.sampling_params`` (imported when not given).

    Returns:
        The ``SamplingParams`` and how the schema was attached: ``structured_outputs``
        (current vLLM), ``guided_decoding`` (older vLLM) or ``none`` (neither is available;
        the answer is still checked after the fact).
    """
    params = module or importlib.import_module("vllm.sampling_params")
    common: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": seed,
    }
    if not schema:
        return params.SamplingParams(**common), "none"
    if hasattr(params, "StructuredOutputsParams"):
        return params.SamplingParams(
            **common, structured_outputs=params.StructuredOutputsParams(json=schema)
        ), "structured_outputs"
    if hasattr(params, "GuidedDecodingParams"):
        return params.SamplingParams(
            **common, guided_decoding=params.GuidedDecodingParams(json=schema)
        ), "guided_decoding"
    log.warning("this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams; answers are unconstrained")
    return params.SamplingParams(**common), "none"


class VllmBackend:
    """Batched chat requests with images on an in-process ``vllm.LLM``.

    Args:
        model: a local model folder or a model name vLLM can load.
        tensor_parallel_size: GPUs the model is split over.
        gpu_memory_utilization: share of each GPU's memory vLLM may take.
        max_model_len: the context length (None: the model's own).
        limit_mm_per_prompt: most items per modality in one prompt (default ``{"image": 2}``:
            the clean image and its marked copy).
        dtype: weights' dtype (``auto``, ``bfloat16``, …).
        trust_remote_code: allow the model folder's own code (some InternVL releases need it).
        enforce_eager: skip CUDA graphs (faster start, slower decoding).
        max_num_seqs: most sequences decoded at once.
        sampling: temperature, top_p, max_tokens.
        seed: the engine's seed, and the sampling seed of requests without their own.
        chat_template_kwargs: passed to the chat template (``{"enable_thinking": False}``).
        mm_processor_kwargs: passed to the multimodal processor.
        llm: an object with ``vllm.LLM.chat``'s signature to use instead of building one
            (tests, or an engine the caller already holds).
        sampling_module: ``vllm.sampling_params`` or a stand-in (tests).

    Raises:
        ImportError: when vLLM is not installed and no ``llm`` is given.
        FileNotFoundError: when ``model`` is a path that does not exist.
        ValueError: for bad settings.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        limit_mm_per_prompt: Mapping[str, int] | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        enforce_eager: bool = False,
        max_num_seqs: int | None = None,
        sampling: SamplingSettings | None = None,
        seed: int | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        mm_processor_kwargs: Mapping[str, Any] | None = None,
        llm: Any = None,
        sampling_module: ModuleType | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"the vllm backend needs model = a local model folder or name, got {model!r}")
        if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
            raise FileNotFoundError(f"model folder not found: {model}")
        config_integer({"tensor_parallel_size": tensor_parallel_size}, "tensor_parallel_size", 1, 1)
        config_number({"gpu_memory_utilization": gpu_memory_utilization}, "gpu_memory_utilization", 0.9, 0.01, 1.0)
        config_integer({"max_model_len": max_model_len}, "max_model_len", None, 1)
        config_integer({"max_num_seqs": max_num_seqs}, "max_num_seqs", None, 1)
        limits = dict(limit_mm_per_prompt or {"image": 2})
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in limits.values()):
            raise ValueError(f"limit_mm_per_prompt must map modalities to counts, got {limits!r}")
        self.model = model
        self.sampling = sampling or SamplingSettings()
        self.seed = seed
        self.chat_template_kwargs = dict(chat_template_kwargs) if chat_template_kwargs else None
        self.mm_processor_kwargs = dict(mm_processor_kwargs) if mm_processor_kwargs else None
        self.engine_args: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "limit_mm_per_prompt": limits,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
            "enforce_eager": enforce_eager,
        }
        for key, value in (("max_model_len", max_model_len), ("max_num_seqs", max_num_seqs), ("seed", seed)):
            if value is not None:
                self.engine_args[key] = value
        self._sampling_module = sampling_module
        if llm is None:
            vllm = import_vllm()
            started = time.monotonic()
            llm = vllm.LLM(**self.engine_args)
            log.info("vLLM loaded %s in %.1f s", model, time.monotonic() - started)
        self.llm = llm

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, llm: Any = None) -> VllmBackend:
        """The backend for a run-config section (keys as in :func:`medground.backends.make_backend`);
        ``llm`` as in the constructor."""
        return cls(
            config_model(config),
            tensor_parallel_size=config_integer(config, "tensor_parallel_size", 1, 1),
            gpu_memory_utilization=config_number(config, "gpu_memory_utilization", 0.9, 0.01, 1.0),
            max_model_len=config_integer(config, "max_model_len", None, 1),
            limit_mm_per_prompt=config.get("limit_mm_per_prompt"),
            dtype=config.get("dtype", "auto"),
            trust_remote_code=bool(config.get("trust_remote_code", False)),
            enforce_eager=bool(config.get("enforce_eager", False)),
            max_num_seqs=config_integer(config, "max_num_seqs", None, 1),
            sampling=SamplingSettings.from_config(config),
            seed=config_integer(config, "seed", None, 0),
            chat_template_kwargs=config.get("chat_template_kwargs"),
            mm_processor_kwargs=config.get("mm_processor_kwargs"),
            llm=llm,
        )

    def __repr__(self) -> str:
        return f"VllmBackend(model={self.model!r}, tensor_parallel_size={self.engine_args['tensor_parallel_size']})"

    def close(self) -> None:
        """Drops the engine so its GPU memory can be freed."""
        self.llm = None

    def conversation(self, request: Request, urls: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """The chat messages of one request as ``llm.chat`` takes them.

        ``urls`` caches data URLs by image identity, so an image shared by many requests
        (the clean image of a view) is encoded once per batch.
        """
        urls = {} if urls is None else urls
        for image in request.images:
            if id(image) not in urls:
                urls[id(image)] = image_url(image)
        return resolve_messages(request, [urls[id(image)] for image in request.images])

    def sampling_params(self, request: Request) -> tuple[Any, str]:
        """The request's ``SamplingParams`` and how its schema is attached."""
        seed = request.seed if request.seed is not None else self.seed
        return build_sampling_params(request.schema, self.sampling, seed, self._sampling_module)

    def _chat(self, conversations: list[list[dict[str, Any]]], params: list[Any]) -> list[Any]:
        kwargs: dict[str, Any] = {"sampling_params": params, "use_tqdm": False}
        if self.chat_template_kwargs:
            kwargs["chat_template_kwargs"] = self.chat_template_kwargs
        if self.mm_processor_kwargs:
            kwargs["mm_processor_kwargs"] = self.mm_processor_kwargs
        return list(self.llm.chat(conversations, **kwargs))

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """One response per request, in order, from one batched ``llm.chat`` call.

        When the batch fails as a whole (one prompt too long for ``max_model_len``, say),
        each request is run alone so that only the failing ones fail. ``seconds`` is the
        wall time of the call that answered the request.
        """
        if self.llm is None:
            raise RuntimeError("this VllmBackend was closed")
        responses: dict[int, Response] = {}
        ready: list[tuple[int, list[dict[str, Any]], Any]] = []
        urls: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                conversation = self.conversation(request, urls)
                params, _ = self.sampling_params(request)
            except Exception as exc:  # a malformed request fails alone
                responses[index] = Response(request.id, None, "backend_error", f"{type(exc).__name__}: {exc}")
                continue
            ready.append((index, conversation, params))
        if ready:
            started = time.monotonic()
            try:
                outputs = self._chat([c for _, c, _ in ready], [p for _, _, p in ready])
                if len(outputs) != len(ready):
                    raise RuntimeError(f"llm.chat returned {len(outputs)} outputs for {len(ready)} conversations")
                seconds = time.monotonic() - started
                for (index, _, _), output in zip(ready, outputs, strict=True):
                    responses[index] = self._response(requests[index], output, seconds)
            except Exception as exc:
                if len(ready) == 1:
                    index = ready[0][0]
                    responses[index] = Response(
                        requests[index].id,
                        None,
                        "backend_error",
                        f"{type(exc).__name__}: {exc}",
                        None,
                        1,
                        time.monotonic() - started,
                    )
                else:
                    log.warning(
                        "vLLM batch of %d failed (%s: %s); running its requests one by one",
                        len(ready),
                        type(exc).__name__,
                        exc,
                    )
                    for index, conversation, params in ready:
                        responses[index] = self._single(requests[index], conversation, params)
        return [responses[i] for i in range(len(requests))]

    def _single(self, request: Request, conversation: list[dict[str, Any]], params: Any) -> Response:
        started = time.monotonic()
        try:
            (output,) = self._chat([conversation], [params])
        except Exception as exc:
            return Response(
                request.id, None, "backend_error", f"{type(exc).__name__}: {exc}", None, 1, time.monotonic() - started
            )
        return self._response(request, output, time.monotonic() - started)

    @staticmethod
    def _response(request: Request, output: Any, seconds: float) -> Response:
        try:
            completion = output.outputs[0]
            text, finish_reason = completion.text, getattr(completion, "finish_reason", None)
        except (AttributeError, IndexError, TypeError) as exc:
            return Response(
                request.id, None, "malformed_response", f"no completion in the output: {exc}", None, 1, seconds
            )
        response = answer_from_text(request, text, finish_reason=finish_reason, seconds=seconds)
        prompt = getattr(output, "prompt_token_ids", None) or ()
        answer = getattr(completion, "token_ids", None) or ()
        return replace(response, prompt_tokens=len(prompt), completion_tokens=len(answer))
