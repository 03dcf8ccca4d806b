"""The template's phrase bank, word by word: every vocabulary term in every phrasing of
every query type reads as English (number agreement of verbs and determiners, no doubled
or left-over words, questions end in "?"), and the claim parser reads each query back to
its term and to nothing else (the phrasings themselves claim nothing)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from importlib import resources

import pytest

from medground.refer import Reference
from medground.synth.template import noun_phrase, templates, word_query
from medground.terms import Term, clinical_term
from medground.verify.claims import extract_claims, vocabulary

PHRASINGS = templates()["phrasings"]
QUESTION_WORDS = ("Where", "Which")


def _vocabulary_labels() -> list[tuple[str, str | None]]:
    """Every name of the vocabulary as a label (numbers filled in), with its region where
    region-only, and a sided variant of every paired structure."""
    labels: list[tuple[str, str | None]] = []
    folder = resources.files("medground") / "presets" / "vocab"
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if not item.name.endswith(".toml"):
            continue
        document = tomllib.loads(item.read_text(encoding="utf-8"))
        region = item.name[: -len(".toml")]
        for name in document.get("terms", {}):
            label = name.replace("#", "7")
            labels.append((label, None))
            if clinical_term(label).paired:
                labels.append((f"{label}_left", None))
        labels += [(name.replace("#", "7"), region) for name in document.get("region_only", {})]
    return labels


LABELS = _vocabulary_labels()


class _Nth:
    """A pick that takes the n-th phrasing (wrapping) and the first of every other wording."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.options: Sequence[str] = ()

    def __call__(self, options: Sequence[str], slot: str) -> str:
        if slot != "phrasing":
            return options[0]
        self.options = options
        return options[self.n % len(options)]


def _queries(reference: Reference, region: str | None, parts: int = 1) -> list[str]:
    """The reference worded in every phrasing that fits it."""
    first = _Nth(0)
    word_query(reference, parts=parts, body_region=region, oriented=True, pick=first)
    out = []
    for n in range(len(first.options)):
        out.append(word_query(reference, parts=parts, body_region=region, oriented=True, pick=_Nth(n)))
    return out


def _form_errors(query: str) -> list[str]:
    """Capital, sentence end, left-over slots or spaces, doubled words."""
    checks = [
        (not query[0].isupper(), "no capital"),
        (
            query.startswith(QUESTION_WORDS) != query.endswith("?") or not query.endswith((".", "?")),
            "sentence end does not match its kind",
        ),
        (bool(re.search(r"[{}]|\bNone\b|  ", query)), "a slot or space left over"),
        (bool(re.search(r"\b(\w+) \1\b", query, re.IGNORECASE)), "a doubled word"),
    ]
    return [message for failed, message in checks if failed]


def _agreement_errors(lowered: str, term: Term, plural: bool, multi: bool) -> list[str]:
    """Verbs and determiners agree with the noun's number."""
    errors = []
    if not multi and "visible part" not in lowered:
        if plural and re.search(r"\bis\b", lowered):
            errors.append("'is' with a plural noun")
        if not plural and re.search(r"\bare\b", lowered):
            errors.append("'are' with a singular noun")
    singular = f"{term.side} {term.noun}" if term.side and multi else term.noun
    for match in re.finditer(r"\b(?:every|each)\s+(?!of\b|visible part)(.*)", lowered):
        if term.is_plural or not match.group(1).startswith(singular.lower()):
            errors.append(f"'every/each' without the singular ({match.group(0)!r})")
    sets = multi and re.search(r"\bboth\b|\ball\b|\b(?:two|three|four)\b", lowered)
    plurals = [p.lower() for p in (term.plural, term.description_plural) if p]
    if sets and not any(p in lowered for p in plurals):
        errors.append("a set without the plural")
    return errors


def grammar_errors(query: str, term: Term, plural: bool, *, multi: bool = False) -> list[str]:
    """What reads wrong in a query about ``term`` whose noun phrase is ``plural``."""
    lowered = query.lower()
    errors = _form_errors(query) + _agreement_errors(lowered, term, plural, multi)
    if term.paired and "-sided" in lowered:
        errors.append("'-sided' on one of a pair")
    return errors


def test_the_bank_has_enough_phrasings_in_a_clinical_register() -> None:
    assert sum(len(options) for options in PHRASINGS.values()) >= 50
    assert {"direct", "descriptive", "relational", "multi_object", "bilateral", "parts"} <= set(PHRASINGS)
    assert all(len(options) >= 6 for options in PHRASINGS.values())
    leaks = vocabulary()["leaks"]["words"]
    for options in PHRASINGS.values():
        assert len(set(options)) == len(options)
        for phrasing in options:
            assert set(re.findall(r"{(\w+)}", phrasing)) <= {"np", "is", "plural", "singular", "count"}, phrasing
            assert not [w for w in leaks if re.search(rf"\b{re.escape(w)}\b", phrasing.lower())], phrasing
    assert str(templates()["version"]).startswith("template-v")


@pytest.mark.parametrize(("label", "region"), LABELS)
def test_every_term_in_every_phrasing_reads_right(label: str, region: str | None) -> None:
    term = clinical_term(label, region)
    plural = noun_phrase({"category": label}, body_region=region, oriented=True).plural
    assert plural is term.is_plural
    words = [f for f in (term.text, term.noun, term.plural, term.description, term.description_plural) if f]
    cases: list[tuple[Reference, int, bool]] = [
        (Reference(kind, (1,), {"category": label}, (), label=label), 1, False)
        for kind in ("direct", "descriptive", "relational")
    ]
    cases.append((Reference("direct", (1,), {"category": label}, (), label=label), 2, False))
    if not term.is_plural:
        cases.append((Reference("multi_object", (1, 2, 3), {"category": label, "count": 3}, (), label=label), 1, True))
    if term.paired and term.side:
        pair = {"category": label, "count": 2, "laterality": "bilateral"}
        cases.append((Reference("multi_object", (1, 2), pair, (), label=label), 1, True))
    if term.description:
        implicit = {"description": term.description}
        cases.append((Reference("implicit", (1,), implicit, (), label=label), 1, False))
    for reference, parts, multi in cases:
        for query in _queries(reference, region, parts):
            phrase_plural = plural if "category" in reference.attributes else False
            assert grammar_errors(query, term, phrase_plural, multi=multi) == [], query
            claims = extract_claims(query, [label], region)
            # The phrasing claims nothing itself: the parser finds the term and, for sets,
            # the count, and a side only where the label names one.
            allowed = {"categories", "counts", "parts", "sides"}
            assert set(claims.to_dict()) <= allowed, (query, claims.to_dict())
            assert claims.categories, query
            assert not claims.sides or term.side or reference.attributes.get("laterality"), query
            assert any(w.lower() in query.lower() for w in words), query


@pytest.mark.parametrize(
    ("query", "label", "plural", "multi"),
    [
        # What the first template wrote, and what the checker must catch.
        ("Where is the intervertebral discs?", "intervertebral_discs", True, False),
        ("Find every costal cartilages visible here.", "costal_cartilages", True, True),
        ("Locate the the liver.", "liver", False, False),
        ("Where are the liver.", "liver", False, False),
        ("locate the liver.", "liver", False, False),
        ("Locate the {np}.", "liver", False, False),
        ("Locate the left-sided kidney.", "kidney_left", False, False),
        ("Locate both kidney.", "kidney_left", False, True),
    ],
)
def test_the_grammar_check_catches_what_it_should(query: str, label: str, plural: bool, multi: bool) -> None:
    assert grammar_errors(query, clinical_term(label), plural, multi=multi)
