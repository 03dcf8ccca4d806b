"""The VLM judge: verdicts accepted, rejected, unsure or failed, recorded with the model's
answer, and the image it saw."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chatserver import Reply, completion
from medground.generate import draft_case
from medground.verify import JudgeItem
from medground.verify.vlm_judge import VlmJudge
from model_requests import VERDICT, decode
from phantom_cases import liver_phantom as phantom


def test_vlm_judge_accepts_rejects_and_records(serve, tmp_path: Path) -> None:
    spec, case = phantom(tmp_path)
    drafts = draft_case(case, spec)
    view = drafts.views[0]
    base = next(s for s in drafts.samples if s.targets[0].label == "liver lesion")
    replies = {
        "yes": completion(
            json.dumps({"verdict": "yes", "confidence": 0.92, "reason": "The hypodense lesion is boxed."})
        ),
        "no": completion(json.dumps({"verdict": "no", "confidence": 0.8, "reason": "The box holds another lesion."})),
        "unsure": completion(json.dumps({"verdict": "yes", "confidence": 0.3, "reason": "Hard to see."})),
        "garbage": completion("I think so, yes!"),
        "off": completion(json.dumps({"verdict": "probably", "confidence": 0.9, "reason": "x"})),
    }

    def script(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        name = next(n for n in replies if f'"query": "Locate the {n} liver lesion."' in key)
        return Reply(body=replies[name])

    server = serve(script)
    judge = VlmJudge.from_config(
        {"backend": "vlm", "model": "google/medgemma-4b-it", "base_url": server.base_url, "threshold": 0.5}
    )
    samples = [replace(base, query=f"Locate the {name} liver lesion.") for name in replies]
    results = judge.judge([JudgeItem(s, view.image, view.values) for s in samples])
    assert [(r.stage, r.passed, r.reason) for r in results] == [
        ("visual", True, None),
        ("visual", False, "judge_rejected"),
        ("visual", False, "judge_unsure"),
        ("visual", False, "judge_failed"),
        ("visual", False, "judge_failed"),
    ]
    assert results[0].info == {
        "judge": "vlm",
        "backend": "openai",
        "model": "google/medgemma-4b-it",
        "prompt_version": "vlm-judge-v2",
        "threshold": 0.5,
        "verdict": "yes",
        "confidence": 0.92,
        "reason": "The hypodense lesion is boxed.",
    }
    assert "another lesion" in results[1].detail
    assert results[3].info["failure"] == "malformed_json" and results[4].info["failure"] == "schema_violation"
    assert results[0].to_dict()["passed"] is True and results[1].to_dict()["reason"] == "judge_rejected"

    # One call, one draft; the image it saw is the stored one padded to a square, box drawn.
    single = judge(samples[0], view.image)
    assert single.passed
    content = server.payloads[-1]["messages"][-1]["content"]
    seen = decode(content[0]["image_url"]["url"])
    assert seen.shape == (896, 896, 3)
    assert ((seen[..., 0] == 255) & (seen[..., 1] == 0)).any()
    assert "radiological display" in content[-1]["text"]
    assert server.payloads[-1]["response_format"]["json_schema"]["schema"] == VERDICT
    with pytest.raises(ValueError, match="threshold"):
        VlmJudge(judge.backend, threshold=1.5)


def test_a_non_finite_or_non_numeric_confidence_never_passes(serve, tmp_path: Path) -> None:
    """A confidence of NaN passed a 0.99 threshold (NaN < 0.99 is false) and was written as
    NaN; it, Infinity, a string or a number out of range is a failed verdict with its reason."""
    from medground.backends import Response
    from medground.records import dumps

    spec, case = phantom(tmp_path)
    drafts = draft_case(case, spec)
    view = drafts.views[0]
    base = next(s for s in drafts.samples if s.targets[0].label == "liver lesion")
    confidences = ["NaN", "Infinity", "-Infinity", "1e999", '"0.99"', "true", "0.995"]

    def script(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        index = next(i for i in range(len(confidences)) if f"case {i} liver lesion" in key)
        return Reply(body=completion(f'{{"verdict": "yes", "confidence": {confidences[index]}, "reason": "x"}}'))

    server = serve(script)
    judge = VlmJudge.from_config(
        {"backend": "vlm", "model": "google/medgemma-4b-it", "base_url": server.base_url, "threshold": 0.99}
    )
    samples = [replace(base, query=f"Locate the case {i} liver lesion.") for i in range(len(confidences))]
    results = judge.judge([JudgeItem(s, view.image, view.values) for s in samples])
    assert [r.passed for r in results] == [False] * 6 + [True]
    assert {r.reason for r in results[:6]} == {"judge_failed"}
    assert [r.info["failure"] for r in results[:4]] == ["malformed_json"] * 4
    assert [r.info["failure"] for r in results[4:6]] == ["schema_violation"] * 2
    assert "non-finite" in results[0].detail
    dumps([r.to_dict() for r in results])  # strict JSON: nothing non-finite left to write

    # Whatever backend lets one through (an engine's own parser), the judge refuses it.
    class Answers:
        name, model = "stand-in", "google/medgemma-4b-it"

        def __init__(self, answers: list[dict[str, Any]]) -> None:
            self.answers = answers

        def run(self, requests):
            return [Response(r.id, data) for r, data in zip(requests, self.answers, strict=True)]

        def close(self) -> None:
            pass

    answers = [
        {"verdict": "yes", "confidence": float("nan"), "reason": "x"},
        {"verdict": "yes", "confidence": float("inf"), "reason": "x"},
        {"verdict": "yes", "confidence": "0.99", "reason": "x"},
        {"verdict": "yes", "confidence": True, "reason": "x"},
        {"verdict": "yes", "confidence": 1.5, "reason": "x"},
        {"verdict": "maybe", "confidence": 0.999, "reason": "x"},
        {"verdict": "yes", "confidence": 1, "reason": "x"},
    ]
    stand_in = VlmJudge(Answers(answers), threshold=0.99, image_family="qwen2.5-vl")
    results = stand_in.judge([JudgeItem(s, view.image, view.values) for s in samples])
    assert [r.passed for r in results] == [False] * 6 + [True]
    assert [r.info.get("failure") for r in results] == ["invalid_confidence"] * 5 + ["invalid_verdict", None]
    assert "is not a finite number in [0, 1]" in results[0].detail
    assert all("confidence" not in r.info for r in results[:6])
    dumps([r.to_dict() for r in results])
