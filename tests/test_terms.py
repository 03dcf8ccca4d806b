"""Clinical terms for label names: worked examples, real label maps and the vocabulary files."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medground.terms import VOCAB_VERSION, Term, _build_vocabulary, clinical_term

EXAMPLES = [
    # label, text, side, noun
    ("kidney_left", "left kidney", "left", "kidney"),
    ("kidney_right", "right kidney", "right", "kidney"),
    ("adrenal_gland_right", "right adrenal gland", "right", "adrenal gland"),
    ("lung_upper_lobe_left", "left upper lobe of the lung", "left", "upper lobe of the lung"),
    ("lung_middle_lobe_right", "right middle lobe of the lung", "right", "middle lobe of the lung"),
    ("lung_left", "left lung", "left", "lung"),
    ("rib_left_7", "left 7th rib", "left", "rib"),
    ("rib_right_1", "right 1st rib", "right", "rib"),
    ("rib_right_2", "right 2nd rib", "right", "rib"),
    ("rib_left_3", "left 3rd rib", "left", "rib"),
    ("rib_left_11", "left 11th rib", "left", "rib"),
    ("vertebrae_L1", "L1 vertebra", None, "vertebra"),
    ("vertebrae_T12", "T12 vertebra", None, "vertebra"),
    ("vertebrae_C1", "C1 vertebra", None, "vertebra"),
    ("vertebrae", "vertebrae", None, "vertebrae"),
    ("iliopsoas_left", "left iliopsoas muscle", "left", "iliopsoas muscle"),
    ("autochthon_right", "right erector spinae muscle", "right", "erector spinae muscle"),
    ("iliac_vena_left", "left common iliac vein", "left", "common iliac vein"),
    ("clavicula_right", "right clavicle", "right", "clavicle"),
    ("hip_left", "left hip bone", "left", "hip bone"),
    ("atrial_appendage_left", "left atrial appendage", "left", "atrial appendage"),
    ("kidney_cyst_left", "left kidney cyst", "left", "kidney cyst"),
    ("portal_vein_and_splenic_vein", "portal and splenic veins", None, "portal and splenic veins"),
    ("inferior_vena_cava", "inferior vena cava", None, "inferior vena cava"),
    ("small_bowel", "small bowel", None, "small bowel"),
    ("spinal_cord", "spinal cord", None, "spinal cord"),
    ("costal_cartilages", "costal cartilages", None, "costal cartilages"),
    ("liver", "liver", None, "liver"),
    ("unknown_7", "unlabelled structure 7", None, "unlabelled structure"),
    # AAL atlas.
    ("Precentral_L", "left precentral gyrus", "left", "precentral gyrus"),
    ("Hippocampus_R", "right hippocampus", "right", "hippocampus"),
    ("Frontal_Sup_R", "right superior frontal gyrus", "right", "superior frontal gyrus"),
    ("Cerebelum_Crus1_L", "left crus I of the cerebellum", "left", "crus I of the cerebellum"),
    ("Vermis_10", "vermis lobule 10", None, "vermis lobule"),
    # Preset and Decathlon names written as phrases.
    ("kidney tumor", "kidney tumor", None, "kidney tumor"),
    ("lung field", "lung", None, "lung"),
    ("skin lesion", "skin lesion", None, "skin lesion"),
    ("left atrium", "left atrium", "left", "atrium"),
    ("Anterior", "anterior", None, "anterior"),
    ("Posterior", "posterior", None, "posterior"),
    ("enhancing tumour", "enhancing tumor", None, "enhancing tumor"),
    ("non-enhancing tumor", "non-enhancing tumor", None, "non-enhancing tumor"),
    ("PZ", "PZ", None, "PZ"),
    # AMOS.
    ("right adrenal gland", "right adrenal gland", "right", "adrenal gland"),
    ("gall bladder", "gallbladder", None, "gallbladder"),
    ("postcava", "inferior vena cava", None, "inferior vena cava"),
    ("prostate/uterus", "prostate or uterus", None, "prostate or uterus"),
]


@pytest.mark.parametrize(("label", "text", "side", "noun"), EXAMPLES)
def test_examples(label: str, text: str, side: str | None, noun: str) -> None:
    term = clinical_term(label)
    assert (term.text, term.side, term.noun) == (text, side, noun)


@pytest.mark.parametrize(
    ("label", "body_region", "text"),
    [
        ("Anterior", "brain", "anterior hippocampus"),
        ("Posterior", "Brain", "posterior hippocampus"),
        ("Anterior", "chest", "anterior"),
        ("PZ", "pelvis", "peripheral zone of the prostate"),
        ("TZ", "pelvis", "transition zone of the prostate"),
        ("TZ", "brain", "TZ"),
        ("left atrium", "chest", "left atrium"),
        ("kidney_left", "abdomen", "left kidney"),
        ("kidney_left", "whole_body", "left kidney"),
        ("kidney_left", "unspecified", "left kidney"),
    ],
)
def test_body_region_names(label: str, body_region: str, text: str) -> None:
    assert clinical_term(label, body_region).text == text


@pytest.mark.parametrize(
    ("label", "plural"),
    [
        ("kidney_left", "kidneys"),
        ("rib_left_7", "ribs"),
        ("vertebrae_L1", "vertebrae"),
        ("vertebrae", "vertebrae"),
        ("lung_upper_lobe_left", "upper lobes of the lungs"),
        ("Hippocampus_R", "hippocampi"),
        ("Precentral_L", "precentral gyri"),
        ("inferior_vena_cava", "inferior venae cavae"),
        ("left atrium", "atria"),
        ("subclavian_artery_left", "subclavian arteries"),
        ("stomach", "stomachs"),
        ("pancreas", "pancreases"),
        ("esophagus", "esophagi"),
        ("costal_cartilages", "costal cartilages"),
        ("intervertebral_discs", "intervertebral discs"),
        ("portal_vein_and_splenic_vein", "portal and splenic veins"),
        ("kidney tumor", "kidney tumors"),
        ("unknown_7", "unlabelled structures"),
        ("PZ", "PZs"),
    ],
)
def test_plurals(label: str, plural: str) -> None:
    assert clinical_term(label).plural == plural


@pytest.mark.parametrize(
    ("label", "side"),
    [
        ("kidney_left", "left"),
        ("kidney_Left", "left"),
        ("left_kidney", "left"),
        ("LEFT KIDNEY", "left"),
        ("rib_right_7", "right"),
        ("Precentral_L", "left"),
        ("Precentral_r", "right"),
        ("L_kidney", "left"),
        ("lh_insula", "left"),
    ],
)
def test_side_markers(label: str, side: str) -> None:
    term = clinical_term(label)
    assert term.side == side
    assert term.text.startswith(f"{side} ")
    assert side not in term.noun


@pytest.mark.parametrize(
    "label",
    [
        "liver",
        "spleen",
        "vertebrae_L1",
        "vertebrae_S1",
        "heart",
        "aorta",
        "spinal_cord",
        "small_bowel",
        "costal_cartilages",
        "unknown_7",
        "Vermis_1_2",
        "kidney tumor",
        "lung field",
        "L",
        "left",
        "left_right",
        "kidney_l1",
    ],
)
def test_no_side_for_unlateralised_names(label: str) -> None:
    assert clinical_term(label).side is None


def test_side_only_or_both_sides_stay_as_written() -> None:
    assert clinical_term("left").text == "left"
    assert clinical_term("left_right").text == "left right"


def test_term_is_frozen() -> None:
    term = clinical_term("kidney_left")
    assert isinstance(term, Term)
    with pytest.raises(dataclasses.FrozenInstanceError):
        term.side = "right"  # type: ignore[misc]


@pytest.mark.parametrize("label", ["", "   ", "__", None, 3])
def test_bad_labels(label: object) -> None:
    with pytest.raises(ValueError, match="label must be a string with at least one word"):
        clinical_term(label)  # type: ignore[arg-type]


label_parts = st.one_of(
    st.text(alphabet=st.characters(categories=["L", "Nd"], max_codepoint=0x17F), min_size=1, max_size=8),
    st.sampled_from(["left", "right", "L", "R", "7", "T12", "rib", "vertebrae", "unknown", "Anterior", "PZ"]),
)


@given(
    st.lists(label_parts, min_size=1, max_size=5),
    st.sampled_from(["_", " ", "__"]),
    st.sampled_from([None, "brain", "abdomen", "chest", "pelvis", "skin"]),
)
def test_any_label_gives_clean_text(parts: list[str], separator: str, body_region: str | None) -> None:
    term = clinical_term(separator.join(parts), body_region)
    for phrase in (term.text, term.noun, term.plural):
        assert phrase and "_" not in phrase and "  " not in phrase and phrase == phrase.strip()
    assert term.side in (None, "left", "right")
    if term.side is not None:
        assert term.text.startswith(f"{term.side} ")


# ------------------------------------------------------------------------- real label maps


@pytest.mark.parametrize("dataset", ["ct_abdomen_totalseg", "mr_abdomen_totalseg"])
def test_every_totalsegmentator_label(shared_data: Path, dataset: str) -> None:
    labels = json.loads((shared_data / dataset / "labels.json").read_text())
    assert labels
    for name in labels.values():
        term = clinical_term(name, "abdomen")
        assert "_" not in term.text and "_" not in term.noun and "_" not in term.plural, (name, term)
        assert term.text == term.text.lower() or term.noun == "vertebra", (name, term)  # "L1 vertebra"
        expected_side = next((s for s in ("left", "right") if f"_{s}" in name), None)
        assert term.side == expected_side, (name, term)
        if expected_side:
            assert term.text.startswith(f"{expected_side} "), (name, term)
        assert clinical_term(name) == term  # these names need no body region


# ------------------------------------------------------------------------ vocabulary files


def vocab_files() -> dict[str, dict]:
    folder = resources.files("medground") / "presets" / "vocab"
    return {p.name: tomllib.loads(p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.name.endswith(".toml")}


def test_vocabulary_files() -> None:
    files = vocab_files()
    assert {"common.toml", "abdomen.toml", "chest.toml", "brain.toml"} <= set(files)
    for name, document in files.items():
        assert document["version"] == VOCAB_VERSION, name
    sides = files["common.toml"]["sides"]
    assert sides["words"] == {"left": "left", "right": "right"}
    assert {"l": "left", "r": "right"}.items() <= sides["abbreviations"].items()


def test_every_vocabulary_name_gives_clean_text() -> None:
    for name, document in vocab_files().items():
        region = name.removesuffix(".toml")
        for table in ("terms", "region_only"):
            for key in document.get(table, {}):
                label = key.replace("#", "3") if not key.startswith("vertebra") else key.replace("#", "L3")
                term = clinical_term(label, region)
                assert "_" not in term.text and "#" not in term.text, (name, key, term)
                assert term.side is None, (name, key, term)


COMMON = {"version": VOCAB_VERSION, "sides": {"words": {"left": "left"}}}


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ({"brain": {"version": 1}}, "has no common.toml"),
        ({"common": {"version": 2}}, "common.toml: version must be 1, got 2"),
        ({"common": {**COMMON, "names": {}}}, r"unknown keys \['names'\]"),
        ({"common": COMMON, "brain": {"version": 1, "plurals": {}}}, r"brain.toml: \['plurals'\] belong in"),
        ({"common": {**COMMON, "terms": ["rib"]}}, r"\[terms\] must be a table"),
        (
            {"common": {**COMMON, "terms": {"hip": "hip bone"}}, "abdomen": {"version": 1, "terms": {"hip": "hip"}}},
            "abdomen.toml: name 'hip' is already defined in common.toml",
        ),
        ({"common": {**COMMON, "terms": {"Hip": "hip bone"}}}, "name 'Hip' must be lowercase"),
        ({"common": {**COMMON, "terms": {"hip bone": "hip bone"}}}, "joined by '_'"),
        ({"common": {**COMMON, "terms": {"hip": {"plural": "hips"}}}}, "hip must be a noun string or a table"),
        ({"common": {**COMMON, "terms": {"hip": {"noun": "hip", "side": "left"}}}}, "hip must be a noun string"),
        ({"common": {**COMMON, "terms": {"rib_#": {"noun": "rib", "number": "roman"}}}}, "number must be one of"),
        ({"common": {**COMMON, "terms": {"rib": {"noun": "rib", "number": "ordinal"}}}}, "its name has no '_#'"),
        ({"common": {**COMMON, "terms": {"rib": {"noun": "rib", "plural": 2}}}}, "plural must be a non-empty string"),
        (
            {"common": {**COMMON, "terms": {"rib": {"noun": "rib", "description": ""}}}},
            "description must be a non-empty",
        ),
        (
            {"common": {**COMMON, "terms": {"rib": {"noun": "rib", "description_plural": "ribs"}}}},
            "description_plural but no description",
        ),
        ({"common": {**COMMON, "terms": {"rib": {"noun": "rib", "paired": "yes"}}}}, "paired must be true or false"),
        ({"common": {**COMMON, "sides": {"words": {"left": "sinister"}}}}, "sides must be 'left' or 'right'"),
        ({"common": {**COMMON, "spellings": {"tumour": 1}}}, r"\[spellings\] must map words to strings"),
    ],
)
def test_malformed_vocabulary(documents: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _build_vocabulary(documents)


def _vocabulary_names() -> list[tuple[str, str | None]]:
    """Every name of every vocabulary file, with its file's body region where region-only."""
    names = []
    folder = resources.files("medground") / "presets" / "vocab"
    for item in folder.iterdir():
        if item.name.endswith(".toml"):
            document = tomllib.loads(item.read_text(encoding="utf-8"))
            names += [(name, None) for name in document.get("terms", {})]
            names += [(name, item.name[: -len(".toml")]) for name in document.get("region_only", {})]
    return sorted(names, key=lambda n: (n[0], n[1] or ""))


