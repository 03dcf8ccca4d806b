"""A verifier that can disagree with the generator: errors planted in the cues (a wrong
container, flipped densities, wrong sizes) reach the queries, because the referring step
and the template trust the cues, and the rules stage rejects every such draft as
``facts_disagree``, naming the fact, because it measures the facts again from the stored
image, the masks, the map and the volume. Without the plant the same runs have none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medground import cues
from medground.generate import draft_case, verify_drafts
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.verify import extract_claims
from phantom_cases import multi_lesion_case
from real_specs import ct_mr_spec

FLIPPED = {
    "hypodense": "hyperdense",
    "hyperdense": "hypodense",
    "hypointense": "hyperintense",
    "hyperintense": "hypointense",
    "darker": "brighter",
    "brighter": "darker",
}


def _run(spec: Any) -> tuple[list, list, dict[str, Any]]:
    accepted, rejected = [], []
    funnel: Counter[str] = Counter()
    for files in find_cases(spec).cases:
        drafts = draft_case(load_case(spec, files), spec)
        good, bad, counts = verify_drafts(drafts, spec)
        accepted += good
        rejected += bad
        funnel.update(counts.to_dict()["rejected"].get("rules", {}))
    return accepted, rejected, dict(funnel)


def _plant_wrong_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every object said to lie within the structure it touches least (a wrong container)."""
    original = cues.relations

    def planted(view: Any, obj: Any, faces: Any, categories: Any = None, **options: Any) -> dict[str, Any]:
        found = original(view, obj, faces, categories, **options)
        touching = [n for n in found["touches"] if n != found["within"]]
        if touching:
            found["within"] = touching[-1]
            found["boundary_shares"] = {**found["boundary_shares"], touching[-1]: 0.9}
        return found

    monkeypatch.setattr(cues, "relations", planted)


def _plant_flipped_densities(monkeypatch: pytest.MonkeyPatch) -> None:
    original = cues.intensity_word

    def planted(modality: str, difference: float, ring_std: float, window_width: float | None) -> str:
        word = original(modality, difference, ring_std, window_width)
        return FLIPPED.get(word, word)

    monkeypatch.setattr(cues, "intensity_word", planted)


def _plant_wrong_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every size class replaced by the far end of the scale (medium: the end it is farther from)."""
    original = cues.size_class

    def planted(anchor: Any, obj: Any, spacing_known: bool) -> str | None:
        size = original(anchor, obj, spacing_known)
        diameter, share = obj.descriptors["diameter_mm"], obj.descriptors["image_share"]
        low_half = diameter < 20 if spacing_known and diameter is not None else share < 0.085
        far = {"small": "large", "large": "small", "normal": "small", "medium": "large" if low_half else "small"}
        return far.get(size, size) if size is not None else None

    monkeypatch.setattr(cues, "size_class", planted)


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_a_planted_container_is_rejected_on_the_shared_volumes(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, kind))
    _, _, clean = _run(spec)
    assert "facts_disagree" not in clean
    _plant_wrong_containers(monkeypatch)
    _, rejected, funnel = _run(spec)
    disagreeing = [r for r in rejected if r["rejection"]["reason"] == "facts_disagree"]
    assert funnel.get("facts_disagree", 0) == len(disagreeing) > 0
    assert {r["verification"]["rules"]["info"]["fact"] for r in disagreeing} == {"within"}
    assert all("within" in r["referring_attributes"] for r in disagreeing)


@pytest.mark.parametrize("plant", ["densities", "sizes"])
def test_planted_densities_and_sizes_are_rejected(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plant: str
) -> None:
    specs = [load_preset("kvasir_seg", shared_data / "endoscopy_kvasir")]
    for seed in range(2):
        (tmp_path / str(seed)).mkdir()
        specs.append(multi_lesion_case(tmp_path / str(seed), seed)[0])
    (_plant_flipped_densities if plant == "densities" else _plant_wrong_sizes)(monkeypatch)
    fact = "intensity" if plant == "densities" else "size"
    field = "intensities" if plant == "densities" else "size_classes"
    total = 0
    for spec in specs:
        accepted, rejected, funnel = _run(spec)
        disagreeing = [r for r in rejected if r["rejection"]["reason"] == "facts_disagree"]
        assert {r["verification"]["rules"]["info"]["fact"] for r in disagreeing} <= {fact}
        total += len(disagreeing)
        # Whatever passed makes no claim the plant changed: each one was wrong.
        for sample in accepted:
            claims = extract_claims(sample.query, list(spec.labels.values()), spec.body_region)
            assert not set(getattr(claims, field)) - {"similar", "isodense", "isointense"}, sample.query
    assert total > 10
