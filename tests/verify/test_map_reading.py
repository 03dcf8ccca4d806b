"""Verification measures a view's object map itself, or takes the masks and region table the
view read from that same map (``View.reading``): the measurements are the same either way,
for every view of the shared CT and MR and of a 2D set (dermoscopy); and an object's side,
box and place read alone (before the rest of it) are those of its whole measurement."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from medground.generate import draft_case, view_measurements
from medground.io import find_cases, load_case, load_spec
from medground.verify import Measurements
from real_specs import ct_mr_spec


def _same_with_and_without(spec_path: Path) -> int:
    spec = load_spec(spec_path)
    read = 0
    for files in find_cases(spec, limit=2).cases:
        drafts = draft_case(load_case(spec, files), spec)
        for view in drafts.views:
            handed = view_measurements(drafts, spec, view)
            own = Measurements(dataclasses.replace(handed.evidence, masks=None, table=None))
            alone = Measurements(handed.evidence)  # each fact asked for before the rest is measured
            for object_id in alone.object_ids:
                share, box, place = alone.right_share(object_id), alone.box(object_id), alone.position(object_id)
                m = own.of(object_id)
                assert (share, box, place) == (m.right_share, m.box, m.position)
                assert alone.sides(object_id) == m.sides
            read += view.reading is not None
            assert handed.masks == own.masks
            assert handed.object_ids == own.object_ids
            assert handed._boxes == own._boxes and handed._areas == own._areas
            for object_id in own.object_ids:
                a, b = handed.of(object_id), own.of(object_id)
                # The deferred form compares by identity: its values are compared.
                assert dataclasses.replace(a, form=None) == dataclasses.replace(b, form=None)
                assert a.form.values == b.form.values
            if view.reading is not None:
                assert view.reading.masks == own.masks
                ids = own._table["label"]
                assert np.array_equal(view.reading.table["label"], ids)
    return read


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_the_views_reading_of_the_shared_volumes(shared_data: Path, tmp_path: Path, kind: str) -> None:
    assert _same_with_and_without(ct_mr_spec(shared_data, tmp_path, kind)) > 10


def test_the_views_reading_of_photographs(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "ph2.toml").write_text(
        f'name = "ph2"\nmodality = "dermoscopy"\nbody_region = "skin"\nroot = "{shared_data / "dermoscopy_ph2"}"\n'
        '[cases]\nimage = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n'
        '1 = "skin lesion"\n'
    )
    assert _same_with_and_without(tmp_path / "ph2.toml") >= 2
