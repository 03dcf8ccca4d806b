"""Versioned prompt templates (package data under ``presets/prompts/``).

Each file holds a ``version`` (stored in every sample written with it), a ``system`` text,
a ``user`` text with ``$name`` placeholders (:class:`string.Template`, so JSON braces need
no escaping), the answer's JSON ``schema``, and named snippets the caller picks from
(``[guides]``, ``[naming]``, ``[orientation]``).

Text that comes from a dataset (label names, clinical records, the modality and region of a
spec) or from another model (a query to judge) is untrusted: it never becomes part of the
instructions. It goes into the prompt as :func:`data_block`, one JSON object between
``<data>`` and ``</data>`` markers that the instructions call data, never instructions.
"""

from __future__ import annotations

import copy
import json
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["DATA_CLOSE", "DATA_OPEN", "PromptTemplate", "available_prompts", "data_block", "load_prompt"]

DATA_OPEN, DATA_CLOSE = "<data>", "</data>"
#: Characters that are escaped in a data block's strings (JSON allows them raw): the markers'
#: brackets, so no value can close the block, and the ampersand.
_ESCAPED = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def data_block(value: Mapping[str, Any]) -> str:
    """``value`` as a delimited block of data for a prompt: ``<data>``, its JSON (one
    top-level key a line), ``</data>``.

    Every string is JSON-encoded, so a value cannot start a line of its own (newlines are
    ``\\n``), cannot close the block (``<`` and ``>`` are ``\\u003c`` and ``\\u003e``) and
    carries no invisible or direction-changing character (escaped as ``\\uXXXX``).
    """
    lines = [f" {_json(str(key))}: {_json(item)}" for key, item in value.items()]
    return DATA_OPEN + "\n{\n" + ",\n".join(lines) + "\n}\n" + DATA_CLOSE


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))
    return "".join(_ESCAPED.get(ch, ch) if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    """A JSON ``\\u`` escape (a surrogate pair beyond the basic plane)."""
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


@dataclass(frozen=True)
class PromptTemplate:
    """One versioned prompt: texts, snippets and the answer schema."""

    name: str
    version: str
    system: str
    user: string.Template
    schema: dict[str, Any]
    snippets: dict[str, dict[str, str]]

    def render(self, **fields: Any) -> str:
        """The user text with every placeholder filled.

        Raises:
            KeyError: when a placeholder has no value.
        """
        return self.user.substitute({k: str(v) for k, v in fields.items()})

    def snippet(self, table: str, key: str) -> str:
        """A named snippet, e.g. ``snippet("orientation", "radiological")``."""
        try:
            return self.snippets[table][key]
        except KeyError:
            raise KeyError(f"prompt {self.name} has no [{table}] {key!r}") from None

    def answer_schema(self) -> dict[str, Any]:
        """A copy of the schema that the caller may narrow."""
        return copy.deepcopy(self.schema)


def available_prompts() -> list[str]:
    """Names of the prompt templates shipped with the package."""
    folder = resources.files("medground") / "presets" / "prompts"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


@lru_cache(maxsize=16)
def load_prompt(name: str) -> PromptTemplate:
    """The prompt template ``presets/prompts/{name}.toml``.

    Raises:
        ValueError: when no such template ships with the package, or it lacks a field.
    """
    path = resources.files("medground") / "presets" / "prompts" / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"prompt must be one of {', '.join(available_prompts())}, got {name!r}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in ("version", "system", "user", "schema") if key not in data]
    if missing:
        raise ValueError(f"prompt {name}: missing {', '.join(missing)}")
    snippets = {k: v for k, v in data.items() if isinstance(v, dict) and k != "schema"}
    return PromptTemplate(
        name, str(data["version"]), data["system"], string.Template(data["user"]), data["schema"], snippets
    )
