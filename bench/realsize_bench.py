"""The pipeline on real-size inputs, side by side with its floor, in one run.

Cases come from the seeded generators of ``bench/realsize.py``: the shared CT resampled to
512×512×300 (41 structures) without and with 50 liver lesions, dermoscopy photographs at
camera size, slides with 50/200/1,000 nuclei, and the CT at three grid sizes.

For each CT case, in the same run, pass by pass in turn (after a pass that warms up):
- **pipeline**: ``process_case`` in-process (load → anchors → views → cues → references →
  template → verification → PNG), and the share of each stage: as a user runs it (the
  core's kernels, and the PNG encoder ahead of verification, may use the second core);
- **floor**: reading and inflating both files (ISA-L, the fastest inflate installed),
  ``connected_components`` + ``regionprops`` on the label map, and encoding the PNGs the
  run writes (at the run's PNG level); the pipeline cannot do less than this;
- **one core**: the pipeline again with ``set_num_threads(1)``;
medians of ``--repeat`` passes, and the ratios as the median of each pass's ratio to the
floor measured beside it (the machine is shared: its speed drifts over a run);
- **peak memory**: a fresh process with a worker's allocator setting (freed memory kept)
  runs the case three times; peak RSS beyond the RSS after imports, against the
  decompressed input size.

Then the cost against size (three grids) and against objects in one view (50/200/1,000
nuclei) with the log-log slope, and the throughput of a local Ray instance on 2 CPUs
against twice the one-core in-process rate on sixteen copies of the CT case (each Ray worker
holds one CPU and runs its kernels on one thread).

Writes bench/realsize.json and its section of bench/README.md.

Run: python bench/realsize_bench.py [--repeat 5] [--no-ray]
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realsize  # noqa: E402
from medground import geometry  # noqa: E402
from medground.io import load_spec  # noqa: E402
from medground.pipeline import RunConfig  # noqa: E402
from medground.pipeline.budget import keep_freed_memory, settle_collector, small_pages  # noqa: E402
from medground.pipeline.runner import plan  # noqa: E402
from medground.pipeline.worker import process_case  # noqa: E402
from medground.render import png_bytes  # noqa: E402
from report import realsize_section, replace_section  # noqa: E402

HERE = Path(__file__).resolve().parent


def _work(spec_path: Path) -> list:
    return plan(RunConfig(datasets=(load_spec(spec_path),)))


def one_core(measure):
    """``measure()`` with the core's kernels on one thread (and images encoded in turn)."""
    geometry.set_num_threads(1)
    try:
        return measure()
    finally:
        geometry.set_num_threads(0)


def pipeline(spec_path: Path, repeat: int) -> dict:
    """Median wall time of the case(s) in-process, samples, and the stage split."""
    work = _work(spec_path)
    walls, stages, samples, images = [], {}, 0, {}
    for _ in range(repeat):
        start = time.perf_counter()
        samples = 0
        for spec, files in work:
            result = process_case(spec, files)
            if result.error:
                raise RuntimeError(result.error)
            samples += len(result.accepted)
            images.update(result.images)
            for stage, seconds in result.seconds.items():
                stages.setdefault(stage, []).append(seconds)
        walls.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(walls),
        "samples": samples,
        "stages": {k: statistics.median(v) for k, v in stages.items()},
        "images": images,
    }


def floor(case_dir: Path, images: dict[str, bytes]) -> Callable[[], dict]:
    """The least any pipeline does for the case: read + inflate, components + regions, PNGs.
    Its inputs (the label map, the run's images decoded) are prepared once; the returned
    call measures one pass."""
    import nibabel as nib
    from isal import igzip
    from PIL import Image

    decoded = [np.asarray(Image.open(io.BytesIO(png))) for png in images.values()]
    labels = np.asanyarray(nib.load(case_dir / "seg.nii.gz").dataobj)

    def measure() -> dict:
        out: dict = {}
        start = time.perf_counter()
        for name in ("ct.nii.gz", "seg.nii.gz"):
            igzip.decompress((case_dir / name).read_bytes())
        out["read"] = time.perf_counter() - start
        start = time.perf_counter()
        geometry.regionprops(geometry.connected_components(labels), contours=False)
        out["components"] = time.perf_counter() - start
        start = time.perf_counter()
        for image in decoded:
            png_bytes(image)
        out["png"] = time.perf_counter() - start
        out["total"] = out["read"] + out["components"] + out["png"]
        # For comparison only (not in the floor): the same images at zlib level 1 with
        # Pillow, the run's encoder until the core encoded them.
        start = time.perf_counter()
        for image in decoded:
            Image.fromarray(image).save(io.BytesIO(), format="PNG", compress_level=1)
        out["png_zlib1"] = time.perf_counter() - start
        out["pngs"] = len(decoded)
        return out

    return measure


