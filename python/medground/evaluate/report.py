"""The evaluation report as a plain-text table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medground.evaluate.files import BREAKDOWNS
from medground.evaluate.score import IOU_THRESHOLDS

__all__ = ["format_report", "format_rows"]

_COLUMNS = [
    ("n", 6),
    ("miss", 5),
    ("unpars", 6),
    ("acc@.3", 7),
    ("acc@.5", 7),
    ("acc@.7", 7),
    ("acc@.9", 7),
    ("mIoU", 6),
    ("centre", 7),
    ("multi", 6),
    ("P@.5", 6),
    ("R@.5", 6),
    ("F1@.5", 6),
]


#: The columns of absent queries, shown when a report has any: their number and the share
#: answered with no box (correct rejections).
_ABSENT_COLUMNS = [("absent", 6), ("rej", 6)]


def _has_absent(metrics: Mapping[str, Any]) -> bool:
    return bool(metrics.get("absent", {}).get("samples"))


def _columns(absent: bool) -> list[tuple[str, int]]:
    return _COLUMNS + _ABSENT_COLUMNS if absent else _COLUMNS


def _row(name: str, metrics: Mapping[str, Any], width: int, absent: bool = False) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    single, multi = metrics["single"], metrics["multi"]
    cells = [
        str(metrics["samples"]),
        str(metrics["missing"]),
        str(metrics["unparseable"]),
        *(pct(single[f"acc@{t}"]) for t in IOU_THRESHOLDS),
        pct(single["miou"]),
        pct(single["centre_hit"]),
        str(multi["samples"]),
        pct(multi["precision@0.5"]),
        pct(multi["recall@0.5"]),
        pct(multi["f1@0.5"]),
    ]
    if absent:
        rejection = metrics.get("absent", {})
        cells += [str(rejection.get("samples", 0)), pct(rejection.get("rejection_accuracy"))]
    columns = _columns(absent)
    return f"{name:<{width}}" + "".join(f"{cell:>{w + 1}}" for cell, (_, w) in zip(cells, columns, strict=True))


def format_rows(blocks: Sequence[tuple[str, Mapping[str, Mapping[str, Any]]]]) -> list[str]:
    """Blocks of rows under one header: each block a title line, then one indented row per
    ``name: metrics`` (metrics as :func:`~medground.evaluate.score.evaluate` reports a group)."""
    names = [str(k) for _, rows in blocks for k in rows]
    width = max([len(n) + 2 for n in names] + [len(t) for t, _ in blocks] + [8])
    absent = any(_has_absent(metrics) for _, rows in blocks for metrics in rows.values())
    header = f"{'':<{width}}" + "".join(f"{title:>{w + 1}}" for title, w in _columns(absent))
    lines = [header, "-" * len(header)]
    for title, rows in blocks:
        lines.append(title)
        lines += [_row(f"  {name}", metrics, width, absent) for name, metrics in rows.items()]
    return lines


def format_report(report: Mapping[str, Any]) -> str:
    """The report of :func:`evaluate` as a plain-text table (ratios in percent)."""
    fmt, counts = report["format"], report["counts"]
    resize = "".join(
        f", {k} {v}" for k, v in fmt.items() if k != "name" and not (k == "convention" and v == fmt["name"])
    )
    lines = [
        f"format {fmt['name']}{resize}",
        (
            f"{counts['samples']} samples: {counts['predicted']} predicted ({counts['unparseable']} unparseable), "
            f"{counts['missing']} missing; {counts['extra_predictions']} predictions for ids not in the ground truth "
            "(ignored)"
        ),
        (
            "single-target samples: accuracy at IoU, mean IoU, centre hits; multi-object samples: "
            "Hungarian matching, precision/recall/F1 at IoU 0.5 (all in %)"
        ),
        "",
    ]
    absent = _has_absent(report["overall"])
    if absent:
        lines.insert(
            len(lines) - 1,
            "absent queries (the structure named is not in the image): their number, and the share answered "
            "with no box (correct rejections, in %); they are in n and miss, never in the accuracies",
        )
    names = [str(k) for groups in report["breakdowns"].values() for k in groups]
    width = max([len(n) + 2 for n in names] + [len(n) for n in BREAKDOWNS] + [8])
    header = f"{'':<{width}}" + "".join(f"{title:>{w + 1}}" for title, w in _columns(absent))
    lines += [header, "-" * len(header), _row("all", report["overall"], width, absent)]
    if "ceiling" in report:  # the ground truth through the format and back
        lines.append(_row("ceiling", report["ceiling"], width, absent))
    for name, groups in report["breakdowns"].items():
        lines.append(f"{name}")
        lines += [_row(f"  {key}", metrics, width, absent) for key, metrics in groups.items()]
    return "\n".join(lines)
