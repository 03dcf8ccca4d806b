"""The offline template synthesizer, medground's embedded default backend.

Deterministic for a seed: the phrasing of each sample, and the wording of each fact in it,
are picked by a hash of the seed and the sample id, so the same config and seed give the
same samples byte for byte. Queries are worded only from the attributes the referring step
chose, so every claim in a query is a computed fact; verbs agree with the noun's number
("where are the intervertebral discs?"); patient sides are only used where the image has
an orientation. The phrasings and wordings are package data
(``presets/templates/template_v2.toml``), versioned in every sample.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from medground.facts import BUILT_IN
from medground.records import sample_id
from medground.refer import Reference
from medground.synth.base import Synthesis, draft_sample, query_type_of
from medground.terms import clinical_term
from medground.views import View

__all__ = [
    "DEFAULT_TEMPLATES",
    "NounPhrase",
    "TemplateSynthesizer",
    "noun_phrase",
    "templates",
    "word",
    "word_expression",
    "word_query",
]

DEFAULT_TEMPLATES = "template_v2"
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_SIZE_CLASS = {"small": "small", "medium": "medium-sized", "large": "large", "normal": "normal-sized"}
_AFTER_INTENSITY = {"darker": "darker", "brighter": "brighter", "similar": "similar"}

#: Picks one wording among options for a slot ("position", "within", …).
Pick = Callable[[Sequence[str], str], str]


def _first(options: Sequence[str], slot: str) -> str:
    del slot
    return options[0]


@lru_cache(maxsize=4)
def templates(name: str = DEFAULT_TEMPLATES) -> dict[str, Any]:
    """A template file's phrasings and wordings (package data)."""
    path = resources.files("medground") / "presets" / "templates" / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"no template set {name!r} (presets/templates/{name}.toml)")
    return tomllib.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class NounPhrase:
    """A referring noun phrase, its grammatical number, and whether phrases follow its head
    ("… in the upper part of the image")."""

    text: str
    plural: bool
    modified: bool = False


def _side_words(side: str, paired: bool, wording: dict[str, Any], pick: Pick) -> tuple[str | None, str | None]:
    """A patient side as an adjective before the noun, or a phrase after it: "left" for one
    of a pair ("left kidney"), else "left-sided", "midline", or "on the patient's left"."""
    if side == "midline":
        return "midline", None
    if paired:
        return side, None
    form = pick([*wording["side_before"], *wording["side_after"]], "side")
    text = form.format(side=side)
    return (text, None) if form in wording["side_before"] else (None, text)


def noun_phrase(
    attributes: dict[str, Any],
    *,
    body_region: str | None,
    oriented: bool,
    findings: Collection[str] = (),
    label: str | None = None,
    pick: Pick = _first,
    template: str = DEFAULT_TEMPLATES,
) -> NounPhrase:
    """The referring noun phrase for a set of chosen attributes.

    Order: size rank, clinical descriptors, size class, shape, intensity, side, head (a
    clinical finding from the case table, the category's clinical term, or the
    description that names it without its name), then brightness against the
    surroundings, "within …", the relation to a nearby structure and the place in the
    image. ``findings`` names the clinical attributes that are findings (worded as the
    head); ``label`` is the target's label, which a description head does not say but whose
    term tells how its side is said. ``pick`` chooses among interchangeable wordings (the
    first by default).
    """
    wording = templates(template)["wording"]
    clinical = {k: str(v) for k, v in attributes.items() if k not in BUILT_IN}
    adjectives, after = _appearance(attributes, [v for k, v in clinical.items() if k not in findings], wording, pick)
    found = [clinical[k] for k in clinical if k in findings]
    named = None
    if "description" in attributes:
        head = str(attributes["description"])
        plural = attributes.get("count", 1) > 1
        paired = label is not None and clinical_term(label, body_region).paired
    else:
        named = clinical_term(attributes["category"], body_region)
        head = found[0] if found else named.text
        paired, plural = named.paired, named.is_plural and not found
    side = attributes.get("laterality")
    if side and oriented and side != "bilateral" and (named is None or named.side is None):
        before, behind = _side_words(side, paired, wording, pick)
        adjectives += [before] if before else []
        after[:0] = [behind] if behind else []
    after += _whereabouts(attributes, body_region, wording, pick)
    return NounPhrase(" ".join(["the", *adjectives, head, *after]), plural, bool(after))


def _appearance(
    attributes: dict[str, Any], descriptors: list[str], wording: dict[str, Any], pick: Pick
) -> tuple[list[str], list[str]]:
    """The words before the head (size rank, clinical descriptors, size class, shape,
    intensity) and the brightness phrase after it, for photographs."""
    adjectives = [attributes["size_rank"]] if attributes.get("size_rank") else []
    adjectives += descriptors
    if attributes.get("size_class") in _SIZE_CLASS:
        adjectives.append(_SIZE_CLASS[attributes["size_class"]])
    if attributes.get("shape"):
        adjectives.append(attributes["shape"])
    intensity = attributes.get("intensity")
    after = []
    if intensity in _AFTER_INTENSITY:
        after.append(pick(wording[f"intensity_{intensity}"], "intensity"))
    elif intensity:
        adjectives.append(intensity)
    return adjectives, after


