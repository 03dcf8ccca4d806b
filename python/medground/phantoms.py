"""Seeded synthetic masks: random rotated ellipsoids and label maps.

Used by the demo and by the benchmarks, so both measure the same kind of volume.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def _rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def ellipsoids(
    shape: tuple[int, int, int],
    count: int,
    *,
    labels: int = 5,
    radius: tuple[float, float] = (4.0, 30.0),
    seed: int = 0,
    dtype: type = np.uint8,
) -> NDArray[np.integer]:
    """A volume with ``count`` randomly placed, sized and rotated solid ellipsoids,
    each painted with a label in ``1..labels`` (later ones over earlier ones)."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=dtype)
    for _ in range(count):
        radii = rng.uniform(*radius, size=3)
        centre = rng.uniform(0, 1, size=3) * np.array(shape)
        rot = _rotation(rng)
        reach = int(np.ceil(radii.max()))
        lo = np.maximum(np.floor(centre - reach).astype(int), 0)
        hi = np.minimum(np.ceil(centre + reach + 1).astype(int), shape)
        if np.any(hi <= lo):
            continue
        grid = np.stack(
            np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), axis=-1
        ).astype(np.float64)
        local = (grid - centre) @ rot
        inside = ((local / radii) ** 2).sum(axis=-1) <= 1.0
        box = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        box[inside] = rng.integers(1, labels + 1)
    return vol


def salt(shape: tuple[int, ...], fraction: float, *, seed: int = 0) -> NDArray[np.bool_]:
    """Independent random voxels set with probability ``fraction``."""
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32) < fraction


def labelmap(shape: tuple[int, int, int], n_labels: int, *, seed: int = 0) -> NDArray[np.uint16]:
    """An organ-atlas-like label map: a body ellipse-cylinder packed with ``n_labels``
    labelled ellipsoids of organ-like sizes, each label used once."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.uint16)
    z, y, x = shape
    scale = min(y, x)
    for label in range(1, n_labels + 1):
        radii = rng.uniform(0.04, 0.16, size=3) * np.array([z * 1.5, scale, scale])
        centre = np.array([rng.uniform(0.1, 0.9) * z, rng.uniform(0.3, 0.7) * y, rng.uniform(0.2, 0.8) * x])
        rot = _rotation(rng)
        reach = int(np.ceil(radii.max()))
        lo = np.maximum(np.floor(centre - reach).astype(int), 0)
        hi = np.minimum(np.ceil(centre + reach + 1).astype(int), shape)
        if np.any(hi <= lo):
            continue
        grid = np.stack(
            np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), axis=-1
        ).astype(np.float64)
        inside = ((((grid - centre) @ rot) / radii) ** 2).sum(axis=-1) <= 1.0
        box = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        box[inside & (box == 0)] = label
    return vol
