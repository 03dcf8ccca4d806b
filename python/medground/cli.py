"""The ``medground`` command line."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from medground import __version__, phantoms
from medground.audit import audit as audit_run
from medground.audit import format_audit
from medground.backends import check_backend, make_backend
from medground.boxes import (
    CONVENTIONS,
    GROUNDING_FAMILIES,
    LLAMAFACTORY_MAX_PIXELS,
    LLAMAFACTORY_MIN_PIXELS,
    QWEN25_MAX_PIXELS,
    QWEN25_MIN_PIXELS,
    convention,
)
from medground.browse import build_site, serve
from medground.evaluate import (
    evaluate,
    format_baselines,
    format_report,
    load_ground_truth,
    load_predictions,
    resolve_convention,
    resolve_format,
    samples_file,
    score_baselines,
)
from medground.evaluate.volume import format_volume_report, load_volume_predictions, load_volume_truths, score_volumes
from medground.export import FORMATS as EXPORT_FORMATS
from medground.export import LAYOUTS as EXPORT_LAYOUTS
from medground.export import export, train_command
from medground.generate import draft_case
from medground.io import (
    CaseError,
    DatasetSpec,
    SpecError,
    find_cases,
    list_presets,
    load_case,
    load_preset,
    load_specs,
    resolve_labels,
)
from medground.io.inventory import describe_case, format_inventory, inventory
from medground.pipeline import load_run_config
from medground.pipeline import run as run_pipeline
from medground.pipeline.runner import RunSummary
from medground.predict import predict
from medground.records import dumps


@click.group()
@click.version_option(__version__, prog_name="medground")
def main() -> None:
    """medground: verified referring-grounding data from medical segmentation masks."""


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Bad input (``ValueError``: a ``SpecError``, an unreadable record) and a file the
    system refused (``OSError``: a read-only output folder, a full disk, a path through a
    file) end the command with one line naming the file and the problem, status 1, not a
    traceback."""
    try:
        yield
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        if error.filename is None or error.strerror is None:  # raised with a message of ours
            raise click.ClickException(str(error)) from error
        raise click.ClickException(f"{error.filename}: {error.strerror}") from error


