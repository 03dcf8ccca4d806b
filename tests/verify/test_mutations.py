"""The mutation test of the verifier: accepted samples from the shared CT, MR, PH2 and Kvasir
(and multi-lesion CT phantoms, for the lesion sizes, densities and containments the small
shared volumes hardly have), one claim corrupted at a time (side, position, size, shape, intensity, count, relation,
containment, category, clinical attribute). Each kind of corruption must be rejected at
least 97% of the time, and the samples as written accepted at least 99% of the time when
verified again. The VLM's drafts go through the same stages, so this holds for them too."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from medground.generate import draft_case, verify_drafts, view_measurements
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.verify import Verifier
from mutations import KINDS, Context, mutations
from phantom_cases import multi_lesion_case
from real_specs import ct_mr_spec, ph2_spec

REJECTED_AT_LEAST = 0.97
ACCEPTED_AT_LEAST = 0.99


def _specs(shared: Path, folder: Path) -> list:
    specs = [
        load_spec(ct_mr_spec(shared, folder, "CT")),
        load_spec(ct_mr_spec(shared, folder, "MR")),
        load_spec(ph2_spec(shared, folder)),
        load_preset("kvasir_seg", shared / "endoscopy_kvasir"),
    ]
    for seed in range(4):
        (folder / f"phantom{seed}").mkdir()
        specs.append(multi_lesion_case(folder / f"phantom{seed}", seed)[0])
    return specs


@pytest.fixture(scope="module")
def tally(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter]:
    """Per corruption kind: how many mutated queries were tried and rejected (and why);
    ``original``: the accepted samples verified again."""
    folder = tmp_path_factory.mktemp("mutations")
    counts: dict[str, Counter] = {kind: Counter() for kind in (*KINDS, "original")}
    verifier = Verifier()
    for spec in _specs(shared_data, folder):
        clinical = {a.name: a.terms for a in spec.metadata.attributes} if spec.metadata else {}
        context = Context(tuple(spec.labels.values()), spec.body_region, clinical)
        for files in find_cases(spec).cases:
            drafts = draft_case(load_case(spec, files), spec)
            accepted, _, _ = verify_drafts(drafts, spec)
            views = {v.image_file: v for v in drafts.views}
            measures = {}
            for sample in accepted:
                if sample.image not in measures:
                    measures[sample.image] = view_measurements(drafts, spec, views[sample.image])
                facts, measure = drafts.facts[sample.image], measures[sample.image]
                _, failed = verifier.verify(replace(sample, verification={}), facts, measure)
                counts["original"]["tried"] += 1
                counts["original"]["accepted"] += failed is None
                for kind, query in mutations(sample, context).items():
                    _, failed = verifier.verify(replace(sample, query=query, verification={}), facts, measure)
                    counts[kind]["tried"] += 1
                    counts[kind][f"{spec.name}:tried"] += 1
                    if failed is not None:
                        counts[kind]["rejected"] += 1
                        counts[kind][f"reason:{failed.reason}"] += 1
                    else:
                        counts[kind][f"missed:{query}"] += 1
    return counts


def test_the_samples_as_written_are_accepted(tally: dict[str, Counter]) -> None:
    original = tally["original"]
    print(f"\noriginals: {original['accepted']}/{original['tried']} accepted")
    assert original["tried"] > 400
    assert original["accepted"] / original["tried"] >= ACCEPTED_AT_LEAST


@pytest.mark.parametrize("kind", KINDS)
def test_each_corruption_is_rejected(tally: dict[str, Counter], kind: str) -> None:
    counts = tally[kind]
    print(f"\n{kind}: {counts['rejected']}/{counts['tried']} rejected", dict(counts))
    assert counts["tried"] >= 10, f"too few {kind} claims to corrupt: {dict(counts)}"
    missed = [k.removeprefix("missed:") for k in counts if k.startswith("missed:")]
    assert counts["rejected"] / counts["tried"] >= REJECTED_AT_LEAST, missed[:10]
