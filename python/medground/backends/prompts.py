"""Versioned prompt templates (package data under ``presets/prompts/``).

Each file holds a ``version`` (stored in every sample written with it), a ``system`` text,
a ``user`` text with ``$name`` placeholders (:class:`string.Template`, so JSON braces need
no escaping), the answer's JSON ``schema``, and named snippets the caller picks from
(``[guides]``, ``[naming]``, ``[orientation]``).
"""

from __future__ import annotations

import copy
import string
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["PromptTemplate", "available_prompts", "load_prompt"]


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
