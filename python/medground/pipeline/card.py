"""The dataset card (``DIR/README.md``) and its plots (``DIR/plots/*.png``)."""

from __future__ import annotations

import html
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

from medground.evaluate import BASELINES, ground_truths, score_baselines
from medground.records import dumps, is_volume_sample
from medground.runfolder import SAMPLES, atomic_write

__all__ = ["phrasing_diversity", "write_card"]


#: Markdown punctuation that would format a name (emphasis, code, links, a table's cell
#: border, GitHub's ``$…$`` maths); ``_`` only at a word's edge, so ``kidney_left`` stays
#: as written (CommonMark never reads an underscore inside a word as emphasis).
_MARKDOWN = re.compile(r"[\\`*\[\]|$~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _text(value: object) -> str:
    """``value`` (a label, dataset or case name, an error) as literal text in the card:
    names come from the dataset's files, so ``<script>`` must show as written, not run as
    HTML, and ``a|b`` or ``a $x^$ b`` must not split a table cell or become maths. HTML's
    ``& < >`` become entities, Markdown's punctuation is backslash-escaped, line breaks
    become spaces."""
    text = html.escape(" ".join(str(value).splitlines()), quote=False)
    return _MARKDOWN.sub(lambda m: "\\" + m.group(0), text)


def _table(title: str, counter: Counter[str]) -> list[str]:
    lines = [f"| {title} | samples |", "|---|---:|"]
    lines += [f"| {_text(key)} | {count} |" for key, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]
    return lines + [""]


def _plots(root: Path, samples: list[dict[str, Any]]) -> list[str]:
    """Box sizes, query lengths and labels as PNGs; returns their paths relative to root.

    Label names are drawn as plain text: matplotlib would read ``a $x^$ b`` as maths and
    fail on it (``text.parse_math`` off for every text of these plots).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    written = []
    sides = [
        ((t["bbox_xyxy"][2] - t["bbox_xyxy"][0]) * (t["bbox_xyxy"][3] - t["bbox_xyxy"][1])) ** 0.5
        / max(1.0, (s["width"] * s["height"]) ** 0.5)
        for s in samples
        if not is_volume_sample(s)
        for t in s["targets"]
    ]
    lengths = [len(s["query"].split()) for s in samples]
    labels = Counter(t["label"] for s in samples for t in s["targets"])
    top_labels = sorted(labels.items(), key=lambda kv: kv[1])[-25:]
    figures = [
        (
            "box_sizes.png",
            "Box size (sqrt of box area / sqrt of image area)",
            # A fixed range (the ratio is in [0, 1]): bins never narrower than the values'
            # rounding, so sizes equal but for float error draw one bar instead of failing.
            lambda ax: ax.hist(sides, bins=30, range=(0.0, 1.0), color="#4c72b0"),
        ),
        (
            "query_lengths.png",
            "Query length (words)",
            lambda ax: ax.hist(lengths, bins=range(0, max(lengths, default=1) + 2), color="#55a868"),
        ),
        (
            "labels.png",
            "Targets per label",
            lambda ax: ax.barh(*zip(*top_labels, strict=True), color="#c44e52") if top_labels else None,
        ),
    ]
    for name, title, draw in figures:
        with matplotlib.rc_context({"text.parse_math": False}):
            figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
            try:
                draw(axis)
                axis.set_title(title)
                figure.tight_layout()
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", metadata={"Software": None})
            finally:
                plt.close(figure)
        atomic_write(root / "plots" / name, buffer.getvalue())
        written.append(f"plots/{name}")
    return written


def phrasing_diversity(queries: list[str]) -> dict[str, float]:
    """How varied a set of queries is: how many are distinct, and distinct-n (unique word
    n-grams over all word n-grams, lower-cased, n = 1, 2, 3; Li et al. 2016)."""
    words = [q.lower().rstrip(".?").split() for q in queries]
    out: dict[str, float] = {
        "queries": len(queries),
        "distinct_queries": len({q.lower() for q in queries}),
    }
    for n in (1, 2, 3):
        grams = [tuple(w[i : i + n]) for w in words for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = round(len(set(grams)) / len(grams), 4) if grams else 0.0
    return out


def _phrasing(samples: list[dict[str, Any]]) -> list[str]:
    """Phrasing diversity per dataset and over the run."""
    if not samples:
        return []
    lines = [
        "",
        "## Phrasing",
        "",
        "Distinct queries, and distinct-n: unique word n-grams over all word n-grams (higher is more varied).",
        "",
        "| dataset | queries | distinct | distinct-1 | distinct-2 | distinct-3 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    groups: dict[str, list[str]] = {}
    for sample in samples:
        groups.setdefault(sample["dataset"], []).append(sample["query"])
    if len(groups) > 1:
        groups["all"] = [s["query"] for s in samples]
    for name, queries in groups.items():
        d = phrasing_diversity(queries)
        lines.append(
            f"| {_text(name)} | {d['queries']:.0f} | {d['distinct_queries']:.0f} | {d['distinct_1']:.3f} | "
            f"{d['distinct_2']:.3f} | {d['distinct_3']:.3f} |"
        )
    return lines


def _coverage(table: dict[str, dict[str, Any]]) -> list[str]:
    """Per-label coverage: which labels gave samples, and why the others did not."""
    if not table:
        return []
    lines = [
        "",
        "## Coverage per label",
        "",
        "Every declared label present in a case either gives samples or says why not (`skipped.jsonl`).",
        "",
        "| label | cases | with samples | samples | why not (cases) |",
        "|---|---:|---:|---:|---|",
    ]
    for label, row in table.items():
        reasons = "; ".join(f"{_text(reason)} ({n})" for reason, n in list(row["reasons"].items())[:3])
        lines.append(
            f"| {_text(label)} | {row['cases']} | {row['cases_with_samples']} | {row['samples']} | {reasons} |"
        )
    return lines


def _laterality(checks: dict[str, Any]) -> list[str]:
    """The laterality self-check: midline sources, and cases whose sides were withheld."""
    if not checks:
        return []
    sources = ", ".join(f"{_text(source)} ({n})" for source, n in checks["midline_sources"].items())
    lines = [
        "",
        "## Laterality self-check",
        "",
        f"Midline from: {sources}. Side-named labels (e.g. `kidney_left`) are checked against the computed "
        f"sides; cases where they disagree get no left/right words: {len(checks['withheld'])}.",
        "",
    ]
    for case in checks["withheld"]:
        detail = "; ".join(
            f"{_text(c['label'])} named {_text(c['named'])}, lies {_text(c['computed'])}" for c in case["conflicts"]
        )
        lines.append(f"- {_text(case['case'])}: {detail}")
    return lines


#: What each shortcut baseline answers, as the card says it.
_BASELINE_WORDS = {
    "prior": "the label's prior box: the median train box of the label (normalised), scaled to the image",
    "largest": "the box of the largest object of the named label in the image",
    "centre": "a box of the prior's size in the image centre",
    "random": "a seeded random object of the image, any label",
}


def _baselines(root: Path, samples: list[dict[str, Any]]) -> list[str]:
    """Shortcut baselines: answers that never read the query, scored on the test split as
    ``medground eval --baselines`` scores them."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    lines = [
        "",
        "### Shortcut baselines",
        "",
        "Answers that never read the query, scored on the test split with `medground eval`'s metrics "
        "(`medground eval --gt . --baselines` prints them with every breakdown). A model's test score "
        "means something only above these. One box per label the query names.",
        "",
    ]
    try:
        result = score_baselines(ground_truths(samples, root / SAMPLES))
    except ValueError as error:
        return [*lines, f"Not computed: {_text(error)}", ""]
    sizes = sorted(Counter(str(s["split"]) for s in samples).items())
    lines.append(
        f"Samples per split: {', '.join(f'{_text(k)} {v}' for k, v in sizes)}; "
        f"scored: {result['samples']} test samples, label priors from {result['train_samples']} train samples."
    )
    for row in result["no_prior"]:
        lines.append(
            f"\nNo train samples for {_text(row['dataset'])}/{_text(row['label'])} ({row['samples']} test samples): "
            "prior and centre give it no box, a sample left with none scores as a miss."
        )
    if not result["samples"]:
        return [*lines, "", "No test samples: nothing to score.", ""]
    # Absent queries ([synthesis] negatives) get their own columns, only when the split has some.
    absent = any(b["overall"]["absent"]["samples"] for b in result["baselines"].values())
    lines += [
        "",
        "| baseline | answer | samples | missing | Acc@0.5 | mIoU | centre hit | multi-object F1@0.5 |"
        + (" absent | correct rejections |" if absent else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if absent else ""),
    ]
    for name in BASELINES:
        overall = result["baselines"][name]["overall"]
        single, multi = overall["single"], overall["multi"]
        rejection = overall["absent"]
        lines.append(
            f"| {name} | {_BASELINE_WORDS[name]} | {overall['samples']} | {overall['missing']} | "
            f"{pct(single['acc@0.5'])} | {pct(single['miou'])} | {pct(single['centre_hit'])} | {pct(multi['f1@0.5'])} |"
            + (f" {rejection['samples']} | {pct(rejection['rejection_accuracy'])} |" if absent else "")
        )
    return [*lines, ""]


