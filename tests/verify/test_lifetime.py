"""What verification holds is let go as soon as it is dropped: a case verified in parts must
not keep a verified part's views (their images, maps and intensities) until the garbage
collector happens to run."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from medground.generate import draft_case, view_measurements
from medground.io import find_cases, load_case, load_spec


def test_measurements_hold_no_reference_cycle(demo_data: Path) -> None:
    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    case = load_case(spec, find_cases(spec).cases[0])
    drafts = draft_case(case, spec)
    view = drafts.views[0]
    measures = view_measurements(drafts, spec, view)
    for object_id in measures.object_ids:
        measured = measures.of(object_id)
        assert measured.sizes is None or isinstance(measured.sizes, frozenset)
    assert any(measures.of(o).form is not None for o in measures.object_ids)
    gone = weakref.ref(measures)
    gc.disable()
    try:
        del measures, measured
        assert gone() is None, "the measurements are kept alive by a reference cycle"
    finally:
        gc.enable()
