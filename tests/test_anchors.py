"""Anchors: the spec's [anchors] filters decide which components are objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from medground.anchors import find_anchors
from medground.generate import draft_case
from medground.io import load_spec
from phantom_cases import multi_lesion_case as _phantom_case


def test_anchor_filters_from_the_spec(tmp_path: Path) -> None:
    spec, case = _phantom_case(tmp_path, 1)
    everything = find_anchors(case, spec).anchors
    lesions = [a for a in everything.values() if a.label == "liver lesion"]
    cutoff = sorted(a.size * 1000 for a in lesions)[len(lesions) // 2]  # mm³: drops the smaller half
    text = (
        tmp_path / "s.toml"
    ).read_text() + f'[anchors]\nmin_voxels = 1\n[anchors.labels."liver lesion"]\nmin_volume_mm3 = {cutoff}\n'
    (tmp_path / "s.toml").write_text(text)
    spec = load_spec(tmp_path / "s.toml")
    drafts = draft_case(case, spec)
    kept = {t.object_id for s in drafts.samples for t in s.targets if t.label == "liver lesion"}
    expected = {a.object_id for a in lesions if a.size * 1000 >= cutoff}
    assert kept and kept <= expected
    (tmp_path / "s.toml").write_text(text.replace("min_voxels = 1", "min_voxel = 1"))
    with pytest.raises(Exception, match=r"unknown key\(s\) in \[anchors\]: min_voxel"):
        load_spec(tmp_path / "s.toml")