def write_card(root: Path, manifest: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    """Writes the dataset card: counts, the verification funnel, splits, plots, provenance."""
    counts = manifest["counts"]
    funnel = manifest["funnel"]
    lines = [
        "# medground dataset",
        "",
        f"{counts['accepted']} verified referring-grounding samples from {counts['cases']} cases "
        f"({counts['errors']} failed to load; {counts['rejected']} drafts rejected). Made by medground "
        f"{manifest['medground_version']} (config fingerprint `{manifest['fingerprint']}`). Boxes are "
        "`[x_min, y_min, x_max, y_max]` in pixels of the stored image, max exclusive; `samples.jsonl` is canonical.",
        "",
        "## Samples",
        "",
    ]
    lines += _table("dataset", Counter(s["dataset"] for s in samples))
    lines += _table("modality", Counter(s["modality"] for s in samples))
    lines += _table("query type", Counter(s["query_type"] for s in samples))
    lines += _table("split", Counter(str(s["split"]) for s in samples))
    # RefCOCO+'s rule: no position or side word (docs/RECORDS.md, `subset`).
    lines += _table("subset", Counter(str(s.get("subset") or "(none)") for s in samples))
    lines += _table("label", Counter(t["label"] for s in samples for t in s["targets"]))
    absent = Counter(str(s["referring_attributes"].get("category")) for s in samples if s["query_type"] == "absent")
    if absent:  # [synthesis] negatives: queries about a structure the image does not show
        lines += [
            f"{sum(absent.values())} absent queries ask for a structure the image does not show (no target; "
            "`medground eval` scores an answer with no box as a correct rejection):",
            "",
        ]
        lines += _table("absent structure", absent)
    volumes = sum(1 for s in samples if is_volume_sample(s))
    if volumes:  # [render] axes with "volume": the whole volume is the image
        lines += [
            f'{volumes} volume samples ground their query in a whole volume (`view.axis = "volume"`): the image is '
            "the case's volume in RAS+ orientation (NIfTI), boxes are `bbox_3d` in its voxel indices (max exclusive) "
            "and `bbox_3d_ras` in millimetres, masks the objects file `view.objects`.",
            "",
        ]
    lines += ["## Verification funnel", "", "| stage | passed |", "|---|---:|", f"| drafts | {funnel['drafts']} |"]
    lines += [f"| {_text(stage)} | {n} |" for stage, n in funnel["passed"].items()]
    lines.append("")
    for stage, reasons in funnel.get("rejected", {}).items():
        lines.append(
            f"Rejected at {_text(stage)}: "
            + ", ".join(f"{_text(reason)} ({n})" for reason, n in sorted(reasons.items()))
        )
    lines += _phrasing(samples)
    lines += _coverage(manifest.get("coverage", {}))
    lines += _laterality(manifest.get("laterality", {}))
    split = manifest["splits"]
    lines += [
        "",
        "## Splits",
        "",
        f"Patient-level; patients per split: {split['patients']}; patients on two sides: "
        f"{len(split['patients_on_two_sides'])}.",
    ]
    lines += _baselines(root, samples)
    plots = _plots(root, samples)
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["## Provenance", "", "```json"]
    # The same JSON with < > & as \u escapes (they occur only inside strings): a label named
    # "<script>" stays out of the page even for a renderer that mishandles code blocks.
    config = dumps(manifest["config"], indent=2, default=str)
    config = config.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    lines += [config, "```", ""]
    if manifest["errors"]:
        lines += (
            ["## Cases that failed", ""]
            + [
                f"- {_text(e['dataset'])}/{_text(e['case_id'])} ({_text(e['stage'])}): {_text(e['error'])}"
                for e in manifest["errors"]
            ]
            + [""]
        )
    atomic_write(root / "README.md", "\n".join(lines).encode())
