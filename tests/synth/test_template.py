"""The template synthesizer: the same seed gives the same samples byte for byte; the noun
phrase's word order and words for every attribute that changes them (size classes,
intensities, sides, descriptions, clinical findings, what follows the head noun) and its
number; the number words of multi-object queries; the wording picked by a hash of the
seed, the sample id and the slot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medground.generate import draft_case
from medground.refer import Reference
from medground.synth.template import TemplateSynthesizer, noun_phrase, word_expression, word_query
from medground.verify.claims import extract_claims
from phantom_cases import liver_phantom, view_inputs
from phantom_cases import multi_lesion_case as _phantom_case


def test_same_seed_same_samples_byte_for_byte(tmp_path: Path) -> None:
    spec, case = _phantom_case(tmp_path, 7)
    first = [json.dumps(s.to_dict(), sort_keys=True) for s in draft_case(case, spec, seed=11).samples]
    second = [json.dumps(s.to_dict(), sort_keys=True) for s in draft_case(case, spec, seed=11).samples]
    other = [json.dumps(s.to_dict(), sort_keys=True) for s in draft_case(case, spec, seed=12).samples]
    assert first == second and first != other
    # Ids hash what a sample points at, not its wording: shared ids mean the same target.
    by_id = {json.loads(s)["id"]: json.loads(s) for s in first}
    shared = [json.loads(s) for s in other if json.loads(s)["id"] in by_id]
    assert len(shared) > len(first) // 2
    for record in shared:
        assert record["targets"] == by_id[record["id"]]["targets"] and record["image"] == by_id[record["id"]]["image"]


# ----------------------------------------------------------------------------- the noun phrase, row by row


@pytest.mark.parametrize(
    ("attributes", "phrase"),
    [
        ({"category": "liver"}, "the liver"),
        ({"category": "liver lesion", "size_rank": "largest"}, "the largest liver lesion"),
        ({"category": "liver lesion", "size_rank": "smallest"}, "the smallest liver lesion"),
        # Size classes, in words.
        ({"category": "liver lesion", "size_class": "small"}, "the small liver lesion"),
        ({"category": "liver lesion", "size_class": "medium"}, "the medium-sized liver lesion"),
        ({"category": "liver lesion", "size_class": "large"}, "the large liver lesion"),
        ({"category": "liver", "size_class": "normal"}, "the normal-sized liver"),
        ({"category": "liver lesion", "size_class": "huge"}, "the liver lesion"),
        ({"category": "liver lesion", "size_class": None}, "the liver lesion"),
        ({"category": "liver lesion", "shape": "lobulated"}, "the lobulated liver lesion"),
        # Intensities: radiology words are adjectives; photographs compare with the surroundings.
        ({"category": "liver lesion", "intensity": "hypodense"}, "the hypodense liver lesion"),
        ({"category": "liver lesion", "intensity": "isodense"}, "the isodense liver lesion"),
        ({"category": "liver lesion", "intensity": "hyperintense"}, "the hyperintense liver lesion"),
        ({"category": "polyp", "intensity": "darker"}, "the polyp darker than the surrounding tissue"),
        ({"category": "polyp", "intensity": "brighter"}, "the polyp brighter than the surrounding tissue"),
        ({"category": "polyp", "intensity": "similar"}, "the polyp of similar brightness to its surroundings"),
        ({"category": "polyp", "intensity": None}, "the polyp"),
        # Sides: one of a pair takes the bare side; others "-sided" or "midline"; a term
        # that names its side says it once.
        ({"category": "liver lesion", "laterality": "left"}, "the left-sided liver lesion"),
        ({"category": "liver lesion", "laterality": "right"}, "the right-sided liver lesion"),
        ({"category": "liver lesion", "laterality": "midline"}, "the midline liver lesion"),
        ({"category": "kidney_left", "laterality": "left"}, "the left kidney"),
        ({"category": "lung field", "laterality": "right"}, "the right lung"),
        ({"category": "autochthon_right", "laterality": "right"}, "the right erector spinae muscle"),
        # After the noun: within, the relation, the place in the image.
        ({"category": "liver lesion", "within": "liver"}, "the liver lesion within the liver"),
        ({"category": "liver lesion", "within": "kidney_right"}, "the liver lesion within the right kidney"),
        (
            {"category": "liver lesion", "relation": "inferior:gallbladder"},
            "the liver lesion inferior to the gallbladder",
        ),
        ({"category": "aorta", "relation": "left:kidney_right"}, "the aorta to the left of the right kidney"),
        ({"category": "liver lesion", "position": "center"}, "the liver lesion in the center of the image"),
        (
            {"category": "liver lesion", "position": "upper left"},
            "the liver lesion in the upper left part of the image",
        ),
        # Descriptions name a structure without its name.
        ({"description": "sac that stores bile"}, "the sac that stores bile"),
        (
            {"description": "organ that produces bile", "position": "upper left"},
            "the organ that produces bile in the upper left part of the image",
        ),
        (
            {"description": "lesion", "shape": "round", "position": "center"},
            "the round lesion in the center of the image",
        ),
        # Everything at once: size rank, size class, shape, intensity, side, noun, within,
        # relation, position.
        (
            {
                "position": "upper left",
                "relation": "medial:kidney_right",
                "within": "liver",
                "category": "liver lesion",
                "laterality": "right",
                "intensity": "hypodense",
                "shape": "lobulated",
                "size_class": "large",
                "size_rank": "largest",
            },
            "the largest large lobulated hypodense right-sided liver lesion within the liver medial to the right"
            " kidney in the upper left part of the image",
        ),
    ],
)
def test_noun_phrase_order_and_words(attributes: dict[str, Any], phrase: str) -> None:
    assert noun_phrase(attributes, body_region="abdomen", oriented=True).text == phrase
    reversed_order = dict(reversed(list(attributes.items())))
    assert noun_phrase(reversed_order, body_region="abdomen", oriented=True).text == phrase


@pytest.mark.parametrize(
    ("attributes", "label", "oriented", "phrase"),
    [
        # No patient orientation: no side.
        ({"category": "liver lesion", "laterality": "left"}, None, False, "the liver lesion"),
        ({"description": "lesion", "laterality": "left"}, "polyp", False, "the lesion"),
        # A description of one of a pair takes the bare side; a finding does not.
        (
            {"description": "retroperitoneal organ that produces urine", "laterality": "left"},
            "kidney_left",
            True,
            "the left retroperitoneal organ that produces urine",
        ),
        ({"description": "lesion", "laterality": "right"}, "liver lesion", True, "the right-sided lesion"),
    ],
)
def test_noun_phrase_sides(attributes: dict[str, Any], label: str | None, oriented: bool, phrase: str) -> None:
    assert noun_phrase(attributes, body_region="abdomen", oriented=oriented, label=label).text == phrase


def test_clinical_findings_head_the_phrase_and_descriptors_qualify_it() -> None:
    attributes = {"category": "skin lesion", "diagnosis": "melanoma", "asymmetry": "asymmetric", "shape": "oval"}
    phrase = noun_phrase(attributes, body_region="skin", oriented=False, findings=("diagnosis",))
    assert phrase.text == "the asymmetric oval melanoma" and not phrase.plural
    # Without the finding role the value is a descriptor, like any other.
    assert noun_phrase(
        {"category": "skin lesion", "asymmetry": "symmetric"}, body_region="skin", oriented=False
    ).text == ("the symmetric skin lesion")


@pytest.mark.parametrize(
    ("category", "plural"),
    [("intervertebral_discs", True), ("costal_cartilages", True), ("portal_vein_and_splenic_vein", True)]
    + [("liver", False), ("kidney_left", False), ("vertebrae_L1", False)],
)
def test_the_phrase_knows_its_number(category: str, plural: bool) -> None:
    assert noun_phrase({"category": category}, body_region="abdomen", oriented=True).plural is plural


# ----------------------------------------------------------------------------- drafts of a phantom view


@pytest.fixture(scope="module")
def lesion_view(tmp_path_factory: pytest.TempPathFactory):
    """The liver phantom's first view: its spec, the view, its cues and references."""
    spec, case = liver_phantom(tmp_path_factory.mktemp("phantom"))
    return (spec, *view_inputs(spec, case))


