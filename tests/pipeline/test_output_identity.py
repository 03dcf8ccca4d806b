"""Speed work changes no output: the records and the decoded pixels of every image written for
the demo, the shared sample data and a dense instance image equal the digests recorded in
``golden_outputs.json``.

The digests are over ``samples.jsonl``, ``rejected.jsonl``, ``skipped.jsonl`` and
``errors.jsonl`` as bytes, and over every image's decoded pixels (so the PNG encoder's
compression level may change, the image may not). A change of output made on purpose
re-records them: ``python tests/pipeline/test_output_identity.py --update`` (then say why in
the commit).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medground import phantoms
from medground.io import load_preset, load_spec
from medground.pipeline import RunConfig, load_run_config, run

GOLDEN = Path(__file__).with_name("golden_outputs.json")
RECORDS = ("samples.jsonl", "rejected.jsonl", "skipped.jsonl", "errors.jsonl")


def digest(out: Path) -> dict[str, str]:
    found = {}
    for name in RECORDS:
        path = out / name
        found[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"
    pixels = hashlib.sha256()
    for path in sorted((out / "images").rglob("*.*")):
        pixels.update(str(path.relative_to(out)).encode())
        pixels.update(np.asarray(Image.open(path)).tobytes())
    found["image_pixels"] = pixels.hexdigest()
    return found


def nuclei_spec(folder: Path, count: int = 120, side: int = 384) -> Path:
    """A microscopy-like image with ``count`` separate nuclei: many objects in one view."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:side, 0:side]
    mask = np.zeros((side, side), np.uint8)
    cells = int(np.ceil(np.sqrt(count)))
    pitch = side / cells
    for cell in rng.permutation(cells * cells)[:count]:
        cy, cx = (cell // cells + 0.5) * pitch, (cell % cells + 0.5) * pitch
        radius = pitch * rng.uniform(0.15, 0.35)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius] = 255
    image = np.where(mask[..., None] > 0, (90, 60, 140), (232, 200, 222)).astype(np.float64)
    image += rng.normal(0, 6, image.shape)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "images" / "slide.png")
    Image.fromarray(mask).save(folder / "masks" / "slide.png")
    spec = folder / "nuclei.toml"
    spec.write_text(
        f'name = "nuclei"\nmodality = "microscopy"\nroot = "{folder}"\n[cases]\nimage = "images/{{case}}.png"\n'
        'mask = "masks/{case}.png"\nmask_mode = "binary"\n[labels]\n1 = "nucleus"\n'
    )
    return spec


def configs(tmp: Path, shared: Path | None) -> dict[str, RunConfig]:
    """The generated runs, or with ``shared`` the runs over the shared sample data."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.real_specs import ct_mr_spec, ph2_spec

    found = {}
    if shared is None:
        phantoms.demo_dataset(tmp / "demo")
        found["demo"] = load_run_config(tmp / "demo" / "run.toml")
        found["nuclei"] = RunConfig(datasets=(load_spec(nuclei_spec(tmp / "nuclei")),))
    else:
        found["ct"] = RunConfig(datasets=(load_spec(ct_mr_spec(shared, tmp, "CT")),))
        found["mr"] = RunConfig(datasets=(load_spec(ct_mr_spec(shared, tmp, "MR")),))
        found["cxr"] = RunConfig(datasets=(load_preset("cxr_lung", shared / "cxr_lung"),))
        found["kvasir"] = RunConfig(datasets=(load_preset("kvasir_seg", shared / "endoscopy_kvasir"),))
        found["ph2"] = RunConfig(datasets=(load_spec(ph2_spec(shared, tmp)),))
    return found


def outputs(tmp: Path, shared: Path | None) -> dict[str, dict[str, str]]:
    tmp.mkdir(parents=True, exist_ok=True)
    found = {}
    for name, config in configs(tmp, shared).items():
        run(config, tmp / f"out-{name}", use_ray=False, progress=False)
        found[name] = digest(tmp / f"out-{name}")
    return found


def test_demo_and_dense_instances_unchanged(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    for name, found in outputs(tmp_path, None).items():
        assert found == golden[name], f"{name}: outputs changed ({_which(found, golden[name])})"


def test_shared_data_unchanged(tmp_path: Path, shared_data: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    for name, found in outputs(tmp_path, shared_data).items():
        assert found == golden[name], f"{name}: outputs changed ({_which(found, golden[name])})"


def _which(found: dict[str, str], expected: dict[str, str]) -> str:
    return ", ".join(key for key in expected if found.get(key) != expected[key])


if __name__ == "__main__" and "--update" in sys.argv:
    import os
    import tempfile

    SHARED_DATA = Path(os.environ.get("MEDGROUND_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as folder:
        shared = SHARED_DATA if SHARED_DATA.is_dir() else None
        if shared is None:
            sys.exit(f"recording needs the shared sample data ({SHARED_DATA}); set MEDGROUND_SHARED_DATA")
        recorded = outputs(Path(folder) / "generated", None) | outputs(Path(folder) / "shared", shared)
        GOLDEN.write_text(json.dumps(recorded, indent=1) + "\n")
        print(f"recorded {GOLDEN} ({os.path.getsize(GOLDEN)} bytes)")
