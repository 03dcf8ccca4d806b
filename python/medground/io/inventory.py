"""What a dataset spec finds: the report ``medground inspect`` prints before a long run.

Cases found and unpaired files, every case's shape, spacing and orientation, the labels
seen against the labels declared, and the cases that fail to load (with the reason),
without stopping at the first bad one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medground import geometry
from medground.io.case import Case, label_voxels, load_case
from medground.io.discover import CaseIndex, find_cases, leads_outside, resolve_labels
from medground.io.errors import CaseError
from medground.io.readers import read_header
from medground.io.schema import DatasetSpec

__all__ = ["CaseSummary", "Inventory", "describe_case", "format_inventory", "inventory"]


@dataclass
class CaseSummary:
    """One case's grid and labels (labels only when masks were read)."""

    case_id: str
    patient_id: str
    image: str
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    axcodes: tuple[str, ...] | None = None
    dtype: str | None = None
    labels: dict[int, int] = field(default_factory=dict)  # id -> voxel count
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Inventory:
    spec: DatasetSpec
    index: CaseIndex
    cases: list[CaseSummary]
    read_masks: bool

    @property
    def labels_seen(self) -> Counter[int]:
        """Label id → number of cases it appears in."""
        seen: Counter[int] = Counter()
        for case in self.cases:
            seen.update(case.labels.keys())
        return seen

    @property
    def unknown_labels(self) -> list[int]:
        return sorted(i for i in self.labels_seen if i not in self.spec.labels)

    @property
    def failed(self) -> list[CaseSummary]:
        return [case for case in self.cases if case.error is not None]

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "dataset": spec.name,
            "modality": spec.modality,
            "root": str(spec.root),
            "cases_found": len(self.index.cases),
            "unpaired_images": [str(p) for p in self.index.unpaired_images],
            "unpaired_masks": [str(p) for p in self.index.unpaired_masks],
            "problems": list(self.index.problems),
            "outside_dataset_folder": [str(p) for p in self.index.outside],
            "labels_declared": {str(k): v for k, v in spec.labels.items()},
            "labels_seen": {str(k): n for k, n in sorted(self.labels_seen.items())} if self.read_masks else None,
            "unknown_labels": [f"unknown_{i}" for i in self.unknown_labels],
            "cases": [
                {
                    "case_id": c.case_id,
                    "patient_id": c.patient_id,
                    "image": c.image,
                    "shape": list(c.shape) if c.shape else None,
                    "spacing": [round(s, 4) for s in c.spacing] if c.spacing else None,
                    "axcodes": "".join(c.axcodes) if c.axcodes else None,
                    "dtype": c.dtype,
                    "labels": {str(k): v for k, v in c.labels.items()} if self.read_masks else None,
                    "warnings": c.warnings,
                    "error": c.error,
                }
                for c in self.cases
            ],
        }


def inventory(spec: DatasetSpec, *, limit: int | None = None, read_masks: bool = True) -> Inventory:
    """Finds the cases of a spec and reads each (headers only unless ``read_masks``).

    A case that fails is reported with its error; the others are still read.
    """
    index = find_cases(spec, limit=limit)
    spec = resolve_labels(spec, index)
    summaries = []
    for files in index.cases:
        summary = CaseSummary(files.case_id, files.patient_id, str(files.image.relative_to(spec.root)))
        try:
            if read_masks:
                case = load_case(spec, files)
                summary.shape, summary.spacing = case.image.shape, case.image.spacing
                summary.axcodes, summary.dtype = case.image.axcodes, str(case.image.array.dtype)
                voxels = label_voxels(case.labels) if case.present else {}
                summary.labels = {i: voxels[i] for i in case.present}
                summary.warnings = list(case.warnings)
            else:
                header = read_header(files.image, radiological_2d=spec.is_radiological)
                summary.shape, summary.dtype = header.shape, header.dtype
                summary.spacing, summary.axcodes = header.spacing, header.axcodes
        except CaseError as error:
            summary.error = str(error)
        summaries.append(summary)
    return Inventory(spec, index, summaries, read_masks)


