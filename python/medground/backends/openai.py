"""The ``openai`` backend: chat completions against any OpenAI-compatible server.

Works with ``vllm serve``, SGLang, LM Studio, hosted APIs: anything that speaks
``POST {base_url}/chat/completions``. Standard library only (``urllib`` and a thread pool):
images travel as base64 PNG data URLs, the answer's JSON schema as
``response_format = {"type": "json_schema", …}``, at most ``concurrency`` requests are in
flight, and 408/409/429/5xx answers, timeouts and broken connections are retried with
exponential backoff and jitter, waiting as long as a ``Retry-After`` header asks (up to
``max_retry_after_s``).

The transport is hardened against servers and networks that misbehave:

* ``timeout_s`` is the whole attempt's wall time (resolving the host name, connecting, the
  TLS handshake, sending, the headers and the body), not a per-read socket timeout: a server
  that trickles one byte a second is cut at the deadline (its socket is shut down), a
  resolver that hangs is given up on, and the attempt counts as a ``timeout``.
* An answer larger than ``max_response_bytes`` (32 MiB by default) is read in chunks and
  abandoned at the cap (``response_too_large``), never buffered whole; error bodies are
  read only as far as the excerpt a message needs.
* Redirects are never followed (``redirect``): the key goes only to ``base_url``'s origin.
* ``http_proxy``/``https_proxy`` from the environment apply to remote servers (with
  ``no_proxy`` honoured), never to loopback ones.
* Every JSON document is read strictly: ``NaN``/``Infinity`` are refused.

The API key is read once from the environment variable named by ``api_key_env`` and only
ever sent in the ``Authorization`` header: it is not logged, not kept in any record, not
shown by ``repr``, and scrubbed from everything a response carries (its detail, raw text
and parsed answer), so a server that echoes it passes it on nowhere.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.client
import ipaddress
import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from email.message import Message
from typing import Any, TypeGuard

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
from medground.backends.schema import strict_loads
from medground.records import dumps

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RETRY_STATUSES",
    "OpenAIBackend",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
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
        "max_response_bytes",
    }
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHUNK = 64 * 1024
_ERROR_BODY_BYTES = 8 * 1024  # of an error answer: enough for the excerpt a message shows
_EXCERPT = 300


class _Failure(Exception):
    """An exchange that gave no HTTP answer to read: a reason code, a detail (scrubbed),
    whether to try again."""

    def __init__(self, reason: str, detail: str, retry: bool = False) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.retry = reason, detail, retry


class _Exchange:
    """What one HTTP exchange gave: the status, its phrase, the headers and the body read
    (all of it for a success, an excerpt's worth for an error)."""

    __slots__ = ("body", "headers", "phrase", "status")

    def __init__(self, status: int, phrase: str, headers: Message, body: bytes) -> None:
        self.status, self.phrase, self.headers, self.body = status, phrase, headers, body


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
    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL (the port spelled out), for messages and comparisons."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname or ''}:{port}"


# ---------------------------------------------------------------------- transport


class _Deadline:
    """The wall-clock limit of one exchange. When it passes, every socket the exchange
    opened is shut down, which ends whatever read or write is blocked on it, however
    slowly the server trickles; :attr:`expired` then says why the exchange failed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._done = False
        self._ends = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self._ends - time.monotonic())

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def finish(self) -> None:
        """The exchange is over: no socket is touched from now on."""
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, for TLS ones too


class _TimedRequest(urllib.request.Request):
    """A request that carries its deadline to the connection that sends it."""

    deadline: _Deadline


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` for a TCP connection, under the deadline: a host name is resolved in a
    daemon thread that is waited for at most the time left (a resolver that hangs cannot be
    interrupted; its thread is left to finish on its own, and holds nothing of the exchange).

    Raises:
        TimeoutError: when the deadline passes before the name is resolved.
        OSError: what the resolver raised (``socket.gaierror`` for an unknown name).
    """
    try:
        ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        pass
    else:  # an address: nothing to look up, nothing that can hang
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    answer: list[list[tuple[Any, ...]]] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting exchange
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=look_up, name="medground-resolve", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise TimeoutError(f"resolving {host} took longer than {deadline.seconds:g} s")
    if failure:
        raise failure[0]
    return answer[0]


def _connect_under(deadline: _Deadline) -> Callable[..., socket.socket]:
    """``socket.create_connection`` whose every step counts against ``deadline``: the name
    resolved within the time left, each address tried with at most the time left, and each
    socket watched by the deadline from the moment it exists."""

    def connect(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        host, port = address
        # http.client passes its own timeout (a number, or the default's sentinel object).
        limit = float(timeout) if isinstance(timeout, (int, float)) else None
        errors: list[OSError] = []
        for family, kind, proto, _, sockaddr in _resolve(host, port, deadline):
            left = deadline.remaining()
            if left <= 0:
                break
            sock = deadline.watch(socket.socket(family, kind, proto))
            try:
                sock.settimeout(left if limit is None else min(limit, left))
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                errors.append(exc)
                sock.close()
        if deadline.remaining() <= 0:
            raise TimeoutError(f"could not connect to {host}:{port} within {deadline.seconds:g} s")
        raise errors[-1] if errors else OSError(f"{host}: getaddrinfo returned no address")

    return connect


class _WatchedHTTPConnection(http.client.HTTPConnection):
    """HTTP whose connection (the name lookup included) runs under the deadline, and whose
    sockets are watched by it from the moment they exist."""

    _create_connection: Callable[..., socket.socket]

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline
        self._create_connection = _connect_under(deadline)


class _WatchedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS whose connection (the name lookup included) and TLS handshake run under the
    deadline too (the TLS socket is watched before it shakes hands; the certificate is
    checked against the host name of the URL, not the address it resolved to)."""

    _create_connection: Callable[..., socket.socket]

    def __init__(self, *args: Any, deadline: _Deadline, context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self._tls = context or ssl.create_default_context()
        super().__init__(*args, context=self._tls, **kwargs)
        self._deadline = deadline
        self._create_connection = _connect_under(deadline)

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP (and a proxy's CONNECT tunnel)
        server_hostname = getattr(self, "_tunnel_host", None) or self.host
        tls = self._tls.wrap_socket(self.sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        self.sock = self._deadline.watch(tls)
        tls.do_handshake()


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if not isinstance(req, _TimedRequest):
            return super().http_open(req)
        return self.do_open(functools.partial(_WatchedHTTPConnection, deadline=req.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if not isinstance(req, _TimedRequest):
            return super().https_open(req)
        return self.do_open(functools.partial(_WatchedHTTPSConnection, deadline=req.deadline), req)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, never followed: following one would carry the key to
    wherever the server points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(base_url: str) -> urllib.request.OpenerDirector:
    # Proxies from the environment apply to remote servers (no_proxy honoured by urllib),
    # never to this machine's own.
    proxies: dict[str, str] | None = {} if _is_loopback(base_url) else None
    return urllib.request.build_opener(
        urllib.request.ProxyHandler(proxies), _NoRedirect(), _HTTPHandler(), _HTTPSHandler()
    )


class OpenAIBackend:
    """Chat completions over HTTP(S) with bounded concurrency, deadlines and retries.

    Args:
        model: the model name the server knows (``Qwen/Qwen2.5-VL-7B-Instruct``).
        base_url: the API root, up to and including ``/v1`` (no user or password in it).
        api_key_env: the name of the environment variable holding the API key; None sends
            no key (a local ``vllm serve`` needs none).
        sampling: temperature, top_p and max_tokens.
        timeout_s: the wall time one attempt may take, all of it (resolving the host name,
            connecting, the TLS handshake, sending, waiting, reading), in seconds.
        max_retries: attempts after the first, for retryable failures.
        concurrency: requests in flight at once.
        backoff_s: the first retry's base delay; doubled each retry, with jitter.
        max_backoff_s: the largest backoff delay.
        max_retry_after_s: the longest ``Retry-After`` wait honoured.
        response_format: ``json_schema`` (structured output), ``json_object`` or ``none``
            (for servers without structured output; answers are checked either way).
        max_response_bytes: the largest answer read; a larger one is a ``response_too_large``
            failure.
        seed: the base sampling seed, sent when a request has none of its own.
        sleep: the function used to wait between attempts (tests replace it).
        rng: the random source of the jitter.

    Raises:
        ValueError: for bad settings, or when ``api_key_env`` names an unset variable
            (messages name settings and variables, never a value that could be a key).
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
        concurrency: int = 64,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        response_format: str = "json_schema",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"the openai backend needs model = the server's model name, got {model!r}")
        _check_base_url(base_url)
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
        config_integer({"max_response_bytes": max_response_bytes}, "max_response_bytes", 1, 1)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._api_key = self._read_key(api_key_env)
        self._secrets = _secret_forms(self._api_key)
        self.sampling = sampling or SamplingSettings()
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.response_format = response_format
        self.max_response_bytes = max_response_bytes
        self.seed = seed
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._opener = _opener(self.base_url)

    @staticmethod
    def _read_key(variable: str | None) -> str | None:
        if variable is None:
            return None
        if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
            # Never echoed: a key pasted here by mistake must not reach a log.
            raise ValueError(
                "api_key_env must be the name of an environment variable (letters, digits and underscores, "
                "such as OPENAI_API_KEY), not the key itself"
            )
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
            concurrency=config_integer(config, "concurrency", 64, 1),
            backoff_s=config_number(config, "backoff_s", 1.0, 0.0),
            max_backoff_s=config_number(config, "max_backoff_s", 30.0, 0.0),
            max_retry_after_s=config_number(config, "max_retry_after_s", 120.0, 0.0),
            response_format=config.get("response_format", "json_schema"),
            max_response_bytes=config_integer(config, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, 1),
            seed=config_integer(config, "seed", None, 0),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
            f"concurrency={self.concurrency}, timeout_s={self.timeout_s}, max_retries={self.max_retries})"
        )

    def close(self) -> None:
        """Nothing to release: each batch's threads end with it."""

    # ------------------------------------------------------------------ the server

    def check(self) -> None:
        """Checks, with one ``GET {base_url}/models``, that the server answers, accepts the
        key and serves :attr:`model`.

        Raises:
            BackendUnavailable: saying which of these fails (no key in the message).
        """
        where = f"the model server at {self.base_url}"
        try:
            answer = self._exchange("GET", "/models")
        except _Failure as failure:
            raise BackendUnavailable(f"{where} cannot be used: {failure.reason}: {failure.detail}") from None
        if 300 <= answer.status < 400:
            raise BackendUnavailable(f"{where} cannot be used: {self._redirect_detail(answer)}")
        if answer.status in (401, 403):
            key = f"the key in {self.api_key_env}" if self.api_key_env else "no key (set api_key_env)"
            raise BackendUnavailable(f"{where} refused {key}: HTTP {answer.status} {self._excerpt(answer.body)}")
        if answer.status != 200:
            raise BackendUnavailable(
                f"{where} answered GET /models with HTTP {answer.status} {self._scrub(answer.phrase)}: "
                f"{self._excerpt(answer.body)}"
            )
        try:
            listed = [m["id"] for m in strict_loads(answer.body)["data"] if isinstance(m.get("id"), str)]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackendUnavailable(
                f"{where} answered GET /models with no model list: {self._excerpt(answer.body)}"
            ) from None
        if self.model not in listed:
            shown = ", ".join(repr(self._scrub(m)[:100]) for m in listed[:20]) or "none"
            raise BackendUnavailable(
                f"{where} does not serve model {self.model!r} (it lists {shown}{', …' if len(listed) > 20 else ''})"
            )

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
            response = self._request(request, image_urls, started)
        except Exception as exc:  # a bug or an unforeseen transport error: one failed request, not a crashed run
            response = Response(
                request.id, None, "backend_error", f"{type(exc).__name__}: {exc}", None, 1, time.monotonic() - started
            )
        return self._scrub_response(response)

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
        try:
            answer = self._exchange("POST", "/chat/completions", data)
        except _Failure as failure:
            return _Attempt(reason=failure.reason, detail=failure.detail, retry=failure.retry)
        if 300 <= answer.status < 400:
            return _Attempt(reason="redirect", detail=self._redirect_detail(answer))
        if answer.status >= 400:
            return _Attempt(
                reason=f"http_{answer.status}",
                detail=f"HTTP {answer.status} {self._scrub(answer.phrase)}: {self._excerpt(answer.body)}",
                retry=answer.status in RETRY_STATUSES,
                retry_after=_retry_after(answer.headers.get("Retry-After")),
            )
        return _Attempt(response=self._read(request, answer.body, attempts, time.monotonic() - started))

    # ------------------------------------------------------------------ one exchange

    def _exchange(self, method: str, path: str, data: bytes | None = None) -> _Exchange:
        """One HTTP exchange with the server under the deadline and the size cap; any HTTP
        status is an answer (redirects included: never followed).

        Raises:
            _Failure: ``timeout``, ``connection`` or ``response_too_large``.
        """
        headers = {"Accept": "application/json", "User-Agent": "medground"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = _TimedRequest(f"{self.base_url}{path}", data=data, headers=headers, method=method)
        deadline = request.deadline = _Deadline(self.timeout_s)
        try:
            return self._send(request)
        except _Failure:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired:
                raise self._timed_out() from None
            raise self._broken(exc) from None
        finally:
            deadline.finish()
            if deadline.expired:
                raise self._timed_out()

    def _send(self, request: _TimedRequest) -> _Exchange:
        try:
            answer = self._opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as error:  # an HTTP answer, read only as far as a message needs
            with error:
                body = error.read(_ERROR_BODY_BYTES) if error.fp is not None else b""
                return _Exchange(error.code, str(error.reason), error.headers or Message(), body)
        with answer:
            return _Exchange(answer.status, str(answer.reason), answer.headers, self._read_capped(answer))

    def _read_capped(self, answer: Any) -> bytes:
        """The body, read in chunks; past ``max_response_bytes`` the exchange is abandoned."""
        limit = self.max_response_bytes
        declared = answer.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise self._too_large(f"declares {int(declared)} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = answer.read(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise self._too_large("sent more")
            chunks.append(chunk)

    def _too_large(self, what: str) -> _Failure:
        return _Failure(
            "response_too_large",
            f"the answer {what} than max_response_bytes = {self.max_response_bytes}; abandoned",
        )

    def _timed_out(self) -> _Failure:
        return _Failure("timeout", f"no complete answer within {self.timeout_s:g} s", retry=True)

    def _broken(self, exc: BaseException) -> _Failure:
        if isinstance(exc, urllib.error.URLError):
            if isinstance(exc.reason, TimeoutError):
                return self._timed_out()
            return _Failure("connection", self._scrub(f"{self.base_url}: {exc.reason}"), retry=True)
        if isinstance(exc, TimeoutError):
            return self._timed_out()
        return _Failure("connection", self._scrub(f"{type(exc).__name__}: {exc}"), retry=True)

    def _redirect_detail(self, answer: _Exchange) -> str:
        location = answer.headers.get("Location") or ""
        target = _origin(urllib.parse.urljoin(self.base_url + "/", location)) if location else "nowhere"
        return self._scrub(
            f"the server redirected (HTTP {answer.status}) to {target}; redirects are never followed, so that the "
            f"key goes to {_origin(self.base_url)} only: set base_url to the address that answers"
        )

    # ------------------------------------------------------------------ answers

    def _read(self, request: Request, raw: bytes, attempts: int, seconds: float) -> Response:
        try:
            body = strict_loads(raw)
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
                f"not a chat completion: {self._excerpt(raw, 200, flatten=False)!r}",
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
        # Scrubbed before it is read: the answer's fields, its text and the details of what
        # is wrong with it are all made from the scrubbed text.
        content = None if content is None else self._scrub(content)
        response = answer_from_text(request, content, finish_reason=finish_reason, attempts=attempts, seconds=seconds)
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if _count(prompt) and _count(completion):
                response = replace(response, prompt_tokens=prompt, completion_tokens=completion)
        return response

    # ------------------------------------------------------------------ the key

    def _excerpt(self, raw: bytes, limit: int = _EXCERPT, *, flatten: bool = True) -> str:
        """The start of a server's text, scrubbed before it is cut (a cut must never leave
        part of the key behind)."""
        text = self._scrub(raw.decode("utf-8", "replace"))
        if flatten:
            text = " ".join(text.split())
        return text[:limit]

    def _scrub(self, text: str) -> str:
        """``text`` with the API key blanked, should a server or library have echoed it."""
        for form in self._secrets:
            text = text.replace(form, "***")
        return text

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._scrub_value(v) for v in value]
        if isinstance(value, dict):
            return {self._scrub_value(k): self._scrub_value(v) for k, v in value.items()}
        return value

    def _scrub_response(self, response: Response) -> Response:
        """The response with the key blanked from its detail, raw text and parsed answer."""
        if not self._secrets:
            return response
        return replace(
            response,
            data=self._scrub_value(response.data),
            detail=None if response.detail is None else self._scrub(response.detail),
            text=None if response.text is None else self._scrub(response.text),
        )


def _count(value: Any) -> TypeGuard[int]:
    """Whether a server's token count is one (a non-negative integer)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _secret_forms(key: str | None) -> tuple[str, ...]:
    """The spellings of the key a server may echo: as it is, and as a JSON string holds it."""
    if not key:
        return ()
    forms = {key, json.dumps(key)[1:-1], urllib.parse.quote(key, safe="")}
    return tuple(sorted(forms, key=len, reverse=True))


def _check_base_url(base_url: Any) -> None:
    """An http(s) URL without credentials; messages never echo a URL that could hold them."""
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url!r}")
    parts = urllib.parse.urlsplit(base_url)
    if "@" in parts.netloc:
        raise ValueError(
            "base_url must not hold a user name or password; put the key in an environment variable "
            "and name it with api_key_env"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url!r}")
