"""Answers read out of model text and checked against their JSON schema."""

from __future__ import annotations

import pytest

from medground.backends.prompts import available_prompts
from medground.backends.schema import AnswerError, parse_answer, schema_errors
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
    assert set(available_prompts()) >= {"synthesis_v2", "judge_v1"}
