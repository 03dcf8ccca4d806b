"""The records that flow from synthesis to export: one schema version, JSON-ready.

A :class:`Sample` is one query with the box(es) of exactly the object(s) it names, on one
stored image; its fields are the contract of ``samples.jsonl`` (DESIGN.md, "Output folder").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SCHEMA_VERSION", "Sample", "Target", "image_path", "sample_id"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Target:
    """One object a query names: its box and mask in the stored image, and its cues."""

    label_id: int
    label: str
    component_id: int
    bbox_xyxy: list[int]
    area_px: int
    mask_rle: dict[str, Any]
    bbox_3d: list[list[int]] | None
    cues: dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """One referring-grounding sample (``samples.jsonl`` line; ``rejected.jsonl`` adds ``rejection``)."""

    id: str
    dataset: str
    case_id: str
    patient_id: str
    split: str | None
    image: str
    width: int
    height: int
    modality: str
    view: dict[str, Any] | None
    query: str
    query_type: str
    targets: list[Target]
    referring_attributes: dict[str, Any]
    distractors: list[dict[str, Any]]
    synthesis: dict[str, Any]
    verification: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """Reads a record written by :meth:`to_dict` (unknown keys are an error)."""
        fields = dict(data)
        fields.pop("rejection", None)
        fields["targets"] = [Target(**t) for t in fields["targets"]]
        return cls(**fields)


def _safe(text: str) -> str:
    """A file-name-safe form of an id; a short hash keeps distinct ids distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"
    if safe != text:
        safe = f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return safe


def image_path(dataset: str, case_id: str, view: dict[str, Any] | None) -> str:
    """Where a view's image is stored, relative to the output folder."""
    if view is None:
        return f"images/{_safe(dataset)}/{_safe(case_id)}.png"
    return f"images/{_safe(dataset)}/{_safe(case_id)}/{view['axis']}_{view['slice_index']:04d}.png"


def sample_id(dataset: str, case_id: str, view: dict[str, Any] | None, components: tuple[int, ...],
              query_type: str, index: int) -> str:
    """A stable id: a hash of dataset, case, view, target components, query type and index."""
    where = "2d" if view is None else f"{view['axis']}:{view['slice_index']}"
    key = "|".join([dataset, case_id, where, ",".join(map(str, components)), query_type, str(index)])
    return hashlib.sha256(key.encode()).hexdigest()[:20]
