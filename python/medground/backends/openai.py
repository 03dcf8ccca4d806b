"""The ``openai`` backend: chat completions against any OpenAI-compatible server.

Works with ``vllm serve``, SGLang, LM Studio, hosted APIs: anything that speaks
``POST {base_url}/chat/completions``. Standard library only (``urllib`` and a thread pool):
images travel as base64 PNG data URLs, the answer's JSON schema as
``response_format = {"type": "json_schema", …}``, at most ``concurrency`` requests are in
flight, each attempt has a socket timeout, and 408/409/429/5xx answers, timeouts and broken
connections are retried with exponential backoff and jitter, waiting as long as a
``Retry-After`` header asks (up to ``max_retry_after_s``).

The API key is read once from the environment variable named by ``api_key_env`` and only
ever sent in the ``Authorization`` header: it is not logged, not kept in any record, not
shown by ``repr`` and scrubbed from any server text that is passed on.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from medground.backends.base import (
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
from medground.records import dumps

__all__ = ["CONFIG_KEYS", "DEFAULT_BASE_URL", "RETRY_STATUSES", "OpenAIBackend"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
RESPONSE_FORMATS = ("json_schema", "json_object", "none")
#: The run-config keys of this backend (beyond ``backends.COMMON_KEYS``).
CONFIG_KEYS = frozenset(
    {
        "base_url",
        "api_key_env",
        "timeout_s",
        "max_retries",
        "concurrency",
        "backoff_s",
        "max_backoff_s",
        "max_retry_after_s",
        "response_format",
    }
)


class _Attempt:
    """What one HTTP attempt gave: a response, or a failure and whether to try again."""

    __slots__ = ("detail", "reason", "response", "retry", "retry_after")

    def __init__(
        self,
        response: Response | None = None,
        reason: str | None = None,
        detail: str | None = None,
        retry: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.response, self.reason, self.detail, self.retry, self.retry_after = (
            response,
            reason,
            detail,
            retry,
            retry_after,
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpenAIBackend:
    """Chat completions over HTTP(S) with bounded concurrency, timeouts and retries.

    Args:
        model: the model name the server knows (``Qwen/Qwen2.5-VL-7B-Instruct``).
        base_url: the API root, up to and including ``/v1``.
        api_key_env: the environment variable holding the API key; None sends no key
            (a local ``vllm serve`` needs none).
        sampling: temperature, top_p and max_tokens.
        timeout_s: socket timeout of one attempt, in seconds.
        max_retries: attempts after the first, for retryable failures.
        concurrency: requests in flight at once.
        backoff_s: the first retry's base delay; doubled each retry, with jitter.
        max_backoff_s: the largest backoff delay.
        max_retry_after_s: the longest ``Retry-After`` wait honoured.
        response_format: ``json_schema`` (structured output), ``json_object`` or ``none``
            (for servers without structured output; answers are checked either way).
        seed: the base sampling seed, sent when a request has none of its own.
        sleep: the function used to wait between attempts (tests replace it).
        rng: the random source of the jitter.

    Raises:
        ValueError: for bad settings, or when ``api_key_env`` names an unset variable.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str | None = None,
        sampling: SamplingSettings | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        concurrency: int = 8,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        response_format: str = "json_schema",
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"the openai backend needs model = the server's model name, got {model!r}")
        if not isinstance(base_url, str) or urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url!r}")
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}")
        for key, value, low in (
            ("timeout_s", timeout_s, 0.0),
            ("backoff_s", backoff_s, 0.0),
            ("max_backoff_s", max_backoff_s, 0.0),
            ("max_retry_after_s", max_retry_after_s, 0.0),
        ):
            config_number({key: value}, key, value, low)
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        config_integer({"max_retries": max_retries}, "max_retries", 0, 0)
        config_integer({"concurrency": concurrency}, "concurrency", 1, 1)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._api_key = self._read_key(api_key_env)
        self.sampling = sampling or SamplingSettings()
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.response_format = response_format
        self.seed = seed
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Proxies from the environment apply to remote servers, never to this machine's own.
        proxies: dict[str, str] | None = {} if _is_loopback(self.base_url) else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    @staticmethod
    def _read_key(variable: str | None) -> str | None:
        if variable is None:
            return None
        if not isinstance(variable, str) or not variable:
            raise ValueError(f"api_key_env must name an environment variable, got {variable!r}")
        key = os.environ.get(variable)
        if not key:
            raise ValueError(f"api_key_env = {variable!r}, but that environment variable is not set or empty")
        return key

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OpenAIBackend:
        """The backend for a run-config section (keys as in :func:`medground.backends.make_backend`)."""
        return cls(
            config_model(config),
            base_url=config.get("base_url", DEFAULT_BASE_URL),
            api_key_env=config.get("api_key_env"),
            sampling=SamplingSettings.from_config(config),
            timeout_s=config_number(config, "timeout_s", 60.0, 0.0),
            max_retries=config_integer(config, "max_retries", 4, 0),
            concurrency=config_integer(config, "concurrency", 8, 1),
            backoff_s=config_number(config, "backoff_s", 1.0, 0.0),
            max_backoff_s=config_number(config, "max_backoff_s", 30.0, 0.0),
            max_retry_after_s=config_number(config, "max_retry_after_s", 120.0, 0.0),
            response_format=config.get("response_format", "json_schema"),
            seed=config_integer(config, "seed", None, 0),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
            f"concurrency={self.concurrency}, timeout_s={self.timeout_s}, max_retries={self.max_retries})"
        )

    def close(self) -> None:
        """Nothing to release: each batch's threads end with it."""

    # ------------------------------------------------------------------ requests

    def payload(self, request: Request, image_urls: Sequence[str]) -> dict[str, Any]:
        """The chat-completions body of one request (no credentials in it)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": resolve_messages(request, image_urls),
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_tokens": self.sampling.max_tokens,
        }
        seed = request.seed if request.seed is not None else self.seed
        if seed is not None:
            body["seed"] = seed
        if not request.schema:
            pass  # a plain-text answer
        elif self.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.schema, "strict": True},
            }
        elif self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """One response per request, in order; at most ``concurrency`` in flight.

        Never raises for a single request: every failure is a :class:`Response` with its reason.
        """
        if not requests:
            return []
        urls: dict[int, str] = {}
        for request in requests:
            for image in request.images:
                if id(image) not in urls:
                    urls[id(image)] = image_url(image)
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(requests)), thread_name_prefix="medground-openai"
        ) as pool:
            return list(pool.map(lambda r: self._guarded(r, [urls[id(i)] for i in r.images]), requests))

    def _guarded(self, request: Request, image_urls: list[str]) -> Response:
        started = time.monotonic()
        try:
            return self._request(request, image_urls, started)
        except Exception as exc:  # a bug or an unforeseen transport error: one failed request, not a crashed run
            return Response(
                request.id,
                None,
                "backend_error",
                self._scrub(f"{type(exc).__name__}: {exc}"),
                None,
                1,
                time.monotonic() - started,
            )

    def _request(self, request: Request, image_urls: list[str], started: float) -> Response:
        data = dumps(self.payload(request, image_urls)).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            outcome = self._attempt(request, data, attempts, started)
            if outcome.response is not None:
                return outcome.response
            if not outcome.retry or attempts > self.max_retries:
                return Response(
                    request.id, None, outcome.reason, outcome.detail, None, attempts, time.monotonic() - started
                )
            if outcome.retry_after is not None:
                delay = min(outcome.retry_after, self.max_retry_after_s)
            else:
                base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempts - 1))
                delay = base / 2 + self._rng.uniform(0.0, base / 2)
            log.warning(
                "request %s: %s; retry %d of %d in %.2f s",
                request.id,
                outcome.reason,
                attempts,
                self.max_retries,
                delay,
            )
            self._sleep(delay)

    def _attempt(self, request: Request, data: bytes, attempts: int, started: float) -> _Attempt:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "medground"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http_request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=data, headers=headers, method="POST"
        )
        try:
            with self._opener.open(http_request, timeout=self.timeout_s) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            with exc:
                body = self._body_excerpt(exc)
                retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            return _Attempt(
                reason=f"http_{exc.code}",
                detail=self._scrub(f"HTTP {exc.code} {exc.reason}: {body}"),
                retry=exc.code in RETRY_STATUSES,
                retry_after=retry_after,
            )
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return _Attempt(reason="timeout", detail=f"no answer within {self.timeout_s:g} s", retry=True)
            return _Attempt(reason="connection", detail=self._scrub(f"{self.base_url}: {exc.reason}"), retry=True)
        except TimeoutError:
            return _Attempt(reason="timeout", detail=f"no answer within {self.timeout_s:g} s", retry=True)
        except (ConnectionError, http.client.HTTPException) as exc:
            return _Attempt(reason="connection", detail=self._scrub(f"{type(exc).__name__}: {exc}"), retry=True)
        return _Attempt(response=self._read(request, raw, attempts, time.monotonic() - started))

    def _read(self, request: Request, raw: bytes, attempts: int, seconds: float) -> Response:
        try:
            body = json.loads(raw)
            choice = body["choices"][0]
            message = choice["message"]
            content = message.get("content")
            finish_reason = choice.get("finish_reason")
            refusal = message.get("refusal")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Response(
                request.id,
                None,
                "malformed_response",
                self._scrub(f"not a chat completion: {raw[:200].decode('utf-8', 'replace')!r}"),
                None,
                attempts,
                seconds,
            )
        if refusal:
            return Response(request.id, None, "refused", self._scrub(str(refusal))[:500], None, attempts, seconds)
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is not None and not isinstance(content, str):
            return Response(
                request.id,
                None,
                "malformed_response",
                f"message content is {type(content).__name__}",
                None,
                attempts,
                seconds,
            )
        response = answer_from_text(request, content, finish_reason=finish_reason, attempts=attempts, seconds=seconds)
        if self._api_key and response.text and self._api_key in response.text:
            response = Response(
                response.id,
                response.data,
                response.reason,
                response.detail,
                self._scrub(response.text),
                response.attempts,
                response.seconds,
            )
        return response

    def _body_excerpt(self, exc: urllib.error.HTTPError) -> str:
        try:
            text = exc.read()[:300].decode("utf-8", "replace")
        except Exception:  # the body is only a hint; a broken one must not hide the status
            text = ""
        return self._scrub(" ".join(text.split()))

    def _scrub(self, text: str) -> str:
        """``text`` with the API key blanked, should a server or library have echoed it."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text
