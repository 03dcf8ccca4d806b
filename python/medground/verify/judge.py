"""The visual stage's judges: one protocol, one factory.

A judge looks at drafts that passed format and rules and returns one
:class:`~medground.records.StageResult` (stage ``visual``) per draft, in order. It gets a
case's survivors in one call, so a model judge sees them as one batch. Three ship with
medground: :class:`~medground.verify.evidence.EvidenceJudge` (no model, the default),
:class:`~medground.verify.onnx_judge.OnnxJudge` and :class:`~medground.verify.vlm_judge.VlmJudge`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from medground.records import Sample, StageResult
from medground.settings import VisualSettings

__all__ = ["Judge", "JudgeItem", "make_judge"]


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


def make_judge(settings: VisualSettings | Mapping[str, Any] | None = None, *, seed: int = 0,
               backend: Any = None) -> Judge:
    """The judge ``[verification.visual]`` asks for.

    Args:
        settings: the parsed section (a plain mapping is parsed first).
        seed: the run's seed (a vlm judge samples reproducibly from it; a ``seed`` key wins).
        backend: a model backend to use instead of building one (vlm judge only).
    """
    if not isinstance(settings, VisualSettings):
        settings = VisualSettings.from_table(settings)
    if settings.backend == "onnx":
        from medground.verify.onnx_judge import OnnxJudge

        return OnnxJudge(settings.get("model"), threshold=float(settings.get("threshold", 0.5)))
    if settings.backend == "vlm":
        from medground.verify.vlm_judge import VlmJudge

        return VlmJudge.from_config({**settings.table, "seed": settings.get("seed", seed)}, backend=backend)
    from medground.verify.evidence import EvidenceJudge

    return EvidenceJudge()
