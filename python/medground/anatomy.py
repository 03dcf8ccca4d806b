"""What medground knows about anatomy beyond a label's name: which labels name lesions,
and the adult size and body-region priors of organs (``presets/priors.toml``).

Package data and plain lookups; every stage that needs a prior asks here, so a prior is
changed in one place.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["LESION_WORDS", "is_lesion", "priors"]

#: Words (or stems) in a label name that mark a lesion-like label (one object per instance).
LESION_WORDS = ("tumor", "tumour", "lesion", "cyst", "nodule", "polyp", "mass", "metasta", "cancer", "carcinoma")


@lru_cache(maxsize=1)
def priors() -> dict[str, Any]:
    """Adult size priors per structure (package data, versioned)."""
    text = (resources.files("medground") / "presets" / "priors.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def is_lesion(label: str) -> bool:
    """Whether a label names a lesion (tumour, cyst, nodule, polyp, metastasis, …)."""
    name = label.lower()
    return any(word in name for word in LESION_WORDS)