def _inspect_case(specs: list[DatasetSpec], case_id: str, limit: int | None) -> None:
    """One case in detail: grid, components, and the cues and drafts of its views."""
    for spec in specs:
        index = find_cases(spec)
        spec = resolve_labels(spec, index)
        matches = [files for files in index.cases if files.case_id == case_id]
        if not matches:
            continue
        try:
            case = load_case(spec, matches[0])
        except CaseError as error:
            raise click.ClickException(str(error)) from error
        click.echo(describe_case(case, spec))
        drafts = draft_case(case, spec)
        midline = drafts.checks.get("midline")
        sides = drafts.checks.get("laterality") or {}
        where_midline = "n/a" if midline is None else f"{midline['x_mm']:.1f} mm from the {midline['source']}"
        click.echo(
            f"\nfacts ({len(drafts.views)} view(s); midline at x = {where_midline}"
            f"{'; sides withheld: ' + str(sides['conflicts']) if sides.get('withheld') else ''}):"
        )
        for view in drafts.views[: limit or 4]:
            record = view.view_record()
            where = "2D" if record is None else f"{record['axis']} {record['slice_index']}"
            for object_id, fact in drafts.facts[view.image_file].items():
                size = "" if fact["diameter_mm"] is None else f", {fact['diameter_mm']:.0f} mm"
                click.echo(
                    f"  [{where}] {fact['label']} #{object_id} {fact['bbox_xyxy']}: side {fact['laterality']}, "
                    f"{fact['position']}, {fact['shape']}, {fact['intensity']}{size}, within {fact['within']}, "
                    f"{fact['pieces']} piece(s)"
                )
        click.echo(f"\n{len(drafts.samples)} template draft(s), {len(drafts.skipped)} skipped (see the reasons below)")
        for sample in drafts.samples[: limit or 12]:
            where = "2D" if sample.view is None else f"{sample.view['axis']} {sample.view.get('slice_index', '')}"
            boxes = " ".join(str(t.bbox_3d if t.bbox_xyxy is None else t.bbox_xyxy) for t in sample.targets)
            click.echo(f"  [{where}] {sample.query_type:<12} {sample.query}  -> {boxes}")
        for skip in drafts.skipped[: limit or 12]:
            click.echo(
                f"  skipped {skip.get('label') or skip.get('labels')}: {skip['reason']} {skip.get('detail', '')}"
            )
        return
    names = ", ".join(spec.name for spec in specs)
    raise click.ClickException(f"case {case_id!r} not found in {names}")


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
@click.option(
    "--demo", is_flag=True, help="Generate a small phantom dataset (CT-like volumes and photographs) and run on it."
)
@click.option("--preset", help=_PRESET_HELP)
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), help=_DATA_HELP)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: medground-demo for --demo, else medground-out].",
)
@click.option("--ray-address", help="Join this Ray cluster (auto or HOST:PORT); default: a local Ray instance.")
@click.option("--no-ray", is_flag=True, help="Run without Ray: one case at a time in a supervised worker process.")
@click.option("--resume", is_flag=True, help="Continue a run in --out, skipping finished cases.")
@click.option("--limit", type=int, help="At most this many cases per dataset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthesizer (and of the demo data).")
@click.option("--quiet", is_flag=True, help="No progress line.")
def run(
    config: Path | None,
    demo: bool,
    preset: str | None,
    data: Path | None,
    out: Path | None,
    ray_address: str | None,
    no_ray: bool,
    resume: bool,
    limit: int | None,
    seed: int,
    quiet: bool,
) -> None:
    """Run the pipeline: dataset spec(s) in, verified grounding samples out.

    CONFIG is a dataset spec or a run config listing several; or use --preset NAME --data
    DIR; or --demo. Writes samples.jsonl, rejected.jsonl, errors.jsonl, images/,
    manifest.json and a dataset card (README.md, plots/) to --out.
    """
    if demo and (config is not None or preset is not None):
        raise click.UsageError("--demo runs on generated data; drop CONFIG/--preset")
    with _one_line_errors():
        if demo:
            out = out or Path("medground-demo")
            source = out / "source"
            if (out / "run.json").exists():
                resume = True  # running the demo again continues (and re-assembles) it
            elif not (source / "run.toml").exists():  # run.toml is written last: absent = unfinished
                if out.exists() and any(p.name != "source" for p in out.iterdir()):
                    raise click.ClickException(f"{out} is not empty; choose another --out for the demo")
                if source.exists():
                    shutil.rmtree(source)
                phantoms.demo_dataset(source, seed=seed)
            settings = load_run_config(source / "run.toml", seed=seed)
        else:
            if config is None and preset is None:
                raise click.UsageError("give a dataset spec or run config, or --preset NAME --data DIR, or --demo")
            if config is not None and preset is not None:
                raise click.UsageError("give CONFIG or --preset, not both")
            out = out or Path("medground-out")
            settings = load_run_config(config, preset=preset, data=data, seed=seed)
        summary = run_pipeline(
            settings,
            out,
            ray_address=ray_address,
            resume=resume,
            limit=limit,
            use_ray=not no_ray,
            progress=not quiet,
            allowed=("source",) if demo else (),
        )
    _report_run(summary, out)


