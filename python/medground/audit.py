"""Counts what a radiologist would object to in a run folder, one defect class at a time.

Reads only what the run wrote (samples, skipped records, images, the manifest), so it
judges any run, from this version or an older one. Each class is a count of accepted
samples (or cases, labels) showing the defect:

* ``flat_targets``: targets whose pixels in the stored PNG are flat (std < 1 grey level),
  or whose contrast against a 3-pixel ring is under 6 grey levels, mean and outline both.
* ``intensity_word_disagrees``: a hyper/hypo word (or brighter/darker) whose sign the
  stored pixels contradict.
* ``side_contradicts_name``: a side-named structure (``kidney_left``) given the other side.
* ``midline_structure_sided``: spinal cord, vertebrae, discs or sacrum called left or right.
* ``organ_counted``: an organ (not a lesion, a numbered series or a bilateral pair) counted,
  ranked or asked for as "every/each/all".
* ``size_on_cut_object``: a size claim on an object the field of view cuts (its box touches
  the image border, or its 3D box the volume border).
* ``mm_without_spacing``: millimetres in the cues of an image without pixel spacing.
* ``out_of_plane_direction``: a direction the plane shown cannot show (axial: superior /
  inferior; coronal: anterior / posterior; sagittal: left / right / medial / lateral).
* ``edge_slice_view``: a view on the first or last two slices of a volume.
* ``small_view``: a view of a volume whose shorter side is under 224 pixels.
* ``lung_in_soft_tissue``: a lung target shown in a soft-tissue (non-lung) CT window.
* ``labels_without_trace``: declared labels present in a case's label map (``RUN=SPEC``)
  with no sample and no skipped record naming them.
* ``nameless_query``: a query that names none of its target's names (clinical term, noun,
  plural, finding) and neither a vocabulary description of it nor, for a lesion of a
  photographic modality (every instance annotated), "lesion": unlabelled anatomy could fit it.
* ``mixed_frames``: a patient side (left/right outside a place in the image) and a place in
  the image in one query.
* ``sagittal_image_side``: image left/right on a sagittal view (there it is anterior/posterior).
* ``grammar``: a doubled word, "is" with a plural-only term ("the intervertebral discs"),
  or "every/each" before one.
* ``duplicate_sample``: more than one sample per (image, targets, attribute set).
* ``repeated_query``: the same query for the same targets on several slices of one plane.
* ``finding_unnamed``: a target whose case table gives a finding ("melanoma") that its
  query does not name.

``medground audit RUN_DIR[=SPEC] ...`` prints the table; :func:`audit` returns the counts.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from medground import rle
from medground.anatomy import is_lesion, label_kind, midline_labels
from medground.io import find_cases, load_case, load_spec, resolve_labels
from medground.records import dumps, is_volume_sample
from medground.runfolder import RunFolder
from medground.terms import clinical_term

__all__ = ["CLASSES", "audit", "format_audit", "visible"]

CLASSES = (
    "flat_targets",
    "intensity_word_disagrees",
    "side_contradicts_name",
    "midline_structure_sided",
    "organ_counted",
    "size_on_cut_object",
    "mm_without_spacing",
    "out_of_plane_direction",
    "edge_slice_view",
    "small_view",
    "lung_in_soft_tissue",
    "labels_without_trace",
    "nameless_query",
    "mixed_frames",
    "sagittal_image_side",
    "grammar",
    "duplicate_sample",
    "repeated_query",
    "finding_unnamed",
)
#: Modalities whose images carry no pixel spacing in the shared presets.
PHOTOGRAPHIC = ("dermoscopy", "endoscopy", "XR", "microscopy", "fundus")
_OUT_OF_PLANE = {
    "axial": {"superior", "inferior"},
    "coronal": {"anterior", "posterior"},
    "sagittal": {"left", "right", "medial", "lateral"},
}
_BRIGHT = ("hyperdense", "hyperintense", "brighter")
_DARK = ("hypodense", "hypointense", "darker")


def _ring(mask: NDArray[np.bool_], radius: int = 3) -> NDArray[np.bool_]:
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out & ~mask


def visible(image: NDArray[np.float64], mask: NDArray[np.bool_], floor: float = 6.0) -> tuple[bool, float]:
    """Whether a target shows in a grey image, judged independently of the pipeline: its
    pixels are not flat (std ≥ 1 grey level) and its mean differs from a 3-pixel ring, or
    its outline from the pixels just outside, by at least ``floor``. Also returns the mean
    difference against the ring."""
    inside = image[mask]
    ring = _ring(mask)
    difference = float(inside.mean() - image[ring].mean()) if ring.any() else 0.0
    pairs = [
        (mask[:-1] & ~mask[1:], image[:-1], image[1:]),
        (mask[1:] & ~mask[:-1], image[1:], image[:-1]),
        (mask[:, :-1] & ~mask[:, 1:], image[:, :-1], image[:, 1:]),
        (mask[:, 1:] & ~mask[:, :-1], image[:, 1:], image[:, :-1]),
    ]
    edges = [np.abs(a[w] - b[w]) for w, a, b in pairs if w.any()]
    edge = float(np.mean(np.concatenate(edges))) if edges else 0.0
    return bool(inside.std() >= 1.0 and max(abs(difference), edge) >= floor), difference


class _Images:
    """The run's stored images as grey arrays, read once."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.cache: dict[str, NDArray[np.float64]] = {}

    def __getitem__(self, path: str) -> NDArray[np.float64]:
        if path not in self.cache:
            with Image.open(self.folder.path(path)) as image:
                self.cache[path] = np.asarray(image.convert("L"), dtype=np.float64)
        return self.cache[path]


