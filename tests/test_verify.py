"""Verification: adversarial drafts on real views and phantoms are rejected at the right
stage with the right reason; the good draft of the same view passes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medground.generate import draft_case, verify_drafts
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.records import Sample
from medground.verify import Funnel, Verifier, check_format, check_rules, extract_claims, judge_evidence, make_judge
from phantom_cases import liver_phantom


def phantom(tmp_path: Path, faint: bool = False):
    """The shared liver phantom and its template drafts."""
    spec, case = liver_phantom(tmp_path, faint)
    return spec, draft_case(case, spec)


def run(spec, drafts, sample: Sample):
    view = next(v for v in drafts.views if v.view_record() == sample.view)
    return Verifier().verify(
        sample,
        drafts.facts[sample.image],
        view.image,
        view.values,
        body_region=spec.body_region,
        oriented=True,
        labels=spec.labels.values(),
    )


def lesion_sample(drafts, query_type: str = "direct") -> Sample:
    return next(s for s in drafts.samples if s.query_type == query_type and s.targets[0].label == "liver lesion")


def test_template_drafts_of_the_phantom_all_pass(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    accepted, rejected, funnel = verify_drafts(drafts, spec)
    assert accepted and not rejected, [r["rejection"] for r in rejected]
    assert funnel.to_dict()["accepted"] == len(accepted) == funnel.drafts
    for sample in accepted:
        assert set(sample.verification) == {"format", "rules", "visual"}
        assert all(result["passed"] for result in sample.verification.values())


@pytest.mark.parametrize(
    ("query", "stage", "reason"),
    [
        ("Locate the liver lesion.", "rules", "ambiguous"),
        ("Locate the largest liver lesion on the patient's right.", "rules", "laterality_mismatch"),
        ("Locate the 9 cm liver lesion.", "rules", "measurement_mismatch"),
        ("Locate the largest of the five liver lesions.", "rules", "count_mismatch"),
        ("Locate the largest liver lesion at 120, 45.", "format", "leaked_number"),
        ("Locate the largest liver lesion inside the red box.", "format", "leaked_rendering"),
        ("Locate the {adjective} liver lesion.", "format", "unfilled_slot"),
        ("Sure! I think it is the largest liver lesion.", "format", "register"),
        ("Lesion.", "format", "query_length"),
        ("Locate the largest hyperdense liver lesion.", "rules", "intensity_mismatch"),
        ("Locate the largest liver lesion in the lower right part of the image.", "rules", "position_mismatch"),
        ("Locate the largest kidney.", "rules", "unknown_structure"),
        ("Locate the liver lesion adjacent to the aorta.", "rules", "unknown_structure"),
        ("Locate the liver.", "rules", "category_mismatch"),
    ],
)
def test_adversarial_drafts_are_rejected_with_their_reason(tmp_path: Path, query: str, stage: str, reason: str) -> None:
    spec, drafts = phantom(tmp_path)
    good = next(
        s for s in drafts.samples if s.query_type == "direct" and s.referring_attributes.get("size_rank") == "largest"
    )
    assert run(spec, drafts, good)[1] is None
    checked, failed = run(spec, drafts, replace(good, query=query))
    assert failed is not None and (failed.stage, failed.reason) == (stage, reason), (failed, checked.verification)
    assert checked.verification[stage]["reason"] == reason


def test_box_must_match_its_mask(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    good = lesion_sample(drafts)
    target = good.targets[0]
    moved = replace(target, bbox_xyxy=[target.bbox_xyxy[0] + 1, *target.bbox_xyxy[1:]])
    result = check_format(replace(good, targets=[moved]))
    assert (result.passed, result.reason) == (False, "box_mask_mismatch")
    outside = replace(target, bbox_xyxy=[0, 0, good.width + 5, 10])
    assert check_format(replace(good, targets=[outside])).reason == "box_outside_image"


def test_a_lesion_too_faint_to_see_fails_the_evidence_judge(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path, faint=True)
    faint = [
        s
        for s in drafts.samples
        if s.targets[0].label == "liver lesion" and abs(s.targets[0].cues["intensity"]["contrast"]) < 5
    ]
    assert faint
    view = next(v for v in drafts.views if v.view_record() == faint[0].view)
    result = judge_evidence(faint[0], view.values)
    assert (result.passed, result.reason) == (False, "low_contrast")
    visible = next(
        s
        for s in drafts.samples
        if s.view == faint[0].view
        and s.targets[0].label == "liver lesion"
        and abs(s.targets[0].cues["intensity"]["contrast"]) > 20
    )
    assert judge_evidence(visible, view.values).passed


def test_rules_read_template_and_vlm_wording_alike(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    good = next(
        s for s in drafts.samples if s.query_type == "direct" and s.referring_attributes.get("size_rank") == "largest"
    )
    facts = drafts.facts[good.image]
    for query in (
        "Please find the biggest hypodense liver lesion.",
        "Which is the largest hypoattenuating lesion of the liver?",
        "The largest liver lesion, hypodense relative to the surrounding parenchyma.",
    ):
        assert check_rules(replace(good, query=query), facts, body_region="abdomen", oriented=True).passed, query
    for query in (
        "Please find the smallest hypodense liver lesion.",
        "Which is the largest hyperattenuating lesion of the liver?",
    ):
        assert not check_rules(replace(good, query=query), facts, body_region="abdomen", oriented=True).passed, query


def test_wrong_side_on_real_ct(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "ct.toml").write_text(
        f'name = "ct"\nmodality = "CT"\nbody_region = "abdomen"\nroot = "{shared_data / "ct_abdomen_totalseg"}"\n'
        'labels_file = "labels.json"\n[cases]\nimage = "ct.nii.gz"\nmask = "seg.nii.gz"\n'
    )
    spec = load_spec(tmp_path / "ct.toml")
    drafts = draft_case(load_case(spec, find_cases(spec).cases[0]), spec)
    accepted, rejected, _ = verify_drafts(drafts, spec)
    assert len(accepted) > 50 and not rejected
    good = next(s for s in drafts.samples if s.query_type == "direct" and s.targets[0].label == "kidney_left")
    assert run(spec, drafts, good)[1] is None
    wrong = run(spec, drafts, replace(good, query="Locate the right kidney."))[1]
    assert (wrong.stage, wrong.reason) == ("rules", "laterality_mismatch")
    fine = run(spec, drafts, replace(good, query="Find the kidney on the patient's left."))[1]
    assert fine is None


def test_photographs_take_no_patient_side(shared_data: Path) -> None:
    spec = load_preset("kvasir_seg", shared_data / "endoscopy_kvasir")
    drafts = draft_case(load_case(spec, find_cases(spec).cases[0]), spec)
    sample = drafts.samples[0]
    facts = drafts.facts[sample.image]
    result = check_rules(
        replace(sample, query="Locate the polyp on the left."), facts, body_region="colon", oriented=False
    )
    assert (result.passed, result.reason) == (False, "side_without_orientation")


def test_claims_parser() -> None:
    labels = ["liver", "liver lesion", "kidney_left", "kidney_right", "gallbladder", "lung_upper_lobe_left"]
    claims = extract_claims(
        "Locate the largest hypodense liver lesion within the liver, 2.5 cm across, "
        "in the upper right part of the image.",
        labels,
    )
    assert claims.categories == ["liver lesion"] and claims.relations == [("within", "liver")]
    assert claims.positions == ["upper right"] and claims.sides == [] and claims.lengths_mm == [25.0]
    assert claims.intensities == ["hypodense"] and claims.size_ranks == ["largest"]
    claims = extract_claims("The structure inferior to the gallbladder and adjacent to the right kidney.", labels)
    assert claims.relations == [("inferior", "gallbladder"), ("touches", "kidney_right")] and not claims.sides
    assert extract_claims("Locate the left upper lobe of the lung.", labels).relations == []
    assert extract_claims("Find both kidneys.", labels).counts == [2]


def test_funnel_counts_add_up(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    bad = [replace(s, query="Locate the liver lesion.") for s in drafts.samples if s.query_type == "direct"]
    drafts.samples.extend(bad)
    accepted, rejected, funnel = verify_drafts(drafts, spec)
    summary = funnel.to_dict()
    assert summary["drafts"] == len(accepted) + len(rejected)
    rejected_total = sum(sum(r.values()) for r in summary["rejected"].values())
    assert rejected_total == len(rejected) and summary["accepted"] == len(accepted)
    merged = Funnel()
    merged.merge(funnel)
    merged.merge(funnel)
    assert merged.to_dict()["drafts"] == 2 * summary["drafts"]


def test_onnx_judge(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from medground.verify.onnx_judge import OnnxJudge, prepare_inputs

    # score = mean brightness of the crop inside the box: a stand-in for a trained judge.
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["score"], keepdims=0)],
        "judge",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64]),
            helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "judge.onnx"
    onnx.save(model, path)
    spec, drafts = phantom(tmp_path)
    sample = lesion_sample(drafts)
    bright = np.full((sample.height, sample.width), 230, np.uint8)
    dark = np.zeros((sample.height, sample.width), np.uint8)
    inputs = prepare_inputs(bright, [sample.targets[0].bbox_xyxy], 64)
    assert inputs["image"].shape == (1, 3, 64, 64) and inputs["box"].shape == (1, 4)
    x0, y0, x1, y1 = inputs["box"][0]
    assert 0 < x0 < x1 < 1 and 0 < y0 < y1 < 1
    judge = OnnxJudge(path, threshold=0.5)
    assert judge.size == 64 and judge(sample, bright).passed
    result = judge(sample, dark)
    assert (result.passed, result.reason) == (False, "judge_rejected") and result.info["score"] == 0.0
    verifier = Verifier(make_judge({"backend": "onnx", "model": str(path)}))
    view = next(v for v in drafts.views if v.view_record() == sample.view)
    checked, failed = verifier.verify(
        sample, drafts.facts[sample.image], bright, view.values, body_region="abdomen", oriented=True
    )
    assert failed is None and checked.verification["visual"]["info"]["judge"] == "onnx"
