"""Corrupt one claim of an accepted query at a time: the mutation test of the verifier.

A mutation rewrites the query so that exactly one kind of claim becomes false and every
other claim stays as it was: each candidate edit is read back with the claim parser, and
kept only when its claims differ from the original's in that kind alone. The false value
is chosen from the sample's own record (its box, its cues, its distractors, the dataset's
labels and clinical terms), never from the verifier's measurements.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from medground.records import Sample
from medground.terms import clinical_term
from medground.verify.claims import extract_claims
from medground.verify.rules import in_cell

KINDS = (
    "side",
    "position",
    "size",
    "shape",
    "intensity",
    "count",
    "relation",
    "containment",
    "category",
    "clinical",
)
#: The claim fields a kind's corruption may change (everything else must read the same).
FIELDS = {
    "side": {"sides"},
    "position": {"positions"},
    "size": {"size_classes"},
    "shape": {"shapes"},
    "intensity": {"intensities"},
    "count": {"counts"},
    "relation": {"relations"},
    "containment": {"relations", "unknown"},
    "category": {"categories", "sides", "unknown", "generic"},
    "clinical": {"clinical"},
}
CELLS = ("upper left", "upper right", "lower left", "lower right", "upper", "lower", "left", "right", "center")
OPPOSITE = {
    "superior": "inferior",
    "inferior": "superior",
    "anterior": "posterior",
    "posterior": "anterior",
    "medial": "lateral",
    "lateral": "medial",
    "left": "right",
    "right": "left",
}
SHAPE_SWAP = {"round": "elongated", "oval": "elongated", "lobulated": "elongated", "irregular": "round"}
SHAPE_SWAP["elongated"] = "round"
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
#: Anatomy the skin and colon datasets do not label (nor the phantoms): what a category or
#: containment corruption names when the view holds nothing else.
FOREIGN = ("kidney", "spleen", "pancreas")


@dataclass(frozen=True)
class Context:
    """What a mutation may know: the labels a query may name, the body region, the clinical
    terms per attribute, and the image size."""

    labels: tuple[str, ...]
    body_region: str | None
    clinical: dict[str, tuple[str, ...]]

    @property
    def clinical_terms(self) -> tuple[str, ...]:
        return tuple(sorted({t for terms in self.clinical.values() for t in terms}))

    def claims(self, query: str) -> dict[str, Any]:
        return extract_claims(query, list(self.labels), self.body_region, self.clinical_terms).to_dict()


def _occurrences(query: str, pattern: str) -> Iterator[re.Match[str]]:
    yield from re.finditer(pattern, query)


def _replaced(query: str, match: re.Match[str], text: str, group: int = 0) -> str:
    return query[: match.start(group)] + text + query[match.end(group) :]


def _cue(sample: Sample, *path: str) -> Any:
    value: Any = sample.targets[0].cues
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _union_box(sample: Sample) -> tuple[int, int, int, int]:
    boxes = [t.bbox_xyxy for t in sample.targets]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


# ----------------------------------------------------------------------------- candidate edits per kind


def _sides(sample: Sample, query: str, context: Context) -> Iterator[str]:
    if sample.query_type == "multi_object":
        return
    for match in _occurrences(query, r"\b(left|right)\b"):
        yield _replaced(query, match, OPPOSITE[match.group(1)])


def _positions(sample: Sample, query: str, context: Context) -> Iterator[str]:
    box = _union_box(sample)
    pattern = r"\b(?:in|at) the (upper left|upper right|lower left|lower right|upper|lower|left|right|center|middle)\b"
    for match in _occurrences(query, pattern):
        for cell in CELLS:
            if not in_cell(box, cell, sample.width, sample.height):
                word = "center" if cell == "center" else cell
                yield _replaced(query, match, word, 1)
                break


def _sizes(sample: Sample, query: str, context: Context) -> Iterator[str]:
    diameter = _cue(sample, "size", "diameter_mm")
    share = _cue(sample, "size", "image_share")
    swap = {"small": "large", "large": "small", "normal-sized": "large"}
    # Medium-sized: the far end of the band (10-30 mm; photographs 2-15% of the image).
    low_half = diameter < 20 if diameter is not None else share is None or share < 0.085
    swap["medium-sized"] = "large" if low_half else "small"
    for match in _occurrences(query, r"\b(small|large|medium-sized|normal-sized)\b"):
        yield _replaced(query, match, swap[match.group(1)])


def _shapes(sample: Sample, query: str, context: Context) -> Iterator[str]:
    for match in _occurrences(query, r"\b(round|oval|lobulated|irregular|elongated)\b"):
        yield _replaced(query, match, SHAPE_SWAP[match.group(1)])


def _intensities(sample: Sample, query: str, context: Context) -> Iterator[str]:
    contrast = _cue(sample, "intensity", "contrast_8bit") or 0.0
    swap = {
        "hypodense": "hyperdense",
        "hyperdense": "hypodense",
        "hypointense": "hyperintense",
        "hyperintense": "hypointense",
        "isodense": "hyperdense" if contrast < 0 else "hypodense",
        "isointense": "hyperintense" if contrast < 0 else "hypointense",
        "darker than": "brighter than",
        "brighter than": "darker than",
        "of similar brightness to": "brighter than" if contrast < 0 else "darker than",
    }
    pattern = r"\b(hypodense|hyperdense|isodense|hypointense|hyperintense|isointense|darker than|brighter than"
    pattern += r"|of similar brightness to)\b"
    for match in _occurrences(query, pattern):
        yield _replaced(query, match, swap[match.group(1)])


def _counts(sample: Sample, query: str, context: Context) -> Iterator[str]:
    count = len({t.object_id for t in sample.targets})
    wrong = NUMBERS[count] if count < len(NUMBERS) else "two"
    for match in _occurrences(query, r"\b(both|two|three|four|five|six|seven|eight|nine|ten)\b"):
        yield _replaced(query, match, wrong)
    if sample.query_type == "multi_object":
        for match in _occurrences(query, r"\b(all|every|each of the|each) "):
            yield _replaced(query, match, f"{match.group(1)} {wrong} ")


def _relations(sample: Sample, query: str, context: Context) -> Iterator[str]:
    pattern = r"\b(superior|inferior|anterior|posterior|medial|lateral)\b to|to the (left|right) of"
    for match in _occurrences(query, pattern):
        group = 1 if match.group(1) else 2
        yield _replaced(query, match, OPPOSITE[match.group(group)], group)


def _others(sample: Sample, context: Context) -> list[str]:
    """Structures other than the target, nearest first: the view's other objects that the
    target does not touch, then the dataset's other labels."""
    mine = {t.label for t in sample.targets}
    touching = set(_cue(sample, "relations", "boundary_shares") or {})
    in_view = [d["label"] for d in sample.distractors if d["label"] not in mine]
    names = [n for n in dict.fromkeys(in_view) if n not in touching]
    names += [n for n in context.labels if n not in mine and n not in names and n not in touching]
    return names