def _target_defects(sample: dict[str, Any], target: dict[str, Any], images: _Images) -> Counter[str]:
    counts: Counter[str] = Counter()
    cues = target["cues"]
    query = sample["query"].lower()
    shown, difference = visible(images[sample["image"]], rle.decode(target["mask_rle"]))
    counts["flat_targets"] += not shown
    bright, dark = any(w in query for w in _BRIGHT), any(w in query for w in _DARK)
    counts["intensity_word_disagrees"] += (bright and difference < 0) or (dark and difference > 0)
    named = clinical_term(target["label"]).side
    side = cues.get("laterality")
    counts["side_contradicts_name"] += bool(named and side in ("left", "right") and side != named)
    counts["midline_structure_sided"] += bool(midline_labels([target["label"]]) and side in ("left", "right"))
    size = cues.get("size", {})
    measured = size.get("diameter_mm") is not None or size.get("area_mm2") is not None
    counts["mm_without_spacing"] += sample["modality"] in PHOTOGRAPHIC and measured
    x0, y0, x1, y1 = target["bbox_xyxy"]
    cut = x0 == 0 or y0 == 0 or x1 == sample["width"] or y1 == sample["height"]
    box, shape = target.get("bbox_3d"), (sample.get("provenance") or {}).get("map", {}).get("volume_shape")
    if box and shape:
        cut = cut or min(box[0]) == 0 or any(hi >= n for hi, n in zip(box[1], shape, strict=True))
    counts["size_on_cut_object"] += bool(cut and sample["referring_attributes"].get("size_class"))
    if sample["view"] and "lung" in target["label"].lower():
        counts["lung_in_soft_tissue"] += (sample.get("provenance") or {}).get("intensity", {}).get("name") != "lung"
    return counts


