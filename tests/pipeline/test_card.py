"""The dataset card's phrasing diversity: distinct queries and distinct-n, worked by hand,
and reported per dataset in a run's card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medground import phantoms
from medground.pipeline import load_run_config, run
from medground.pipeline.card import phrasing_diversity, write_card


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


NAMES = {"2": "a $x^$ b", "3": "<script>alert(1)</script>", "4": "left | right *bold* [link](x)"}


def test_label_names_are_text_in_the_card_and_its_plots(tmp_path: Path) -> None:
    phantoms.demo_dataset(tmp_path / "demo", volumes=1, photos=1)
    labels = tmp_path / "demo" / "demo_ct" / "labels.json"
    labels.write_text(json.dumps({**json.loads(labels.read_text()), **NAMES}))
    out = tmp_path / "run"
    run(load_run_config(tmp_path / "demo" / "run.toml"), out, use_ray=False, progress=False)
    card = (out / "README.md").read_text()
    assert "demo_ct/&lt;script&gt;alert(1)&lt;/script&gt;" in card and "demo_ct/a \\$x^\\$ b" in card
    assert "left \\| right \\*bold\\* \\[link\\](x)" in card
    # The run's accepted samples avoid these names; samples that carry them must be drawn too
    # (matplotlib reads "$x^$" as maths and fails on it unless told not to).
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    names = list(NAMES.values())
    for number, sample in enumerate(samples):
        for target in sample["targets"]:
            target["label"] = names[number % len(names)]
    shutil.rmtree(out / "plots")
    manifest = json.loads((out / "manifest.json").read_text())
    write_card(out, manifest, samples)
    assert all((out / "plots" / name).stat().st_size > 1000 for name in ("box_sizes.png", "labels.png"))
    card = (out / "README.md").read_text()
    assert "<script>" not in card
    assert "| a \\$x^\\$ b |" in card and "| &lt;script&gt;alert(1)&lt;/script&gt; |" in card
    provenance = card.split("## Provenance", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(provenance) == manifest["config"]  # the same JSON, < > & written as \u escapes
