"""Verification stage 3 without a model: the evidence judge.

Each target must be visible in the stored intensities: contrast against a surrounding
ring (or an edge), not cut off by the image border, the claimed intensity relation holds
in the pixels, and the box is tight around the mask.

Reason codes: ``low_contrast``, ``cut_by_border``, ``intensity_not_visible``, ``box_not_tight``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import geometry, rle
from medground.cues import contrast, dilate
from medground.records import Sample, StageResult
from medground.verify.claims import extract_claims
from medground.verify.judge import JudgeItem

__all__ = ["EvidenceJudge", "EvidenceSettings", "judge_evidence"]


@dataclass(frozen=True)
class EvidenceSettings:
    """Thresholds of the evidence judge (contrast in the units of ``cues.intensity_relation``)."""

    min_contrast: dict[str, float] = field(default_factory=lambda: {"CT": 10.0, "MR": 0.25, "PET": 0.25, "other": 0.02})
    max_border_share: float = 0.3
    ring_px: int = 3


def judge_evidence(
    sample: Sample,
    values: NDArray[Any],
    settings: EvidenceSettings | None = None,
    full_scale: float | None = None,
    *,
    seen: dict[Any, Any] | None = None,
) -> StageResult:
    """Stage 3 without a model: each target is visible in the stored intensities ``values``
    (on the image grid): contrast against a surrounding ring, not cut off by the border,
    the claimed intensity relation holds, and the box is tight around the mask.

    ``full_scale`` is the range photographs are compared in (255 for 8-bit images; by
    default the range of ``values``), as in :func:`medground.cues.contrast`. ``seen`` keeps
    what was read of each mask on these ``values`` across the drafts of one call (the same
    target in several queries is read once; the reading depends on nothing else)."""
    settings = settings or EvidenceSettings()
    seen = {} if seen is None else seen
    stage = "visual"
    contrasts = []
    intensity_words: dict[str, list[str]] = {}
    height, width = values.shape[:2]
    if (id(values), "spread") not in seen:
        # The range in float32, as the stored values were compared before they kept their own type.
        seen[id(values), "spread"] = float(np.float32(values.max()) - np.float32(values.min()))
    spread = seen[id(values), "spread"]
    scale = full_scale if full_scale is not None else max(spread, 1e-6)
    for target in sample.targets:
        size = tuple(target.mask.get("size", ()))
        if size != (height, width):
            return StageResult.fail(stage, "box_not_tight", f"mask {size} is not on the image grid {(height, width)}")
        box = rle.bbox_xyxy(target.mask)
        if box != target.box:
            return StageResult.fail(stage, "box_not_tight", f"box {target.box} but the mask spans {box}")
        reading = _remembered(seen, target.mask, box, values, settings, sample.modality, scale)
        if isinstance(reading[0], str):
            return StageResult.fail(stage, *reading)
        score, edge_strength = reading
        threshold = settings.min_contrast.get(sample.modality, settings.min_contrast["other"])
        # Visible if the mean differs, or if the outline shows as an edge (e.g. isodense organs
        # separated by fat planes): the ring's spread exceeds the threshold too.
        if abs(score) < threshold and edge_strength < threshold:
            return StageResult.fail(
                stage, "low_contrast", f"contrast {score:.3g} against its surroundings (< {threshold})"
            )
        claimed = target.cues.get("intensity", {}).get("relation")
        if target.label not in intensity_words:  # a set of a thousand nuclei shares one label
            intensity_words[target.label] = extract_claims(sample.query, [target.label]).intensities
        words = intensity_words[target.label]
        if (
            words
            and claimed in words
            and math.copysign(1.0, score) != math.copysign(1.0, target.cues["intensity"]["contrast_8bit"])
        ):
            return StageResult.fail(
                stage, "intensity_not_visible", f"the query says {words[0]} but the pixels disagree"
            )
        contrasts.append(round(score, 4))
    return StageResult(stage, True, info={"judge": "evidence", "contrast": contrasts})


def _remembered(
    seen: dict[Any, Any],
    mask_rle: dict[str, Any],
    box: Sequence[int],
    values: NDArray[Any],
    settings: EvidenceSettings,
    modality: str,
    scale: float,
) -> tuple[str, str] | tuple[float, float]:
    """:func:`_read_target`, once per mask (its counts string) on these values."""
    counts = mask_rle.get("counts")
    key = (id(values), scale, modality, counts) if isinstance(counts, str) else None
    reading = seen.get(key) if key is not None else None
    if reading is None:
        reading = _read_target(mask_rle, box, values, settings, modality, scale)
        if key is not None:
            seen[key] = reading
    return reading


def _read_target(
    mask_rle: dict[str, Any],
    box: Sequence[int],
    values: NDArray[Any],
    settings: EvidenceSettings,
    modality: str,
    scale: float,
) -> tuple[str, str] | tuple[float, float]:
    """What the pixels say of one target: (reason, detail) when its outline is mostly the
    image border or nothing surrounds it, else its contrast score and edge strength.
    Everything here reads the box and its ring only."""
    height, width = values.shape[:2]
    margin = settings.ring_px + 1
    y0, y1 = max(0, box[1] - margin), min(height, box[3] + margin)
    x0, x1 = max(0, box[0] - margin), min(width, box[2] + margin)
    mask = rle.decode_window(mask_rle, y0, x0, y1, x1)
    window = values[y0:y1, x0:x1]
    edge = np.zeros_like(mask)
    edge[0, :] |= y0 == 0
    edge[-1, :] |= y1 == height
    edge[:, 0] |= x0 == 0
    edge[:, -1] |= x1 == width
    boundary = mask & ~_erode(mask)
    border_share = float((boundary & edge).sum()) / max(1, int(boundary.sum()))
    if border_share > settings.max_border_share:
        return "cut_by_border", f"{border_share:.0%} of its outline is the image border"
    ring = dilate(mask, settings.ring_px) & ~mask
    if not ring.any():
        return "low_contrast", "no surrounding tissue to compare with"
    inside, around = window[mask].astype(np.float64), window[ring].astype(np.float64)
    score = contrast(modality, inside, around, scale)
    edge_strength = float(around.std()) if modality == "CT" else float(around.std()) / max(float(around.mean()), 1e-6)
    return score, edge_strength


def _erode(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Erosion that treats outside the image as background, so pixels on the border are outline."""
    return ~dilate(~geometry.padded(mask, 1), 1)[1:-1, 1:-1]


class EvidenceJudge:
    """The evidence judge as a :class:`medground.verify.judge.Judge` (no model)."""

    name = "evidence"

    def __init__(self, settings: EvidenceSettings | None = None) -> None:
        self.settings = settings or EvidenceSettings()

    def judge(self, items: Sequence[JudgeItem]) -> list[StageResult]:
        """Verdicts for :class:`medground.verify.judge.JudgeItem` s, in order."""
        seen: dict[Any, Any] = {}  # the items hold their values arrays alive: ids stay theirs
        return [judge_evidence(item.sample, item.values, self.settings, item.full_scale, seen=seen) for item in items]
