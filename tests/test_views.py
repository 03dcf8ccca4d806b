"""Views: which slices are shown (max_area, spread:N, all) and the slices of each component."""

from __future__ import annotations

import numpy as np
import pytest

from medground import geometry
from medground.views import component_slices, select_slices


@pytest.mark.parametrize(
    ("areas", "expected"),
    [
        ([0, 3, 5, 5, 5, 1], [3]),
        ([5, 0, 1, 0, 5, 2, 5], [4]),
        ([0, 0, 9, 0], [2]),
    ],
)
def test_select_max_area(areas, expected):
    assert select_slices(np.array(areas), "max_area") == expected


def test_select_spread_all_and_errors():
    areas = np.array([1, 10, 4, 6, 10, 5, 9, 2])  # >= half the peak: 1, 3, 4, 5, 6
    assert select_slices(areas, "spread:3") == [1, 4, 6]
    assert select_slices(areas, "spread:10") == [1, 3, 4, 5, 6]
    assert select_slices(areas, "spread:3", max_slices=2) == [1, 6]
    assert select_slices(areas, "spread:5", min_area_fraction=0.9) == [1, 4, 6]
    assert select_slices(np.full(10, 4), "spread:4") == [0, 3, 6, 9]
    assert select_slices(np.array([0, 2, 0, 3, 1]), "all") == [1, 3, 4]
    picks = select_slices(np.r_[np.zeros(5), np.ones(30)], "all", max_slices=16)
    assert len(picks) == 16 and picks[0] == 5 and picks[-1] == 34 and set(np.diff(picks)) <= {1, 2}
    for rule in ("max_area", "spread:2", "all"):
        assert select_slices(np.zeros(6, int), rule) == [] and select_slices(np.array([], int), rule) == []
    for rule in ("spread:0", "spread:", "spread:x", "spread:-1", "largest", ""):
        with pytest.raises(ValueError):
            select_slices(areas, rule)
    with pytest.raises(ValueError):
        select_slices(np.ones((2, 3), int), "all")


def test_spread_one_takes_the_middle_and_component_slices_cover_every_component() -> None:
    areas = np.array([0, 5, 9, 10, 9, 8, 1, 0])
    assert select_slices(areas, "spread:1", min_area_fraction=0.5) == [3]
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[1:3, 1:5, 2:7] = 1
    labels[3, 0, 0] = 4
    labels[0, 5, 7] = 4
    picked = component_slices(labels, 2, "all")
    assert picked == {1: [2, 3, 4, 5, 6], 4: [0, 7]}
    assert component_slices(labels, 0, "max_area") == {1: [1], 4: [0]}
    ids, table = geometry.slice_areas(labels, 2, return_labels=True)
    assert ids.tolist() == [1, 4] and table.shape == (2, 8) and table.sum() == labels.astype(bool).sum()
