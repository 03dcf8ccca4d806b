"""The referring step: every query names exactly its target(s), on real CT, MR and chest
X-rays and on multi-lesion phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medground import phantoms, rle
from medground.generate import draft_case
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.pipeline import load_run_config, run
from medground.refer import Scene, matching_distractors, subset_of
from medground.terms import clinical_term
from phantom_cases import multi_lesion_case as _phantom_case
from real_specs import ct_mr_spec


def assert_unique(samples) -> None:
    """No two targets in one view share a query, and no object of the view other than the
    targets matches a sample's referring attributes (recomputed from the stored cues)."""
    by_view: dict[tuple, dict[str, tuple]] = {}
    for sample in samples:
        key = (sample.case_id, json.dumps(sample.view))
        targets = tuple(sorted(t.object_id for t in sample.targets))
        previous = by_view.setdefault(key, {}).setdefault(sample.query, targets)
        assert previous == targets, f"{sample.query!r} names {previous} and {targets}"
        if sample.query_type == "multi_object":
            attributes = sample.referring_attributes
            if "category" in attributes:
                assert all(d["label"] != attributes["category"] for d in sample.distractors)
            else:  # a pair named by its description: no other object has it
                assert all(
                    clinical_term(d["label"], "abdomen").description_plural != attributes["description"]
                    for d in sample.distractors
                )
            continue
        for distractor in sample.distractors:
            values = distractor["values"]
            assert any(values[k] != v for k, v in sample.referring_attributes.items()), (sample.query, distractor)
        # Each target's box is the box of its stored mask.
        for target in sample.targets:
            assert rle.bbox_xyxy(target.mask_rle) == target.bbox_xyxy
            assert rle.area(target.mask_rle) == target.area_px


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_real_volumes_give_unique_queries(shared_data: Path, tmp_path: Path, kind: str) -> None:
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, kind))
    case = load_case(spec, find_cases(spec).cases[0])
    drafts = draft_case(case, spec, seed=3)
    assert len(drafts.samples) > 50
    assert {s.query_type for s in drafts.samples} == {"direct", "descriptive", "relational", "multi_object"}
    assert_unique(drafts.samples)
    # An independent re-check over every object of each view (its stored facts): no object
    # but the targets has all the referring attributes.
    for sample in drafts.samples:
        scene = Scene(drafts.facts[sample.image], sample.width, sample.height, spec.body_region)
        targets = [t.object_id for t in sample.targets]
        assert matching_distractors(sample.referring_attributes, scene, targets) == [], sample.query
        assert set(drafts.facts[sample.image]) >= set(targets) | {d["object_id"] for d in sample.distractors}


def test_chest_xray_lungs_are_told_apart_by_side(shared_data: Path) -> None:
    spec = load_preset("cxr_lung", shared_data / "cxr_lung")
    for files in find_cases(spec).cases:
        drafts = draft_case(load_case(spec, files), spec)
        direct = [s for s in drafts.samples if s.query_type == "direct"]
        assert len(direct) == 2
        for sample in direct:
            (target,) = sample.targets
            side = target.cues["laterality"]
            assert sample.referring_attributes["laterality"] == side and f"the {side} lung" in sample.query
            centre = 0.5 * (target.bbox_xyxy[0] + target.bbox_xyxy[2])
            # Radiological display: the patient's right lung on the viewer's left.
            assert (centre < 256) == (side == "right")
        assert_unique(drafts.samples)


@pytest.mark.parametrize("seed", range(4))
def test_multi_lesion_phantoms_give_unique_queries(tmp_path: Path, seed: int) -> None:
    spec, case = _phantom_case(tmp_path, seed)
    drafts = draft_case(case, spec, seed=seed)
    lesion_samples = [s for s in drafts.samples if s.targets[0].label == "liver lesion"]
    assert lesion_samples
    assert_unique(drafts.samples)
    for skip in drafts.skipped:
        assert skip["reason"]


def test_bilateral_lungs_as_one_set(shared_data: Path) -> None:
    spec = load_preset("cxr_lung", shared_data / "cxr_lung")
    drafts = draft_case(load_case(spec, find_cases(spec).cases[0]), spec)
    named, described = sorted(
        (s for s in drafts.samples if s.query_type == "multi_object"),
        key=lambda s: "description" in s.referring_attributes,
    )
    for multi in (named, described):
        assert multi.referring_attributes["laterality"] == "bilateral" and len(multi.targets) == 2
    assert "both lungs" in named.query.lower() or "lungs on both sides" in named.query
    assert "air-filled organs of respiration" in described.query


