"""Claim extraction: what a query asserts about its target, found with a vocabulary.

The parser does not need to understand English; it needs to find every word that asserts
a checkable fact (``presets/claims.toml``): the category (a label's clinical term), patient
side, place in the image, relations to other structures, size words and measurements,
shape, intensity, superlatives and counts. Template and VLM drafts go through the same
parser, so the rules reach the same verdict whoever wrote the query.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from medground.terms import clinical_term

__all__ = ["Claims", "extract_claims", "vocabulary"]


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, Any]:
    """The claim vocabulary (package data, versioned)."""
    return tomllib.loads((resources.files("medground") / "presets" / "claims.toml").read_text(encoding="utf-8"))


@dataclass
class Claims:
    """The checkable claims of one query (empty lists: nothing claimed)."""

    categories: list[str] = field(default_factory=list)
    sides: list[str] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    intensities: list[str] = field(default_factory=list)
    size_classes: list[str] = field(default_factory=list)
    size_ranks: list[str] = field(default_factory=list)
    lengths_mm: list[float] = field(default_factory=list)
    volumes_ml: list[float] = field(default_factory=list)
    relations: list[tuple[str, str]] = field(default_factory=list)  # (within | touches | direction, label)
    counts: list[int] = field(default_factory=list)
    parts: list[bool] = field(default_factory=list)  # "the visible parts of": an object seen in pieces
    clinical: list[str] = field(default_factory=list)  # clinical terms of the case table ("melanoma")
    generic: list[str] = field(default_factory=list)  # "lesion", "tumor": any lesion-like label
    unknown: list[str] = field(default_factory=list)  # anatomy named that no label matches
    foreign: list[str] = field(default_factory=list)  # no claim at all: a link, an address, an instruction

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


#: Links and addresses: a scheme (``https://``), ``www.``, an e-mail address, a host name
#: under a common top-level domain.
_LINK = re.compile(
    r"\b[a-z][a-z0-9+.-]*://\S*|\bwww\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|ai|gov|edu|info|biz|xyz|ru|cn|me|app|dev|ly|top|site)\b"
)


_SPACES = re.compile(r"\s+")
_PLACEHOLDER = re.compile(r"@\d+@")
_PARTS = re.compile(
    r"\b(?:the |every |each |all )?(?:visible |separate )?(?:parts?|portions?|pieces?) of (?=(?:the )?@)"
)
_GENERIC = re.compile(r"\b(?:lesion|tumou?r|mass|nodule|cyst|polyp|metastas[ie]s)(?:es|s)?\b")
_MEASUREMENT = re.compile(r"(\d+(?:\.\d+)?)\s*(mm|cm|ml|cc|cm3|cm³)\b")
_DIGIT_COUNT = re.compile(r"(?<![\w.])(\d+)\s+(?=[a-z]+s\b)")
_ONE_OF = re.compile(r"one of\b")
#: The vocabulary's word tables read as words, in the order the query is read.
_WORD_TABLES = ("side", "shape", "intensity", "size_class", "size_rank")


def _words(words: list[str] | tuple[str, ...]) -> str:
    """A pattern matching any of the words as a whole word (hyphens join words)."""
    return rf"(?<![\w-])({_alternation(list(words))})(?![\w-])"


@lru_cache(maxsize=1)
def _patterns() -> dict[str, re.Pattern[str]]:
    """The vocabulary's patterns, compiled once (every query of a run reads them)."""
    vocab = vocabulary()
    positions = _alternation(list(vocab["position"]))
    target = r"(?:the |a )?(?:(?P<side>left|right) )?@(?P<i>\d+)@"
    out = {
        "foreign": re.compile(_words(vocab["foreign"]["words"])),
        "position": re.compile(
            rf"\b(?:in|at|on|toward|towards) the ({positions})"
            r"(?: (?:part|portion|region|corner|side|half|area|aspect))? of the (?:image|picture|frame|view|slice)\b"
        ),
        "position_possessive": re.compile(rf"\b(?:image|picture)'s ({positions})\b"),
        "request": re.compile(rf"\b(?:{_alternation(vocab['request']['words'])})\b"),
        "direction": re.compile(rf"\b({_alternation(list(vocab['direction']))}) (?:to |from |of )?{target}"),
        "touches": re.compile(rf"\b({_alternation(list(vocab['contact']))}) {target}"),
        "within": re.compile(rf"\b({_alternation(list(vocab['containment']))}) {target}"),
        "anatomy": re.compile(rf"\b({_alternation(vocab['anatomy']['words'])})\b"),
        "numbers": re.compile(rf"\b({_alternation(list(vocab['numbers']))})\b"),
    }
    for key in _WORD_TABLES:
        out[key] = re.compile(_words(list(vocab[key])))
    return out


