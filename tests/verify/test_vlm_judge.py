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
        name = next(n for n in replies if f'Query: "Locate the {n} liver lesion."' in key)
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
        "prompt_version": "vlm-judge-v1",
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
