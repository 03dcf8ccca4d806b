"""The rules stage: a query's claims are checked against the view's facts whatever the
wording; patient sides only where the image has an orientation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from medground.generate import draft_case, verify_drafts, view_measurements
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.verify import check_rules
from phantom_drafts import phantom, run


def test_rules_read_template_and_vlm_wording_alike(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    good = next(
        s for s in drafts.samples if s.query_type == "direct" and s.referring_attributes.get("size_rank") == "largest"
    )
    facts = drafts.facts[good.image]
    measures = view_measurements(drafts, spec, next(v for v in drafts.views if v.view_record() == good.view))
    for query in (
        "Please find the biggest hypodense liver lesion.",
        "Which is the largest hypoattenuating lesion of the liver?",
        "The largest liver lesion, hypodense relative to the surrounding parenchyma.",
    ):
        assert check_rules(replace(good, query=query), facts, measures).passed, query
    for query in (
        "Please find the smallest hypodense liver lesion.",
        "Which is the largest hyperattenuating lesion of the liver?",
    ):
        assert not check_rules(replace(good, query=query), facts, measures).passed, query


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
    measures = view_measurements(drafts, spec, drafts.views[0])
    result = check_rules(replace(sample, query="Locate the polyp on the left."), facts, measures)
    assert (result.passed, result.reason) == (False, "side_without_orientation")


def test_parts_are_counted_from_the_view_without_measuring_the_object(shared_data: Path, tmp_path: Path) -> None:
    """A query about parts is checked against every object of the view: each object's parts
    are its 8-connected pieces of at least ``min_piece`` pixels (scipy's labelling of the
    whole view), counted without measuring the object (its ring and grey levels are read
    only when a claim needs them)."""
    import numpy as np
    from scipy import ndimage

    (tmp_path / "ct.toml").write_text(
        f'name = "ct"\nmodality = "CT"\nbody_region = "abdomen"\nroot = "{shared_data / "ct_abdomen_totalseg"}"\n'
        'labels_file = "labels.json"\n[cases]\nimage = "ct.nii.gz"\nmask = "seg.nii.gz"\n'
    )
    spec = load_spec(tmp_path / "ct.toml")
    drafts = draft_case(load_case(spec, find_cases(spec).cases[0]), spec)
    several = 0
    for view in drafts.views[::4]:
        measures = view_measurements(drafts, spec, view)
        objects = measures.evidence.objects
        for object_id in measures.object_ids:
            labelled, count = ndimage.label(objects == object_id, structure=np.ones((3, 3)))
            sizes = np.bincount(labelled.ravel())[1:]
            expected = int(np.count_nonzero(sizes >= measures.min_piece))
            assert measures.pieces(object_id) == expected, (view.image_file, object_id)
            several += expected > 1
        assert not measures._cache, "counting parts measured an object"
    assert several > 0, "some object of the shared CT shows in several parts"
