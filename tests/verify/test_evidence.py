"""The evidence judge: a target too faint against its surroundings is rejected."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from medground import rle
from medground.verify import judge_evidence
from medground.verify.measure import _distinct
from phantom_drafts import lesion_sample, phantom


def test_a_lesion_too_faint_to_see_is_never_a_draft(tmp_path: Path) -> None:
    _, drafts = phantom(tmp_path, faint=True)
    lesions = [s for s in drafts.samples if s.targets[0].label == "liver lesion"]
    skipped = [r for r in drafts.skipped if r.get("label") == "liver lesion"]
    assert {r["reason"] for r in skipped} & {"not_visible_in_image", "no_sample"}
    for sample in lesions:  # any lesion that is a draft is visible in its stored image
        assert sample.targets[0].cues["visibility"]["visible"]


def test_the_evidence_judge_rejects_a_box_on_flat_tissue(tmp_path: Path) -> None:
    _, drafts = phantom(tmp_path)
    sample = lesion_sample(drafts)
    view = next(v for v in drafts.views if v.view_record() == sample.view)
    assert judge_evidence(sample, view.values).passed
    # The same mask moved onto uniform tissue far from any edge: nothing there to see.
    flat = np.zeros((sample.height, sample.width), dtype=bool)
    values = np.full((sample.height, sample.width), 60.0, dtype=np.float32)
    flat[10:20, 10:20] = True
    target = replace(sample.targets[0], bbox_xyxy=[10, 10, 20, 20], mask_rle=rle.encode(flat), area_px=100)
    result = judge_evidence(replace(sample, targets=[target]), values)
    assert (result.passed, result.reason) == (False, "low_contrast")


def test_one_reading_per_target_serves_every_query_on_it(tmp_path: Path) -> None:
    """The judge reads a target's pixels once for all the drafts that name it (``seen``),
    but what a query claims is still checked per query."""
    from medground.verify.evidence import EvidenceJudge
    from medground.verify.judge import JudgeItem

    _, drafts = phantom(tmp_path)
    sample = lesion_sample(drafts)
    view = next(v for v in drafts.views if v.view_record() == sample.view)
    values = view.values
    target = sample.targets[0]
    said = target.cues["intensity"]["relation"]
    opposite = {"hypodense": "hyperdense", "hyperdense": "hypodense"}.get(said, "hyperdense")
    flipped = {
        **target.cues["intensity"],
        "relation": opposite,
        "contrast_8bit": -target.cues["intensity"]["contrast_8bit"],
    }
    contrary = replace(target, cues={**target.cues, "intensity": flipped})
    wrong = replace(sample, query=f"the {opposite} {target.label}", targets=[contrary])
    items = [JudgeItem(s, view.image, values) for s in (sample, wrong, sample)]
    together = EvidenceJudge().judge(items)
    alone = [judge_evidence(item.sample, values) for item in items]
    assert [(r.passed, r.reason, r.info) for r in together] == [(r.passed, r.reason, r.info) for r in alone]
    assert together[0].passed and together[2].passed
    assert (together[1].passed, together[1].reason) == (False, "intensity_not_visible")


def test_the_voxels_a_views_rows_show_are_counted_as_numpy_counts_them() -> None:
    """A view's pixel size divides its voxels shown by its pixels: the distinct sources of
    its rows (or columns), counted from the steps where the map runs one way (upsampled,
    flipped, constant) and by numpy's unique otherwise."""
    rng = np.random.default_rng(5)
    maps = [np.zeros(0, np.intp), np.array([3]), np.full(40, 7), np.arange(300), np.arange(300)[::-1]]
    for _ in range(200):
        up = np.repeat(np.arange(int(rng.integers(1, 60))), rng.integers(1, 4, size=1)[0])
        maps += [up, up[::-1], rng.integers(0, 20, size=int(rng.integers(2, 50)))]
    for source in maps:
        assert _distinct(source.astype(np.intp)) == len(np.unique(source))