@lru_cache(maxsize=64)
def _clinical_pattern(clinical: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(_words([c.lower() for c in clinical]))


def _alternation(words: list[str]) -> str:
    return _alternation_of(tuple(words))


@lru_cache(maxsize=4096)
def _alternation_of(words: tuple[str, ...]) -> str:
    """A regex alternation of the words, longest first (cached: every query of a run reads
    the same vocabulary lists)."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _term_forms(label: str, body_region: str | None) -> list[tuple[str, str]]:
    """The words that name a label, each with what it names: the label itself, or, for the
    forms without its side or number, the structure in general ("kidney" names either
    kidney, "rib" any rib; "left kidney" and "left 7th rib" name the one)."""
    term = clinical_term(label, body_region)
    named = {term.text.lower(): label, label.lower().replace("_", " "): label}
    generic = term.noun if term.number is not None or term.side is not None else label
    named.setdefault(term.plural.lower(), generic)
    named.setdefault(term.noun.lower(), generic)
    # A description names the structure without its side ("the left retroperitoneal organ
    # that produces urine": the side is its own word).
    for description in (term.description, term.description_plural):
        if description:
            named.setdefault(description.lower(), generic)
    return sorted(named.items(), key=lambda item: len(item[0]), reverse=True)


@lru_cache(maxsize=64)
def _label_terms(
    labels: tuple[str, ...], body_region: str | None
) -> tuple[re.Pattern[str], dict[str, str], frozenset[str]]:
    """The term pattern of a label set, compiled (cached: a dataset's views share a few
    label sets), the label each form names, and the forms without a side."""
    # Terms of every label, longest first, so "left kidney" wins over "kidney".
    forms = sorted(
        (item for label in labels for item in _term_forms(label, body_region)),
        key=lambda item: len(item[0]),
        reverse=True,
    )
    term_pattern = _alternation([f for f, _ in forms]) if forms else r"(?!x)x"
    label_of: dict[str, str] = {}
    for form, label in forms:
        label_of.setdefault(form, label)
    # Forms that name the structure without its side ("kidney", "kidneys").
    sideless = frozenset(
        form.lower() for label in labels for form in _sideless_forms(clinical_term(label, body_region))
    )
    return re.compile(rf"(?<![\w-])({term_pattern})(?![\w-])"), label_of, sideless


def _sideless_forms(term: Any) -> list[str]:
    return [f for f in (term.plural, term.noun, term.description, term.description_plural) if f]


def extract_claims(
    query: str, labels: list[str], body_region: str | None = None, clinical: tuple[str, ...] = ()
) -> Claims:
    """Claims of a query, with ``labels`` the label names it may mention (the view's) and
    ``clinical`` the clinical terms the dataset's case table can give ("melanoma").

    Relation phrases ("within the liver", "inferior to the gallbladder", "adjacent to the
    aorta") and image places ("in the upper left part of the image") are taken out first,
    so that "right" in "upper right of the image" or "left" in "medial to the left kidney"
    is never read as the target's side.
    """
    vocab = vocabulary()
    patterns = _patterns()
    text = " " + _SPACES.sub(" ", query.lower()).strip() + " "
    claims = Claims()
    # Read first, from the whole query: a label's own name may carry the foreign text.
    _take_foreign(text, patterns["foreign"], claims)
    text = _take_positions(text, vocab["position"], claims)
    # Words of the request, not of the target ("the location of", "the region occupied by").
    text = _consume(text, patterns["request"], lambda m: None)
    if clinical:
        text = _consume(text, _clinical_pattern(clinical), lambda m: claims.clinical.append(m.group(1)))
    text = _take_structures(text, labels, body_region, vocab, claims)
    text = _take_descriptors(text, vocab, claims)
    _take_measurements(text, claims)
    _take_counts(text, vocab["numbers"], claims)
    return claims


def _take_foreign(text: str, words: re.Pattern[str], claims: Claims) -> None:
    """What no referring query says (links, addresses, the words of an instruction)."""
    claims.foreign.extend(match.group(0).rstrip(".,;:?!") for match in _LINK.finditer(text))
    claims.foreign.extend(m.group(1) for m in words.finditer(text))


def _consume(text: str, pattern: re.Pattern[str], handler: Callable[[re.Match[str]], object]) -> str:
    """Calls ``handler`` on each match of ``pattern``, left to right; returns ``text`` with
    the matches blanked (in one pass: the matches ``finditer`` would give)."""

    def blank(match: re.Match[str]) -> str:
        handler(match)
        return " "

    return pattern.sub(blank, text)


def _take_positions(text: str, positions: dict[str, str], claims: Claims) -> str:
    """Places in the image ("in the upper left part of the image", "the image's left")."""
    patterns = _patterns()
    text = _consume(text, patterns["position"], lambda m: claims.positions.append(positions[m.group(1)]))
    return _consume(text, patterns["position_possessive"], lambda m: claims.positions.append(positions[m.group(1)]))


def _take_structures(
    text: str, labels: list[str], body_region: str | None, vocab: dict[str, Any], claims: Claims
) -> str:
    """The structures named: those a relation phrase names are relations, the others are the
    target's categories (with their side, unless a sideless form such as "kidneys" names them)."""
    term_pattern, label_of, sideless = _label_terms(tuple(sorted(set(labels))), body_region)
    # Terms become placeholders first, so that relation words inside a term ("upper lobe
    # of the lung") are never read as relations.
    found: list[str] = []
    plural: list[bool] = []

    def placeholder(match: re.Match[str]) -> str:
        found.append(label_of[match.group(1)])
        plural.append(match.group(1) in sideless)
        return f" @{len(found) - 1}@ "

    text = term_pattern.sub(placeholder, text)
    text = _SPACES.sub(" ", text)
    # "the visible parts of the colon": an object seen in pieces, not a containment.
    text = _consume(text, _PARTS, lambda m: claims.parts.append(True))
    text, related = _take_relations(text, found, vocab, claims)
    for index, label in enumerate(found):
        if index in related:
            continue
        claims.categories.append(label)
        side = clinical_term(label, body_region).side
        if side is not None and not plural[index]:  # "kidney(s)" names no side
            claims.sides.append(side)
    return _PLACEHOLDER.sub(" ", text)


def _take_relations(text: str, found: list[str], vocab: dict[str, Any], claims: Claims) -> tuple[str, set[int]]:
    """Relation phrases around the placeholders ``@i@`` of the structures ``found``; returns
    the text without them and the indices of the structures they name. A side word before a
    structure's name belongs to it ("to the left of the left rib": the left rib)."""
    related: set[int] = set()
    directions = vocab["direction"]
    patterns = _patterns()

    def relation(kind: str) -> Callable[[re.Match[str]], None]:
        def handle(match: re.Match[str]) -> None:
            index = int(match.group("i"))
            related.add(index)
            name = found[index] if match.group("side") is None else f"{match.group('side')} {found[index]}"
            claims.relations.append((kind if kind != "direction" else directions[match.group(1)], name))

        return handle

    text = _consume(text, patterns["direction"], relation("direction"))
    text = _consume(text, patterns["touches"], relation("touches"))
    text = _consume(text, patterns["within"], relation("within"))
    return text, related


def _take_descriptors(text: str, vocab: dict[str, Any], claims: Claims) -> str:
    """Generic lesion words, anatomy no label matches, and the side, shape, intensity and
    size words."""
    patterns = _patterns()
    if _GENERIC.search(text):
        claims.generic.append("lesion")
    claims.unknown.extend(m.group(1) for m in patterns["anatomy"].finditer(text))
    targets = (claims.sides, claims.shapes, claims.intensities, claims.size_classes, claims.size_ranks)
    for key, target in zip(_WORD_TABLES, targets, strict=True):
        text = _consume(text, patterns[key], _collect(vocab[key], target))
    return text


def _collect(table: dict[str, str], out: list[str]) -> Callable[[re.Match[str]], None]:
    """A match handler appending the vocabulary value of the matched word to ``out``."""

    def handle(match: re.Match[str]) -> None:
        out.append(table[match.group(1)])

    return handle


def _take_measurements(text: str, claims: Claims) -> None:
    """Lengths (mm, cm; in millimetres) and volumes (ml, cc, cm3)."""
    for match in _MEASUREMENT.finditer(text):
        value, unit = float(match.group(1)), match.group(2)
        if unit in ("mm", "cm"):
            claims.lengths_mm.append(value * (10.0 if unit == "cm" else 1.0))
        else:
            claims.volumes_ml.append(value)


def _take_counts(text: str, numbers: dict[str, Any], claims: Claims) -> None:
    """Counts: number words (not "one of") and digits before a plural."""
    for match in _patterns()["numbers"].finditer(text):
        if match.group(1) == "one" and _ONE_OF.match(text, match.start()):
            continue
        claims.counts.append(int(numbers[match.group(1)]))
    for match in _DIGIT_COUNT.finditer(text):
        claims.counts.append(int(match.group(1)))
