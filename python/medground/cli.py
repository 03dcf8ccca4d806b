"""The ``medground`` command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np

from medground import __version__, geometry, phantoms
from medground.io import CaseError, DatasetSpec, SpecError, find_cases, list_presets, load_case, load_preset, load_specs, resolve_labels
from medground.generate import draft_case
from medground.io.inventory import describe_case, format_inventory, inventory


@click.group()
@click.version_option(__version__, prog_name="medground")
def main() -> None:
    """medground: verified referring-grounding data from medical segmentation masks."""


def _format_table(table: geometry.RegionTable, source: dict[int, int], limit: int) -> str:
    header = (
        f"{'id':>4} {'class':>5} {'voxels':>8} {'volume mm3':>11} {'centroid (z, y, x)':>22} "
        f"{'bbox_min':>15} {'bbox_max':>15} {'axes mm (major..minor)':>22} {'sphericity':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in list(table)[:limit]:
        centroid = ", ".join(f"{c:.1f}" for c in row["centroid"])
        axes = "/".join(f"{a:.1f}" for a in row["axis_lengths"])
        lines.append(
            f"{row['label']:>4} {source[row['label']]:>5} {row['voxel_count']:>8} {row['volume']:>11.1f} "
            f"{centroid:>22} {str(row['bbox_min'].tolist()):>15} {str(row['bbox_max'].tolist()):>15} "
            f"{axes:>22} {row['sphericity']:>10.3f}"
        )
    if len(table) > limit:
        lines.append(f"... {len(table) - limit} more")
    return "\n".join(lines)


def _resolve_specs(config: Path | None, preset: str | None, data: Path | None) -> list[DatasetSpec]:
    """The dataset specs named on the command line: a spec or run config, or a preset + --data."""
    if config is not None and preset is not None:
        raise click.UsageError("give CONFIG or --preset, not both")
    try:
        if preset is not None:
            return [load_preset(preset, data)]
        if config is None:
            raise click.UsageError("give a dataset spec or run config, or --preset NAME --data DIR")
        return load_specs(config, data=data)
    except SpecError as error:
        raise click.ClickException(str(error)) from error


_PRESET_HELP = "A shipped dataset preset (see `medground presets`); complete it with --data."
_DATA_HELP = "The dataset's folder (for --preset, or to override a spec's folder)."


@main.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--demo", is_flag=True, help="Run on a generated phantom volume instead of a config.")
@click.option("--preset", help=_PRESET_HELP)
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), help=_DATA_HELP)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write the results here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated phantom.")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows of the table to print.")
def run(config: Path | None, demo: bool, preset: str | None, data: Path | None, out: Path | None,
        seed: int, limit: int) -> None:
    """Run medground on CONFIG (or --preset NAME --data DIR), or with --demo on a phantom.

    This release reads datasets (check them with `medground inspect`) and runs the
    geometry demo: --demo labels the connected components of a seeded phantom CT-like
    volume (rotated ellipsoids, 3 x 0.8 x 0.8 mm voxels) and prints their region table.
    """
    if not demo:
        specs = _resolve_specs(config, preset, data)
        names = ", ".join(spec.name for spec in specs)
        raise click.UsageError(
            f"the dataset spec(s) {names} are valid, but sample generation lands with the pipeline; "
            "check what they find with `medground inspect`, or run `medground run --demo`"
        )
    if config is not None or preset is not None:
        raise click.UsageError("--demo runs on a generated phantom; drop CONFIG/--preset")
    spacing = (3.0, 0.8, 0.8)
    t0 = time.perf_counter()
    volume = phantoms.ellipsoids((96, 256, 256), 40, labels=3, radius=(3.0, 24.0), seed=seed)
    t1 = time.perf_counter()
    labels, n = geometry.connected_components(volume, 26, return_n=True)
    table = geometry.regionprops(labels, spacing)
    _ = table.surface_area
    # Which phantom class (voxel value) each component came from.
    pairs = geometry.overlap(labels, volume)
    source = {int(a): int(b) for a, b in zip(pairs.a, pairs.b)}
    t2 = time.perf_counter()
    click.echo(
        f"phantom {volume.shape} uint8, spacing {spacing} mm, seed {seed}: "
        f"{n} components (26-connected) in {1e3 * (t2 - t1):.1f} ms (generated in {t1 - t0:.1f} s)"
    )
    click.echo(_format_table(table, source, limit))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rows = {name: np.asarray(col).tolist() for name, col in table.to_dict().items()}
        rows["class"] = [source[int(label)] for label in table.label]
        (out / "regions.json").write_text(json.dumps({"spacing": spacing, "seed": seed, "regions": rows}))
        click.echo(f"wrote {out / 'regions.json'}")




@main.command()
def presets() -> None:
    """List the shipped dataset presets."""
    for name in list_presets():
        click.echo(name)


@main.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", help=_PRESET_HELP)
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), help=_DATA_HELP)
@click.option("--case", "case_id", help="Show one case in detail: its grid and each label's components.")
@click.option("--limit", type=int, help="Inspect at most this many cases (in case-id order).")
@click.option("--headers-only", is_flag=True, help="Read only image headers (fast); skip masks and labels.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a report.")
def inspect(config: Path | None, preset: str | None, data: Path | None, case_id: str | None,
            limit: int | None, headers_only: bool, as_json: bool) -> None:
    """What a dataset spec finds: cases, unpaired files, shapes, spacings, orientations, labels.

    Exits with status 1 when a case fails to load or nothing pairs, so that scripts can
    check a dataset before a long run.
    """
    specs = _resolve_specs(config, preset, data)
    failed = False
    reports = []
    for spec in specs:
        if case_id is not None:
            index = find_cases(spec)
            spec = resolve_labels(spec, index)
            matches = [files for files in index.cases if files.case_id == case_id]
            if not matches:
                raise click.ClickException(f"case {case_id!r} not found in {spec.name} ({len(index.cases)} cases)")
            try:
                case = load_case(spec, matches[0])
            except CaseError as error:
                raise click.ClickException(str(error)) from error
            click.echo(describe_case(case, spec))
            drafts = draft_case(case, spec)
            click.echo(f"\n{len(drafts.views)} view(s), {len(drafts.samples)} template draft(s), "
                       f"{len(drafts.skipped)} skipped (could not be singled out)")
            for sample in drafts.samples[:limit or 12]:
                where = "2D" if sample.view is None else f"{sample.view['axis']} {sample.view['slice_index']}"
                boxes = " ".join(str(t.bbox_xyxy) for t in sample.targets)
                click.echo(f"  [{where}] {sample.query_type:<12} {sample.query}  -> {boxes}")
            continue
        report = inventory(spec, limit=limit, read_masks=not headers_only)
        failed = failed or bool(report.failed) or not report.index.cases
        if as_json:
            reports.append(report.to_dict())
        else:
            click.echo(format_inventory(report))
    if as_json and reports:
        click.echo(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
