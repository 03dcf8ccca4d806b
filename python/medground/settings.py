"""Typed settings of the model stages: a run config's ``[synthesis]`` and
``[verification]`` tables, parsed and checked once.

Each table names its backend; the keys it may hold are the stage's own plus those its
model backend reads (:func:`medground.backends.config_keys`). An unknown key is an error
naming the table, the key and what is allowed, so a typo never falls back to a default;
an API key written into a config is refused (name the environment variable that holds it
with ``api_key_env``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground.backends import config_keys
from medground.io.errors import SpecError

__all__ = ["JUDGES", "SYNTHESIZERS", "SynthesisSettings", "VerificationSettings", "VisualSettings"]

SYNTHESIZERS = ("template", "vllm", "openai")
JUDGES = ("evidence", "vlm", "onnx")

#: Keys of ``[synthesis]`` read by the synthesizer itself (the backend reads the rest).
_TEMPLATE_KEYS = frozenset({"backend", "seed", "templates"})
_VLM_SYNTHESIS_KEYS = frozenset({"backend", "seed", "prompt", "queries_per_reference", "image_family", "num_gpus"})
_EVIDENCE_KEYS = frozenset({"backend"})
_ONNX_KEYS = frozenset({"backend", "model", "threshold"})
_VLM_JUDGE_KEYS = frozenset({"backend", "engine", "seed", "threshold", "prompt", "image_family", "num_gpus"})
_SECRETS = frozenset({"api_key", "key", "token", "password", "secret"})


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], where: str, source: Path | None) -> None:
    secrets = sorted(k for k in table if k.lower() in _SECRETS)
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
        return cls(backend, table)

    @property
    def uses_model(self) -> bool:
        return self.backend != "template"

    @property
    def num_gpus(self) -> float:
        """GPUs a vLLM synthesizer holds in its Ray actor."""
        return float(self.table.get("num_gpus", 1))

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
            allowed = _VLM_JUDGE_KEYS | config_keys(engine)
        _check_keys(table, allowed, "[verification.visual]", source)
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
        return float(self.table.get("num_gpus", 1))

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
        _check_keys(table, frozenset({"visual"}), "[verification]", source)
        visual = VisualSettings.from_table(table.get("visual"), source, base)
        if "visual" in table:
            table["visual"] = dict(visual.table)
        return cls(visual, table)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.table.items()}
