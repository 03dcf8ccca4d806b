"""Clinical terms for dataset label names, for wording queries.

Datasets name their labels in many styles: ``kidney_left``, ``rib_left_7``,
``vertebrae_L1``, ``Precentral_L``, ``left kidney``, ``Anterior``. :func:`clinical_term`
turns any of them into a :class:`Term`: the structure's noun, the patient's side, the
full clinical phrase and the plural.

The generic rules live here: the label is split into parts at ``_`` and spaces; a part
naming a side is taken out and the side put in front; a trailing number or vertebral
level is read and worded ("7th rib", "L1 vertebra", "unlabelled structure 7"); the
remaining parts become lowercase words. Explicit names, plurals, side markers and
spellings are package data, one TOML file per body region in ``presets/vocab/``
(``common.toml`` documents the format), read once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Literal

__all__ = ["VOCAB_VERSION", "Side", "Term", "category_key", "clinical_term"]

#: The vocabulary file format this module reads (each file's ``version``).
VOCAB_VERSION = 1

Side = Literal["left", "right"]

_SIDES = ("left", "right")
_NUMBER_STYLES = ("suffix", "ordinal", "level")
_SHARED_TABLES = ("sides", "spellings", "plurals")  # only in common.toml
_FILE_KEYS = {"version", "terms", "region_only", *_SHARED_TABLES}
_ENTRY_KEYS = {"noun", "plural", "number", "paired", "description", "description_plural"}
_PART_SEPARATOR = re.compile(r"[_\s]+")
_NUMBER = re.compile(r"\d+|[CTLS]\d{1,2}", re.IGNORECASE)
_VERTEBRAL_LEVEL = re.compile(r"[CTLS]\d{1,2}", re.IGNORECASE)
_NUMBER_KEY = "#"  # stands for the number in vocabulary names ("rib_#")
_ACRONYM_MAX_LENGTH = 4  # "PZ", "GTV": kept in capitals, unlike "LIVER"


@dataclass(frozen=True)
class Term:
    """A label name as a clinical term.

    Attributes:
        noun: The kind of structure, without side or number: "kidney", "rib",
            "upper lobe of the lung".
        side: The patient's side named in the label, or None if it names none.
        text: The full clinical phrase: "left kidney", "left 7th rib", "L1 vertebra".
        plural: The plural of ``noun``: "kidneys", "ribs", "upper lobes of the lungs".
        number: The label's number or vertebral level ("7", "L1"), None without one: a
            member of a numbered series, whose number a single slice rarely shows.
        paired: The structure is one of a left/right pair ("kidney", "lung"): its side is
            said as "left kidney", never "left-sided kidney".
        description: What the structure is, in clinical words that fix it without naming
            it ("organ that stores bile"), singular and without an article; None where the
            vocabulary gives none. Used for queries that do not name their target.
        description_plural: The same for both of a pair ("retroperitoneal organs
            that produce urine"), or None.
    """

    noun: str
    side: Side | None
    text: str
    plural: str
    number: str | None = None
    paired: bool = False
    description: str | None = None
    description_plural: str | None = None

    @property
    def is_plural(self) -> bool:
        """The noun is plural in form ("intervertebral discs", "costal cartilages"): it
        takes "are", and has no singular for "every …"."""
        return self.noun == self.plural


def clinical_term(label: str, body_region: str | None = None) -> Term:
    """The clinical term for a dataset's label name.

    Args:
        label: The label's name as the dataset gives it (``kidney_left``,
            ``Hippocampus_R``, ``kidney tumor``).
        body_region: The dataset's body region (a spec's ``body_region``, e.g. "brain").
            It adds names that only mean something there, such as the Decathlon's
            "Anterior" for the anterior hippocampus; any other value, or None, adds none.

    Returns:
        The :class:`Term`. Names the vocabulary does not know are worded by the generic
        rules, so every non-empty label gives a term.

    Raises:
        ValueError: ``label`` is not a string or has no words (only separators).
    """
    if not isinstance(label, str):
        raise ValueError(f"label must be a string with at least one word, got {label!r}")
    if body_region is not None and not isinstance(body_region, str):
        raise ValueError(f"body_region must be a string or None, got {body_region!r}")
    return _clinical_term(label, body_region.strip().lower() if body_region else None)


@lru_cache(maxsize=65536)
def category_key(label: str, body_region: str | None = None) -> str:
    """A label's clinical term without its side: "kidney" for kidney_left, "L1 vertebra"
    (what the referring step groups by and the rules stage compares names by)."""
    term = clinical_term(label, body_region)
    text = term.text.lower()
    if term.side is not None:
        text = re.sub(rf"\b{term.side}(?:-sided)?\b", " ", text)
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=65536)
def _clinical_term(label: str, region: str | None) -> Term:
    """:func:`clinical_term` of a checked label, once per (label, region): terms are
    immutable, and a case asks for the same few dozen labels hundreds of thousands of times."""
    parts = [part for part in _PART_SEPARATOR.split(label) if part]
    if not parts:
        raise ValueError(f"label must be a string with at least one word, got {label!r}")
    vocab = _vocabulary()
    side, parts = vocab.take_side(parts)
    keys = [vocab.spelling(part) for part in parts]

    number = None
    entry = vocab.lookup("_".join(keys), region)
    if entry is None and len(parts) > 1 and _NUMBER.fullmatch(parts[-1]):
        number, parts, keys = parts[-1], parts[:-1], keys[:-1]
        stem = "_".join(keys)
        entry = vocab.lookup(f"{stem}_{_NUMBER_KEY}", region)
        if entry is None and (plain := vocab.lookup(stem, region)) is not None:
            entry = replace(plain, number="suffix")  # a number the vocabulary did not expect
    if entry is None:
        entry = _Entry(" ".join(_display_word(part, key) for part, key in zip(parts, keys, strict=True)))

    plural = entry.plural if entry.plural is not None else vocab.pluralise(entry.noun)
    text = _numbered(entry.noun, number, entry.number)
    return Term(
        noun=entry.noun,
        side=side,
        text=f"{side} {text}" if side else text,
        plural=plural,
        number=number,
        paired=entry.paired,
        description=entry.description,
        description_plural=entry.description_plural,
    )


# ------------------------------------------------------------------------------- wording


def _numbered(noun: str, number: str | None, style: str) -> str:
    """``noun`` with its number: "7th rib", "L1 vertebra", "unlabelled structure 7"."""
    if number is None:
        return noun
    if style == "ordinal" and number.isdigit():
        return f"{_ordinal(int(number))} {noun}"
    if style == "level" and _VERTEBRAL_LEVEL.fullmatch(number):
        return f"{number.upper()} {noun}"
    return f"{noun} {number}"


def _ordinal(n: int) -> str:
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _display_word(part: str, key: str) -> str:
    """A label part as a word of running text: lowercase, but acronyms and parts with
    digits as written ("PZ", "CA1"). ``key`` is the part lowercased and respelled."""
    if key != part.lower():
        return key  # respelled
    if any(c.isdigit() for c in part) or (part.isupper() and len(part) <= _ACRONYM_MAX_LENGTH):
        return part
    return key


def _regular_plural(word: str) -> str:
    if word.isupper():
        return f"{word}s"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return f"{word}es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return f"{word[:-1]}ies"
    return f"{word}s"


# ---------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Entry:
    noun: str
    plural: str | None = None
    number: str = "suffix"
    paired: bool = False
    description: str | None = None
    description_plural: str | None = None


@dataclass(frozen=True)
class _Vocabulary:
    side_words: Mapping[str, Side]
    side_abbreviations: Mapping[str, Side]
    spellings: Mapping[str, str]
    plurals: Mapping[str, str]
    terms: Mapping[str, _Entry]
    region_terms: Mapping[str, Mapping[str, _Entry]]

    def lookup(self, name: str, region: str | None) -> _Entry | None:
        local = self.region_terms.get(region, {}) if region else {}
        return local.get(name) or self.terms.get(name)

    def spelling(self, part: str) -> str:
        lower = part.lower()
        return self.spellings.get(lower, lower)

    def take_side(self, parts: list[str]) -> tuple[Side | None, list[str]]:
        """The side a label's parts name, and the parts without it. Side words count
        anywhere, abbreviations only first or last; a label naming both sides, or
        nothing but a side, is left as it is."""
        sides: set[Side] = set()
        kept: list[str] = []
        for i, part in enumerate(parts):
            side = self.side_words.get(part.lower())
            if side is None and len(parts) > 1 and i in (0, len(parts) - 1):
                side = self.side_abbreviations.get(part.lower())
            if side is None:
                kept.append(part)
            else:
                sides.add(side)
        if not kept or len(sides) != 1:
            return None, parts
        return sides.pop(), kept

    def pluralise(self, noun: str) -> str:
        """Plural of a noun phrase: its head (the last words, or those before " of ")
        from [plurals] where listed, else by the regular English rule."""
        head, of, tail = noun.partition(" of ")
        words = head.split(" ")
        for start in range(len(words)):
            irregular = self.plurals.get(" ".join(words[start:]).lower())
            if irregular is not None:
                return " ".join([*words[:start], irregular]) + of + tail
        return " ".join([*words[:-1], _regular_plural(words[-1])]) + of + tail


@cache
def _vocabulary() -> _Vocabulary:
    """Reads every ``presets/vocab/*.toml`` once."""
    folder = resources.files("medground") / "presets" / "vocab"
    return _build_vocabulary(
        {
            item.name[: -len(".toml")]: tomllib.loads(item.read_text(encoding="utf-8"))
            for item in sorted(folder.iterdir(), key=lambda item: item.name)
            if item.name.endswith(".toml")
        }
    )


def _build_vocabulary(documents: Mapping[str, Mapping[str, Any]]) -> _Vocabulary:
    """The vocabulary from parsed files, keyed by file name without ``.toml``.

    Raises:
        ValueError: a malformed file, or a name defined in two files.
    """
    if "common" not in documents:
        raise ValueError(f"vocabulary has no common.toml (files: {sorted(documents)})")
    terms: dict[str, _Entry] = {}
    defined_in: dict[str, str] = {}
    region_terms: dict[str, dict[str, _Entry]] = {}
    for region, document in documents.items():
        source = f"vocabulary {region}.toml"
        _check_file(document, source, shared=region == "common")
        for name, value in document.get("terms", {}).items():
            if name in defined_in:
                raise ValueError(f"{source}: name {name!r} is already defined in {defined_in[name]}.toml")
            terms[name], defined_in[name] = _entry(name, value, source), region
        if region_only := document.get("region_only"):
            region_terms[region] = {name: _entry(name, value, source) for name, value in region_only.items()}
    common = documents["common"]
    sides = common.get("sides", {})
    return _Vocabulary(
        side_words=_side_table(sides.get("words", {}), "common.toml [sides] words"),
        side_abbreviations=_side_table(sides.get("abbreviations", {}), "common.toml [sides] abbreviations"),
        spellings=_string_table(common.get("spellings", {}), "common.toml [spellings]"),
        plurals=_string_table(common.get("plurals", {}), "common.toml [plurals]"),
        terms=terms,
        region_terms=region_terms,
    )


def _check_file(document: Mapping[str, Any], source: str, *, shared: bool) -> None:
    if document.get("version") != VOCAB_VERSION:
        raise ValueError(f"{source}: version must be {VOCAB_VERSION}, got {document.get('version')!r}")
    unknown = set(document) - _FILE_KEYS
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected {sorted(_FILE_KEYS)}")
    misplaced = [table for table in _SHARED_TABLES if table in document and not shared]
    if misplaced:
        raise ValueError(f"{source}: {misplaced} belong in common.toml")
    for table in _FILE_KEYS - {"version"}:
        if not isinstance(document.get(table, {}), Mapping):
            raise ValueError(f"{source}: [{table}] must be a table, got {document[table]!r}")


def _entry(name: str, value: Any, source: str) -> _Entry:
    if name != name.lower() or _PART_SEPARATOR.sub("_", name) != name:
        raise ValueError(f"{source}: name {name!r} must be lowercase with parts joined by '_'")
    if isinstance(value, str):
        value = {"noun": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("noun"), str) or set(value) - _ENTRY_KEYS:
        expected = f"a noun string or a table with keys {sorted(_ENTRY_KEYS)}"
        raise ValueError(f"{source}: {name} must be {expected}, got {value!r}")
    number = value.get("number", "suffix")
    if number not in _NUMBER_STYLES:
        raise ValueError(f"{source}: {name} number must be one of {', '.join(_NUMBER_STYLES)}, got {number!r}")
    if number != "suffix" and not name.endswith(f"_{_NUMBER_KEY}"):
        raise ValueError(f"{source}: {name} sets number = {number!r} but its name has no '_{_NUMBER_KEY}'")
    texts = {key: value.get(key) for key in ("plural", "description", "description_plural")}
    for key, text in texts.items():
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"{source}: {name} {key} must be a non-empty string, got {text!r}")
    if texts["description_plural"] is not None and texts["description"] is None:
        raise ValueError(f"{source}: {name} has description_plural but no description")
    paired = value.get("paired", False)
    if not isinstance(paired, bool):
        raise ValueError(f"{source}: {name} paired must be true or false, got {paired!r}")
    return _Entry(value["noun"], texts["plural"], number, paired, texts["description"], texts["description_plural"])


def _string_table(table: Any, source: str) -> dict[str, str]:
    if not isinstance(table, Mapping) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"{source} must map words to strings, got {table!r}")
    return {key.lower(): value for key, value in table.items()}


def _side_table(table: Any, source: str) -> dict[str, Side]:
    sides: dict[str, Side] = {}
    bad = {}
    for key, value in _string_table(table, source).items():
        if value == "left":
            sides[key] = "left"
        elif value == "right":
            sides[key] = "right"
        else:
            bad[key] = value
    if bad:
        raise ValueError(f"{source}: sides must be 'left' or 'right', got {bad}")
    return sides
