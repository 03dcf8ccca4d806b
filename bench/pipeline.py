"""Throughput of the CPU path (load → anchors → cues → references → template → verify →
PNG) on the demo phantoms and on ../shared/data, in-process on one core, with where the
time goes. Writes bench/pipeline.json; bench/report.py adds it to bench/README.md.

Run: python bench/pipeline.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from medground import phantoms
from medground.io import load_preset, load_spec
from medground.pipeline import RunConfig
from medground.pipeline.runner import plan
from medground.pipeline.worker import process_case

SHARED = Path(os.environ.get("MEDGROUND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_specs(folder: Path) -> list:
    specs = []
    for name, image, modality in (
        ("ct_abdomen_totalseg", "ct.nii.gz", "CT"),
        ("mr_abdomen_totalseg", "mr.nii.gz", "MR"),
    ):
        path = folder / f"{name}.toml"
        path.write_text(
            f'name = "{name}"\nmodality = "{modality}"\nbody_region = "abdomen"\nroot = "{SHARED / name}"\n'
            f'labels_file = "labels.json"\n[cases]\nimage = "{image}"\nmask = "seg.nii.gz"\n'
            '[render]\naxes = ["axial", "coronal"]\nslices = "spread:2"\n'
        )
        specs.append(load_spec(path))
    specs.append(load_preset("cxr_lung", SHARED / "cxr_lung"))
    specs.append(load_preset("kvasir_seg", SHARED / "endoscopy_kvasir"))
    path = folder / "ph2.toml"
    path.write_text(
        f'name = "ph2"\nmodality = "dermoscopy"\nroot = "{SHARED / "dermoscopy_ph2"}"\n[cases]\n'
        'image = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n1 = "skin lesion"\n'
    )
    specs.append(load_spec(path))
    return specs


def measure(name: str, config: RunConfig, repeat: int) -> dict:
    work = plan(config)
    runs = []
    stages: dict[str, list[float]] = defaultdict(list)
    samples = 0
    for _ in range(repeat):
        start = time.perf_counter()
        samples = 0
        for spec, files in work:
            result = process_case(spec, files)
            samples += len(result.accepted)
            for stage, seconds in result.seconds.items():
                stages[stage].append(seconds)
        runs.append(time.perf_counter() - start)
    wall = statistics.median(runs)
    total = {stage: sum(values) / repeat for stage, values in stages.items()}
    return {
        "name": name,
        "cases": len(work),
        "samples": samples,
        "seconds": wall,
        "cases_per_s": len(work) / wall,
        "samples_per_s": samples / wall,
        "share": {stage: seconds / sum(total.values()) for stage, seconds in total.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("pipeline.json")))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        from medground.pipeline import load_run_config

        phantoms.demo_dataset(folder / "demo")
        results.append(
            measure("demo (4 CT phantoms, 4 photos)", load_run_config(folder / "demo" / "run.toml"), args.repeat)
        )
        if SHARED.is_dir():
            for spec in shared_specs(folder):
                results.append(measure(f"shared: {spec.name}", RunConfig(datasets=(spec,)), args.repeat))
    Path(args.out).write_text(json.dumps(results, indent=2))
    for r in results:
        share = ", ".join(f"{k} {v:.0%}" for k, v in r["share"].items())
        print(
            f"{r['name']}: {r['cases']} cases, {r['samples']} samples, {r['cases_per_s']:.2f} cases/s, "
            f"{r['samples_per_s']:.0f} samples/s ({share})"
        )


if __name__ == "__main__":
    main()
