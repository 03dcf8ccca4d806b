"""What a radiologist would sign: the views and facts of whole runs on the shared CT (stored
RAS) and MR (stored LPS), on copies of both stored LAS and PIR, on the demo, and on the
photographs and radiographs, checked by :mod:`medground.audit` (which reads only what a run
wrote, through its own code) and by direct checks of the records:

* every target is visible in its stored image, and MR body pixels span the grey range;
* the midline lies within 10 mm of the spine, from the spine or from the body outline;
* every side-named structure gets its own side; a case whose names disagree with the
  computed sides gets no side at all, and says so;
* no organ is counted, ranked or asked for as "every", and an organ in pieces is one object
  with one box per visible piece;
* no size claim on an object the field of view cuts, and no millimetres without spacing;
* no direction the plane shown cannot show;
* no view on an edge slice or under the minimum side;
* queries name their target (or describe it so that nothing else fits), never mix patient
  sides with places in the image, say no image left/right on sagittal views, read as
  English, and are never repeated for one view, targets and attribute set, nor across a
  plane's slices (``medground.audit`` decides each);
* every label without a sample is in skipped.jsonl, and the card shows coverage and the
  laterality self-check.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medground import phantoms, render
from medground.anchors import find_anchors
from medground.audit import CLASSES, audit
from medground.cues import _midline
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.pipeline import RunConfig, load_run_config, run
from medground.terms import clinical_term
from medground.verify import extract_claims
from real_specs import ph2_spec

SPINE = ("vertebra", "spinal_cord", "intervertebral", "sacrum")


def _spec(shared: Path, folder: Path, kind: str, codes: str | None, label_edit: dict[str, str] | None = None) -> Path:
    """A spec for the shared CT or MR, stored as it is or reoriented to ``codes``."""
    name, image = ("ct_abdomen_totalseg", "ct.nii.gz") if kind == "CT" else ("mr_abdomen_totalseg", "mr.nii.gz")
    source = shared / name
    data = folder / f"{kind}-{codes or 'as-stored'}"
    data.mkdir(parents=True, exist_ok=True)
    for file in (image, "seg.nii.gz"):
        loaded = nib.load(source / file)
        if codes is not None:
            loaded = loaded.as_reoriented(
                nib.orientations.ornt_transform(
                    nib.orientations.io_orientation(loaded.affine), nib.orientations.axcodes2ornt(tuple(codes))
                )
            )
        nib.save(loaded, data / file)
    labels = {
        k: label_edit.get(v, v) if label_edit else v
        for k, v in json.loads((source / "labels.json").read_text()).items()
    }
    (data / "labels.json").write_text(json.dumps(labels))
    spec = data / "spec.toml"
    spec.write_text(
        f'name = "{kind.lower()}"\nmodality = "{kind}"\nbody_region = "abdomen"\nlabels_file = "labels.json"\n'
        f'[cases]\nimage = "{image}"\nmask = "seg.nii.gz"\n[render]\naxes = ["axial", "coronal", "sagittal"]\n'
        'slices = "spread:2"\n'
    )
    return spec


def _records(run_dir: Path, name: str) -> list[dict]:
    path = run_dir / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


@pytest.fixture(scope="module")
def volume_runs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Runs of the CT and MR, as stored and reoriented: name → (run folder, spec)."""
    folder = tmp_path_factory.mktemp("volumes")
    runs = {}
    for kind in ("CT", "MR"):
        for codes in (None, "LAS", "PIR"):
            spec = _spec(shared_data, folder, kind, codes)
            out = folder / f"run-{kind}-{codes or 'as-stored'}"
            run(RunConfig(datasets=(load_spec(spec),)), out, use_ray=False, progress=False)
            runs[f"{kind}-{codes or 'as-stored'}"] = (out, spec)
    return runs


@pytest.mark.parametrize("name", ["CT-as-stored", "CT-LAS", "CT-PIR", "MR-as-stored", "MR-LAS", "MR-PIR"])
def test_no_defect_a_radiologist_would_object_to(volume_runs, name: str) -> None:
    run_dir, spec = volume_runs[name]
    assert _records(run_dir, "samples.jsonl")
    counts = audit(run_dir, spec)
    assert counts == dict.fromkeys(CLASSES, 0), counts


