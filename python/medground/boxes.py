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

Two image steps of training frameworks come before the units, each a parameter of the
convention: ``pad_square`` (LLaVA-1.5 pads the image to a centred square and its boxes are
relative to that square) and ``image_max_pixels`` (LLaMA-Factory shrinks larger images to
that area, :func:`llamafactory_resize`, and never rescales box text, so boxes must be
written for the shrunk image). Qwen2.5-VL's defaults are the released checkpoints'
(``min_pixels`` 3136, ``max_pixels`` 12845056), which qwen-vl-utils and ms-swift use too;
an exported image element carries them (:meth:`BoxConvention.image_fields`), every
``predict`` line records the convention it assumed (:meth:`BoxConvention.describe`) and
``eval`` reads it back (:meth:`BoxConvention.from_description`).

A :class:`ModelFamily` ties a family of vision-language models to its box convention, its
grounding prompt (``presets/grounding_prompts.toml``) and how its vision encoder wants
images (patch multiple, pixel limits, square input). Qwen2-VL and Qwen2.5-VL share an
image encoder but not a box convention, so they are two families.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "CONVENTIONS",
    "FAMILIES",
    "LLAMAFACTORY_MAX_PIXELS",
    "LLAMAFACTORY_MIN_PIXELS",
    "PROMPT_KEYS",
    "QWEN25_FACTOR",
    "QWEN25_MAX_PIXELS",
    "QWEN25_MIN_PIXELS",
    "Box",
    "BoxConvention",
    "ModelFamily",
    "absent_answer",
    "convention",
    "family_for_model",
    "grounding_prompt",
    "llamafactory_resize",
    "prompt_version",
    "smart_resize",
    "voxel_box_to_ras",
]

Box = tuple[float, float, float, float]

QWEN25_FACTOR = 28
#: The limits of the released Qwen2.5-VL checkpoints (their ``preprocessor_config.json``),
#: of qwen-vl-utils (``IMAGE_MIN_TOKEN_NUM``/``IMAGE_MAX_TOKEN_NUM`` times 28²) and of
#: ms-swift: 4 and 16384 patches of 28 × 28 pixels. (The HF image-processor *class* default
#: of 1280 patches, 1003520 pixels, is not what a checkpoint loads.)
QWEN25_MIN_PIXELS = 4 * 28 * 28
QWEN25_MAX_PIXELS = 16384 * 28 * 28
#: LLaMA-Factory's defaults of ``image_max_pixels`` and ``image_min_pixels`` (model args).
LLAMAFACTORY_MAX_PIXELS = 768 * 768
LLAMAFACTORY_MIN_PIXELS = 32 * 32


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


