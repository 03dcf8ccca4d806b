"""The backend protocol: requests, responses and the helpers every backend shares.

See :mod:`medground.backends` for the backends and their reason codes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from medground.backends.images import png_data_url
from medground.backends.schema import AnswerError, parse_answer

__all__ = [
    "COMMON_KEYS",
    "Backend",
    "BackendUnavailable",
    "EncodedImage",
    "Request",
    "Response",
    "SamplingSettings",
    "answer_from_text",
    "config_integer",
    "config_model",
    "config_number",
    "image_url",
    "resolve_messages",
]

TEXT_LIMIT = 4000  # characters of a raw answer kept on a response
#: Keys every model backend reads from its run-config section (``seed`` is the sampling seed).
COMMON_KEYS = frozenset({"backend", "engine", "model", "temperature", "top_p", "max_tokens", "seed"})


class BackendUnavailable(ValueError):
    """A model backend that cannot be used as configured (its key variable unset, its
    server down or not serving the model; vLLM missing, the model not there to load): found
    once, before a run or a ``medground predict`` starts."""


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """An image file's bytes, sent as they are (no decoding, no re-encoding)."""

    data: bytes
    mime: str = "image/png"

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def image_url(image: NDArray[np.uint8] | EncodedImage) -> str:
    """The data URL a chat request carries for an image (arrays as lossless PNG)."""
    if isinstance(image, EncodedImage):
        return image.data_url()
    return png_data_url(image)


@dataclass(frozen=True)
class Request:
    """One chat request and the answer it expects.

    Attributes:
        id: the caller's key for the request (a sample or reference id); responses carry it.
        messages: chat messages ``{"role", "content"}``; a content is a string or a list of
            parts ``{"type": "text", "text": …}`` and ``{"type": "image", "index": i}``, the
            latter showing ``images[i]``.
        images: RGB uint8 arrays, already prepared for the model family
            (:func:`medground.backends.images.prepare_image`), or :class:`EncodedImage` s
            sent as they are (a stored image file).
        schema: the JSON schema of the answer (sent for structured output, and checked);
            empty for a plain-text answer (``Response.text``, e.g. a grounding answer).
        schema_name: a short name for the schema (``response_format.json_schema.name``).
        seed: a per-request sampling seed, for reproducible sampling where the engine has one.
    """

    id: str
    messages: list[dict[str, Any]]
    images: tuple[NDArray[np.uint8] | EncodedImage, ...] = ()
    schema: dict[str, Any] = field(default_factory=dict)
    schema_name: str = "answer"
    seed: int | None = None


@dataclass(frozen=True)
class Response:
    """The outcome of one request: ``data`` when it succeeded, else ``reason`` and ``detail``.

    Attributes:
        id: the request's id.
        data: the parsed answer, checked against the request's schema.
        reason: the failure's reason code (module docstring), None on success.
        detail: what went wrong, for a person (never holds credentials).
        text: the raw answer (cut to a few thousand characters), when there was one.
        attempts: HTTP attempts made (1 for in-process engines).
        seconds: wall time spent on the request, retries included.
        prompt_tokens: tokens of the prompt, when the engine reported them (else 0).
        completion_tokens: tokens of the answer, when the engine reported them (else 0).
    """

    id: str
    data: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    text: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


@runtime_checkable
class Backend(Protocol):
    """What synthesis and judging need from a model backend."""

    name: str
    model: str

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """One response per request, in the order given; failures are responses too."""
        ...

    def close(self) -> None:
        """Releases what the backend holds (threads, GPU memory)."""
        ...


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling settings shared by the backends (run-config keys of the same names)."""

    temperature: float = 0.2
    top_p: float = 1.0
    max_tokens: int = 1024

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SamplingSettings:
        temperature = config_number(config, "temperature", cls.temperature, 0.0, 2.0)
        top_p = config_number(config, "top_p", cls.top_p, 0.0, 1.0)
        max_tokens = config_integer(config, "max_tokens", cls.max_tokens, 1)
        if top_p == 0.0:
            raise ValueError("top_p must be in (0, 1], got 0")
        return cls(temperature, top_p, cls.max_tokens if max_tokens is None else max_tokens)


def config_number(config: Mapping[str, Any], key: str, default: float, low: float, high: float | None = None) -> float:
    """A number setting of a run-config section, checked against its bounds (ValueError naming the key)."""
    value = config.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{key} must be a number {bound}, got {value!r}")
    return float(value)


@overload
def config_integer(config: Mapping[str, Any], key: str, default: int, low: int) -> int: ...
@overload
def config_integer(config: Mapping[str, Any], key: str, default: None, low: int) -> int | None: ...
def config_integer(config: Mapping[str, Any], key: str, default: int | None, low: int) -> int | None:
    """An integer setting of a run-config section (None when absent and no default)."""
    value = config.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    return value


def config_model(config: Mapping[str, Any]) -> Any:
    """The ``model`` of a section as written (each backend checks it and says what it needs)."""
    return config.get("model")


def resolve_messages(request: Request, image_urls: Sequence[str]) -> list[dict[str, Any]]:
    """The request's messages in OpenAI chat form, each image part an ``image_url`` part.

    Args:
        request: the request.
        image_urls: one URL (usually a PNG data URL) per ``request.images`` entry.

    Raises:
        ValueError: when a part names an image the request does not have, or has an unknown type.
    """
    out = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part["type"] == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif part["type"] == "image":
                index = part["index"]
                if not 0 <= index < len(image_urls):
                    raise ValueError(f"request {request.id}: image part {index} but {len(image_urls)} image(s)")
                parts.append({"type": "image_url", "image_url": {"url": image_urls[index]}})
            else:
                raise ValueError(f"request {request.id}: unknown content part type {part['type']!r}")
        out.append({"role": message["role"], "content": parts})
    return out


def answer_from_text(
    request: Request, text: str | None, *, finish_reason: str | None = None, attempts: int = 1, seconds: float = 0.0
) -> Response:
    """The response for a model's answer text: parsed and checked (or, for a request
    without a schema, the text itself), or a failure saying why."""
    if not request.schema:
        kept = text  # the answer itself is the product (a grounding answer): kept whole
        if text is None or not text.strip():
            return Response(request.id, None, "empty_answer", "the model answered no text", kept, attempts, seconds)
        return Response(request.id, None, None, None, kept, attempts, seconds)
    kept = None if text is None else text[:TEXT_LIMIT]
    try:
        data = parse_answer(text, request.schema)
    except AnswerError as exc:
        reason = exc.reason
        if finish_reason == "length" and reason == "malformed_json":
            reason = "truncated"
        return Response(request.id, None, reason, exc.detail, kept, attempts, seconds)
    return Response(request.id, data, None, None, kept, attempts, seconds)
