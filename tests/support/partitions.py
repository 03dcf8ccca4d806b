"""Comparing label images up to renumbering, and the label dtypes the geometry core accepts."""

from __future__ import annotations

import numpy as np

LABEL_DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the voxels into the same components (up to renumbering)."""
    if a.shape != b.shape or not np.array_equal(a != 0, b != 0):
        return False
    fg = a != 0
    pairs = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1)
    return pairs.shape[1] == len(np.unique(a[fg])) == len(np.unique(b[fg]))
