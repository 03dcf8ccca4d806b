"""The dataset card's phrasing diversity: distinct queries and distinct-n, worked by hand,
and reported per dataset in a run's card."""

from __future__ import annotations

import json
import shutil
import sys
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
    # The appearance-only subset is counted.
    assert "| subset | samples |" in card and "| appearance |" in card
    # Every run's card scores the shortcut baselines on its test split.
    assert list(_baseline_rows(card)) == ["prior", "largest", "centre", "random"]


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


def _manifest(samples: list[dict]) -> dict:
    return {
        "medground_version": "0",
        "fingerprint": "f",
        "config": {},
        "counts": {"accepted": len(samples), "cases": len(samples), "errors": 0, "rejected": 0},
        "funnel": {"drafts": len(samples), "passed": {}},
        "splits": {"patients": {"train": 3, "test": 2}, "patients_on_two_sides": []},
        "errors": [],
    }


def _baseline_rows(card: str) -> dict[str, list[str]]:
    section = card.split("### Shortcut baselines", 1)[1].split("## Plots", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[2:]] for cells in rows[1:]}


def test_the_card_states_the_shortcut_baselines_next_to_the_splits(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
    from ground_truth import make_sample

    # Every test box is the train prior of its label (0.2, 0.25, 0.6, 0.75): prior scores 100%.
    samples = [
        make_sample("t1", [[20, 25, 60, 75]], width=100, height=100, split="train"),
        make_sample("t2", [[40, 25, 120, 75]], width=200, height=100, split="train"),
        make_sample("t3", [[80, 50, 240, 150]], width=400, height=200, split="train"),
        make_sample("e1", [[100, 50, 300, 150]], width=500, height=200, others=(("liver", [0, 0, 500, 200]),)),
        make_sample("e2", [[0, 0, 30, 40]], width=300, height=400, label="spleen"),
    ]
    write_card(tmp_path, _manifest(samples), samples)
    card = (tmp_path / "README.md").read_text()
    splits = card.index("## Splits")
    assert splits < card.index("### Shortcut baselines") < card.index("## Plots")
    assert "Samples per split: test 2, train 3; scored: 2 test samples" in card
    assert "No train samples for kits/spleen (1 test samples)" in card
    rows = _baseline_rows(card)
    assert list(rows) == ["prior", "largest", "centre", "random"]
    # prior: e1 exact, e2 (no prior) a miss; largest: each target is its label's only object.
    assert rows["prior"][:4] == ["2", "1", "50.0", "50.0"]
    assert rows["largest"][:4] == ["2", "0", "100.0", "100.0"]
    assert rows["centre"][1] == "1"


def test_a_run_without_test_samples_says_so_in_the_card(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
    from ground_truth import make_sample

    samples = [make_sample("t1", [[20, 25, 60, 75]], width=100, height=100, split="train")]
    write_card(tmp_path, _manifest(samples), samples)
    card = (tmp_path / "README.md").read_text()
    assert "Samples per split: train 1; scored: 0 test samples" in card
    assert "No test samples: nothing to score." in card and "| prior |" not in card


def test_box_sizes_equal_but_for_rounding_still_make_a_card(tmp_path: Path) -> None:
    """Boxes whose size ratios differ only by float rounding (0.3 and 0.30000000000000004)
    once made matplotlib refuse 30 bins over a zero-width range, failing the card at the
    very end of a run; the histogram's range is now fixed at [0, 1]."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
    from ground_truth import make_sample

    # sqrt(box area) / sqrt(image area): 0.1, 0.09999999999999999 and 0.10000000000000002.
    samples = [
        make_sample("a", [[0, 0, 1, 1]], width=10, height=10, split="train"),
        make_sample("b", [[0, 0, 4, 6]], width=16, height=150, split="train"),
        make_sample("c", [[0, 0, 1, 51]], width=34, height=150, split="train"),
    ]
    ratios = {
        ((x1 - x0) * (y1 - y0)) ** 0.5 / (s["width"] * s["height"]) ** 0.5
        for s in samples
        for x0, y0, x1, y1 in [s["targets"][0]["bbox_xyxy"]]
    }
    assert len(ratios) == 3 and max(ratios) - min(ratios) < 1e-15
    write_card(tmp_path, _manifest(samples), samples)
    assert (tmp_path / "plots" / "box_sizes.png").stat().st_size > 1000


def test_the_card_counts_absent_queries_and_the_baselines_score_them(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
    from ground_truth import make_sample

    attributes = {"category": "spleen", "absent_from": "case"}
    samples = [
        make_sample("t1", [[20, 25, 60, 75]], width=100, height=100, split="train"),
        make_sample("e1", [[20, 25, 60, 75]], width=100, height=100),
        make_sample("a1", [], query="Locate the spleen.", query_type="absent", attributes=attributes),
        make_sample("a2", [], query="Find the spleen.", split="train", query_type="absent", attributes=attributes),
    ]
    write_card(tmp_path, _manifest(samples), samples)
    card = (tmp_path / "README.md").read_text()
    assert "| absent | 2 |" in card
    assert "2 absent queries ask for a structure the image does not show" in card
    assert "| absent structure | samples |\n|---|---:|\n| spleen | 2 |" in card
    # The baselines table gets the absent columns: largest finds no spleen in the image.
    assert "| absent | correct rejections |" in card
    rows = _baseline_rows(card)
    assert rows["largest"][-2:] == ["1", "100.0"] and rows["prior"][-2:] == ["1", "100.0"]
