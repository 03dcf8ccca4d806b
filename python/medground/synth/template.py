"""The offline template synthesizer, medground's embedded default backend.

Deterministic for a seed: the phrasing of each sample is picked by a hash of the seed and
the sample id, so the same config and seed give the same samples byte for byte. Queries
are worded only from the attributes the referring step chose, so every claim in a query
is a computed fact, and patient sides are only used where the image has an orientation.
"""

from __future__ import annotations

import hashlib
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any

from medground.records import sample_id
from medground.refer import Reference
from medground.synth.base import Synthesis, draft_sample, query_type_of
from medground.terms import clinical_term
from medground.views import View

__all__ = ["TemplateSynthesizer", "noun_phrase"]

_INTENSITY_ADJECTIVE = {
    "hypodense": "hypodense",
    "isodense": "isodense",
    "hyperdense": "hyperdense",
    "hypointense": "hypointense",
    "isointense": "isointense",
    "hyperintense": "hyperintense",
    "darker": "darker",
    "brighter": "brighter",
}
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_SIZE_CLASS = {"small": "small", "medium": "medium-sized", "large": "large", "normal": "normal-sized"}


@lru_cache(maxsize=4)
def _templates(name: str = "template_v1") -> dict[str, Any]:
    text = (resources.files("medground") / "presets" / "templates" / f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _term_text(label: str, body_region: str | None) -> str:
    return clinical_term(label, body_region).text


def noun_phrase(attributes: dict[str, Any], *, body_region: str | None, oriented: bool, implicit: bool = False) -> str:
    """The referring noun phrase for a set of chosen attributes.

    Order: size rank, size class, shape, intensity, side, head noun (the clinical term of
    the category, or "structure" for implicit queries), then "within …", the relation to a
    nearby structure and the place in the image.
    """
    adjectives: list[str] = []
    if attributes.get("size_rank"):
        adjectives.append(attributes["size_rank"])
    if attributes.get("size_class") in _SIZE_CLASS:
        adjectives.append(_SIZE_CLASS[attributes["size_class"]])
    if attributes.get("shape"):
        adjectives.append(attributes["shape"])
    intensity = attributes.get("intensity")
    if intensity in _INTENSITY_ADJECTIVE:
        adjectives.append(_INTENSITY_ADJECTIVE[intensity])
    head = "structure"
    if not implicit and "category" in attributes:
        term = clinical_term(attributes["category"], body_region)
        head = term.text
        side = attributes.get("laterality")
        if side and oriented and term.side is None:
            adjectives.append("midline" if side == "midline" else f"{side}-sided")
    elif attributes.get("laterality") and oriented:
        side = attributes["laterality"]
        adjectives.append("midline" if side == "midline" else f"{side}-sided")
    after: list[str] = []
    if intensity == "similar":
        after.append("of similar brightness to its surroundings")
    if attributes.get("within"):
        after.append(f"within the {_term_text(attributes['within'], body_region)}")
    if attributes.get("relation"):
        direction, _, other = attributes["relation"].partition(":")
        where = f"to the {direction} of" if direction in ("left", "right") else f"{direction} to"
        after.append(f"{where} the {_term_text(other, body_region)}")
    position = attributes.get("position")
    if position:
        after.append("in the center of the image" if position == "center" else f"in the {position} part of the image")
    return " ".join(["the", *adjectives, head, *after])


class TemplateSynthesizer:
    """Writes one query per reference from versioned phrasings; no model, no network."""

    name = "template"

    def __init__(self, seed: int = 0, templates: str = "template_v1") -> None:
        self.seed = seed
        self.templates = _templates(templates)
        self.version = str(self.templates["version"])

    def _pick(self, options: list[str], key: str) -> str:
        digest = hashlib.sha256(f"{self.seed}|{key}".encode()).digest()
        return options[int.from_bytes(digest[:8], "big") % len(options)]

    def synthesize(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        *,
        modality: str,
        body_region: str | None,
    ) -> Synthesis:
        """Drafts for the references of one view (verification fills ``verification``); the
        template never fails, so the failure list is empty."""
        case = view.case
        view_record = view.view_record()
        oriented = case.image.oriented
        phrasings = self.templates["phrasings"]
        samples = []
        counters: dict[tuple[tuple[int, ...], str], int] = {}
        seen_queries: set[tuple[tuple[int, ...], str]] = set()
        for reference in references:
            implicit = reference.query_type == "implicit"
            query_type = query_type_of(reference)
            key = (reference.targets, query_type)
            index = counters.get(key, 0)
            counters[key] = index + 1
            identifier = sample_id(case.dataset, case.case_id, view_record, reference.targets, query_type, index)
            if query_type == "multi_object":
                term = clinical_term(reference.attributes["category"], body_region)
                count = reference.attributes["count"]
                bilateral = reference.attributes.get("laterality") == "bilateral" and count == 2
                plural = f"{term.side} {term.plural}" if term.side and not bilateral else term.plural
                options = phrasings["bilateral"] if bilateral else phrasings["multi_object"]
                query = self._pick(options, identifier).format(
                    plural=plural, singular=term.text, count=_NUMBER_WORDS.get(count, "several")
                )
            else:
                phrase = noun_phrase(
                    reference.attributes, body_region=body_region, oriented=oriented, implicit=implicit
                )
                if len(view.objects[reference.targets[0]].pieces) > 1:
                    phrase = "the visible parts of " + phrase
                query = self._pick(phrasings[query_type], identifier).format(np=phrase)
                query = query[0].upper() + query[1:]
            if (reference.targets, query) in seen_queries:
                continue  # two query types worded the same for one target: keep one
            seen_queries.add((reference.targets, query))
            synthesis = {
                "backend": self.name,
                "model": None,
                "prompt_version": self.version,
                "seed": self.seed,
                "implicit": implicit,
            }
            samples.append(draft_sample(view, cues, reference, index, query, synthesis, modality=modality))
        return samples, []