def _report_run(summary: RunSummary, out: Path) -> None:
    """What a run made; exits non-zero when it made nothing (no case, every case failed,
    no sample), whatever the reason."""
    funnel = summary.manifest["funnel"]
    where = f" on {summary.nodes} Ray node(s)" if summary.nodes else ""
    click.echo(
        f"{summary.cases} cases ({summary.skipped_done} already done, {summary.failed} failed): "
        f"{summary.accepted} samples accepted, {summary.rejected} rejected, in {summary.seconds:.1f} s{where}"
    )
    if summary.dropped:
        click.echo(f"{summary.dropped} input file(s) gave no case (unpaired or ambiguous): see skipped.jsonl")
    click.echo(f"funnel: {funnel['drafts']} drafts -> " + " -> ".join(f"{k} {v}" for k, v in funnel["passed"].items()))
    for kind, stats in summary.model_stats.items():
        click.echo(
            f"{kind} ({stats['engine']}): {stats['requests']} requests in {stats['batches']} batches "
            f"(mean {stats['mean_batch']:.1f} of {stats['max_batch']}), engine busy "
            f"{100 * stats['engine_busy_share']:.0f}% of {stats['span_s']:.1f} s, "
            f"{stats['requests_per_s']:.1f} requests/s"
            + (f", {stats['retries']} retried batch(es)" if stats["retries"] else "")
        )
    click.echo(f"wrote {out}/samples.jsonl, rejected.jsonl, errors.jsonl, images/, manifest.json, README.md")
    # A run that made nothing is a failed run, whatever the reason: say so in the status.
    if summary.cases == 0:
        raise click.ClickException("no case found: check the datasets' folders and [cases] patterns")
    if summary.failed == summary.cases:
        raise click.ClickException(f"every case failed ({summary.failed}): see {out}/errors.jsonl")
    if summary.accepted == 0:
        raise click.ClickException(f"no case produced a sample: see {out}/rejected.jsonl and skipped.jsonl")


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(EXPORT_FORMATS)),
    help="A preset: a layout with its usual box convention (medground.export lists them).",
)
@click.option(
    "--layout",
    type=click.Choice(list(EXPORT_LAYOUTS)),
    help="The files and records a framework reads (instead of --format).",
)
@click.option(
    "--boxes",
    type=click.Choice(list(CONVENTIONS)),
    help="The box convention [default: the preset's or the layout's].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write [default: RUN_DIR/exports/FORMAT or RUN_DIR/exports/LAYOUT-BOXES].",
)
@click.option("--split", type=click.Choice(["train", "val", "validation", "test"]), help="Only this split.")
@click.option("--absolute", is_flag=True, help="Absolute image paths (default: relative to RUN_DIR).")
@click.option(
    "--min-pixels", type=int, default=QWEN25_MIN_PIXELS, show_default=True, help="Qwen2.5-VL processor min_pixels."
)
@click.option(
    "--max-pixels", type=int, default=QWEN25_MAX_PIXELS, show_default=True, help="Qwen2.5-VL processor max_pixels."
)
@click.option(
    "--image-max-pixels",
    type=click.IntRange(min=1),
    help=f"LLaMA-Factory's image_max_pixels: boxes are written for the image it shrinks to "
    f"[default: {LLAMAFACTORY_MAX_PIXELS} for sharegpt, none otherwise].",
)
@click.option(
    "--image-min-pixels",
    type=click.IntRange(min=1),
    default=LLAMAFACTORY_MIN_PIXELS,
    show_default=True,
    help="LLaMA-Factory's image_min_pixels (with --image-max-pixels).",
)
@click.option(
    "--pad-square/--no-pad-square",
    default=None,
    help="Boxes relative to the image padded to a centred square (LLaVA-1.5) [default: for llava only].",
)
def export_command(
    run_dir: Path,
    fmt: str | None,
    layout: str | None,
    boxes: str | None,
    out: Path | None,
    split: str | None,
    absolute: bool,
    min_pixels: int,
    max_pixels: int,
    image_max_pixels: int | None,
    image_min_pixels: int,
    pad_square: bool | None,
) -> None:
    """Write a run's samples.jsonl in a training or evaluation layout and box convention,
    with the framework's setup files, and print the command that trains on it."""
    with _one_line_errors():  # no samples.jsonl, a bad option value, a read-only --out
        written = export(
            run_dir,
            fmt,
            layout=layout,
            boxes=boxes,
            out=out,
            split=split,
            absolute=absolute,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            image_max_pixels=image_max_pixels,
            image_min_pixels=image_min_pixels,
            pad_square=pad_square,
        )
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"train: {train_command(written[-1].parent)}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the site [default: RUN_DIR/browse]."
)
@click.option(
    "--serve",
    "serve_it",
    is_flag=True,
    help="Serve it (its files and the images it shows, nothing else) on 127.0.0.1 until interrupted.",
)
@click.option("--port", type=int, default=8765, show_default=True, help="Port for --serve (0: any free port).")
def browse(run_dir: Path, out: Path | None, serve_it: bool, port: int) -> None:
    """Build a static site to look at a run: samples, boxes, cues, rejections."""
    with _one_line_errors():  # no samples.jsonl, a line of it that cannot be read, a read-only --out
        index = build_site(run_dir, out)
    click.echo(f"wrote {index} (open it in a browser; works from file://)")
    if serve_it:
        try:
            server = serve(index.parent, run_dir, port)
        except ValueError as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"serving {server.site_url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            server.shutdown()
            server.server_close()


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
def inspect(
    config: Path | None,
    preset: str | None,
    data: Path | None,
    case_id: str | None,
    limit: int | None,
    headers_only: bool,
    as_json: bool,
) -> None:
    """What a dataset spec finds: cases, unpaired files, shapes, spacings, orientations, labels.

    Exits with status 1 when a case fails to load or nothing pairs, so that scripts can
    check a dataset before a long run.
    """
    specs = _resolve_specs(config, preset, data)
    failed = False
    reports = []
    if case_id is not None:
        _inspect_case(specs, case_id, limit)
        return
    for spec in specs:
        report = inventory(spec, limit=limit, read_masks=not headers_only)
        failed = failed or bool(report.failed) or not report.index.cases
        if as_json:
            reports.append(report.to_dict())
        else:
            click.echo(format_inventory(report))
    if as_json and reports:
        click.echo(dumps(reports if len(reports) > 1 else reports[0], indent=2))
    if failed:
        sys.exit(1)