def format_inventory(inv: Inventory) -> str:
    """The inventory as a plain-text report."""
    spec = inv.spec
    lines = [
        f"dataset {spec.name} ({spec.modality}, {spec.body_region}, display {spec.display}) at {spec.root}",
        f"cases found: {len(inv.index.cases)}" + (f"; {len(inv.failed)} failed to load" if inv.failed else ""),
    ]
    for label, paths in (("unpaired images", inv.index.unpaired_images), ("unpaired masks", inv.index.unpaired_masks)):
        if paths:
            shown = ", ".join(str(p.relative_to(spec.root)) for p in paths[:5])
            lines.append(f"{label}: {len(paths)} ({shown}{', ...' if len(paths) > 5 else ''})")
    lines.extend(f"problem: {p}" for p in inv.index.problems)
    lines.extend(f"problem: {leads_outside(p, spec.root)}" for p in inv.index.outside)
    header = f"{'case':<24} {'patient':<20} {'shape':<16} {'spacing':<20} {'axes':<5} {'dtype':<8} labels"
    lines += ["", header, "-" * len(header)]
    for case in inv.cases:
        if case.error is not None:
            lines.append(f"{case.case_id:<24} {case.patient_id:<20} ERROR {case.error}")
            continue
        shape = "x".join(str(s) for s in case.shape or ())
        spacing = "x".join(f"{s:.3g}" for s in case.spacing or ())
        axes = "".join(case.axcodes) if case.axcodes else "-"
        labels = ", ".join(str(i) for i in case.labels) if inv.read_masks else "(not read)"
        lines.append(
            f"{case.case_id:<24} {case.patient_id:<20} {shape:<16} {spacing:<20} {axes:<5} "
            f"{case.dtype or '':<8} {labels}"
        )
        lines.extend(f"    warning: {w}" for w in case.warnings)
    lines.append("")
    lines.append(f"labels declared: {len(spec.labels)}")
    if inv.read_masks:
        seen = inv.labels_seen
        lines.append(f"labels seen: {len(seen)} (in at least one case)")
        never = [f"{i} {n}" for i, n in spec.labels.items() if i not in seen]
        if never:
            lines.append(
                f"declared but never seen: {len(never)} ({', '.join(never[:10])}{', ...' if len(never) > 10 else ''})"
            )
        for i in inv.unknown_labels:
            lines.append(f"undeclared id {i} (named unknown_{i}) in {seen[i]} case(s)")
        width = max((len(n) for n in spec.labels.values()), default=4)
        for i, n in sorted(seen.items()):
            lines.append(f"  {i:>4} {spec.labels.get(i, f'unknown_{i}'):<{width}} in {n} case(s)")
    return "\n".join(lines)


def describe_case(case: Case, spec: DatasetSpec) -> str:
    """One case in detail: its grid and each label's connected components."""
    image = case.image
    lines = [
        f"case {case.case_id} (patient {case.patient_id}) of {spec.name}",
        f"image {image.path}: shape {'x'.join(map(str, image.shape))}, spacing "
        f"{'x'.join(f'{s:.3g}' for s in image.spacing)} mm, axes {''.join(image.axcodes) if image.axcodes else 'none'}",
    ]
    lines.extend(f"warning: {w}" for w in case.warnings)
    if not case.present:
        return "\n".join(lines)
    voxel = float(np.prod(image.spacing))
    unit = "mm2" if image.is_2d else "mL"
    scale = 1.0 if image.is_2d else 1e-3
    header = f"{'id':>4} {'label':<28} {'components':>10} {'size ' + unit:>12} {'bbox (index, max exclusive)'}"
    lines += ["", header, "-" * len(header)]
    components = geometry.connected_components(case.labels)
    table = geometry.regionprops(case.labels, image.spacing, contours=False)
    pairs = geometry.overlap(components, case.labels)
    per_label = Counter(int(b) for b in pairs.b)
    for row in table:
        label_id = int(row["label"])
        box = ", ".join(f"{a}:{b}" for a, b in zip(row["bbox_min"], row["bbox_max"], strict=True))
        size = row["voxel_count"] * voxel * scale
        lines.append(f"{label_id:>4} {case.label_names[label_id]:<28} {per_label[label_id]:>10} {size:>12.2f} [{box}]")
    return "\n".join(lines)
