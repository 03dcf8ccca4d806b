"""Answers read out of model text and checked against their JSON schema."""

from __future__ import annotations

import json

import pytest

from medground.backends.prompts import available_prompts
from medground.backends.schema import AnswerError, parse_answer, schema_errors, strict_loads
from model_requests import GOOD, VERDICT


def test_answers_are_parsed_and_checked() -> None:
    assert parse_answer(f"Sure, here it is: {GOOD} Hope that helps.", VERDICT)["verdict"] == "yes"
    for text, reason in (
        (None, "malformed_json"),
        ("", "malformed_json"),
        ("[1, 2]", "schema_violation"),
        ('{"verdict": "yes", "confidence": true, "reason": "x"}', "schema_violation"),
        ('{"verdict": "yes", "confidence": 0.5, "reason": "x", "extra": 1}', "schema_violation"),
    ):
        with pytest.raises(AnswerError) as error:
            parse_answer(text, VERDICT)
        assert error.value.reason == reason
    schema = {
        "type": "object",
        "required": ["n"],
        "properties": {
            "n": {"type": "integer"},
            "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}},
        },
    }
    assert schema_errors({"n": 2.0, "tags": ["ab"]}, schema) == []
    assert schema_errors({"tags": []}, schema) == [
        "$: missing required property 'n'",
        "$.tags: 0 items, at least 1 required",
    ]
    assert schema_errors({"n": 1, "tags": ["a"]}, schema) == ["$.tags[0]: shorter than 2 characters"]
    assert set(available_prompts()) >= {"synthesis_v3", "judge_v2"}


def test_non_finite_numbers_are_never_read_from_an_answer() -> None:
    """Python's json reads NaN and Infinity (and 1e999 as infinity); a model's answer may not
    carry them: NaN compares false with every bound and threshold."""
    for number in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999"):
        for text in (
            f'{{"verdict": "yes", "confidence": {number}, "reason": "x"}}',
            f'Here: {{"verdict": "yes", "confidence": {number}, "reason": "x"}} done',  # words around it
            f'```json\n{{"verdict": "yes", "confidence": {number}, "reason": "x"}}\n```',
        ):
            with pytest.raises(AnswerError) as error:
                parse_answer(text, VERDICT)
            assert error.value.reason == "malformed_json" and "non-finite" in error.value.detail, text
        with pytest.raises(json.JSONDecodeError, match="non-finite"):
            strict_loads(f"[{number}]")
    assert strict_loads('{"a": 1.5e300, "b": [0, -2]}') == {"a": 1.5e300, "b": [0, -2]}
    # A non-finite number that reached a decoded value some other way breaks any schema.
    assert schema_errors(float("nan"), {"type": "number"}) == ["$: nan is not a finite number"]
    assert schema_errors({"c": float("inf")}, {"properties": {"c": {"type": "number"}}}) == [
        "$.c: inf is not a finite number"
    ]