def against_floor(spec_path: Path, repeat: int) -> dict:
    """The case's pipeline, on both cores and on one, and its floor, measured in turn pass by
    pass (after a pass that warms up and gives the PNGs the floor encodes): each pass's
    ratio sets the pipeline against a floor measured seconds apart, so a machine that speeds
    up or slows down over the run moves both alike. Medians of the times and of the ratios."""
    bottom_pass = floor(spec_path.parent / "case0", pipeline(spec_path, 1)["images"])
    both, alone, floors = [], [], []
    for _ in range(repeat):
        both.append(pipeline(spec_path, 1))
        floors.append(bottom_pass())
        alone.append(one_core(functools.partial(pipeline, spec_path, 1)))
    median = statistics.median
    bottom = {key: median(f[key] for f in floors) for key in ("read", "components", "png", "total", "png_zlib1")}
    bottom["pngs"] = floors[0]["pngs"]
    return {
        "seconds": median(p["seconds"] for p in both),
        "samples": both[0]["samples"],
        "stages": {key: median(p["stages"][key] for p in both) for key in both[0]["stages"]},
        "one_core_seconds": median(p["seconds"] for p in alone),
        "floor": bottom,
        "ratio": median(p["seconds"] / f["total"] for p, f in zip(both, floors, strict=True)),
        "one_core_ratio": median(p["seconds"] / f["total"] for p, f in zip(alone, floors, strict=True)),
        "ratio_zlib1_floor": median(
            p["seconds"] / (f["total"] - f["png"] + f["png_zlib1"]) for p, f in zip(both, floors, strict=True)
        ),
        "passes": [
            {"seconds": p["seconds"], "one_core_seconds": a["seconds"], "floor": f["total"]}
            for p, a, f in zip(both, alone, floors, strict=True)
        ],
    }


_PEAK = """
import resource, sys, json
import numpy as np
from medground.io import load_spec
from medground.pipeline import RunConfig
from medground.pipeline.budget import keep_freed_memory
from medground.pipeline.runner import plan
from medground.pipeline.worker import process_case
from medground.io.case import load_case
work = plan(RunConfig(datasets=(load_spec(sys.argv[1]),)))
case = load_case(*work[0])  # the readers' imports, and the decompressed size
size = case.image.array.nbytes + case.labels.nbytes
del case
import gc; gc.collect()
before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
keep_freed_memory()  # from here on as a worker process: what a case frees stays for the next
# The peak from here on: the kernel's high-water mark of this process's own memory, reset
# now. (Not ru_maxrss: Linux carries the spawning parent's peak across fork and exec, so a
# child of a large parent would report the parent's size.)
open("/proc/self/clear_refs", "w").write("5")
for _ in range(3):  # a worker's cases one after another: the kept memory reused, not added to
    process_case(*work[0])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak = int(status["VmHWM"].split()[0]) * 1024
print(json.dumps({"input_bytes": size, "rss_before": before, "peak_rss": peak}))
"""


def peak_memory(spec_path: Path) -> dict:
    """Peak RSS of a worker's cases in a fresh process, beyond the process's RSS after
    imports and a first load of the case (to know its decompressed size, then freed): the
    case three times with the workers' allocator setting (freed memory kept, so the peak is
    what the worker holds between cases too); the kernel's high-water mark (``VmHWM``)."""
    done = subprocess.run([sys.executable, "-c", _PEAK, str(spec_path)], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    found["extra"] = found["peak_rss"] - found["rss_before"]
    found["ratio"] = found["extra"] / found["input_bytes"]
    return found


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): 1 is linear."""
    lx, ly = np.log(xs), np.log(ys)
    return float(np.polyfit(lx, ly, 1)[0])


_ONE_CORE_RUN = """
import sys
from pathlib import Path
from medground import geometry
from medground.io import load_spec
from medground.pipeline import RunConfig, run

if __name__ == "__main__":
    geometry.set_num_threads(1)
    run(RunConfig(datasets=(load_spec(Path(sys.argv[1])),)), Path(sys.argv[2]), use_ray=False, progress=False)