def _containments(sample: Sample, query: str, context: Context) -> Iterator[str]:
    container = _cue(sample, "relations", "within")
    if container is None:
        return
    text = clinical_term(container, context.body_region).text
    for match in _occurrences(query, rf"\b(?:within|inside) the ({re.escape(text)})\b"):
        # Another structure of the view or dataset, else another of the target's own kind
        # ("inside the liver lesion"), else one the dataset does not label.
        others = [o for o in _others(sample, context) if o != container]
        others += [t.label for t in sample.targets[:1] if t.label != container]
        texts = [clinical_term(o, context.body_region).text for o in others]
        yield _replaced(query, match, [*texts, *FOREIGN][0], 1)


def _categories(sample: Sample, query: str, context: Context) -> Iterator[str]:
    label = sample.targets[0].label
    term = clinical_term(label, context.body_region)
    words = [w for w in (term.text, term.plural, term.noun, term.description, term.description_plural) if w]
    key = term.noun
    others = [o for o in _others(sample, context) if clinical_term(o, context.body_region).noun != key]
    replacements = [clinical_term(o, context.body_region).noun for o in others] + list(FOREIGN)
    for word in sorted(set(words), key=len, reverse=True):
        for match in _occurrences(query, rf"(?<![\w-]){re.escape(word)}(?![\w-])"):
            for replacement in replacements:
                if replacement != key:
                    yield _replaced(query, match, replacement)
                    break


def _clinical(sample: Sample, query: str, context: Context) -> Iterator[str]:
    for terms in context.clinical.values():
        for match in _occurrences(
            query, "|".join(rf"\b{re.escape(t)}\b" for t in sorted(terms, key=len, reverse=True))
        ):
            wrong = next(t for t in terms if t != match.group(0))
            yield _replaced(query, match, wrong)


EDITS: dict[str, Callable[[Sample, str, Context], Iterator[str]]] = {
    "side": _sides,
    "position": _positions,
    "size": _sizes,
    "shape": _shapes,
    "intensity": _intensities,
    "count": _counts,
    "relation": _relations,
    "containment": _containments,
    "category": _categories,
    "clinical": _clinical,
}


def mutate(sample: Sample, kind: str, context: Context) -> str | None:
    """The query with one claim of ``kind`` made false and every other claim unchanged, or
    None when the query makes no claim of that kind."""
    original = context.claims(sample.query)
    for candidate in EDITS[kind](sample, sample.query, context):
        changed = context.claims(candidate)
        differs = {k for k in set(original) | set(changed) if original.get(k) != changed.get(k)}
        if differs and differs <= FIELDS[kind]:
            return candidate
    return None


def mutations(sample: Sample, context: Context, kinds: Sequence[str] = KINDS) -> dict[str, str]:
    """Every kind's corruption of a sample's query that applies to it."""
    out = {}
    for kind in kinds:
        mutated = mutate(sample, kind, context)
        if mutated is not None:
            out[kind] = mutated
    return out
