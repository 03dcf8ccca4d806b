"""The VLM synthesizer end to end on a phantom case, against a scripted chat server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from chatserver import ChatServer, Reply, completion
from medground.backends.openai import OpenAIBackend
from medground.generate import draft_case, view_measurements
from medground.synth import TemplateSynthesizer, VlmSynthesizer
from medground.synth.template import word_expression
from medground.verify import Verifier
from model_requests import KEY, KEY_ENV, decode
from phantom_cases import liver_phantom as phantom
from phantom_cases import view_inputs


def prompt_data(text: str) -> dict:
    """The data block of a prompt, decoded (exactly one, its markers on lines of their own)."""
    assert text.count("\n<data>\n") == 1 and text.count("\n</data>") == 1
    return json.loads(text.split("\n<data>\n", 1)[1].split("\n</data>", 1)[0])


def red_pixels(image: np.ndarray) -> int:
    return int(((image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)).sum())


def test_vlm_synthesizer_end_to_end_on_a_phantom(serve, tmp_path: Path, monkeypatch) -> None:
    spec, case = phantom(tmp_path)
    view, cues, references = view_inputs(spec, case)
    assert len(references) >= 6
    clean_before = view.image.copy()
    files_before = sorted(tmp_path.rglob("*"))

    # The "model" answers each reference with the template's wording of it, except a few
    # scripted failures: malformed JSON, an answer of the wrong type (schema), a missing
    # attribute, and a server that keeps failing.
    template = TemplateSynthesizer(seed=0)
    probe = VlmSynthesizer(OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://127.0.0.1:9/v1"), seed=3)
    requests, _ = probe.requests(view, cues, references, modality=spec.modality, body_region=spec.body_region)
    answers: dict[str, Reply] = {}
    for position, (reference, request) in enumerate(zip(references, requests, strict=True)):
        key = request.messages[-1]["content"][-1]["text"]
        (worded,), _ = template.synthesize(
            view, cues, [reference], modality=spec.modality, body_region=spec.body_region
        )
        item = {"query": worded.query, "query_type": worded.query_type, "attributes": list(reference.attributes)}
        if position == 0:
            answers[key] = Reply(body=completion('{"queries": [{"query": "Locate the liver."'))
        elif position == 1:
            answers[key] = Reply(body=completion(json.dumps({"queries": [{**item, "query_type": "spatial"}]})))
        elif position == 2:
            answers[key] = Reply(body=completion(json.dumps({"queries": [{**item, "attributes": []}]})))
        elif position == 3:
            answers[key] = Reply(500, {"error": "engine crashed"})
        else:
            answers[key] = Reply(body=completion(json.dumps({"queries": [item]})))
    server = serve(lambda key, attempt, payload: answers[key])
    monkeypatch.setenv(KEY_ENV, KEY)
    synthesizer = VlmSynthesizer.from_config(
        {
            "backend": "openai",
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "max_retries": 1,
            "backoff_s": 0.0,
            "temperature": 0.7,
        },
        seed=3,
    )
    samples, failures = synthesizer.synthesize(
        view, cues, references, modality=spec.modality, body_region=spec.body_region
    )

    # Nothing dropped: every reference is a sample or a recorded failure.
    assert len(samples) + len(failures) == len(references)
    reasons = [f["rejection"]["reason"] for f in failures]
    assert reasons[:4] == ["malformed_json", "schema_violation", "missing_attribute", "http_500"]
    assert set(reasons[4:]) <= {"duplicate_query"}
    for failure in failures:
        assert failure["rejection"]["stage"] == "synthesis" and failure["rejection"]["detail"]
        assert failure["synthesis"]["backend"] == "openai" and failure["targets"]
    assert failures[0]["synthesis"]["answer"].startswith('{"queries"')
    assert server.counts[requests[3].messages[-1]["content"][-1]["text"]] == 2  # retried once

    # The drafts: same fields as the template's, the synthesis recorded, the attributes kept.
    assert samples
    for sample in samples:
        assert sample.synthesis["backend"] == "openai"
        assert sample.synthesis["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
        assert sample.synthesis["prompt_version"] == "vlm-synthesis-v3"
        assert sample.synthesis["seed"] == 3
        assert sample.synthesis["image_prep"]["family"] == "qwen2.5-vl"
        assert sample.query and sample.image.startswith("images/phantom/")
        reference = next(
            r
            for r in references
            if r.targets == tuple(t.object_id for t in sample.targets)
            and dict(r.attributes) == sample.referring_attributes
        )
        assert sample.synthesis["attributes_used"] == list(reference.attributes)
        # The referring expression comes from the reference, as the template words it (the
        # model's query may word it otherwise): the same noun phrase for the same reference.
        assert sample.referring_expression == word_expression(
            reference,
            parts=sample.targets[0].parts if reference.query_type != "multi_object" else 1,
            body_region=spec.body_region,
            oriented=view.case.image.oriented,
        )
        assert sample.referring_expression.split()[0] in {"the", "every", "all", "both"}
    assert len({s.id for s in samples} | {f["id"] for f in failures}) == len(references)

    # They verify like the template's wording of the same references.
    template_drafts = draft_case(case, spec)
    facts = template_drafts.facts[samples[0].image]
    measures = view_measurements(template_drafts, spec, view)
    verifier = Verifier()
    for sample in samples:
        _, failed = verifier.verify(sample, facts, measures)
        assert failed is None, (sample.query, failed)

    # The prompt: clean image, marked copy (red box), the attributes and cues, the schema.
    # (requests run concurrently: pick a single-target one with a category by its text, not by arrival)
    chosen = next(
        request
        for reference, request in zip(references, requests, strict=True)
        if "category" in reference.attributes and reference.query_type != "multi_object"
    )
    payload = next(p for p in server.payloads if ChatServer.key_of(p) == chosen.messages[-1]["content"][-1]["text"])
    content = payload["messages"][-1]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    clean, marked = decode(content[0]["image_url"]["url"]), decode(content[1]["image_url"]["url"])
    assert clean.shape == marked.shape and clean.shape[0] % 28 == 0
    assert red_pixels(clean) == 0 and red_pixels(marked) > 0
    text = content[-1]["text"]
    data = prompt_data(text)
    assert data["modality"] == "CT" and data["attributes"][0]["name"] == "category"
    assert "size_class" in data["cues"]["size"] and "must use" in text
    schema = payload["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["queries"]["maxItems"] == 1
    assert payload["temperature"] == 0.7 and isinstance(payload["seed"], int)

    # Exported images carry no overlay, and nothing was written to disk.
    np.testing.assert_array_equal(view.image, clean_before)
    assert sorted(tmp_path.rglob("*")) == files_before

    # The same answers give the same drafts (seeded, ids stable).
    again, _ = synthesizer.synthesize(view, cues, references, modality=spec.modality, body_region=spec.body_region)
    assert [s.to_dict() for s in again] == [s.to_dict() for s in samples]
    assert template.synthesize(view, cues, references, modality=spec.modality, body_region=spec.body_region)[1] == []


def test_the_model_is_told_the_clinical_finding(shared_data: Path, tmp_path: Path) -> None:
    """On PH2 (with its diagnoses) the model is asked to name the finding, the plain
    phrasing names it, and the answer may list it among the attributes it used."""
    from medground.io import find_cases, load_case, load_spec
    from real_specs import ph2_spec

    spec = load_spec(ph2_spec(shared_data, tmp_path))
    case = load_case(spec, find_cases(spec).cases[0])
    view, cues, references = _first_view(spec, case)
    probe = VlmSynthesizer(OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://127.0.0.1:9/v1"), seed=3)
    requests, _ = probe.requests(view, cues, references, modality=spec.modality, body_region=spec.body_region)
    diagnosis = references[0].attributes["diagnosis"]
    for reference, request in zip(references, requests, strict=True):
        data = prompt_data(request.messages[-1]["content"][-1]["text"])
        said = next(a for a in data["attributes"] if a["name"] == "diagnosis")
        assert said["words"] == diagnosis and said["note"].startswith("a clinical finding")
        assert diagnosis in data["plain_phrasing"]
        enum = request.schema["properties"]["queries"]["items"]["properties"]["attributes"]["items"]["enum"]
        assert "diagnosis" in enum and set(reference.attributes) <= set(enum)


def _first_view(spec, case):
    from medground.anchors import find_anchors
    from medground.cues import case_context, compute_cues
    from medground.generate import _clinical
    from medground.refer import refer_view
    from medground.views import build_views

    objects = find_anchors(case, spec)
    views, _ = build_views(case, objects, spec)
    clinical, _ = _clinical(case, objects.anchors, spec)
    context = case_context(case, objects, spec.modality, None, spec.body_region, clinical)
    cues = compute_cues(views[0], context)
    references, _ = refer_view(views[0], cues, spec.body_region, exhaustive=spec.exhaustive_labels)
    return views[0], cues, references
