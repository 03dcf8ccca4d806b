"""Typed settings of the model stages: a run config's ``[synthesis]`` and
``[verification]`` tables, parsed and checked once.

Each table names its backend; the keys it may hold are the stage's own plus those its
model backend reads (:func:`medground.backends.config_keys`). An unknown key is an error
naming the table, the key and what is allowed, so a typo never falls back to a default;
an API key written into a config is refused (name the environment variable that holds it
with ``api_key_env``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground.backends import config_keys
from medground.backends.base import config_integer, config_number
from medground.io.errors import SpecError

__all__ = ["ENGINES", "JUDGES", "SYNTHESIZERS", "SynthesisSettings", "VerificationSettings", "VisualSettings"]

SYNTHESIZERS = ("template", "vllm", "openai", "simulated")
JUDGES = ("evidence", "vlm", "onnx")
#: How a vlm judge runs its model.
ENGINES = ("vllm", "openai", "simulated")

#: Keys of ``[synthesis]`` read by the synthesizer itself (the backend reads the rest).
_TEMPLATE_KEYS = frozenset({"backend", "seed", "templates", "negatives"})
_VLM_SYNTHESIS_KEYS = frozenset(
    {"backend", "seed", "prompt", "queries_per_reference", "image_family", "num_gpus", "negatives"}
)
_EVIDENCE_KEYS = frozenset({"backend"})
_ONNX_KEYS = frozenset({"backend", "model", "threshold"})
_VLM_JUDGE_KEYS = frozenset({"backend", "engine", "seed", "threshold", "prompt", "image_family", "num_gpus"})
#: Keys whose value is a table, and the keys that table may hold (None: passed on as it is
#: to the engine, checked only for secrets).
_TABLE_KEYS: dict[str, frozenset[str] | None] = {
    "limit_mm_per_prompt": frozenset({"image", "video", "audio"}),
    "chat_template_kwargs": None,
    "mm_processor_kwargs": None,
}
#: Words of a key name that mean a credential (``api_key``, ``apiKey``, ``access_token``,
#: ``password``); ``api_key_env`` is the one such key allowed: it names a variable.
_SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "auth", "authorization", "bearer", "credential"}
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_secret(name: str) -> bool:
    """Whether a key's name says it holds a credential."""
    if name == "api_key_env":
        return False
    words = re.split(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])", name)
    return any(word.lower() in _SECRET_WORDS for word in words) or any(
        part in name.lower() for part in ("apikey", "api_key", "api-key", "password", "secret")
    )


def _check_keys(
    table: Mapping[str, Any],
    allowed: frozenset[str],
    where: str,
    source: Path | None,
    checked_apart: frozenset[str] = frozenset(),
) -> None:
    """Refuses credentials, unknown keys and malformed sub-tables of a model stage's table
    (``checked_apart``: sub-tables another parser checks).

    Messages name keys, never values: a value may be a key pasted in by mistake.
    """
    secrets = sorted(str(k) for k in table if _is_secret(str(k)))
    if secrets:
        raise SpecError(
            source,
            f"{where} holds {', '.join(secrets)}: a key never goes into a config; put it in an "
            "environment variable and name the variable with api_key_env",
        )
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(
            source, f"unknown key(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    for key, value in table.items():
        if key in checked_apart:
            continue
        if isinstance(value, Mapping) and key not in _TABLE_KEYS:
            raise SpecError(source, f"{where} {key} must be a value, not a table")
        if key in _TABLE_KEYS and value is not None and not isinstance(value, Mapping):
            raise SpecError(source, f"{where} {key} must be a table")
        if isinstance(value, Mapping):
            _check_subtable(value, _TABLE_KEYS[key], f"{where.removesuffix(']')}.{key}]", source)
    _check_credentials_in_values(table, where, source)


def _check_scheduling(table: Mapping[str, Any], where: str, source: Path | None) -> None:
    """The batching queue's settings (``pipeline/batching.py``) are numbers in range."""
    try:
        for key in ("max_batch", "num_replicas", "concurrency"):
            config_integer(table, key, None, 1)
        for key in ("batch_wait_s", "max_batch_wait_s"):
            if key in table:
                config_number(table, key, 0.0, 0.0, 3600.0)
    except ValueError as error:
        raise SpecError(source, f"{where} {error}") from None


def _check_subtable(table: Mapping[str, Any], allowed: frozenset[str] | None, where: str, source: Path | None) -> None:
    secrets = sorted(str(k) for k in table if _is_secret(str(k)))
    if secrets:
        raise SpecError(source, f"{where} holds {', '.join(secrets)}: a key never goes into a config")
    if allowed is not None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise SpecError(
                source, f"unknown key(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
    for key, value in table.items():
        if isinstance(value, Mapping):
            _check_subtable(value, None, f"{where.removesuffix(']')}.{key}]", source)


def _check_credentials_in_values(table: Mapping[str, Any], where: str, source: Path | None) -> None:
    """``api_key_env`` names a variable (not the key itself), ``base_url`` holds no user or password."""
    variable = table.get("api_key_env")
    if variable is not None and not (isinstance(variable, str) and _ENV_NAME.fullmatch(variable)):
        raise SpecError(
            source,
            f"{where} api_key_env must be the name of an environment variable (letters, digits and "
            "underscores, such as OPENAI_API_KEY), not the key itself",
        )
    base_url = table.get("base_url")
    if isinstance(base_url, str) and "@" in urllib.parse.urlsplit(base_url).netloc:
        raise SpecError(
            source,
            f"{where} base_url must not hold a user name or password; put the key in an environment "
            "variable and name it with api_key_env",
        )


@dataclass(frozen=True)
class SynthesisSettings:
    """``[synthesis]``: which synthesizer writes the queries, and its backend's settings.

    Attributes:
        backend: ``template`` (offline, the default), ``vllm`` or ``openai``.
        table: the section as written, with ``backend`` filled in (what the backend reads,
            and what the manifest records).
    """

    backend: str = "template"
    table: Mapping[str, Any] = field(default_factory=lambda: {"backend": "template"})

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, source: Path | None = None) -> SynthesisSettings:
        """Parses ``[synthesis]``.

        Raises:
            SpecError: for an unknown backend, an unknown key or a literal API key.
        """
        table = {"backend": "template", **dict(table or {})}
        backend = table["backend"]
        if backend not in SYNTHESIZERS:
            raise SpecError(source, f"[synthesis] backend must be one of {', '.join(SYNTHESIZERS)}, got {backend!r}")
        allowed = _TEMPLATE_KEYS if backend == "template" else _VLM_SYNTHESIS_KEYS | config_keys(backend)
        _check_keys(table, allowed, "[synthesis]", source)
        _check_scheduling(table, "[synthesis]", source)
        if not isinstance(table.get("negatives", False), bool):
            raise SpecError(source, "[synthesis] negatives must be true or false")
        return cls(backend, table)

    @property
    def uses_model(self) -> bool:
        return self.backend != "template"

    @property
    def negatives(self) -> bool:
        """Whether views also get queries about a structure absent from them (``query_type``
        ``absent``, no target; :mod:`medground.synth.absent`). Off by default."""
        return bool(self.table.get("negatives", False))

    @property
    def num_gpus(self) -> float:
        """GPUs each replica of the synthesizer's engine holds on Ray (1 for vllm; the
        simulated engine needs none)."""
        return float(self.table.get("num_gpus", 0 if self.backend == "simulated" else 1))

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.table)