"""


def _copies(spec_path: Path, folder: Path, indices: range) -> Path:
    """A dataset of copies of the case (hard links; a copy across file systems: the
    pipeline does not follow a symbolic link out of a dataset's folder); its spec's path."""
    source = load_spec(spec_path)
    root = folder / "data"
    root.mkdir(parents=True)
    (root / "labels.json").write_text((Path(source.root) / "labels.json").read_text())
    for index in indices:
        (root / f"case{index}").mkdir()
        for file in (Path(source.root) / "case0").iterdir():
            try:
                os.link(file, root / f"case{index}" / file.name)
            except OSError:
                shutil.copy(file, root / f"case{index}" / file.name)
    spec = folder / "spec.toml"
    spec.write_text(spec_path.read_text().replace(f'root = "{source.root}"', f'root = "{root}"'))
    return spec


def side_by_side(spec_path: Path, copies: int, tmp: Path) -> float:
    """Seconds for two processes, started together, each running half of ``copies`` copies
    in-process on one core: what the two CPUs give without Ray (each one-core run then
    shares the machine's memory and caches with the other, as Ray's two workers do)."""
    halves = [range(0, copies // 2), range(copies // 2, copies)]
    specs = [_copies(spec_path, tmp / f"half{k}", half) for k, half in enumerate(halves)]
    start = time.perf_counter()
    runs = [
        subprocess.Popen([sys.executable, "-c", _ONE_CORE_RUN, str(spec), str(tmp / f"half{k}" / "out")])
        for k, spec in enumerate(specs)
    ]
    if any(r.wait() != 0 for r in runs):
        raise RuntimeError("a side-by-side run failed")
    return time.perf_counter() - start


def ray_throughput(spec_path: Path, copies: int) -> dict:
    """Cases per second on ``copies`` copies of a case: in-process on one core, in two
    one-core processes side by side, and with a local Ray instance on 2 CPUs (started
    before the clock), through ``medground.pipeline.run``."""
    import ray

    from medground.pipeline import run

    (HERE / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=HERE / ".cache") as tmp:
        spec = _copies(spec_path, Path(tmp), range(copies))
        config = RunConfig(datasets=(load_spec(spec),))
        both = side_by_side(spec_path, copies, Path(tmp) / "sides")
        start = time.perf_counter()
        # The rate of one core: what each of Ray's one-CPU workers can at best reach.
        one_core(lambda: run(config, Path(tmp) / "inprocess", use_ray=False, progress=False))
        inprocess = time.perf_counter() - start
        ray.init(num_cpus=2, logging_level="WARNING", log_to_driver=False)
        try:
            start = time.perf_counter()
            run(config, Path(tmp) / "ray", use_ray=True, progress=False)
            with_ray = time.perf_counter() - start
        finally:
            ray.shutdown()
        outputs = [(Path(tmp) / name / "samples.jsonl").read_bytes() for name in ("inprocess", "ray")]
        same = outputs[0] == outputs[1]
        cases = {json.loads(line)["case_id"] for line in outputs[0].splitlines()}
        if len(cases) != copies:
            raise RuntimeError(f"{len(cases)} of {copies} cases gave samples: the run did not read them all")
    return {
        "copies": copies,
        "inprocess_cases_per_s": copies / inprocess,
        "ray_cases_per_s": copies / with_ray,
        "ratio_to_twice_inprocess": (copies / with_ray) / (2 * copies / inprocess),
        "side_by_side_cases_per_s": copies / both,
        "ratio_to_side_by_side": (copies / with_ray) / (copies / both),
        "same_samples": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", default=str(HERE / "realsize.json"))
    args = parser.parse_args()
    results: dict = {"cases": [], "sizes": [], "instances": [], "photos": None, "ray": None, "repeat": args.repeat}
    # The pipeline's own page setting (process_case sets it too) for every measurement, the
    # floor's included: both sides allocate alike. The collector and the allocator as in the
    # run's workers (imports set aside, freed memory kept for the next case): the in-process
    # cases stand for a worker's, and the floor allocates alike.
    small_pages()
    settle_collector()
    keep_freed_memory()

    for lesions in (0, 50):
        spec_path = realsize.ct(lesions=lesions)
        measured = against_floor(spec_path, args.repeat)
        memory = peak_memory(spec_path)
        row = {"name": f"CT 512×512×300, 41 structures, {lesions} lesions", **measured, "memory": memory}
        results["cases"].append(row)
        print(json.dumps({k: v for k, v in row.items()}, default=str), flush=True)

    photos = pipeline(realsize.photos(), args.repeat)
    photos.pop("images")
    results["photos"] = photos

    for shape in ((128, 128, 75), (256, 256, 150), (512, 512, 300)):
        measured = pipeline(realsize.ct(shape, lesions=0), args.repeat)
        results["sizes"].append({"shape": shape, "voxels": math.prod(shape), "seconds": measured["seconds"]})
    results["size_slope"] = slope([r["voxels"] for r in results["sizes"]], [r["seconds"] for r in results["sizes"]])

    for count in (50, 200, 1000):
        measured = pipeline(realsize.nuclei(count), args.repeat)
        results["instances"].append({"objects": count, "seconds": measured["seconds"], "stages": measured["stages"]})
    results["instance_slope"] = slope(
        [r["objects"] for r in results["instances"]], [r["seconds"] for r in results["instances"]]
    )

    if not args.no_ray:
        results["ray"] = ray_throughput(realsize.ct(lesions=0), copies=16)

    results["machine"] = {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    readme = HERE / "README.md"
    readme.write_text(replace_section(readme.read_text(), realsize_section(results)))
    print(json.dumps({k: v for k, v in results.items() if k != "cases"}, indent=1, default=str))


if __name__ == "__main__":
    main()
