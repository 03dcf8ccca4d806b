"""Views: which slices are shown (max_area, spread:N, all), the slices of each component, and
a slice shown in several windows drawn once."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medground import geometry, render, views
from medground.anchors import find_anchors
from medground.io import find_cases, load_case, load_spec
from medground.views import component_slices, select_slices
from real_specs import ct_mr_spec


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


def test_a_slice_in_several_windows_is_drawn_once(shared_data: Path, tmp_path: Path) -> None:
    """The shared CT's bones are shown in the bone window on slices whose organs are shown
    in soft tissue: those views share the slice's drawing (intensities, object map, masks,
    pieces) and differ only in their 8-bit image and what it lets a reader see; each is
    the view :func:`views._make_view` makes of that slice and window alone."""
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, "CT"))
    case = load_case(spec, find_cases(spec).cases[0])
    objects = find_anchors(case, spec)
    body = render.body_mask(case.image, spec.modality)
    by_slice = defaultdict(list)
    for view in views.iter_views(case, objects, spec, body, []):
        by_slice[(view.plane, view.slice_index)].append(view)
    shared = [made for made in by_slice.values() if len(made) > 1]
    assert shared, "some slice of the shared CT is shown in two windows"
    for made in shared:
        first = made[0]
        assert len({view.window for view in made}) == len(made)
        for view in made[1:]:
            assert view.object_map is first.object_map and view.stored is first.stored
            assert not np.array_equal(view.image, first.image)
        for view in made:
            alone = views._make_view(
                case,
                view.map,
                objects,
                tuple(view.targets),
                view.intensity,
                view.window,
                spec,
                view.directions,
            )
            assert np.array_equal(alone.image, view.image) and np.array_equal(alone.object_map, view.object_map)
            assert alone.objects.keys() == view.objects.keys()
            for object_id, obj in view.objects.items():
                # (the slice's share of the object's largest cross-section is the caller's to give)
                unshared = {"grey": None, "cross_section_share": 0.0, "not_target": None}
                assert replace(obj, **unshared) == replace(alone.objects[object_id], **unshared)
                assert obj.grey == alone.objects[object_id].grey