def llamafactory_resize(
    width: int, height: int, *, max_pixels: int = LLAMAFACTORY_MAX_PIXELS, min_pixels: int = LLAMAFACTORY_MIN_PIXELS
) -> tuple[int, int]:
    """The size LLaMA-Factory's multimodal plugin resizes an image to, as ``(width, height)``.

    Its ``_preprocess_image`` scales an image whose area is above ``image_max_pixels`` (then
    one below ``image_min_pixels``) by the square root of the area ratio and truncates each
    side to an integer; the model's own processor then works on that image.
    """
    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if width * height < min_pixels:
        factor = math.sqrt(min_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    return width, height


@dataclass(frozen=True)
class BoxConvention:
    """One way of writing a box, and the way back to stored-image pixels.

    A box goes out in three steps, each undone on the way back: the stored image is padded
    to a square (``pad_square``: LLaVA-1.5's ``image_aspect_ratio = "pad"``, the image
    centred), resized by a training framework (``image_max_pixels``: LLaMA-Factory), and the
    numbers are written in the convention's units of that image.

    Attributes:
        name: ``pixel``, ``norm1``, ``norm1000`` or ``qwen2.5-vl``.
        scale: for normalised conventions, the number that stands for the full side
            (1 or 1000); None for pixel conventions.
        min_pixels: Qwen2.5-VL's ``min_pixels`` (``qwen2.5-vl`` only).
        max_pixels: Qwen2.5-VL's ``max_pixels`` (``qwen2.5-vl`` only).
        pad_square: the image is padded to a square before anything else.
        image_max_pixels: LLaMA-Factory's ``image_max_pixels`` (None: no such resize).
        image_min_pixels: LLaMA-Factory's ``image_min_pixels`` (with ``image_max_pixels``).
    """

    name: str
    scale: float | None = None
    min_pixels: int = QWEN25_MIN_PIXELS
    max_pixels: int = QWEN25_MAX_PIXELS
    pad_square: bool = False
    image_max_pixels: int | None = None
    image_min_pixels: int = LLAMAFACTORY_MIN_PIXELS

    def __post_init__(self) -> None:
        if self.name not in CONVENTIONS:
            raise ValueError(f"box convention must be one of {', '.join(CONVENTIONS)}, got {self.name!r}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}")
        if self.image_max_pixels is not None and not 0 < self.image_min_pixels <= self.image_max_pixels:
            raise ValueError(
                "need 0 < image_min_pixels <= image_max_pixels, "
                f"got {self.image_min_pixels} and {self.image_max_pixels}"
            )

    @property
    def resized(self) -> bool:
        return self.name == "qwen2.5-vl"

    def _affine(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(offset_x, offset_y, units_x, units_y)``: a stored-image point ``(x, y)`` is
        ``((x + offset_x) * units_x, (y + offset_y) * units_y)`` in this convention."""
        ox = oy = 0.0
        if self.pad_square:
            side = max(width, height)
            ox, oy = (side - width) // 2, (side - height) // 2
            width = height = side
        kx = ky = 1.0
        if self.image_max_pixels is not None:
            new_w, new_h = llamafactory_resize(
                width, height, max_pixels=self.image_max_pixels, min_pixels=self.image_min_pixels
            )
            kx, ky = new_w / width, new_h / height
            width, height = new_w, new_h
        if self.resized:
            resized_h, resized_w = smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            kx, ky = kx * resized_w / width, ky * resized_h / height
        elif self.scale is not None:
            kx, ky = kx * self.scale / width, ky * self.scale / height
        return ox, oy, kx, ky

    def model_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the image the numbers of this convention are pixels of
        (pixel conventions), after padding and resizing a ``width`` x ``height`` image."""
        if self.pad_square:
            width = height = max(width, height)
        if self.image_max_pixels is not None:
            width, height = llamafactory_resize(
                width, height, max_pixels=self.image_max_pixels, min_pixels=self.image_min_pixels
            )
        if self.resized:
            height, width = smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return width, height

    def to_pixels(self, box: Sequence[float], width: int, height: int) -> Box:
        """A box in this convention as stored-image pixels of a ``width`` x ``height`` image.

        Corners are put in order (min before max); nothing is clipped.
        """
        x1, y1, x2, y2 = (float(v) for v in box)
        ox, oy, kx, ky = self._affine(width, height)
        return (min(x1, x2) / kx - ox, min(y1, y2) / ky - oy, max(x1, x2) / kx - ox, max(y1, y2) / ky - oy)

    def from_pixels(self, box: Sequence[float], width: int, height: int) -> list[float] | list[int]:
        """A stored-image box in this convention: integers for pixel and 0–1000
        conventions, three decimals for 0–1."""
        x0, y0, x1, y1 = box
        if self.name == "pixel" and not self.pad_square and self.image_max_pixels is None:
            return [int(x0), int(y0), int(x1), int(y1)]
        ox, oy, kx, ky = self._affine(width, height)
        out = ((x0 + ox) * kx, (y0 + oy) * ky, (x1 + ox) * kx, (y1 + oy) * ky)
        if self.name == "norm1":
            return [round(v, 3) for v in out]
        return [round(v) for v in out]

    def round_trip(self, box: Sequence[float], width: int, height: int) -> Box:
        """The box written in this convention and read back: what a perfect model can at
        best answer (the convention's quantisation)."""
        return self.to_pixels(self.from_pixels(box, width, height), width, height)

    def image_fields(self) -> dict[str, int]:
        """What an image element of a Qwen-style message carries so that qwen-vl-utils'
        ``fetch_image`` and ms-swift resize it as these boxes assume (empty when nothing)."""
        if not self.resized:
            return {}
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    def describe(self) -> dict[str, Any]:
        """The convention as a JSON-ready record (parameters only where they matter);
        :func:`from_description` reads it back."""
        out: dict[str, Any] = {"name": self.name}
        if self.resized:
            out.update(factor=QWEN25_FACTOR, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        if self.pad_square:
            out["pad_square"] = True
        if self.image_max_pixels is not None:
            out.update(image_max_pixels=self.image_max_pixels, image_min_pixels=self.image_min_pixels)
        return out

    @classmethod
    def from_description(cls, record: Mapping[str, Any]) -> BoxConvention:
        """The convention a :meth:`describe` record names.

        Raises:
            ValueError: for an unknown convention, key or factor.
        """
        known = {"name", "factor", "min_pixels", "max_pixels", "pad_square", "image_max_pixels", "image_min_pixels"}
        unknown = sorted(set(record) - known)
        if unknown or "name" not in record:
            raise ValueError(f"a box convention record needs 'name' and only {sorted(known)}, got {dict(record)}")
        if record.get("factor", QWEN25_FACTOR) != QWEN25_FACTOR:
            raise ValueError(f"only factor {QWEN25_FACTOR} is supported, got {record['factor']}")
        name = str(record["name"])
        return cls(
            name,
            CONVENTIONS.get(name),
            int(record.get("min_pixels", QWEN25_MIN_PIXELS)),
            int(record.get("max_pixels", QWEN25_MAX_PIXELS)),
            bool(record.get("pad_square", False)),
            None if record.get("image_max_pixels") is None else int(record["image_max_pixels"]),
            int(record.get("image_min_pixels", LLAMAFACTORY_MIN_PIXELS)),
        )


#: Every convention by name, with its default parameters.
CONVENTIONS: dict[str, float | None] = {"pixel": None, "norm1": 1.0, "norm1000": 1000.0, "qwen2.5-vl": None}


def convention(
    name: str,
    *,
    min_pixels: int = QWEN25_MIN_PIXELS,
    max_pixels: int = QWEN25_MAX_PIXELS,
    pad_square: bool = False,
    image_max_pixels: int | None = None,
    image_min_pixels: int = LLAMAFACTORY_MIN_PIXELS,
) -> BoxConvention:
    """A convention by its name, or by the name of a model family that uses it."""
    family = FAMILIES.get(name)
    if family is not None and family.convention is not None:
        name = family.convention
    if name not in CONVENTIONS:
        raise ValueError(
            f"box convention must be one of {', '.join(CONVENTIONS)} or a model family "
            f"({', '.join(GROUNDING_FAMILIES)}), got {name!r}"
        )
    return BoxConvention(
        name, CONVENTIONS[name], min_pixels, max_pixels, pad_square, image_max_pixels, image_min_pixels
    )


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

    ``multiple``, ``min_pixels`` and ``max_pixels`` size the images medground itself sends
    to a model it asks (synthesis, the visual judge); the limits a model's processor applies
    to the boxes it reads and writes are the box convention's (:func:`convention`).
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


@lru_cache(maxsize=1)
def _prompts() -> dict[str, Any]:
    text = (resources.files("medground") / "presets" / "grounding_prompts.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def absent_answer(expression: str) -> str:
    """The answer to a query about a structure absent from the image, in the answer styles
    that write sentences (the registry's ``absent_answer``; ``expression`` as the style
    writes it)."""
    return str(_prompts()["absent_answer"]).format(expression=expression)


def prompt_version() -> str:
    """The version of the grounding prompts (recorded by exports and on every prediction line)."""
    return str(_prompts()["version"])


#: The keys of the prompt registry: every grounding family, and ``norm1000`` (list answers).
PROMPT_KEYS = tuple(k for k, v in _prompts().items() if isinstance(v, dict))


def grounding_prompt(
    query: str,
    format_name: str,
    *,
    multi: bool,
    width: int,
    height: int,
    expression: str | None = None,
    pad_square: bool = False,
) -> str:
    """The grounding prompt of a model family for one query, from the one registry export
    and predict share (``presets/grounding_prompts.toml``), so that a model is evaluated
    with the prompt it was trained on.

    Args:
        query: The sample's query (an instruction).
        format_name: The model family (a key of :data:`GROUNDING_FAMILIES`, or ``norm1000``).
        multi: Whether the query names several objects (``multi_object``).
        width: Width in pixels of the image the numbers are pixels of.
        height: Its height.
        expression: The sample's referring expression (the noun phrase), for families that
            put one in a ``<ref>`` span; the query where a sample has none.
        pad_square: Say that the coordinates are of the image padded to a square.

    Raises:
        ValueError: For an unknown family.
    """
    prompts = _prompts()
    if format_name not in PROMPT_KEYS:
        raise ValueError(f"format must be one of {', '.join(GROUNDING_FAMILIES)}, got {format_name!r}")
    template = prompts[format_name]["multi" if multi else "single"]
    text = str(
        template.format(
            query=query.strip(), expression=(expression or query).strip().rstrip(".?"), width=width, height=height
        )
    )
    return text + (str(prompts["square_note"]) if pad_square else "")


def voxel_box_to_ras(bbox_min: Sequence[int], bbox_max: Sequence[int], affine: ArrayLike) -> list[list[float]]:
    """A 3D voxel box in patient RAS+ millimetres: ``[[r, a, s]_min, [r, a, s]_max]``.

    The box ``[bbox_min, bbox_max)`` (voxel indices, max exclusive) covers its voxels whole:
    voxel centres sit at integer indices, so its faces are at ``bbox_min - 0.5`` and
    ``bbox_max - 0.5``. The eight corners go through the index-to-RAS ``affine``; the result
    is their axis-aligned bounds (the box itself for an affine without obliquity), rounded
    to 0.01 mm. Worked out once per box and affine (every query about an object reports its
    box: a case asks for the same few dozen boxes thousands of times).
    """
    matrix = np.asarray(affine, dtype=np.float64)
    key = (tuple(float(v) for v in bbox_min), tuple(float(v) for v in bbox_max), matrix.shape, matrix.tobytes())
    low, high = _ras_bounds(*key)
    return [list(low), list(high)]


@lru_cache(maxsize=4096)
def _ras_bounds(
    bbox_min: tuple[float, ...], bbox_max: tuple[float, ...], shape: tuple[int, ...], affine: bytes
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    matrix = np.frombuffer(affine, dtype=np.float64).reshape(shape)
    low = np.asarray(bbox_min, dtype=np.float64) - 0.5
    high = np.asarray(bbox_max, dtype=np.float64) - 0.5
    corners = np.array(
        [[(low, high)[pick][axis] for axis, pick in enumerate(c)] for c in itertools.product((0, 1), repeat=3)]
    )
    world = corners @ matrix[:3, :3].T + matrix[:3, 3]
    return tuple(round(float(v), 2) for v in world.min(axis=0)), tuple(round(float(v), 2) for v in world.max(axis=0))