@pytest.mark.parametrize(("name", "region"), _vocabulary_names())
def test_descriptions_say_nothing_a_query_could_claim(name: str, region: str | None) -> None:
    """A description names a structure without its name: read with the structure's label it
    claims the structure and nothing else (no side, place, direction, size, shape,
    intensity or count), it names no other structure of the vocabulary, and a plural
    description is for both of a pair."""
    from medground.verify.claims import extract_claims

    label = name.replace("#", "7")
    term = clinical_term(label, region)
    others = {
        clinical_term(other.replace("#", "7"), other_region).noun
        for other, other_region in _vocabulary_names()
        if clinical_term(other.replace("#", "7"), other_region).noun != term.noun
    }
    for description in filter(None, (term.description, term.description_plural)):
        claims = extract_claims(f"Locate the {description}.", [label], region)
        assert set(claims.to_dict()) == {"categories"}, (name, description, claims.to_dict())
        assert not [o for o in others if f" {o} " in f" {description} "], (name, description)
    if term.description_plural:
        assert term.paired, f"{name}: a plural description is for both of a pair"


def test_a_description_fixes_one_structure() -> None:
    """A nameless query is unambiguous against the unlabelled anatomy of its image only if
    its description fits one kind of structure: no two structures of the vocabulary share
    a description (aliases of one structure, such as AMOS's "gall_bladder", may)."""
    nouns: dict[str, set[str]] = {}
    for name, region in _vocabulary_names():
        term = clinical_term(name.replace("#", "7"), region)
        for description in filter(None, (term.description, term.description_plural)):
            nouns.setdefault(description, set()).add(term.noun)
    shared = {d: n for d, n in nouns.items() if len(n) > 1}
    assert not shared, shared