@pytest.mark.parametrize("name", ["CT-as-stored", "CT-PIR", "MR-as-stored", "MR-LAS"])
def test_every_side_named_structure_gets_its_own_side(volume_runs, name: str) -> None:
    run_dir, _ = volume_runs[name]
    seen: dict[str, set[str]] = {}
    for sample in _records(run_dir, "samples.jsonl"):
        for target in sample["targets"]:
            if clinical_term(target["label"]).side:
                seen.setdefault(target["label"], set()).add(target["cues"]["laterality"])
    assert len(seen) >= 6
    for label, sides in seen.items():
        assert sides == {clinical_term(label).side}, (label, sides)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["laterality"] == {"midline_sources": {"spine": 1}, "withheld": []}


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_the_midline_lies_within_10_mm_of_the_spine(shared_data: Path, tmp_path: Path, kind: str) -> None:
    spec = load_spec(_spec(shared_data, tmp_path, kind, None))
    case = load_case(spec, find_cases(spec).cases[0])
    spine = np.isin(case.labels, [i for i, n in spec.labels.items() if n.startswith(SPINE)])
    world = case.image.world(np.argwhere(spine).astype(np.float64))
    body = render.body_mask(case.image, spec.modality)
    from_spine = _midline(case, body)
    # Without the spine's labels: the middle of the body outline, level by level.
    outline = replace(
        case, label_names={i: ("structure" if n.startswith(SPINE) else n) for i, n in case.label_names.items()}
    )
    from_body = _midline(outline, body)
    assert (from_spine.source, from_body.source) == ("spine", "body")
    for midline in (from_spine, from_body):
        offsets = np.abs(world[:, 0] - midline.at(world[:, 2]))
        assert float(np.median(offsets)) <= 10.0, (midline.source, float(np.median(offsets)))


def test_swapped_side_names_withhold_every_side(shared_data: Path, tmp_path: Path) -> None:
    swap = {"kidney_left": "kidney_right", "kidney_right": "kidney_left"}
    spec = _spec(shared_data, tmp_path, "CT", None, swap)
    out = tmp_path / "run"
    run(RunConfig(datasets=(load_spec(spec),)), out, use_ray=False, progress=False)
    samples = _records(out, "samples.jsonl")
    assert samples
    assert all(t["cues"]["laterality"] is None for s in samples for t in s["targets"])
    labels = list(load_spec(spec).labels.values())
    for sample in samples:  # no patient side is claimed, of the target or of what it is related to
        claims = extract_claims(sample["query"], labels, "abdomen")
        assert not claims.sides, sample["query"]
        assert not any(
            kind in ("left", "right") or name.split()[0] in ("left", "right") for kind, name in claims.relations
        ), sample["query"]
        assert all(clinical_term(name).side is None for kind, name in claims.relations), sample["query"]
    withheld = json.loads((out / "manifest.json").read_text())["laterality"]["withheld"]
    assert [c["label"] for c in withheld[0]["conflicts"]] == ["kidney_left", "kidney_right"]
    card = (out / "README.md").read_text()
    assert "Laterality self-check" in card and "kidney_left named left, lies right" in card


@pytest.mark.parametrize("name", ["CT-as-stored", "MR-PIR"])
def test_mr_and_ct_images_use_the_grey_range(volume_runs, name: str) -> None:
    run_dir, _ = volume_runs[name]
    from PIL import Image

    spreads = []
    for sample in _records(run_dir, "samples.jsonl")[:40]:
        pixels = np.asarray(Image.open(run_dir / sample["image"]).convert("L"))
        body = pixels[pixels > 0]
        spreads.append(np.percentile(body, 95) - np.percentile(body, 5))
    assert float(np.median(spreads)) >= 100, spreads


@pytest.mark.parametrize("name", ["CT-as-stored", "MR-LAS"])
def test_no_organ_is_counted_and_organs_in_pieces_are_one_object(volume_runs, name: str) -> None:
    run_dir, _ = volume_runs[name]
    pieces = 0
    for sample in _records(run_dir, "samples.jsonl"):
        kinds = {t["cues"]["kind"] for t in sample["targets"]}
        objects = {t["object_id"] for t in sample["targets"]}
        if sample["query_type"] == "multi_object":
            assert kinds != {"organ"} or (
                len(objects) == 2 and sample["referring_attributes"]["laterality"] == "bilateral"
            )
        else:
            assert len(objects) == 1
            parts = {t["part"] for t in sample["targets"]}
            assert parts == set(range(1, sample["targets"][0]["parts"] + 1))
            pieces += len(parts) > 1
        if "organ" in kinds:
            assert not sample["referring_attributes"].get("size_rank")
            # "every visible part of the colon" is one organ; "every kidney" would count organs.
            assert not re.search(r"\b(?:every|each)\b(?! (?:visible )?part)", sample["query"].lower())
    assert pieces  # some organ was seen in pieces and boxed piece by piece


@pytest.mark.parametrize("name", ["CT-as-stored", "MR-as-stored", "MR-PIR"])
def test_every_label_without_a_sample_says_why(volume_runs, name: str) -> None:
    run_dir, spec = volume_runs[name]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    coverage = manifest["coverage"]
    missing = {label for label, row in coverage.items() if row["cases_with_samples"] == 0}
    for label in missing:
        assert coverage[label]["reasons"], label
    skipped = _records(run_dir, "skipped.jsonl")
    explained = {f"{r['dataset']}/{r['label']}" for r in skipped if r["reason"] == "no_sample"}
    assert missing == explained
    card = (run_dir / "README.md").read_text()
    assert "## Coverage per label" in card
    assert all(f"| {label} |" in card for label in coverage)