@pytest.mark.parametrize(
    ("attributes", "subset"),
    [
        ({"category": "liver"}, "appearance"),
        ({"category": "liver lesion", "size_rank": "largest"}, "appearance"),
        ({"category": "liver lesion", "shape": "round", "intensity": "hypodense", "size_class": "small"}, "appearance"),
        ({"category": "liver lesion", "count": 3}, "appearance"),
        ({"description": "organ that produces bile"}, "appearance"),
        ({"category": "melanoma", "diagnosis": "melanoma"}, "appearance"),
        ({"category": "kidney_right"}, None),  # "the right kidney"
        ({"description": "retroperitoneal organ that produces urine", "laterality": "right"}, None),
        ({"category": "aorta", "laterality": "midline"}, None),
        ({"category": "kidney_right", "count": 2, "laterality": "bilateral"}, None),  # "on both sides"
        ({"category": "liver", "position": "left"}, None),
        ({"category": "liver lesion", "within": "liver"}, None),
        ({"category": "kidney_right", "relation": "posterior:liver"}, None),
        ({"category": "gallbladder", "touches": "liver"}, None),
    ],
)
def test_the_appearance_subset_has_no_position_or_side_attribute(attributes: dict, subset: str | None) -> None:
    assert subset_of(attributes, "abdomen") == subset


#: Words that say where something is, in the template's wordings of positions, sides and
#: relations (presets/templates/template_v2.toml).
PLACE_WORDS = {
    "left",
    "right",
    "left-sided",
    "right-sided",
    "midline",
    "side",
    "sides",
    "upper",
    "lower",
    "center",
    "within",
    "inside",
    "anterior",
    "posterior",
    "superior",
    "inferior",
    "medial",
    "lateral",
    "touching",
}


def _place_words(query: str) -> set[str]:
    return {w.strip(".,?'s") for w in query.lower().split()} & PLACE_WORDS


def test_appearance_queries_say_no_position_or_side_word(tmp_path: Path) -> None:
    """On the demo's volumes and photographs: a sample is marked ``appearance`` exactly when
    its attributes say no place (recomputed), its query then has none of the template's
    place and side words, and the others each have one (but a bilateral pair, which only
    some phrasings say "on both sides" of)."""
    phantoms.demo_dataset(tmp_path / "demo", volumes=2, photos=2)
    run(load_run_config(tmp_path / "demo" / "run.toml"), tmp_path / "run", use_ray=False, progress=False)
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    marked = [s for s in samples if s["subset"] == "appearance"]
    assert marked and len(marked) < len(samples)
    assert {s["subset"] for s in samples} == {"appearance", None}
    for sample in samples:
        assert sample["subset"] == subset_of(sample["referring_attributes"], "abdomen"), sample["query"]
        words = _place_words(sample["query"])
        if sample["subset"] == "appearance":
            assert not words, sample["query"]
        elif sample["referring_attributes"].get("laterality") != "bilateral":  # "both kidneys", or "… on both sides"
            assert words, sample["query"]
    assert {s["query_type"] for s in marked} >= {"direct", "multi_object"}


def test_all_hold_says_whether_keep_keeps_every_candidate(shared_data: Path, tmp_path: Path) -> None:
    """The incremental algorithm asks whether an attribute rules a distractor out by
    ``Scene.all_hold`` (stopping at the first object without the value): it answers as
    comparing :meth:`Scene.keep` with its candidates does, for every value of every object
    of the views of a real CT, over few candidates (read one by one) and many (the index)."""
    import random

    spec = load_spec(ct_mr_spec(shared_data, tmp_path, "CT"))
    case = load_case(spec, find_cases(spec).cases[0])
    drafts = draft_case(case, spec, seed=3)
    rng = random.Random(5)
    asked = {True: 0, False: 0}
    for image, facts in list(drafts.facts.items())[:12]:
        first = next(s for s in drafts.samples if s.image == image)
        scene = Scene(facts, first.width, first.height, spec.body_region)
        ids = list(facts)
        for target in ids:
            for attribute, value in scene.value_of(target).items():
                if value is None:  # an object without the attribute: never asked
                    continue
                for size in (1, 3, len(ids)):
                    candidates = set(rng.sample(ids, min(size, len(ids))))
                    expected = scene.keep(attribute, value, set(candidates)) == candidates
                    assert scene.all_hold(attribute, value, candidates) is expected, (attribute, value)
                    asked[expected] += 1
    assert asked[True] and asked[False]
