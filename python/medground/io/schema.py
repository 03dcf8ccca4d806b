"""The dataset spec's schema: what a dataset is and how each stage treats it.

Frozen records, parsed once from a spec file by :mod:`medground.io.spec` and read by every
stage: where the cases are (:class:`CasesSpec`), the label map, how slices are chosen and
shown (:class:`RenderSpec`, with the CT windows), and the minimum object sizes
(:class:`AnchorFilters`). The keys are documented in docs/RECORDS.md ("Dataset spec").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground.anatomy import label_kind
from medground.io.readers import DEFAULT_MAX_BYTES

__all__ = [
    "AXES",
    "VOLUME_AXIS",
    "CT_WINDOWS",
    "IMAGE_FORMATS",
    "MASK_MODES",
    "MODALITIES",
    "RADIOLOGY_MODALITIES",
    "CLINICAL_ROLES",
    "AnchorFilters",
    "CasesSpec",
    "ClinicalAttribute",
    "DatasetSpec",
    "MetadataSpec",
    "RenderSpec",
]

MODALITIES = ("CT", "MR", "PET", "XR", "US", "endoscopy", "dermoscopy", "microscopy", "fundus", "other")
#: Modalities with a patient orientation, displayed in radiological convention by default.
RADIOLOGY_MODALITIES = ("CT", "MR", "PET", "XR")
MASK_MODES = ("labelmap", "binary", "per_label_files")
AXES = ("axial", "coronal", "sagittal")
#: ``[render] axes`` may also ask for volume samples: the whole volume as one image.
VOLUME_AXIS = "volume"
#: How views are stored: ``auto`` keeps JPEG sources as JPEG (photographs, JPEG X-rays)
#: and writes everything else as lossless PNG.
IMAGE_FORMATS = ("auto", "png", "jpeg")

#: CT windows as (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "abdomen": (40.0, 350.0),
    "mediastinum": (50.0, 350.0),
    "liver": (30.0, 150.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
}


@dataclass(frozen=True)
class AnchorFilters:
    """Minimum sizes below which a component is not an object (``[anchors]`` in a spec).

    ``min_voxels``/``min_volume_mm3`` apply to 3D components, ``min_area_px``/
    ``min_area_mm2`` to an object's footprint in a view. ``per_label`` overrides any of
    them by label name: ``[anchors.labels."kidney tumor"] min_volume_mm3 = 50``.
    """

    min_voxels: int = 10
    min_volume_mm3: float = 0.0
    min_area_px: int = 16
    min_area_mm2: float = 0.0
    per_label: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    _KEYS = ("min_voxels", "min_volume_mm3", "min_area_px", "min_area_mm2")

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> AnchorFilters:
        """Parses an ``[anchors]`` table; unknown keys raise ValueError naming them."""
        table = dict(table or {})
        per_label = table.pop("labels", {})
        unknown = sorted(set(table) - set(cls._KEYS))
        if unknown:
            raise ValueError(
                f"unknown key(s) in [anchors]: {', '.join(unknown)}; allowed: {', '.join(cls._KEYS)}, labels"
            )
        for name, overrides in per_label.items():
            bad = sorted(set(overrides) - set(cls._KEYS))
            if bad:
                raise ValueError(f"unknown key(s) in [anchors.labels.{name!r}]: {', '.join(bad)}")
        values = {k: table[k] for k in cls._KEYS if k in table}
        for key, value in [*values.items(), *((k, v) for o in per_label.values() for k, v in o.items())]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"[anchors] {key} must be a non-negative number, got {value!r}")
        return cls(**values, per_label=per_label)

    def get(self, key: str, label: str) -> float:
        return float(self.per_label.get(label, {}).get(key, getattr(self, key)))


@dataclass(frozen=True)
class RenderSpec:
    """How slices are chosen and shown (``[render]``).

    Attributes:
        axes: slicing planes of 3D volumes (axial, coronal, sagittal), and ``volume`` for
            volume samples (the whole volume as the image, :mod:`medground.volumes`).
        slices: ``max_area``, ``spread:K`` or ``all`` (per component).
        window: CT window preset name, ``(level, width)``, or three of either for an RGB
            rendering; None for the modality's default (soft tissue for CT, percentiles else).
        percentiles: MR/other normalisation range over the body.
        max_slices: cap on slices per component and axis for ``all``.
        min_area_fraction: ``spread:K`` picks slices whose area is at least this share of the max.
        square_pixels: resample the in-plane axes of anisotropic volumes so pixels are square.
        min_side: slices of volumes are scaled up (nearest voxel) until their shorter side has
            at least this many pixels, so a 30-slice coronal view is not 30 pixels tall.
        max_side: and scaled down until their longer side has at most this many, unless that
            would make the shorter side fall under ``min_side``. 2D images are scaled down
            to it too (never up); shrunk views show area means, not skipped pixels.
        edge_margin: no view on this many slices at either end of a volume along its axis
            (partial-volume edge slices).
        min_target_share: an object is asked about on a slice only where it shows at least
            this share of its largest cross-section (not a sliver of it).
        min_contrast: the least contrast (8-bit grey levels, mean against a surrounding ring
            or across the outline) a target needs in the stored image to be asked about.
        windows: CT windows per window group (``lung``, ``bone``) or per label name, over
            the defaults of ``presets/anatomy.toml``: a target is shown in its own window.
        max_objects: a view showing more objects than this (dense nuclei, thousands of
            metastases) asks nothing and is recorded as ``crowded_view``: uniqueness among
            that many look-alikes is neither cheap nor meaningful.
        image_format: ``auto`` (JPEG for JPEG sources, lossless PNG for everything else),
            ``png`` or ``jpeg``. A view that is a JPEG source unchanged is stored as the
            source's own bytes (no second generation of loss); other JPEG views are encoded
            with the source's quantisation tables and chroma subsampling when it is a JPEG
            (a resized photograph keeps its quality and shrinks with its pixels), else at
            ``jpeg_quality``.
        jpeg_quality: quality (1-100) of the JPEGs a run encodes; when set, it applies to
            JPEG sources too. Unset: the source's own tables, or 90 for other sources.
    """

    axes: tuple[str, ...] = ("axial",)
    slices: str = "max_area"
    window: str | tuple[float, float] | tuple[str | tuple[float, float], ...] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    max_slices: int = 16
    min_area_fraction: float = 0.5
    square_pixels: bool = True
    min_side: int = 224
    max_side: int = 1024
    edge_margin: int = 2
    min_target_share: float = 0.3
    min_contrast: float = 6.0
    max_objects: int = 1000
    windows: tuple[tuple[str, str | tuple[float, float]], ...] = ()
    image_format: str = "auto"
    jpeg_quality: int | None = None


@dataclass(frozen=True)
class CasesSpec:
    """Where the images and masks are (``[cases]``; the patterns are in docs/RECORDS.md, "Dataset spec")."""

    image: str
    mask: str
    mask_mode: str = "labelmap"
    patient: str = "{case}"
    patient_regex: str | None = None
    exclude: tuple[str, ...] = ()
    case_regex: str | None = None
    merge_masks: bool = False
    channel: int | None = None
    mask_threshold: float | None = None
    colors: tuple[tuple[tuple[int, int, int], int], ...] = ()
    color_tolerance: int = 0
    max_bytes: int = DEFAULT_MAX_BYTES
    affine_tolerance: float = 1e-3
    pixel_spacing: tuple[float, float] | None = None


#: How a clinical attribute words its object: a ``finding`` names it ("the melanoma"), a
#: ``descriptor`` qualifies it ("the asymmetric skin lesion").
CLINICAL_ROLES = ("finding", "descriptor")


@dataclass(frozen=True)
class ClinicalAttribute:
    """One clinical attribute read from a case table (``[metadata.<name>]``).

    Attributes:
        name: the attribute's name in records and references ("diagnosis").
        role: ``finding`` or ``descriptor`` (:data:`CLINICAL_ROLES`).
        labels: the label names whose objects it describes.
        column: the table column holding a code (with ``values``), or None for one-hot columns.
        values: code → clinical term ("2" → "melanoma"); codes not listed give no attribute.
        one_hot: column → clinical term, the term of the column holding a true value
            (1, 1.0, true, yes) is the attribute's value.
        otherwise: the term when no one-hot column is true (None: no attribute).
    """

    name: str
    role: str
    labels: tuple[str, ...]
    column: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    one_hot: tuple[tuple[str, str], ...] = ()
    otherwise: str | None = None

    @property
    def terms(self) -> tuple[str, ...]:
        """Every clinical term the attribute can take, as declared."""
        found = [term for _, term in self.values] + [term for _, term in self.one_hot]
        if self.otherwise is not None:
            found.append(self.otherwise)
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class MetadataSpec:
    """A per-case table of clinical facts (``[cases] metadata`` and ``[metadata]``).

    Attributes:
        path: the CSV or TSV file, relative to the dataset folder.
        key: the column holding the case id.
        attributes: what the table's columns mean.
    """

    path: str
    key: str
    attributes: tuple[ClinicalAttribute, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec; ``root`` is the dataset's folder, every path is inside it."""

    name: str
    modality: str
    body_region: str
    display: str
    root: Path
    cases: CasesSpec
    labels: dict[int, str]
    render: RenderSpec = field(default_factory=RenderSpec)
    source: Path | None = None
    preset: str | None = None
    #: Minimum object sizes (``[anchors]``).
    anchors: AnchorFilters = field(default_factory=lambda: AnchorFilters())
    #: Label name → ``organ``, ``instance`` or ``series`` where the spec overrides
    #: :func:`medground.anatomy.label_kind`.
    label_kinds: tuple[tuple[str, str], ...] = ()
    #: Clinical facts per case from a table (``[cases] metadata``), None without one.
    metadata: MetadataSpec | None = None
    #: Labels every instance of which is annotated in every image, so that a query may call
    #: one "the lesion" without naming it (default: lesion-like labels of photographic
    #: modalities, where the whole finding is in view and annotated).
    exhaustive_labels: tuple[str, ...] = ()

    def kind_of(self, label: str) -> str:
        """How a label's voxels become objects (the spec's ``label_kinds``, else anatomy's)."""
        from_spec = dict(self.label_kinds).get(label)
        return from_spec if from_spec is not None else label_kind(label, self.body_region)

    @property
    def is_radiological(self) -> bool:
        return self.display == "radiological"

    def label_id(self, name: str) -> int | None:
        for label_id, label_name in self.labels.items():
            if label_name == name:
                return label_id
        return None
