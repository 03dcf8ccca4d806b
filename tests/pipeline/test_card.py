"""The dataset card's phrasing diversity: distinct queries and distinct-n, worked by hand,
and reported per dataset in a run's card."""

from __future__ import annotations

from pathlib import Path

import pytest

from medground import phantoms
from medground.pipeline import load_run_config, run
from medground.pipeline.card import phrasing_diversity


def test_distinct_n_by_hand() -> None:
    queries = ["Locate the liver.", "Locate the spleen.", "Locate the liver."]
    d = phrasing_diversity(queries)
    assert d["queries"] == 3 and d["distinct_queries"] == 2
    # Unigrams: locate, the, liver, locate, the, spleen, locate, the, liver: 4 unique of 9.
    assert d["distinct_1"] == pytest.approx(4 / 9, abs=1e-4)
    # Bigrams: (locate the) ×3, (the liver) ×2, (the spleen): 3 unique of 6.
    assert d["distinct_2"] == pytest.approx(3 / 6, abs=1e-4)
    # Trigrams: 2 unique of 3.
    assert d["distinct_3"] == pytest.approx(2 / 3, abs=1e-4)
    assert phrasing_diversity([])["distinct_1"] == 0.0


def test_the_card_reports_phrasing_diversity(tmp_path: Path) -> None:
    phantoms.demo_dataset(tmp_path / "demo")
    out = tmp_path / "run"
    run(load_run_config(tmp_path / "demo" / "run.toml"), out, use_ray=False, progress=False)
    card = (out / "README.md").read_text()
    assert "## Phrasing" in card
    section = card.split("## Phrasing", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| demo_ct |"))
    queries, distinct, *grams = (float(x) for x in row.strip("|").split("|")[1:])
    assert 0 < distinct <= queries and all(0 < g <= 1 for g in grams)