@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def audit(runs: tuple[str, ...], as_json: bool) -> None:
    """Count what a radiologist would object to in run folders, defect class by defect class.

    RUNS are run folders, each optionally followed by =SPEC (its dataset spec), which also
    counts labels present in the label maps that left no trace in the run.
    """
    results = {}
    for item in runs:
        run_dir, _, spec = item.partition("=")
        if not Path(run_dir, "samples.jsonl").is_file():
            raise click.ClickException(f"{run_dir}: no samples.jsonl (a run folder written by `medground run`)")
        try:
            results[run_dir] = audit_run(Path(run_dir), Path(spec) if spec else None)
        except (SpecError, CaseError) as error:
            raise click.ClickException(str(error)) from error
    click.echo(dumps(results, indent=1) if as_json else format_audit(results))


@main.command("eval")
@click.option(
    "--gt",
    "gt",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="An output folder of `medground run`, or its samples.jsonl.",
)
@click.option(
    "--pred",
    "pred",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Predictions JSONL: {id, text} or {id, bbox} or {id, bboxes} per line (optional with --baselines).",
)
@click.option(
    "--format",
    "format_name",
    type=click.Choice(list(GROUNDING_FAMILIES)),
    help="The predictions' coordinate convention (default: the one the predictions record).",
)
@click.option(
    "--min-pixels",
    type=click.IntRange(min=1),
    help=f"qwen2.5-vl only: the processor's min_pixels [default: recorded by predict, else {QWEN25_MIN_PIXELS}].",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    help=f"qwen2.5-vl only: the processor's max_pixels [default: recorded by predict, else {QWEN25_MAX_PIXELS}].",
)
@click.option(
    "--split", default=None, help="Score only the samples of this split (train, val or validation, test; default: all)."
)
@click.option(
    "--baselines",
    is_flag=True,
    help="Also score answers that never read the query (label prior, largest object of the label, "
    "image centre, random object) on the test split (or --split), the priors learned on the train split.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-object baseline.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_command(
    gt: Path,
    pred: Path | None,
    format_name: str | None,
    min_pixels: int | None,
    max_pixels: int | None,
    split: str | None,
    baselines: bool,
    seed: int,
    as_json: bool,
) -> None:
    """Score grounding predictions against the samples of an output folder.

    The coordinate convention is fixed for the whole run by --format (or recorded in the
    predictions by `medground predict`, with the image limits it assumed), never guessed
    per prediction. The `ceiling` row scores the ground truth itself written in the format
    and read back: the best the format's rounding lets a perfect model score.

    --baselines scores, with the same metrics, answers that never read the query, so a
    model's score reads against them: the label's prior box from the train split, the
    largest object of the named label in the image, a box of the prior's size in the
    image centre, and a seeded random object of the image.
    """
    if pred is None and not baselines:
        raise click.UsageError("give --pred (predictions to score), or --baselines, or both")
    shortcut = None
    if baselines:
        try:
            shortcut = score_baselines(load_ground_truth(gt), split=split or "test", seed=seed)
        except ValueError as error:
            raise click.ClickException(str(error)) from error
        if pred is None:
            shortcut.update(gt=str(samples_file(gt)))
            click.echo(dumps(shortcut, indent=2) if as_json else format_baselines(shortcut))
            return
    assert pred is not None
    report, parts = _score_predictions(gt, pred, split, format_name, min_pixels, max_pixels)
    report.update(gt=str(samples_file(gt)), pred=str(pred), split=split)
    if shortcut is not None:
        report["baselines"] = shortcut
    parts += [format_baselines(shortcut)] if shortcut is not None else []
    text = "\n\n".join(parts)
    click.echo(dumps(report, indent=2) if as_json else text)


