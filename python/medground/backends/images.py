"""Image preparation per model family: RGB, the sizes each vision encoder reads well, the
box drawn on the marked copy, and the record that maps boxes back.

A model family decides how an image is best handed over: Qwen2/2.5-VL (and Lingshu, built
on it) cut images into 28-pixel patches and read sizes that are multiples of 28 between a
minimum and a maximum pixel count; Qwen3-VL does the same with 32; InternVL tiles 448-pixel
squares; Gemma 3 (MedGemma) reads one 896 × 896 square. Medical images are often small (a
90 × 90 phantom, a 256 × 256 MR slice) and are scaled up to the family's minimum so the
model sees detail. Every preparation is recorded as an :class:`ImagePrep`, whose
:meth:`~ImagePrep.to_source` maps a box in the prepared image back to the stored image.

The marked copy (target boxes drawn) exists only in memory, for the model's eyes: nothing
here writes an image to disk, and the exported training images never carry overlays.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground.boxes import FAMILIES, ModelFamily

__all__ = ["ImagePrep", "draw_boxes", "png_data_url", "prepare_image"]


@dataclass(frozen=True)
class ImagePrep:
    """How a prepared image was made from a stored one, so boxes can be mapped both ways.

    A source pixel coordinate ``x`` lands at ``x * scale[0] + offset[0]`` in the prepared
    image (``y`` likewise); boxes use the continuous convention of ``bbox_xyxy``.
    """

    family: str
    source_size: tuple[int, int]  # (width, height)
    size: tuple[int, int]  # (width, height)
    scale: tuple[float, float]
    offset: tuple[float, float]

    def to_prepared(self, box: list[int] | list[float]) -> list[float]:
        """A ``bbox_xyxy`` of the stored image in prepared-image pixels."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        return [box[0] * sx + ox, box[1] * sy + oy, box[2] * sx + ox, box[3] * sy + oy]

    def to_source(self, box: list[int] | list[float]) -> list[float]:
        """A box in prepared-image pixels mapped back to the stored image."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        return [(box[0] - ox) / sx, (box[1] - oy) / sy, (box[2] - ox) / sx, (box[3] - oy) / sy]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scale"] = [round(v, 6) for v in self.scale]
        out["offset"] = [round(v, 3) for v in self.offset]
        out["source_size"], out["size"] = list(self.source_size), list(self.size)
        return out


def _rgb(image: NDArray[Any]) -> NDArray[np.uint8]:
    if image.dtype != np.uint8:
        raise ValueError(f"images must be 8-bit (the stored image), got dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3])
    raise ValueError(f"an image must be H×W, H×W×1, H×W×3 or H×W×4, got shape {image.shape}")


def _target_size(width: int, height: int, family: ModelFamily) -> tuple[int, int]:
    pixels = width * height
    factor = 1.0
    if pixels > family.max_pixels:
        factor = math.sqrt(family.max_pixels / pixels)
    elif pixels < family.min_pixels:
        factor = math.sqrt(family.min_pixels / pixels)
    m = family.multiple
    new_w = max(m, round(width * factor / m) * m)
    new_h = max(m, round(height * factor / m) * m)
    # Rounding can step over the maximum; step back one multiple on the longer side.
    while new_w * new_h > family.max_pixels and max(new_w, new_h) > m:
        if new_w >= new_h:
            new_w -= m
        else:
            new_h -= m
    return int(new_w), int(new_h)


def prepare_image(image: NDArray[Any], family: ModelFamily | str = "default") -> tuple[NDArray[np.uint8], ImagePrep]:
    """An RGB copy of ``image`` sized for ``family``, and the record of how it was made.

    Args:
        image: the stored 8-bit image (H×W grey, or H×W×3/4 colour).
        family: a :class:`medground.boxes.ModelFamily` or the name of one in
            :data:`medground.boxes.FAMILIES`.

    Returns:
        The prepared H'×W'×3 uint8 image and its :class:`ImagePrep`.

    Raises:
        ValueError: for an unknown family, or an image that is not 8-bit 2D.
    """
    from PIL import Image

    if isinstance(family, str):
        if family not in FAMILIES:
            raise ValueError(f"model family must be one of {', '.join(FAMILIES)}, got {family!r}")
        family = FAMILIES[family]
    rgb = _rgb(np.asarray(image))
    height, width = rgb.shape[:2]
    if family.square is not None:
        side = max(width, height)
        padded = np.zeros((side, side, 3), np.uint8)
        ox, oy = (side - width) // 2, (side - height) // 2
        padded[oy : oy + height, ox : ox + width] = rgb
        factor = family.square / side
        out = np.asarray(Image.fromarray(padded).resize((family.square, family.square), Image.Resampling.BICUBIC))
        prep = ImagePrep(
            family.name, (width, height), (family.square, family.square), (factor, factor), (ox * factor, oy * factor)
        )
        return np.ascontiguousarray(out, dtype=np.uint8), prep
    new_w, new_h = _target_size(width, height, family)
    if (new_w, new_h) == (width, height):
        out = rgb
    else:
        out = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BICUBIC))
    prep = ImagePrep(family.name, (width, height), (new_w, new_h), (new_w / width, new_h / height), (0.0, 0.0))
    return np.ascontiguousarray(out, dtype=np.uint8), prep


def draw_boxes(
    image: NDArray[np.uint8],
    boxes: list[list[float]],
    *,
    color: tuple[int, int, int] = (255, 0, 0),
    width: int | None = None,
) -> NDArray[np.uint8]:
    """A copy of an RGB image with box outlines drawn (the marked copy; kept in memory only).

    Args:
        image: H×W×3 uint8.
        boxes: ``[x_min, y_min, x_max, y_max]`` in this image's pixels (x_max exclusive).
        color: the outline colour.
        width: line width in pixels (default: about 0.5% of the shorter side, at least 2).

    Returns:
        The marked copy; ``image`` itself is not changed.
    """
    from PIL import Image, ImageDraw

    marked = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(marked)
    line = width or max(2, round(min(image.shape[:2]) / 200))
    for x0, y0, x1, y1 in boxes:
        # Drawn just outside the box so the outline never covers the object's own pixels.
        draw.rectangle([x0 - line, y0 - line, x1 - 1 + line, y1 - 1 + line], outline=color, width=line)
    return np.asarray(marked, dtype=np.uint8)


def png_data_url(image: NDArray[np.uint8]) -> str:
    """The image as a ``data:image/png;base64,…`` URL (what chat APIs take).

    Lossless, encoded as the run's stored views are (the core's fast PNG encoder).
    """
    from medground import _core

    return "data:image/png;base64," + base64.b64encode(_core.encode_png(image)).decode("ascii")