def _whereabouts(attributes: dict[str, Any], body_region: str | None, wording: dict[str, Any], pick: Pick) -> list[str]:
    """The phrases after the head: within, the relation to a nearby structure, the place."""
    after = []
    if attributes.get("within"):
        other = clinical_term(attributes["within"], body_region).text
        after.append(pick(wording["within"], "within").format(other=other))
    if attributes.get("relation"):
        direction, _, other_label = str(attributes["relation"]).partition(":")
        other = clinical_term(other_label, body_region).text
        options = wording["lateral_relation"] if direction in ("left", "right") else wording["relation"]
        after.append(pick(options, "relation").format(direction=direction, other=other))
    position = attributes.get("position")
    if position:
        options = wording["center"] if position == "center" else wording["position"]
        after.append(pick(options, "position").format(position=position))
    return after


def _set_names(attributes: dict[str, Any], body_region: str | None) -> tuple[str, str | None, bool]:
    """How a multi-object set is named: its plural, its singular (None for a description or
    a noun plural in form), and whether it is a bilateral pair."""
    bilateral = attributes.get("laterality") == "bilateral" and int(attributes["count"]) == 2
    if "description" in attributes:
        return str(attributes["description"]), None, bilateral
    term = clinical_term(attributes["category"], body_region)
    plural = f"{term.side} {term.plural}" if term.side and not bilateral else term.plural
    singular = None if term.is_plural else (f"{term.side} {term.noun}" if term.side else term.noun)
    return plural, singular, bilateral


def word(
    reference: Reference,
    *,
    parts: int,
    body_region: str | None,
    oriented: bool,
    pick: Pick = _first,
    template: str = DEFAULT_TEMPLATES,
) -> tuple[str, str]:
    """The query for a reference, in a phrasing ``pick`` chooses among those that fit it, and
    its referring expression: the noun phrase the query refers with ("the right kidney",
    "every liver lesion", "both kidneys"), from the same words."""
    loaded = templates(template)
    phrasings, wording = loaded["phrasings"], loaded["expressions"]
    attributes = reference.attributes
    if reference.query_type == "multi_object":
        count = int(attributes["count"])
        plural, singular, bilateral = _set_names(attributes, body_region)
        options = [
            p
            for p in phrasings["bilateral" if bilateral else "multi_object"]
            if (singular is not None or "{singular}" not in p) and (count in NUMBER_WORDS or "{count}" not in p)
        ]
        query = pick(options, "phrasing").format(plural=plural, singular=singular, count=NUMBER_WORDS.get(count))
        if bilateral:
            expression = wording["bilateral"].format(plural=plural)
        elif singular is None:
            expression = wording["multi_object_no_singular"].format(plural=plural)
        else:
            expression = wording["multi_object"].format(singular=singular)
    else:
        phrase = noun_phrase(
            attributes,
            body_region=body_region,
            oriented=oriented,
            findings=reference.findings,
            label=reference.label,
            pick=pick,
            template=template,
        )
        kind = "parts" if parts > 1 else query_type_of(reference)
        # "… of the image on this image" says the image twice, and "show where the liver in
        # the middle of the image is" loses its verb behind the modifiers.
        options = [
            p
            for p in phrasings[kind]
            if ("of the image" not in phrase.text or "this image" not in p)
            and not (phrase.modified and p.endswith("{is}."))
        ]
        query = pick(options, "phrasing").format(np=phrase.text, **{"is": "are" if phrase.plural else "is"})
        expression = wording["parts"].format(np=phrase.text) if parts > 1 else phrase.text
    return query[0].upper() + query[1:], str(expression)


def word_query(reference: Reference, **options: Any) -> str:
    """The query of :func:`word`."""
    return word(reference, **options)[0]


def word_expression(reference: Reference, **options: Any) -> str:
    """The referring expression of :func:`word` (the first of each choice by default)."""
    return word(reference, **options)[1]


class TemplateSynthesizer:
    """Writes one query per reference from versioned phrasings; no model, no network."""

    name = "template"

    def __init__(self, seed: int = 0, templates_name: str = DEFAULT_TEMPLATES) -> None:
        self.seed = seed
        self.template = templates_name
        self.version = str(templates(templates_name)["version"])

    def picker(self, key: str) -> Pick:
        """Picks wordings by a hash of the seed, ``key`` (a sample id) and the slot."""

        def pick(options: Sequence[str], slot: str) -> str:
            digest = hashlib.sha256(f"{self.seed}|{key}|{slot}".encode()).digest()
            return options[int.from_bytes(digest[:8], "big") % len(options)]

        return pick

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
        samples = []
        counters: dict[tuple[tuple[int, ...], str], int] = {}
        seen_queries: set[tuple[tuple[int, ...], str]] = set()
        for reference in references:
            query_type = query_type_of(reference)
            key = (reference.targets, query_type)
            index = counters.get(key, 0)
            counters[key] = index + 1
            identifier = sample_id(case.dataset, case.case_id, view_record, reference.targets, query_type, index)
            parts = len(view.objects[reference.targets[0]].pieces) if len(reference.targets) == 1 else 1
            pick, oriented = self.picker(identifier), case.image.oriented
            query, expression = word(
                reference, parts=parts, body_region=body_region, oriented=oriented, pick=pick, template=self.template
            )
            if (reference.targets, query) in seen_queries:
                continue  # two query types worded the same for one target: keep one
            seen_queries.add((reference.targets, query))
            synthesis = {
                "backend": self.name,
                "model": None,
                "prompt_version": self.version,
                "seed": self.seed,
                "implicit": reference.query_type == "implicit",
            }
            samples.append(
                draft_sample(
                    view, cues, reference, index, query, synthesis, modality=modality, referring_expression=expression
                )
            )
        return samples, []