@dataclass(frozen=True)
class VisualSettings:
    """``[verification.visual]``: the visual judge.

    Attributes:
        backend: ``evidence`` (no model, the default), ``vlm`` or ``onnx``.
        table: the section as written (``model`` resolved to an absolute path for onnx).
    """

    backend: str = "evidence"
    table: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any] | None, source: Path | None = None, base: Path | None = None
    ) -> VisualSettings:
        """Parses ``[verification.visual]``; an onnx ``model`` is resolved against ``base``.

        Raises:
            SpecError: for an unknown judge or key, a literal API key, or a missing ONNX file.
        """
        table = dict(table or {})
        backend = table.get("backend", "evidence")
        if backend not in JUDGES:
            raise SpecError(
                source, f"[verification.visual] backend must be one of {', '.join(JUDGES)}, got {backend!r}"
            )
        if backend == "evidence":
            allowed = _EVIDENCE_KEYS
        elif backend == "onnx":
            allowed = _ONNX_KEYS
        else:
            engine = table.get("engine") or ("openai" if table.get("base_url") else "vllm")
            if engine not in ENGINES:
                raise SpecError(
                    source, f"[verification.visual] engine must be one of {', '.join(ENGINES)}, got {engine!r}"
                )
            allowed = _VLM_JUDGE_KEYS | config_keys(engine)
        _check_keys(table, allowed, "[verification.visual]", source)
        _check_scheduling(table, "[verification.visual]", source)
        if backend == "onnx":
            if not isinstance(table.get("model"), str):
                raise SpecError(source, "[verification.visual] backend = 'onnx' needs model = path to the .onnx file")
            model = ((base or Path.cwd()) / table["model"]).resolve()
            if not model.is_file():
                raise SpecError(source, f"[verification.visual] model {model} not found")
            table["model"] = str(model)
        return cls(backend, table)

    @property
    def engine(self) -> str | None:
        """How a vlm judge runs its model: ``openai`` (a server) or ``vllm`` (in process)."""
        if self.backend != "vlm":
            return None
        return str(self.table.get("engine") or ("openai" if self.table.get("base_url") else "vllm"))

    @property
    def num_gpus(self) -> float:
        """GPUs each replica of the judge's engine holds on Ray (1 for vllm, else 0)."""
        return float(self.table.get("num_gpus", 1 if self.engine == "vllm" else 0))

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.table)


@dataclass(frozen=True)
class VerificationSettings:
    """``[verification]``: for now its one table, ``[verification.visual]``."""

    visual: VisualSettings = field(default_factory=VisualSettings)
    table: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any] | None, source: Path | None = None, base: Path | None = None
    ) -> VerificationSettings:
        """Parses ``[verification]``.

        Raises:
            SpecError: naming the key.
        """
        table = dict(table or {})
        _check_keys(table, frozenset({"visual"}), "[verification]", source, checked_apart=frozenset({"visual"}))
        if not isinstance(table.get("visual", {}), Mapping):
            raise SpecError(source, "[verification] visual must be a table ([verification.visual])")
        visual = VisualSettings.from_table(table.get("visual"), source, base)
        if "visual" in table:
            table["visual"] = dict(visual.table)
        return cls(visual, table)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.table.items()}
