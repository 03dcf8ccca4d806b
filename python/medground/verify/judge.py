"""The visual stage's judges: what a judge is (the factory is :func:`medground.verify.make_judge`).

A judge looks at drafts that passed format and rules and returns one
:class:`~medground.records.StageResult` (stage ``visual``) per draft, in order. It gets a
case's survivors in one call, so a model judge sees them as one batch. Three ship with
medground: :class:`~medground.verify.evidence.EvidenceJudge` (no model, the default),
:class:`~medground.verify.onnx_judge.OnnxJudge` and :class:`~medground.verify.vlm_judge.VlmJudge`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from medground.records import Sample, StageResult

__all__ = ["Judge", "JudgeItem"]


@dataclass(frozen=True)
class JudgeItem:
    """One draft as a judge sees it.

    Attributes:
        sample: the draft.
        image: the stored 8-bit image (what a model would see).
        values: the stored intensities on the image grid (luminance for RGB).
        full_scale: the intensity range photographs are compared in (255 for 8-bit images).
    """

    sample: Sample
    image: NDArray[np.uint8]
    values: NDArray[Any]
    full_scale: float | None = None


@runtime_checkable
class Judge(Protocol):
    """What the visual stage needs of a judge."""

    name: str

    def judge(self, items: Sequence[JudgeItem]) -> list[StageResult]:
        """One ``visual`` result per item, in order; a judge never raises for one bad draft."""
        ...
