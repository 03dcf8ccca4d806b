"""Box conventions and model families: how each family writes a box, both ways.

The canonical box is ``bbox_xyxy = [x_min, y_min, x_max, y_max]`` in pixels of the stored
image, continuous edges: pixel column ``i`` spans ``[i, i + 1)``, so ``x_max`` is one past
the last column. Every other convention is a :class:`BoxConvention` that maps canonical
boxes out (:meth:`~BoxConvention.from_pixels`, for exports and prompts) and a model's
numbers back (:meth:`~BoxConvention.to_pixels`, for evaluation), as MONAI's ``BoxMode``
does for its box modes. Export, predict, eval and the command line all read this module,
so a convention is written once.

=============  ===========================================================================
convention     what a number means
=============  ===========================================================================
``pixel``      pixels of the stored image
``norm1``      0–1 of the stored image's width and height (3 decimals out)
``norm1000``   0–1000 of the width and height (integers out)
``qwen2.5-vl`` absolute pixels of the image Qwen2.5-VL's processor resizes to
               (:func:`smart_resize`: sides multiples of 28 between ``min_pixels`` and
               ``max_pixels``), mapped back by the ratio of the sizes
=============  ===========================================================================

A :class:`ModelFamily` ties a family of vision-language models to its box convention, its
grounding prompt (``presets/grounding_prompts.toml``) and how its vision encoder wants
images (patch multiple, pixel limits, square input). Qwen2-VL and Qwen2.5-VL share an
image encoder but not a box convention, so they are two families.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONVENTIONS",
    "FAMILIES",
    "QWEN25_FACTOR",
    "QWEN25_MAX_PIXELS",
    "QWEN25_MIN_PIXELS",
    "Box",
    "BoxConvention",
    "ModelFamily",
    "convention",
    "family_for_model",
    "smart_resize",
]

Box = tuple[float, float, float, float]

QWEN25_FACTOR = 28
QWEN25_MIN_PIXELS = 56 * 56
QWEN25_MAX_PIXELS = 28 * 28 * 1280


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = QWEN25_FACTOR,
    min_pixels: int = QWEN25_MIN_PIXELS,
    max_pixels: int = QWEN25_MAX_PIXELS,
) -> tuple[int, int]:
    """The size Qwen2-VL/Qwen2.5-VL's processor resizes an image to, as ``(height, width)``.

    Each side is rounded to the nearest multiple of ``factor``; if the area is then above
    ``max_pixels`` (below ``min_pixels``) both sides are scaled down (up) by the same factor
    and floored (ceiled) to multiples of ``factor``, which keeps the aspect ratio. The
    arithmetic follows the processor's own so that boxes map back exactly.

    Args:
        height: Stored image height in pixels.
        width: Stored image width in pixels.
        factor: Patch size times merge size (28 for Qwen2-VL and Qwen2.5-VL).
        min_pixels: Smallest area the processor allows.
        max_pixels: Largest area the processor allows.

    Returns:
        ``(resized_height, resized_width)``, both multiples of ``factor``.

    Raises:
        ValueError: For non-positive sizes, an aspect ratio above 200 (the processor
            refuses those), or ``min_pixels > max_pixels``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels must not exceed max_pixels, got {min_pixels} > {max_pixels}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class BoxConvention:
    """One way of writing a box, and the way back to stored-image pixels.

    Attributes:
        name: ``pixel``, ``norm1``, ``norm1000`` or ``qwen2.5-vl``.
        scale: for normalised conventions, the number that stands for the full side
            (1 or 1000); None for pixel conventions.
        min_pixels: Qwen2.5-VL's ``min_pixels`` (``qwen2.5-vl`` only).
        max_pixels: Qwen2.5-VL's ``max_pixels`` (``qwen2.5-vl`` only).
    """

    name: str
    scale: float | None = None
    min_pixels: int = QWEN25_MIN_PIXELS
    max_pixels: int = QWEN25_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.name not in CONVENTIONS:
            raise ValueError(f"box convention must be one of {', '.join(CONVENTIONS)}, got {self.name!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}")

    @property
    def resized(self) -> bool:
        return self.name == "qwen2.5-vl"

    def _factors(self, width: int, height: int) -> tuple[float, float]:
        """Stored-image pixels per unit of this convention, along x and y."""
        if self.resized:
            resized_h, resized_w = smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            return width / resized_w, height / resized_h
        if self.scale is None:
            return 1.0, 1.0
        return width / self.scale, height / self.scale

    def to_pixels(self, box: Sequence[float], width: int, height: int) -> Box:
        """A box in this convention as stored-image pixels of a ``width`` x ``height`` image.

        Corners are put in order (min before max); nothing is clipped.
        """
        x1, y1, x2, y2 = (float(v) for v in box)
        sx, sy = self._factors(width, height)
        return (min(x1, x2) * sx, min(y1, y2) * sy, max(x1, x2) * sx, max(y1, y2) * sy)

    def from_pixels(self, box: Sequence[float], width: int, height: int) -> list[float] | list[int]:
        """A stored-image box in this convention: integers for pixel and 0–1000
        conventions, three decimals for 0–1."""
        x0, y0, x1, y1 = box
        if self.name == "pixel":
            return [int(x0), int(y0), int(x1), int(y1)]
        sx, sy = self._factors(width, height)
        if self.name == "norm1":
            return [round(x0 / sx, 3), round(y0 / sy, 3), round(x1 / sx, 3), round(y1 / sy, 3)]
        return [round(x0 / sx), round(y0 / sy), round(x1 / sx), round(y1 / sy)]

    def describe(self) -> dict[str, Any]:
        """The convention as a JSON-ready record (resize parameters only where they matter)."""
        out: dict[str, Any] = {"name": self.name}
        if self.resized:
            out.update(factor=QWEN25_FACTOR, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return out


#: Every convention by name, with its default parameters.
CONVENTIONS: dict[str, float | None] = {"pixel": None, "norm1": 1.0, "norm1000": 1000.0, "qwen2.5-vl": None}


def convention(name: str, *, min_pixels: int = QWEN25_MIN_PIXELS, max_pixels: int = QWEN25_MAX_PIXELS) -> BoxConvention:
    """A convention by its name, or by the name of a model family that uses it."""
    family = FAMILIES.get(name)
    if family is not None and family.convention is not None:
        name = family.convention
    if name not in CONVENTIONS:
        raise ValueError(
            f"box convention must be one of {', '.join(CONVENTIONS)} or a model family "
            f"({', '.join(GROUNDING_FAMILIES)}), got {name!r}"
        )
    return BoxConvention(name, CONVENTIONS[name], min_pixels, max_pixels)


@dataclass(frozen=True)
class ModelFamily:
    """A family of vision-language models: how it writes boxes and wants its images.

    Attributes:
        name: the family's name (also its ``--format`` in predict and eval).
        convention: its box convention (a key of :data:`CONVENTIONS`), None when the family
            has no grounding format medground reads.
        multiple: image sides are rounded to a multiple of this (the patch × merge size), or 1.
        min_pixels: smaller images are scaled up to at least this many pixels.
        max_pixels: larger images are scaled down to at most this many pixels.
        square: the encoder reads one square of this side (the image is padded, then resized).
    """

    name: str
    convention: str | None
    multiple: int = 1
    min_pixels: int = 224 * 224
    max_pixels: int = 1024 * 1024
    square: int | None = None


FAMILIES: dict[str, ModelFamily] = {
    "qwen2.5-vl": ModelFamily(
        "qwen2.5-vl", "qwen2.5-vl", multiple=28, min_pixels=128 * 28 * 28, max_pixels=1280 * 28 * 28
    ),
    "qwen2-vl": ModelFamily("qwen2-vl", "norm1000", multiple=28, min_pixels=128 * 28 * 28, max_pixels=1280 * 28 * 28),
    "qwen3-vl": ModelFamily("qwen3-vl", "norm1000", multiple=32, min_pixels=128 * 32 * 32, max_pixels=1280 * 32 * 32),
    "qwen-vl": ModelFamily("qwen-vl", "norm1000"),
    "internvl": ModelFamily("internvl", "norm1000", min_pixels=448 * 448, max_pixels=4 * 448 * 448),
    "gemma3": ModelFamily("gemma3", None, square=896),
    "norm1": ModelFamily("norm1", "norm1"),
    "pixel": ModelFamily("pixel", "pixel"),
    "default": ModelFamily("default", None),
}

#: Families whose boxes predict and eval read (the ``--format`` choices).
GROUNDING_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.convention is not None)

# Checked in order: the first pattern found in the lower-cased model name or path wins.
# Lingshu, MedVLM-R1 and HuatuoGPT-Vision are fine-tunes of Qwen2.5-VL.
_MODEL_PATTERNS = (
    (r"qwen3[-_.]?vl", "qwen3-vl"),
    (r"qwen2\.5[-_.]?vl|lingshu|medvlm-r1|huatuogpt-vision", "qwen2.5-vl"),
    (r"qwen2[-_.]?vl", "qwen2-vl"),
    (r"internvl|intern[-_]?s1", "internvl"),
    (r"medgemma|gemma[-_]?3", "gemma3"),
)


def family_for_model(model: str | None) -> ModelFamily:
    """The family of a model name or local path (``default`` when not recognised)."""
    name = (model or "").lower()
    for pattern, family in _MODEL_PATTERNS:
        if re.search(pattern, name):
            return FAMILIES[family]
    return FAMILIES["default"]
