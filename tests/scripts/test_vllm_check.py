"""scripts/vllm_check.py (the GPU check) run on the real sample data with a stand-in vLLM
engine, so it is exercised without a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatserver import ChatServer
from vllm_stand_in import FakeCompletion, FakeLLM, fake_vllm


def scripted_model(conversation: list[dict[str, Any]]) -> str:
    """A stand-in VLM: words the plain phrasing it is given, and says yes to every judgement."""
    text = ChatServer.key_of({"messages": conversation})
    if text.startswith("Image 1 is"):
        data = json.loads(text.split("\n<data>\n", 1)[1].split("\n</data>", 1)[0])
        phrase = data["plain_phrasing"]
        names = [attribute["name"] for attribute in data["attributes"]]
        query_type = text.split("Query type: ", 1)[1].split(".", 1)[0]
        query = f"Locate {phrase}." if query_type != "multi_object" else f"Outline {phrase} in this image."
        return json.dumps({"queries": [{"query": query, "query_type": query_type, "attributes": names}]})
    return json.dumps({"verdict": "yes", "confidence": 0.8, "reason": "The outlined object matches the query."})


def test_vllm_check_script_runs_on_real_data_with_a_stand_in_engine(
    shared_data: Path, monkeypatch, capsys, tmp_path: Path
) -> None:
    import importlib.util

    fake_vllm(monkeypatch)
    monkeypatch.setattr(
        FakeLLM,
        "__init__",
        lambda self, model, **kwargs: (
            setattr(self, "calls", []),
            setattr(self, "answer", lambda c: FakeCompletion(scripted_model(c))),
        )[0],
    )
    path = Path(__file__).resolve().parents[2] / "scripts" / "vllm_check.py"
    module_spec = importlib.util.spec_from_file_location("vllm_check", path)
    assert module_spec and module_spec.loader
    check = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(check)
    out = tmp_path / "check.jsonl"
    status = check.main(
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--data", str(shared_data), "--references", "2", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "backend vllm" in printed and "image family qwen2.5-vl" in printed and printed.rstrip().endswith("OK")
    for name in ("ct_abdomen", "cxr_lung", "kvasir", "ph2"):
        assert f"== {name}" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["kind"] for r in records} == {"draft", "verdict"}
    assert all(r["passed"] for r in records if r["kind"] == "verdict")