def test_the_demo_passes_the_same_checks(tmp_path: Path) -> None:
    phantoms.demo_dataset(tmp_path / "demo")
    out = tmp_path / "run"
    run(load_run_config(tmp_path / "demo" / "run.toml"), out, use_ray=False, progress=False)
    assert audit(out, tmp_path / "demo" / "demo_ct" / "spec.toml") == dict.fromkeys(CLASSES, 0)


def test_the_demo_with_absent_queries_passes_the_same_checks(tmp_path: Path) -> None:
    """Absent queries ([synthesis] negatives) name their structure (no nameless query) and
    never repeat a query on a plane, as the audit counts them."""
    phantoms.demo_dataset(tmp_path / "demo", volumes=2, photos=1)
    config = tmp_path / "demo" / "run.toml"
    config.write_text(config.read_text() + "\n[synthesis]\nnegatives = true\n")
    out = tmp_path / "run"
    run(load_run_config(config), out, use_ray=False, progress=False)
    assert any(s["query_type"] == "absent" for s in _records(out, "samples.jsonl"))
    assert audit(out, tmp_path / "demo" / "demo_ct" / "spec.toml") == dict.fromkeys(CLASSES, 0)


@pytest.mark.parametrize(
    ("preset", "folder"),
    [("cxr_lung", "cxr_lung"), ("kvasir_seg", "endoscopy_kvasir")],
)
def test_photographs_and_radiographs_carry_no_millimetres(
    shared_data: Path, tmp_path: Path, preset: str, folder: str
) -> None:
    out = tmp_path / preset
    run(RunConfig(datasets=(load_preset(preset, shared_data / folder),)), out, use_ray=False, progress=False)
    samples = _records(out, "samples.jsonl")
    assert samples
    for sample in samples:
        for target in sample["targets"]:
            size = target["cues"]["size"]
            assert size["diameter_mm"] is None and size["area_mm2"] is None and size["volume_ml"] is None
        assert " mm" not in sample["query"] and "cm" not in sample["query"]
    assert audit(out) == dict.fromkeys(CLASSES, 0)


def test_ph2_names_the_diagnosis_and_carries_no_millimetres(shared_data: Path, tmp_path: Path) -> None:
    """PH2 with its diagnosis.tsv: every sample names its lesion's clinical diagnosis
    ("the melanoma", "the atypical nevus") as the table gives it, and no millimetres."""
    spec = load_spec(ph2_spec(shared_data, tmp_path))
    out = tmp_path / "run"
    run(RunConfig(datasets=(spec,)), out, use_ray=False, progress=False)
    samples = _records(out, "samples.jsonl")
    assert len(samples) >= 20
    codes = {"0": "common nevus", "1": "atypical nevus", "2": "melanoma"}
    rows = [line.split("\t") for line in (shared_data / "dermoscopy_ph2" / "diagnosis.tsv").read_text().splitlines()]
    diagnosis = {row[0]: codes[row[1]] for row in rows[1:]}
    assert {s["case_id"] for s in samples} == set(diagnosis)
    for sample in samples:
        assert sample["referring_attributes"]["diagnosis"] == diagnosis[sample["case_id"]]
        assert diagnosis[sample["case_id"]] in sample["query"]
        assert all(t["cues"]["size"]["diameter_mm"] is None for t in sample["targets"])
    assert audit(out) == dict.fromkeys(CLASSES, 0)


def test_a_liver_in_two_pieces_is_one_liver(tmp_path: Path) -> None:
    image, labels = phantoms.phantom_ct(3)
    liver = labels == 1
    cut = np.zeros_like(liver)
    cut[:, :, 11:13] = True  # a gap through the liver: two 3D components, one organ
    labels[liver & cut] = 0
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    (tmp_path / "spec.toml").write_text(
        'name = "split"\nmodality = "CT"\nbody_region = "abdomen"\n[cases]\nimage = "img.nii.gz"\n'
        'mask = "seg.nii.gz"\n[labels]\n1 = "liver"\n2 = "spleen"\n3 = "kidney_right"\n4 = "kidney_left"\n'
        '5 = "liver lesion"\n[render]\naxes = ["axial", "coronal"]\n'
    )
    spec = load_spec(tmp_path / "spec.toml")
    case = load_case(spec, find_cases(spec).cases[0])
    objects = find_anchors(case, spec)
    livers = [a for a in objects.anchors.values() if a.label == "liver"]
    assert len(livers) == 1 and livers[0].pieces == 2
    out = tmp_path / "run"
    run(RunConfig(datasets=(spec,)), out, use_ray=False, progress=False)
    queries = [s["query"].lower() for s in _records(out, "samples.jsonl") if s["targets"][0]["label"] == "liver"]
    assert queries and not any(w in q for q in queries for w in ("livers", "largest liver", "smallest liver"))
