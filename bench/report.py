"""Writes bench/README.md from a pytest-benchmark JSON: medians and ratios per group."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _median(groups: dict[str, list[dict]], group: str, library: str, threads: int) -> float:
    """The median time of ``library`` on ``threads`` threads in ``group`` (NaN when not measured)."""
    for r in groups.get(group, []):
        if r["extra_info"].get("library", "").startswith(library) and r["extra_info"].get("threads") == threads:
            return float(r["stats"]["median"])
    return float("nan")


def _introduction(data: dict) -> list[str]:
    """What was measured, on which machine, and how to reproduce it."""
    info = data.get("machine_info", {})
    return [
        "# Benchmarks",
        "",
        "The geometry core measured side by side with the reference libraries in one run of",
        "`make bench` (pytest-benchmark, 1 warm-up then 7 rounds unless noted; medians).",
        "Volumes come from the seeded generators in `bench/volumes.py`:",
        "**clean** 256×512×512 uint8 with 120 rotated ellipsoids labelled 1..5 (6.8% foreground);",
        "**noisy** clean + 0.05% random labelled voxels; **salt** 1% random binary voxels;",
        "**labelmap** 300×512×512 uint16 with 72 organ-like labels (22.8% foreground).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {info.get('python_version', platform.python_version())}, "
        f"{data.get('datetime', '')[:10]}. The machine is shared: read ratios, not absolute times.",
        "",
        "Reproduce: `make bench` (runs `bench/memory.py`, then the suite into `bench/results.json`, "
        "then writes this file).",
        "",
    ]


def _targets_section(groups: dict[str, list[dict]]) -> list[str]:
    """The speed-ups and times the Rust geometry core was asked for, measured."""
    median = partial(_median, groups)
    targets = [
        (
            "cc26 clean: cc3d ÷ medground, 1 thread",
            median("cc26 clean", "cc3d", 1) / median("cc26 clean", "medground", 1),
            "≥ 1",
        ),
        (
            "cc26 clean: cc3d ÷ medground, 2 threads",
            median("cc26 clean", "cc3d", 1) / median("cc26 clean", "medground", 2),
            "≥ 1.5",
        ),
        (
            "cc26 noisy: cc3d ÷ medground, 1 thread",
            median("cc26 noisy", "cc3d", 1) / median("cc26 noisy", "medground", 1),
            "≥ 1",
        ),
        (
            "cc26 noisy: cc3d ÷ medground, 2 threads",
            median("cc26 noisy", "cc3d", 1) / median("cc26 noisy", "medground", 2),
            "≥ 1.5",
        ),
        (
            "cc26 + statistics clean: cc3d ÷ medground, 2 threads",
            median("cc26 + statistics clean", "cc3d", 1) / median("cc26 + statistics clean", "medground", 2),
            "≥ 5",
        ),
        (
            "regionprops labelmap: SimpleITK ÷ medground, 2 threads each",
            median("regionprops labelmap", "SimpleITK", 2) / median("regionprops labelmap", "medground", 2),
            "≥ 2",
        ),
        ("regionprops salt, medground 2 threads (s)", median("regionprops salt", "medground", 2), "< 0.5 s"),
    ]
    lines = ["## Targets (issue: Rust geometry core)", "", "| measure | value | target |", "|---|---|---|"]
    lines += [f"| {name} | {value:.2f} | {goal} |" for name, value, goal in targets]
    lines.append("")
    return lines


def _memory_section(memory: Path) -> list[str]:
    """The peak-memory table of ``bench/memory.py`` (nothing when it was not run)."""
    if not memory.exists():
        return []
    lines = [
        "## Peak memory beyond input and output",
        "",
        "`bench/memory.py`: fresh process per call, peak resident set reset before the call;",
        "extra = peak − resident before the call − the output's size (runs, union-find, region tables).",
        "",
        "| volume | call | input (MiB) | output (MiB) | extra (MiB) | objects |",
        "|---|---|---|---|---|---|",
    ]
    for m in json.loads(memory.read_text()):
        lines.append(
            f"| {m['volume']} | {m['call']} | {m['input_mb']:.0f} | {m['output_mb']:.1f} | "
            f"{m['extra_mb']:.1f} | {m['objects']} |"
        )
    lines.append("")
    return lines


def _pipeline_section(pipeline: Path) -> list[str]:
    """The throughput table of ``bench/pipeline.py`` (nothing when it was not run)."""
    if not pipeline.exists():
        return []
    lines = [
        "## Pipeline throughput (CPU path, template backend)",
        "",
        "`bench/pipeline.py`: every case in-process on one core (load → anchors → cues → references →",
        "template queries → verification → PNG), median of 3 passes; the share of time per stage.",
        "",
        "| data | cases | samples | cases/s | samples/s | load | draft | verify | render |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in json.loads(pipeline.read_text()):
        share = r["share"]
        lines.append(
            f"| {r['name']} | {r['cases']} | {r['samples']} | {r['cases_per_s']:.2f} | {r['samples_per_s']:.0f} | "
            + " | ".join(f"{share.get(k, 0):.0%}" for k in ("load", "draft", "verify", "render"))
            + " |"
        )
    lines.append("")
    return lines


REALSIZE_TITLE = "## Real-size cases against their floor"


def realsize_section(r: dict) -> list[str]:
    """The tables of ``bench/realsize_bench.py``: whole pipeline vs floor, memory, scaling, Ray."""
    lines = [
        REALSIZE_TITLE,
        "",
        "`bench/realsize_bench.py` (cases from the seeded `bench/realsize.py`): one case in-process,",
        f"median of {r.get('repeat', 3)} passes, each against its floor measured beside it on one core (pipeline,",
        "floor and one core in turn, pass by pass; the ratios are the medians of the passes' ratios) —",
        "reading and inflating both files with ISA-L, `connected_components` + `regionprops` on the label",
        "map, and encoding the run's PNGs. *pipeline* is the wall time as a user runs it (the core's kernels and",
        "the PNG encoder, which runs ahead of verification, may use the second core); *one core* is the",
        "same with `medground.set_num_threads(1)`, the cost each of Ray's one-CPU workers pays. Peak",
        "memory: a fresh process with a worker's allocator setting (freed memory kept for the next case)",
        "runs the case three times, its own high-water mark (`VmHWM`) beyond its RSS after imports.",
        "Every figure with the pipeline's page setting (`pipeline.budget.small_pages`: ordinary pages,",
        "since fresh transparent huge pages cost 1.9 s per 157 MB on this machine) and, as in the run's",
        "workers, freed memory kept for the next case (`pipeline.budget.keep_freed_memory`).",
        "",
        "| case | samples | pipeline (s) | load | draft | verify | render | one core (s) | floor (s): read + cc + PNG"
        " | pipeline ÷ floor (passes) | one core ÷ floor | peak extra RSS ÷ input |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        f, st, m = c["floor"], c["stages"], c["memory"]
        spread = ""
        if c.get("passes"):  # the passes' own ratios, lowest to highest
            each = sorted(p["seconds"] / p["floor"] for p in c["passes"])
            spread = f" ({each[0]:.1f}–{each[-1]:.1f})"
        lines.append(
            f"| {c['name']} | {c['samples']} | {c['seconds']:.2f} | "
            + " | ".join(f"{st.get(k, 0):.2f}" for k in ("load", "draft", "verify", "render"))
            + f" | {c.get('one_core_seconds', float('nan')):.2f}"
            + f" | {f['total']:.2f}: {f['read']:.2f} + {f['components']:.2f} + {f['png']:.2f} ({f['pngs']} PNGs)"
            f" | **{c['ratio']:.1f}×**{spread} | {c.get('one_core_ratio', float('nan')):.1f}×"
            f" | {m['extra'] / 2**20:.0f} MiB ÷ {m['input_bytes'] / 2**20:.0f} MiB ="
            f" {m['ratio']:.1f}× |"
        )
    if all("png_zlib1" in c["floor"] for c in r["cases"]):
        lines += [
            "",
            "The floor's PNGs are encoded as the run encodes them (the core's fdeflate encoder). With zlib"
            " at level 1 (Pillow), the run's encoder until 2026-12-08, the same images take "
            + ", ".join(f"{c['floor']['png_zlib1']:.2f} s" for c in r["cases"])
            + "; against a floor with those, the pipeline is "
            + ", ".join(f"{c['ratio_zlib1_floor']:.1f}×" for c in r["cases"])
            + ".",
        ]
    if r.get("photos"):
        p = r["photos"]
        lines += ["", f"Dermoscopy photographs at 3060×2288 (3 cases): {p['seconds']:.2f} s, {p['samples']} samples."]
    lines += [
        "",
        "| CT grid (no lesions) | voxels | seconds |",
        "|---|---|---|",
        *(f"| {'×'.join(map(str, s['shape']))} | {s['voxels']:,} | {s['seconds']:.2f} |" for s in r["sizes"]),
        "",
        f"Slope of log(time) on log(voxels): **{r['size_slope']:.2f}** (1 is linear).",
        "",
        "| nuclei in one 1024² view | seconds | draft | verify |",
        "|---|---|---|---|",
        *(
            f"| {i['objects']} | {i['seconds']:.2f} | {i['stages'].get('draft', 0):.2f} | "
            f"{i['stages'].get('verify', 0):.2f} |"
            for i in r["instances"]
        ),
        "",
        f"Slope of log(time) on log(objects): **{r['instance_slope']:.2f}**.",
        "",
    ]
    ray = r.get("ray")
    if ray:
        lines += [
            f"Ray, local instance on {r['machine']['cpus']} CPUs, {ray['copies']} copies of the CT case through"
            f" `medground.pipeline.run`: {ray['ray_cases_per_s']:.3f} cases/s against"
            f" {ray['inprocess_cases_per_s']:.3f} in-process on one core: **{ray['ratio_to_twice_inprocess']:.0%}**"
            f" of twice that rate (each worker holds one CPU); samples identical: {ray['same_samples']}.",
            "",
        ]
        if "side_by_side_cases_per_s" in ray:
            lines += [
                f"Two one-core processes side by side, half the copies each, in-process:"
                f" {ray['side_by_side_cases_per_s']:.3f} cases/s (what the two CPUs give when both are busy;"
                f" a one-core run alone has the other CPU to itself): Ray reaches"
                f" **{ray['ratio_to_side_by_side']:.0%}** of it.",
                "",
            ]
    lines += [f"Measured {r['machine']['date']}. Reproduce: `python bench/realsize_bench.py`.", ""]
    return lines


def replace_section(text: str, section: list[str]) -> str:
    """``text`` (a README) with the section that has ``section``'s heading replaced by it, or
    with it inserted before the first group table when absent."""
    lines = text.splitlines()
    title = section[0]
    if title in lines:
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section
    else:
        at = next((i for i, line in enumerate(lines) if line.startswith("## Pipeline throughput")), len(lines))
        lines[at:at] = section
    return "\n".join(lines) + "\n"


def _group_section(group: str, rows: list[dict]) -> list[str]:
    """One benchmark group's libraries, fastest first, against medground's best median."""
    ours = [r for r in rows if r["extra_info"].get("library") == "medground"]
    best = min((r["stats"]["median"] for r in ours), default=None)
    lines = [
        f"## {group}",
        "",
        "| library | threads | median (ms) | IQR (ms) | vs medground best |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["stats"]["median"]):
        med = r["stats"]["median"]
        ratio = f"{med / best:.2f}×" if best else ""
        lines.append(
            f"| {r['extra_info'].get('library')} | {r['extra_info'].get('threads')} | {1e3 * med:.1f} | "
            f"{1e3 * r['stats']['iqr']:.1f} | {ratio} |"
        )
    lines.append("")
    return lines


def main(src: str, dst: str) -> None:
    data = json.loads(Path(src).read_text())
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    lines = _introduction(data) + _targets_section(groups)
    lines += _memory_section(Path(src).with_name("memory.json"))
    realsize = Path(src).with_name("realsize.json")
    if realsize.exists():
        lines += realsize_section(json.loads(realsize.read_text()))
    lines += _pipeline_section(Path(src).with_name("pipeline.json"))
    for group in sorted(groups):
        lines += _group_section(group, groups[group])
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