@pytest.mark.parametrize(
    ("count", "word"),
    [(2, "two"), (3, "three"), (4, "four"), (5, "five"), (6, "six"), (7, "seven"), (8, "eight"), (9, "nine")]
    + [(10, "ten")],
)
def test_number_words_of_multi_object_queries(lesion_view, count: int, word: str) -> None:
    spec, view, cues, _ = lesion_view
    lesions = tuple(c for c, o in view.objects.items() if o.anchor.label == "liver lesion")
    reference = Reference("multi_object", lesions, {"category": "liver lesion", "count": count}, ())
    # The phrasing that says the count, under the first seed that picks it for this sample.
    for seed in range(64):
        (sample,), _ = TemplateSynthesizer(seed).synthesize(
            view, cues, [reference], modality=spec.modality, body_region=spec.body_region
        )
        if sample.query.startswith("Mark each of the "):
            break
    assert sample.query == f"Mark each of the {word} liver lesions."


@pytest.mark.parametrize("count", [11, 20])
def test_counts_past_ten_are_not_said(lesion_view, count: int) -> None:
    spec, view, cues, _ = lesion_view
    lesions = tuple(c for c, o in view.objects.items() if o.anchor.label == "liver lesion")
    reference = Reference("multi_object", lesions, {"category": "liver lesion", "count": count}, ())
    for seed in range(32):
        (sample,), _ = TemplateSynthesizer(seed).synthesize(
            view, cues, [reference], modality=spec.modality, body_region=spec.body_region
        )
        assert "liver lesion" in sample.query and not any(c.isdigit() for c in sample.query)
        assert not {"eleven", "twenty", "several", "None"} & set(sample.query.rstrip(".?").split())


