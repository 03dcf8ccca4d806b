"""Patient-level splits by ratio, reproducible for a seed, with fixed assignments."""

from __future__ import annotations

from pathlib import Path

from medground.pipeline.splits import assign_splits


def test_splits_by_ratio_and_file(tmp_path: Path) -> None:
    patients = [("a", "CT", f"p{i:03d}") for i in range(100)] + [("b", "MR", f"q{i:03d}") for i in range(10)]
    splits = assign_splits(patients, ratios=(0.7, 0.2, 0.1), seed=1)
    counts = {s: sum(1 for p, v in splits.items() if v == s and p.startswith("p")) for s in ("train", "val", "test")}
    assert counts == {"train": 70, "val": 20, "test": 10}
    assert sum(1 for p, v in splits.items() if p.startswith("q") and v == "train") == 7
    assert splits == assign_splits(list(reversed(patients)), ratios=(0.7, 0.2, 0.1), seed=1)
    fixed = assign_splits(patients, ratios=(0.7, 0.2, 0.1), seed=1, fixed={"p000": "test"})
    assert fixed["p000"] == "test"
    # A patient in two datasets is placed once.
    both = assign_splits([("a", "CT", "x"), ("b", "MR", "x")], ratios=(0.5, 0.5, 0.0))
    assert list(both) == ["x"]
