"""The verifier's share of an object on the patient's right, read over the object's box
line by line, equals the share of its pixel list against the body's middle (the reading it
replaced), for every object of every view of the shared CT and MR and of the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medground.generate import draft_case, view_measurements
from medground.io import find_cases, load_case, load_spec
from real_specs import ct_mr_spec


def _shares(spec_path: Path) -> tuple[int, int]:
    spec = load_spec(spec_path)
    case = load_case(spec, find_cases(spec).cases[0])
    drafts = draft_case(case, spec)
    checked = oriented = 0
    for view in drafts.views:
        measures = view_measurements(drafts, spec, view)
        side = measures._midline
        for object_id in measures.object_ids:
            rows, cols = measures._local(object_id)
            share = measures._right_share(object_id, rows, cols)
            if side is None:
                assert share is None
                continue
            ys, xs = np.nonzero(measures.evidence.objects[rows, cols] == object_id)
            assert share == float(np.mean(side(ys + rows.start, xs + cols.start) > 0)), (view.image_file, object_id)
            checked += 1
            oriented += measures._line_middle is not None
    return checked, oriented


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_right_shares_of_the_shared_volumes(shared_data: Path, tmp_path: Path, kind: str) -> None:
    checked, oriented = _shares(ct_mr_spec(shared_data, tmp_path, kind))
    assert checked > 50 and oriented > 0


def test_right_shares_of_the_demo(demo_data: Path) -> None:
    checked, oriented = _shares(demo_data / "demo_ct" / "spec.toml")
    assert checked > 10 and oriented > 0