def _score_predictions(
    gt: Path, pred: Path, split: str | None, format_name: str | None, min_pixels: int | None, max_pixels: int | None
) -> tuple[dict[str, Any], list[str]]:
    """The eval report of a predictions file, and its text parts: the 2D samples in the
    predictions' convention, the volume samples in 3D (``report["volume"]``)."""
    try:
        truths = load_ground_truth(gt, split=split)
        volumes = load_volume_truths(gt, split=split)
        volume_ids = {v.id for v in volumes}
        predictions = load_predictions(pred, skip=volume_ids)
        volume_predictions = load_volume_predictions(pred, volume_ids)
        # A file of 3D answers only (a volume model's) is scored on the volume samples only.
        truths = truths if predictions or not volume_predictions else []
        if truths:
            name = resolve_format(predictions, pred, format_name)
            fmt = resolve_convention(predictions, pred, name, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if not truths and not volumes:
        where = f" with split {split!r}" if split is not None else ""
        raise click.ClickException(f"{samples_file(gt)}: no samples{where} to score")
    report: dict[str, Any] = {}
    if truths:
        try:
            report = evaluate(truths, predictions, fmt, format_name=name)
        except ValueError as error:  # an image Qwen2.5-VL's processor would refuse (aspect ratio)
            raise click.ClickException(str(error)) from error
    if volumes:  # volume samples: 3D boxes in the voxel convention, scored on their own
        report["volume"] = score_volumes(volumes, volume_predictions)
    parts = [format_report(report)] if truths else []
    parts += [format_volume_report(report["volume"])] if volumes else []
    return report, parts


@main.command("predict")
@click.option(
    "--gt",
    "gt",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="An output folder of `medground run` (or its samples.jsonl).",
)
@click.option("--split", default="test", show_default=True, help="The split to predict; 'all' for every sample.")
@click.option(
    "--backend",
    required=True,
    type=click.Choice(["vllm", "openai"]),
    help="openai: an OpenAI-compatible server at --base-url; vllm: load --model in this process.",
)
@click.option("--model", required=True, help="The model (name on the server, or what vLLM loads).")
@click.option(
    "--format",
    "format_name",
    required=True,
    type=click.Choice(list(GROUNDING_FAMILIES)),
    help="The model family: chooses its grounding prompt and is recorded for eval.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Predictions JSONL; an existing file is resumed (its ids are skipped).",
)
@click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True, help="openai: the API root.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="openai: the environment variable holding the API key (sent if set).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Queries per backend call (and between writes).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="openai: requests in flight at once.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="openai: retries of a failed request (timeouts, 429, 5xx) before it counts as failed.",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Answer length limit.")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="openai: the wall time one attempt may take, all of it (connecting, waiting, reading).",
)
@click.option(
    "--min-pixels",
    type=click.IntRange(min=1),
    default=QWEN25_MIN_PIXELS,
    show_default=True,
    help="qwen2.5-vl: the processor's min_pixels the model sees images with (recorded for eval; vllm: applied).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=QWEN25_MAX_PIXELS,
    show_default=True,
    help="qwen2.5-vl: the processor's max_pixels (the released checkpoints'; recorded for eval; vllm: applied).",
)
def predict_command(
    gt: Path,
    split: str,
    backend: str,
    model: str,
    format_name: str,
    out: Path,
    base_url: str,
    api_key_env: str,
    batch_size: int,
    concurrency: int,
    max_retries: int,
    max_tokens: int,
    timeout: float,
    min_pixels: int,
    max_pixels: int,
) -> None:
    """Ask a VLM to ground each query of an output folder; `medground eval` scores the answers.

    The backend is checked once before any query is sent (openai: the server answers and
    lists --model; vllm: vLLM installed and --model there to load): if it cannot be used,
    the command stops with the reason and status 1, writing nothing.

    Resumable: answers are appended to --out as they come, and ids already there are
    skipped, so rerunning the same command retries only what is left.
    """
    try:
        truths = load_ground_truth(gt, split=None if split == "all" else split)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if not truths:
        raise click.ClickException(
            f"{samples_file(gt)}: no samples with split {split!r} (use --split all for every sample)"
        )
    try:
        boxes = convention(format_name, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    settings: dict[str, object] = {"backend": backend, "model": model, "temperature": 0.0, "max_tokens": max_tokens}
    if backend == "openai":
        settings.update(base_url=base_url, concurrency=concurrency, max_retries=max_retries, timeout_s=timeout)
        if os.environ.get(api_key_env):
            settings["api_key_env"] = api_key_env
    else:
        settings["limit_mm_per_prompt"] = {"image": 1}
        # the processor sees images as the boxes assume (Qwen2.5-VL's min_pixels, max_pixels)
        settings.update({"mm_processor_kwargs": boxes.image_fields()} if boxes.image_fields() else {})
    try:
        # Once, before any request (and before vLLM loads the model): a server that is down,
        # a model it does not serve, vLLM missing or a model folder that is not there stop
        # here, instead of every query failing on its own.
        check_backend(settings)
        client = make_backend(settings)
    except (ImportError, ValueError, FileNotFoundError) as error:  # BackendUnavailable is a ValueError
        raise click.ClickException(str(error)) from error

    def progress(done: int, todo: int) -> None:
        click.echo(f"{done}/{todo} asked", err=True)

    try:
        with _one_line_errors():  # a bad record, an --out that cannot be written
            summary = predict(
                truths,
                client,
                out,
                format_name=format_name,
                model=model,
                boxes=boxes,
                batch_size=batch_size,
                progress=progress,
            )
    finally:
        client.close()
    click.echo(
        f"{summary.total} samples: {summary.answered} answered now, {summary.skipped} already in {out}, "
        f"{summary.failed} without answer"
    )
    if summary.failed:
        shown = "\n".join(f"  {line}" for line in summary.errors[:5])
        raise click.ClickException(
            f"{summary.failed} queries got no answer; rerun the same command to retry them:\n{shown}"
        )


if __name__ == "__main__":
    sys.exit(main())
