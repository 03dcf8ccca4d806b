"""Seeded benchmark volumes, cached as .npy under bench/.cache.

clean     256x512x512 uint8, 120 random rotated ellipsoids labelled 1..5 (~7% foreground)
noisy     clean + 0.05% random voxels with random labels 1..5
salt      256x512x512 bool, 1% random voxels (~590k 26-connected components)
labelmap  300x512x512 uint16, 72 organ-like labels
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medground import phantoms

CACHE = Path(__file__).resolve().parent / ".cache"
SHAPE = (256, 512, 512)


def _cached(name: str, make) -> np.ndarray:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}.npy"
    if path.exists():
        return np.load(path)
    vol = make()
    np.save(path, vol)
    return vol


def clean() -> np.ndarray:
    return _cached("clean", lambda: phantoms.ellipsoids(SHAPE, 120, labels=5, radius=(6.0, 36.0), seed=2026))


def noisy() -> np.ndarray:
    def make() -> np.ndarray:
        vol = clean().copy()
        rng = np.random.default_rng(7)
        idx = rng.choice(vol.size, size=int(vol.size * 0.0005), replace=False)
        vol.ravel()[idx] = rng.integers(1, 6, size=len(idx), dtype=np.uint8)
        return vol

    return _cached("noisy", make)


def salt() -> np.ndarray:
    return _cached("salt", lambda: phantoms.salt(SHAPE, 0.01, seed=11))


def labelmap() -> np.ndarray:
    return _cached("labelmap", lambda: phantoms.labelmap((300, 512, 512), 72, seed=5))


if __name__ == "__main__":
    for make in (clean, noisy, salt, labelmap):
        v = make()
        print(f"{make.__name__:9s} {v.shape} {v.dtype} foreground {np.count_nonzero(v) / v.size:.2%}")
