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

from medground import rle
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
    sample: Sample, values: NDArray[Any], settings: EvidenceSettings | None = None, full_scale: float | None = None
) -> StageResult:
    """Stage 3 without a model: each target is visible in the stored intensities ``values``
    (on the image grid): contrast against a surrounding ring, not cut off by the border,
    the claimed intensity relation holds, and the box is tight around the mask.

    ``full_scale`` is the range photographs are compared in (255 for 8-bit images; by
    default the range of ``values``), as in :func:`medground.cues.contrast`."""
    settings = settings or EvidenceSettings()
    stage = "visual"
    contrasts = []
    intensity_words: dict[str, list[str]] = {}
    height, width = values.shape[:2]
    # The range in float32, as the stored values were compared before they kept their own type.
    spread = float(np.float32(values.max()) - np.float32(values.min()))
    scale = full_scale if full_scale is not None else max(spread, 1e-6)
    for target in sample.targets:
        size = tuple(target.mask.get("size", ()))
        if size != (height, width):
            return StageResult.fail(stage, "box_not_tight", f"mask {size} is not on the image grid {(height, width)}")
        box = rle.bbox_xyxy(target.mask)
        if box != target.box:
            return StageResult.fail(stage, "box_not_tight", f"box {target.box} but the mask spans {box}")
        # Everything below reads the box and its ring only.
        margin = settings.ring_px + 1
        y0, y1 = max(0, box[1] - margin), min(height, box[3] + margin)
        x0, x1 = max(0, box[0] - margin), min(width, box[2] + margin)
        mask = rle.decode_window(target.mask, y0, x0, y1, x1)
        window = values[y0:y1, x0:x1]
        edge = np.zeros_like(mask)
        edge[0, :] |= y0 == 0
        edge[-1, :] |= y1 == height
        edge[:, 0] |= x0 == 0
        edge[:, -1] |= x1 == width
        boundary = mask & ~_erode(mask)
        border_share = float((boundary & edge).sum()) / max(1, int(boundary.sum()))
        if border_share > settings.max_border_share:
            return StageResult.fail(stage, "cut_by_border", f"{border_share:.0%} of its outline is the image border")
        ring = dilate(mask, settings.ring_px) & ~mask
        if not ring.any():
            return StageResult.fail(stage, "low_contrast", "no surrounding tissue to compare with")
        inside, around = window[mask].astype(np.float64), window[ring].astype(np.float64)
        score = contrast(sample.modality, inside, around, scale)
        threshold = settings.min_contrast.get(sample.modality, settings.min_contrast["other"])
        # Visible if the mean differs, or if the outline shows as an edge (e.g. isodense organs
        # separated by fat planes): the ring's spread exceeds the threshold too.
        edge_strength = (
            float(around.std()) if sample.modality == "CT" else float(around.std()) / max(float(around.mean()), 1e-6)
        )
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


def _erode(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Erosion that treats outside the image as background, so pixels on the border are outline."""
    padded = np.pad(mask, 1, constant_values=False)
    return ~dilate(~padded, 1)[1:-1, 1:-1]


class EvidenceJudge:
    """The evidence judge as a :class:`medground.verify.judge.Judge` (no model)."""

    name = "evidence"

    def __init__(self, settings: EvidenceSettings | None = None) -> None:
        self.settings = settings or EvidenceSettings()

    def judge(self, items: Sequence[JudgeItem]) -> list[StageResult]:
        """Verdicts for :class:`medground.verify.judge.JudgeItem` s, in order."""
        return [judge_evidence(item.sample, item.values, self.settings, item.full_scale) for item in items]
