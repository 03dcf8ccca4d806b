"""What medground knows about anatomy beyond a label's name: how a label's voxels become
objects (organ, instance or numbered series), which CT window shows it, which structures
fix the body's midline, and the adult size and body-region priors of organs.

Package data (``presets/anatomy.toml``, ``presets/priors.toml``) and plain lookups; every
stage that needs this asks here, so a fact about anatomy is changed in one place. A
dataset spec overrides the kinds and windows of its own labels.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from medground.terms import category_key, clinical_term

__all__ = [
    "ABSENT_MARGIN_MM",
    "KINDS",
    "LESION_WORDS",
    "Kind",
    "is_lesion",
    "label_group",
    "label_kind",
    "matches",
    "absent_margin",
    "midline_labels",
    "names_overlap",
    "priors",
]

Kind = Literal["organ", "instance", "series"]
KINDS: tuple[Kind, ...] = ("organ", "instance", "series")

#: Words (or stems) in a label name that mark a lesion-like label.
LESION_WORDS = ("tumor", "tumour", "lesion", "cyst", "nodule", "polyp", "mass", "metasta", "cancer", "carcinoma")


@lru_cache(maxsize=1)
def priors() -> dict[str, Any]:
    """Adult size priors per structure (package data, versioned)."""
    text = (resources.files("medground") / "presets" / "priors.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@lru_cache(maxsize=1)
def _knowledge() -> dict[str, Any]:
    text = (resources.files("medground") / "presets" / "anatomy.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _words(label: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-/]+", label.lower()) if w]


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p.rstrip("*")) + (r"\w*" if p.endswith("*") else "") for p in pattern.lower().split()]
    return re.compile(r"(?:^| )" + " ".join(parts) + r"(?= |$)")


def matches(label: str, patterns: Iterable[str]) -> bool:
    """Whether a label matches one of the word patterns (``"lung*"``, ``"spinal cord"``)."""
    text = " ".join(_words(label))
    return any(_pattern(p).search(text) for p in patterns)


@lru_cache(maxsize=4096)
def is_lesion(label: str) -> bool:
    """Whether a label names a lesion or a cell (tumour, cyst, nodule, polyp, metastasis,
    nucleus, …): an instance class whose size and shape describe it. Paired structures
    labelled as instances (both lung fields in one mask) are not lesions."""
    return matches(label, _knowledge()["kinds"]["instance"])


@lru_cache(maxsize=4096)
def label_kind(label: str, body_region: str | None = None) -> Kind:
    """How a label's voxels become objects: ``instance`` (one object per connected
    component) for lesions, nodules, cells and the like; ``series`` for a numbered member
    of a series (``rib_left_7``, ``vertebrae_L1``); ``organ`` (one object per case) else."""
    if matches(label, _knowledge()["kinds"]["instance"]):
        return "instance"
    if clinical_term(label, body_region).number is not None and not label.lower().startswith("unknown"):
        return "series"
    return "organ"


def label_group(label: str) -> str | None:
    """The CT window group of a label (``lung``, ``bone``), None for soft tissue."""
    for group, patterns in _knowledge()["groups"].items():
        if matches(label, patterns):
            return str(group)
    return None


def group_window(group: str) -> str:
    """The CT window preset of a window group."""
    return str(_knowledge()["group_windows"][group])


def midline_labels(labels: Iterable[str]) -> list[str]:
    """The labels among ``labels`` that lie on the body's midline (spine, cord, sacrum)."""
    patterns = _knowledge()["midline"]["structures"]
    return [label for label in labels if matches(label, patterns)]


#: A structure is absent from a slice of a volume only when no voxel of it lies on that slice
#: or on the slices within this many millimetres of it (at least one on each side): a
#: structure ending just off the slice may still show through partial volume.
ABSENT_MARGIN_MM = 3.0


def absent_margin(slice_spacing_mm: float | None) -> int:
    """The slices on each side of a view's slice that must also lack a structure for it to
    be called absent from the view (:data:`ABSENT_MARGIN_MM`, at least 1; 1 without a
    physical spacing)."""
    if slice_spacing_mm is None or not slice_spacing_mm > 0:
        return 1
    return max(1, int(-(-ABSENT_MARGIN_MM // slice_spacing_mm)))


def names_overlap(named: str, present: str, body_region: str | None = None) -> bool:
    """Whether a query naming label ``named`` could be read as being about a structure
    labelled ``present``: their clinical terms (sides apart) share every word of one of
    them, and their sides do not differ. "kidney" overlaps "kidney tumor" and
    "right kidney" overlaps "kidney", but "left kidney" does not overlap "right kidney",
    and a lesion label does not overlap its organ ("liver lesion" against "liver": the
    organ's presence says nothing of the lesion's). Used to keep a structure that is not
    labelled on a slice but whose name covers, or is covered by, one that is, out of the
    absent queries (:mod:`medground.synth.absent`, the rules stage)."""
    a, b = clinical_term(named, body_region), clinical_term(present, body_region)
    if a.side is not None and b.side is not None and a.side != b.side:
        return False
    words_a, words_b = set(category_key(named, body_region).split()), set(category_key(present, body_region).split())
    if words_a <= words_b:
        return True
    return words_b <= words_a and not is_lesion(named)