def _sample_defects(sample: dict[str, Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    attributes = sample["referring_attributes"]
    labels = [t["label"] for t in sample["targets"]]
    organs = [label for label in labels if label_kind(label) == "organ" and not is_lesion(label)]
    objects = {t.get("object_id", t.get("component_id")) for t in sample["targets"]}
    bilateral = attributes.get("laterality") == "bilateral" and len(objects) == 2
    counted = sample["query_type"] == "multi_object" or attributes.get("size_rank") or attributes.get("count")
    counts["organ_counted"] += bool(organs and counted and not bilateral)
    direction = (attributes.get("relation") or "").partition(":")[0]
    axis = (sample["view"] or {}).get("axis", "")
    counts["out_of_plane_direction"] += direction in _OUT_OF_PLANE.get(axis, set())
    return counts


_IMAGE_PLACE = re.compile(
    r"\b(?:upper left|upper right|lower left|lower right|upper|lower|left|right|center|middle|top|bottom)"
    r"(?: (?:part|portion|region|half|side|corner))? of the (?:image|picture|view)\b"
)
_IMAGE_SIDE = re.compile(r"\b(?:left|right)(?: (?:part|portion|region|half|side|corner))? of the (?:image|picture)\b")


def _names(label: str) -> list[str]:
    term = clinical_term(label)
    names = [term.text, term.noun, term.plural, term.description, term.description_plural, label.replace("_", " ")]
    return [n.lower() for n in names if n]


def _wording_defects(sample: dict[str, Any]) -> Counter[str]:
    """Defects of the query's words: nameless, mixed frames, sagittal image sides, grammar."""
    counts: Counter[str] = Counter()
    query = sample["query"].lower()
    labels = sorted({t["label"] for t in sample["targets"]} | set(_absent_label(sample)))
    findings = [
        str(item.get("value", "")).lower()
        for t in sample["targets"]
        for item in (t["cues"].get("clinical") or {}).values()
        if item.get("role") == "finding"
    ]
    named = any(name in query for label in labels for name in _names(label)) or any(f in query for f in findings)
    lesion_word = sample["modality"] in PHOTOGRAPHIC and all(is_lesion(label) for label in labels)
    counts["nameless_query"] += not named and not (lesion_word and re.search(r"\blesions?\b", query))
    counts["finding_unnamed"] += bool(findings) and not any(f in query for f in findings)
    places = _IMAGE_PLACE.findall(query)
    sides = re.findall(r"\b(?:left|right)\b", _IMAGE_PLACE.sub(" ", query))
    counts["mixed_frames"] += bool(places and sides)
    counts["sagittal_image_side"] += bool(
        (sample["view"] or {}).get("axis") == "sagittal" and _IMAGE_SIDE.search(query)
    )
    plural_only = [clinical_term(label) for label in labels if clinical_term(label).is_plural]
    parts = "part of" in query or "parts of" in query or sample["query_type"] == "multi_object"
    counts["grammar"] += bool(
        re.search(r"\b(\w+) \1\b", query)
        or (plural_only and not parts and re.search(r"\bis\b", query))
        or any(re.search(rf"\b(?:every|each) {re.escape(t.noun.lower())}\b", query) for t in plural_only)
    )
    return counts


def _absent_label(sample: dict[str, Any]) -> list[str]:
    """The label an absent query (no target) names, as a list (empty for the others)."""
    if sample["query_type"] != "absent":
        return []
    return [str(sample["referring_attributes"].get("category"))]


def _repeat_defects(samples: list[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    by_view: Counter[str] = Counter()
    by_plane: dict[tuple[Any, ...], set[Any]] = {}
    for sample in samples:
        objects = tuple(sorted({t.get("object_id", t.get("component_id")) for t in sample["targets"]}))
        objects += tuple(_absent_label(sample))
        attributes = dumps(sample["referring_attributes"], sort_keys=True)
        by_view[dumps([sample["image"], objects, attributes])] += 1
        view = sample["view"] or {}
        key = (sample["dataset"], sample["case_id"], view.get("axis"), objects, sample["query"].lower())
        by_plane.setdefault(key, set()).add(sample["image"])
    counts["duplicate_sample"] += sum(n - 1 for n in by_view.values())
    counts["repeated_query"] += sum(len(images) - 1 for images in by_plane.values())
    return counts


def _view_defects(maps: dict[str, dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for mapping in maps.values():
        size = mapping["volume_shape"][mapping["axis"]]
        counts["edge_slice_view"] += mapping["slice_index"] < 2 or mapping["slice_index"] >= size - 2
        counts["small_view"] += min(mapping["size"]) < 224
    return counts


def audit(run: Path | str, spec: Path | str | None = None) -> dict[str, int]:
    """Defect counts of one run folder (module docstring). With ``spec``, the run's dataset
    spec, it also reads the label maps to count labels that left no trace."""
    folder = RunFolder(run)
    samples = [record for _, record in folder.records()]
    images = _Images(folder)
    counts: Counter[str] = Counter({name: 0 for name in CLASSES})
    maps: dict[str, dict[str, Any]] = {}
    for sample in samples:
        # A volume sample has no 2D image to look at; its words are audited as any other's.
        for target in [] if is_volume_sample(sample) else sample["targets"]:
            counts.update(_target_defects(sample, target, images))
        counts.update(_sample_defects(sample))
        counts.update(_wording_defects(sample))
        mapping = (sample.get("provenance") or {}).get("map") or {}
        if sample["view"] and mapping:
            maps[sample["image"]] = mapping
    counts.update(_view_defects(maps))
    counts.update(_repeat_defects(samples))
    if spec is not None:
        traced = {(s["case_id"], t["label"]) for s in samples for t in s["targets"]}
        for _, record in folder.records("skipped.jsonl"):
            traced.update((record["case_id"], label) for label in record.get("labels") or [record.get("label")])
        for case_id, labels in _present(Path(spec)).items():
            counts["labels_without_trace"] += sum((case_id, label) not in traced for label in labels)
    return {name: int(counts[name]) for name in CLASSES}


def _present(spec_path: Path) -> dict[str, set[str]]:
    """The declared labels present in each case of a dataset spec's label maps."""
    spec = load_spec(spec_path)
    index = find_cases(spec)
    spec = resolve_labels(spec, index)
    out: dict[str, set[str]] = {}
    for files in index.cases:
        case = load_case(spec, files)
        out[case.case_id] = {case.label_names[i] for i in case.present if i in spec.labels}
    return out


def format_audit(results: dict[str, dict[str, int]]) -> str:
    """Defect counts of several runs as a plain-text table (a column per run)."""
    width = max(len(name) for name in CLASSES)
    lines = [f"{'defect':<{width}} " + " ".join(f"{Path(r).name[:16]:>16}" for r in results)]
    lines += [f"{name:<{width}} " + " ".join(f"{results[r][name]:>16}" for r in results) for name in CLASSES]
    return "\n".join(lines)
