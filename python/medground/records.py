"""The records that flow from synthesis to export: one schema version, JSON-ready.

A :class:`Sample` is one query with the box(es) of exactly the object(s) it names, on one
stored image; its fields are the contract of ``samples.jsonl`` (docs/RECORDS.md). A
:class:`StageResult` is one verification stage's verdict on a draft; :func:`reject` makes
the ``rejected.jsonl`` record of a draft that failed one. Every stage builds on these
records, so they sit below all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "dumps",
    "SCHEMA_VERSION",
    "Sample",
    "StageResult",
    "Target",
    "image_path",
    "is_volume_sample",
    "reject",
    "sample_id",
    "sample_schema",
    "with_verification",
]


def dumps(value: Any, **options: Any) -> str:
    """JSON as every file medground writes holds it: strict (a NaN or infinity raises
    ``ValueError`` instead of writing the non-standard ``NaN``/``Infinity``)."""
    return json.dumps(value, allow_nan=False, **options)


SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Target:
    """One box a query asks for: an object, or one visible part of an object seen in
    several pieces (``part`` of ``parts``), with its box and mask in the stored image and
    the object's cues. A target of a volume also carries the whole object's box in voxel
    indices (``bbox_3d``) and in patient RAS+ millimetres (``bbox_3d_ras``).

    A target of a volume sample (``view.axis = "volume"``: the image is the volume) has no
    2D box or mask (``bbox_xyxy``, ``mask_rle`` None): ``bbox_3d`` is in the volume file's
    voxel indices, ``area_px`` counts its voxels, and ``mask_3d`` (``{file, value}``) names
    the objects file and the object's id in it (a record leaves ``mask_3d`` out when null)."""

    label_id: int
    label: str
    object_id: int
    bbox_xyxy: list[int] | None
    area_px: int
    mask_rle: dict[str, Any] | None
    bbox_3d: list[list[int]] | None
    bbox_3d_ras: list[list[float]] | None = None
    mask_3d: dict[str, Any] | None = None
    cues: dict[str, Any]
    part: int = 1
    parts: int = 1

    @property
    def box(self) -> list[int]:
        """The box in the stored image (a target of a slice or a 2D image).

        Raises:
            ValueError: for a volume sample's target, which has a 3D box only.
        """
        if self.bbox_xyxy is None:
            raise ValueError(f"target {self.object_id} ({self.label}) is of a volume sample: it has a 3D box only")
        return self.bbox_xyxy

    @property
    def mask(self) -> dict[str, Any]:
        """The mask in the stored image (COCO RLE); ValueError for a volume sample's target."""
        if self.mask_rle is None:
            raise ValueError(f"target {self.object_id} ({self.label}) is of a volume sample: its mask is mask_3d")
        return self.mask_rle


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One referring-grounding sample (``samples.jsonl`` line; ``rejected.jsonl`` adds ``rejection``).

    ``query`` is the instruction ("Point to the right kidney."); ``referring_expression`` the
    noun phrase it refers with ("the right kidney", "every liver lesion"), which grounding
    formats put where a referring expression belongs (ms-swift's ``ref``, ``<ref>`` spans);
    None in runs written before it existed. ``subset`` is ``appearance`` when the referring
    attributes say no position or side word (RefCOCO+'s rule; :func:`medground.refer.subset_of`),
    else None.
    """

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
    referring_expression: str | None = None
    query_type: str
    targets: list[Target]
    referring_attributes: dict[str, Any]
    subset: str | None = None
    distractors: list[dict[str, Any]]
    synthesis: dict[str, Any]
    verification: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (a deep copy: nothing of the sample is shared)."""
        return {
            name: [
                {key: _plain(getattr(t, key)) for key in _TARGET_FIELDS if key != "mask_3d" or t.mask_3d is not None}
                for t in self.targets
            ]
            if name == "targets"
            else _plain(getattr(self, name))
            for name in _SAMPLE_FIELDS
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """Reads a record written by :meth:`to_dict` (a ``rejected.jsonl`` line's
        ``rejection`` is dropped).

        Raises:
            ValueError: naming a missing or unknown field.
        """
        values = dict(data)
        values.pop("rejection", None)
        _check_fields(values, _SAMPLE_FIELDS, _SAMPLE_REQUIRED, "sample")
        targets = values["targets"]
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            raise ValueError("targets must be a list of objects")
        for k, target in enumerate(targets):
            _check_fields(target, _TARGET_FIELDS, _TARGET_REQUIRED, f"targets[{k}]")
        values["targets"] = [Target(**t) for t in targets]
        return cls(**values)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, tuples of scalars), as ``asdict`` makes
    it but without its per-value dataclass checks. Scalars are taken as they are without
    a call each (records hold hundreds of thousands of them)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _plain(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _plain(v) for v in value]
    if kind is tuple:
        return tuple(v if type(v) in _SCALARS else _plain(v) for v in value)
    if kind in _SCALARS:
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def _check_fields(record: dict[str, Any], known: tuple[str, ...], required: tuple[str, ...], what: str) -> None:
    missing = [name for name in required if name not in record]
    if missing:
        raise ValueError(f"{what} has no {missing[0]!r}")
    unknown = sorted(set(record) - set(known))
    if unknown:
        raise ValueError(f"{what} has unknown field(s) {', '.join(map(repr, unknown))}")


_SAMPLE_FIELDS = tuple(f.name for f in fields(Sample))
_SAMPLE_REQUIRED = tuple(f.name for f in fields(Sample) if f.default is MISSING and f.default_factory is MISSING)
_TARGET_FIELDS = tuple(f.name for f in fields(Target))
_TARGET_REQUIRED = tuple(f.name for f in fields(Target) if f.default is MISSING and f.default_factory is MISSING)


def is_volume_sample(sample: Sample | Mapping[str, Any]) -> bool:
    """Whether a sample (or its record) is a volume sample: its image is a whole volume
    (``view.axis = "volume"``), its boxes 3D (``bbox_3d``), with no 2D box or mask."""
    view = sample.view if isinstance(sample, Sample) else sample.get("view")
    return isinstance(view, Mapping) and view.get("axis") == "volume"


def _safe(text: str) -> str:
    """A file-name-safe form of an id; a short hash keeps distinct ids distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"
    if safe != text:
        safe = f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return safe


def image_path(dataset: str, case_id: str, view: dict[str, Any] | None, suffix: str = ".png") -> str:
    """Where a view's image is stored, relative to the output folder: one file per slice
    and window (``axial_0012.png``, and ``axial_0012-lung.png`` for lung targets); 2D
    images as ``CASE.png`` (``CASE.jpg`` when stored as JPEG); a case's volume (volume
    samples) as ``volume.nii.gz``."""
    if view is None:
        return f"images/{_safe(dataset)}/{_safe(case_id)}{suffix}"
    if view["axis"] == "volume":
        return f"images/{_safe(dataset)}/{_safe(case_id)}/volume{suffix}"
    window = f"-{_safe(str(view['window']))}" if view.get("window") else ""
    return f"images/{_safe(dataset)}/{_safe(case_id)}/{view['axis']}_{view['slice_index']:04d}{window}{suffix}"


def sample_id(
    dataset: str, case_id: str, view: dict[str, Any] | None, components: tuple[int, ...], query_type: str, index: int
) -> str:
    """A stable id: a hash of dataset, case, view, target components, query type and index."""
    where = "2d" if view is None else "volume" if view["axis"] == "volume" else f"{view['axis']}:{view['slice_index']}"
    if view is not None and view.get("window"):
        where += f":{view['window']}"
    key = "|".join([dataset, case_id, where, ",".join(map(str, components)), query_type, str(index)])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StageResult:
    """One stage's verdict on one draft (synthesis, format, rules or visual).

    Attributes:
        stage: the stage's name.
        passed: whether the draft passed it.
        reason: a stable reason code when it failed (listed in docs/RECORDS.md).
        detail: what went wrong, for a person.
        info: what the stage measured (claims found, contrast, a judge's verdict).
    """

    stage: str
    passed: bool
    reason: str | None = None
    detail: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fail(cls, stage: str, reason: str, detail: str, info: dict[str, Any] | None = None) -> StageResult:
        """A failing verdict with its reason code and detail."""
        return cls(stage, False, reason, detail, info or {})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed}
        if not self.passed:
            out.update(reason=self.reason, detail=self.detail)
        if self.info:
            out["info"] = self.info
        return out


def reject(sample: Sample, result: StageResult) -> dict[str, Any]:
    """The ``rejected.jsonl`` record of a draft that failed ``result``."""
    record = sample.to_dict()
    record["rejection"] = {"stage": result.stage, "reason": result.reason, "detail": result.detail}
    return record


def with_verification(sample: Sample, results: list[StageResult]) -> Sample:
    """The sample with its per-stage results recorded."""
    return replace(sample, verification={r.stage: r.to_dict() for r in results})


@lru_cache(maxsize=1)
def sample_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``samples.jsonl`` record, shipped with the
    package (``presets/schemas/sample.schema.json``) for readers in any language."""
    text = (resources.files("medground") / "presets" / "schemas" / "sample.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
