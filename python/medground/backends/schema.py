"""Reading a model's answer: the JSON object out of its text, checked against a JSON schema.

Models asked for JSON still wrap it in code fences, think aloud first (``<think>…</think>``)
or stop mid-object; servers without structured output ignore the schema. Every answer is
therefore parsed and validated here, whatever the backend promised. The validator covers the
subset of JSON Schema the prompts use (``type``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``minItems``/``maxItems``, ``enum``,
``minimum``/``maximum``, ``minLength``/``maxLength``), with no dependency.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["AnswerError", "parse_answer", "schema_errors", "strict_loads"]

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
}


class AnswerError(ValueError):
    """An answer that is not the JSON the schema asks for.

    Attributes:
        reason: ``malformed_json`` (no JSON object could be read) or ``schema_violation``.
        detail: what was wrong, for a person.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is a non-finite number, which JSON does not allow")


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` without Python's extensions: ``NaN``, ``Infinity`` and ``-Infinity``
    are refused (a ``json.JSONDecodeError``), as are numbers too large for a float
    (``1e999``), so no non-finite number ever comes out of a model's or server's JSON."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), text if isinstance(text, str) else "", 0) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is a non-finite number (too large for a float)")
    return value


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(expected, (object,)))


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[str]:
    """``minLength``/``maxLength`` violations of a string."""
    errors: list[str] = []
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    return errors


def _number_errors(value: int | float, schema: dict[str, Any], path: str) -> list[str]:
    """``minimum``/``maximum`` violations of a number."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path}: {value} is not a finite number"]
    errors: list[str] = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value} > maximum {schema['maximum']}")
    return errors


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    """``minItems``/``maxItems`` violations of an array, then those of its items."""
    errors: list[str] = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: {len(value)} items, at least {schema['minItems']} required")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: {len(value)} items, at most {schema['maxItems']} allowed")
    if isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors.extend(schema_errors(item, schema["items"], f"{path}[{index}]"))
    return errors


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    """Missing required and unexpected properties of an object, then its properties' own violations."""
    errors = [f"{path}: missing required property {key!r}" for key in schema.get("required", []) if key not in value]
    properties = schema.get("properties", {})
    for key, item in value.items():
        if key in properties:
            errors.extend(schema_errors(item, properties[key], f"{path}.{key}"))
        elif schema.get("additionalProperties", True) is False:
            errors.append(f"{path}: unexpected property {key!r}")
    return errors


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` (empty when it conforms).

    Args:
        value: a decoded JSON value.
        schema: a JSON schema using the supported subset (see the module docstring).
        path: the JSON path of ``value``, for the messages.

    Returns:
        One message per violation, each naming its JSON path. A value of the wrong type gets
        that one message only.
    """
    expected = schema.get("type")
    if expected is not None:
        kinds = [expected] if isinstance(expected, str) else list(expected)
        if not any(_type_ok(value, kind) for kind in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        errors.extend(_string_errors(value, schema, path))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        errors.extend(_number_errors(value, schema, path))
    elif isinstance(value, list):
        errors.extend(_array_errors(value, schema, path))
    elif isinstance(value, dict):
        errors.extend(_object_errors(value, schema, path))
    return errors


def _first_object(text: str) -> Any:
    """The first JSON object in ``text`` (models sometimes add words around it), read as
    strictly as :func:`strict_loads`."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        except ValueError as exc:  # the first object holds a non-finite number: never one nested in it
            raise json.JSONDecodeError(str(exc), text, match.start()) from None
        return value
    raise json.JSONDecodeError("no JSON object found", text, 0)


def parse_answer(text: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object a model answered, checked against ``schema``.

    Args:
        text: the model's message content.
        schema: the JSON schema the answer must follow.

    Returns:
        The decoded object.

    Raises:
        AnswerError: ``malformed_json`` when no JSON object can be read from the text,
            ``schema_violation`` when the object breaks the schema (every violation listed).
    """
    if text is None or not text.strip():
        raise AnswerError("malformed_json", "empty answer")
    body = _THINK.sub("", text).strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = strict_loads(body)
    except json.JSONDecodeError as first:
        try:
            value = _first_object(body)
        except json.JSONDecodeError as exc:
            message = first.msg if "non-finite" in first.msg else exc.msg
            raise AnswerError("malformed_json", f"{message} in {_excerpt(text)}") from None
    errors = schema_errors(value, schema)
    if errors:
        raise AnswerError(
            "schema_violation", "; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
        )
    if not isinstance(value, dict):
        raise AnswerError("schema_violation", f"the answer is a {type(value).__name__}, not a JSON object")
    return value


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")