def test_the_wording_is_picked_by_a_hash_of_seed_sample_and_slot() -> None:
    options = [f"phrasing {i}" for i in range(6)]
    pick = TemplateSynthesizer(3).picker("sample-1")
    assert pick(options, "phrasing") == TemplateSynthesizer(3).picker("sample-1")(options, "phrasing")
    # Over many samples every option is used about equally, and the slots are independent.
    counts = {o: 0 for o in options}
    same = 0
    for key in range(1200):
        pick = TemplateSynthesizer(0).picker(f"sample-{key}")
        counts[pick(options, "phrasing")] += 1
        same += pick(options, "phrasing") == pick(options, "position")
    assert min(counts.values()) > 150 and max(counts.values()) < 250
    assert same < 300


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_each_draft_is_worded_by_the_pick_for_its_id(lesion_view, seed: int) -> None:
    spec, view, cues, references = lesion_view
    synthesizer = TemplateSynthesizer(seed)
    samples, failures = synthesizer.synthesize(
        view, cues, references, modality=spec.modality, body_region=spec.body_region
    )
    assert samples and failures == []
    by_id = {s.id: s for s in samples}
    for reference in references:
        query_type = "descriptive" if reference.query_type == "implicit" else reference.query_type
        matching = [
            s
            for s in samples
            if tuple(sorted({t.object_id for t in s.targets})) == tuple(sorted(reference.targets))
            and s.referring_attributes == reference.attributes
        ]
        if not matching:
            continue  # worded like another query type for the same target: kept once
        (sample,) = matching
        assert sample.id in by_id and sample.query_type == query_type
        parts = len(view.objects[reference.targets[0]].pieces) if len(reference.targets) == 1 else 1
        expected = word_query(
            reference, parts=parts, body_region=spec.body_region, oriented=True, pick=synthesizer.picker(sample.id)
        )
        assert sample.query == expected


# ----------------------------------------------------------------------------- the referring expression

_IMPERATIVES = {"locate", "find", "identify", "where", "point", "show", "localize", "indicate", "mark", "outline"}


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_every_draft_carries_the_noun_phrase_its_query_refers_with(tmp_path: Path, seed: int) -> None:
    # The expression is the query's own noun phrase (the same words, picked by the same hash):
    # it reads as the same claims as the query, so the verifier's reading holds for both.
    spec, case = _phantom_case(tmp_path, 7)
    drafts = draft_case(case, spec, seed=seed).samples
    assert drafts
    for sample in drafts:
        expression = sample.referring_expression
        assert expression and expression == expression.strip() and not expression.endswith((".", "?"))
        assert expression.split()[0] in {"the", "every", "all", "both"}, expression
        assert not _IMPERATIVES & set(expression.lower().split()), expression
        labels = sorted({t.label for t in sample.targets} | {d["label"] for d in sample.distractors})
        said, meant = (extract_claims(text, labels, spec.body_region) for text in (expression, sample.query))
        if sample.query_type == "multi_object":
            assert said.categories == meant.categories and said.sides == meant.sides, (expression, sample.query)
        else:
            assert expression.lower() in sample.query.lower(), (expression, sample.query)
            assert said.to_dict() == meant.to_dict(), (expression, sample.query)


@pytest.mark.parametrize(
    ("attributes", "targets", "expression"),
    [
        ({"category": "liver lesion", "count": 3}, 3, "every liver lesion"),
        ({"category": "kidney", "count": 2, "laterality": "bilateral"}, 2, "both kidneys"),
        (
            {"description": "retroperitoneal organs that produce urine", "count": 2, "laterality": "bilateral"},
            2,
            "both retroperitoneal organs that produce urine",
        ),
        ({"description": "hepatic masses", "count": 3}, 3, "all hepatic masses"),
        ({"category": "liver lesion", "size_rank": "largest"}, 1, "the largest liver lesion"),
    ],
)
def test_referring_expressions_of_sets_and_single_objects(
    lesion_view, attributes: dict[str, Any], targets: int, expression: str
) -> None:
    spec, view, cues, _ = lesion_view
    lesions = tuple(c for c, o in view.objects.items() if o.anchor.label == "liver lesion")[:targets]
    kind = "multi_object" if targets > 1 else "direct"
    reference = Reference(kind, lesions, attributes, ())
    assert word_expression(reference, parts=1, body_region=spec.body_region, oriented=True) == expression
    (sample,), _ = TemplateSynthesizer(0).synthesize(
        view, cues, [reference], modality=spec.modality, body_region=spec.body_region
    )
    assert sample.referring_expression == expression and sample.to_dict()["referring_expression"] == expression
