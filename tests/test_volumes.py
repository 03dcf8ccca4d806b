"""Volume samples (``[render] axes = ["volume"]``): the whole volume as the image, on the
real CT and MR and the demo's phantom CT — boxes equal to their masks in voxels of the
stored RAS+ copy and in millimetres, sides from the affine, the same samples from a copy
of the case stored LPS or PIR, verification that measures every 3D claim again, and the
run, export and eval of them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pytest

from medground.boxes import voxel_box_to_ras
from medground.generate import draft_case, verify_drafts
from medground.io import find_cases, load_case, load_spec
from medground.io.errors import SpecError
from medground.records import Sample, sample_schema
from medground.terms import clinical_term
from medground.verify import Verifier
from medground.volumes import VOLUME
from orientations import reoriented_case
from real_specs import ct_mr_spec


def _volume_spec(path: Path, axes: str = '["volume"]') -> Path:
    text = path.read_text()
    start = text.index("[render]")
    out = path.with_name(path.stem + "-volume.toml")
    out.write_text(text[:start] + f"[render]\naxes = {axes}\n")
    return out


def _spec(source: str, shared: Path | None, tmp_path: Path, demo: Path | None = None):
    if source == "demo":
        assert demo is not None
        return load_spec(_volume_spec(demo / "demo_ct" / "spec.toml"))
    assert shared is not None
    return load_spec(_volume_spec(ct_mr_spec(shared, tmp_path, source)))


def _accepted(spec, case):
    drafts = draft_case(case, spec)
    accepted, rejected, _ = verify_drafts(drafts, spec)
    return drafts, accepted, rejected


@pytest.mark.parametrize("source", ["CT", "MR"])
def test_volume_samples_box_their_masks_in_voxels_and_millimetres(shared_data: Path, tmp_path: Path, source) -> None:
    """Every target's ``bbox_3d`` is the box of its object's voxels in the objects file the
    run writes (read back with nibabel), its ``bbox_3d_ras`` is that box through the volume
    file's affine and the box of the same voxels in the file as the dataset stores it;
    side-named structures get their own side; every record is valid against the schema."""
    spec = _spec(source, shared_data, tmp_path)
    case = load_case(spec, find_cases(spec).cases[0])
    drafts, accepted, rejected = _accepted(spec, case)
    scene = drafts.volume
    assert scene is not None and not drafts.views
    assert len(accepted) >= 20 and len(rejected) <= len(accepted) // 10
    files = scene.files()
    (tmp_path / "v.nii.gz").write_bytes(files[scene.image_file])
    (tmp_path / "o.nii.gz").write_bytes(files[scene.objects_file])
    image, objects = nib.load(tmp_path / "v.nii.gz"), nib.load(tmp_path / "o.nii.gz")
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S") and np.allclose(image.affine, objects.affine)
    assert np.array_equal(np.asarray(image.dataobj), scene.array)
    ids = np.asarray(objects.dataobj)
    sided = 0
    for sample in accepted:
        record = sample.to_dict()
        jsonschema.validate(record, sample_schema())
        assert sample.view is not None and sample.view["axis"] == VOLUME and sample.image == scene.image_file
        assert "image" not in sample.query.lower()
        for target in sample.targets:
            assert target.bbox_xyxy is None and target.mask_rle is None
            assert target.mask_3d == {"file": scene.objects_file, "value": target.object_id}
            where = np.argwhere(ids == target.object_id)
            assert target.bbox_3d == [where.min(axis=0).tolist(), (where.max(axis=0) + 1).tolist()]
            assert target.area_px == len(where)
            assert target.bbox_3d_ras == voxel_box_to_ras(*target.bbox_3d, image.affine)
            anchor = scene.objects.anchors[target.object_id]
            assert target.bbox_3d_ras == voxel_box_to_ras(anchor.bbox_min, anchor.bbox_max, case.image.affine)
            named = clinical_term(target.label, spec.body_region).side
            if named is not None and target.cues["laterality"] in ("left", "right"):
                assert target.cues["laterality"] == named, (target.label, target.cues["laterality"])
                sided += 1
    assert sided >= 4


def test_the_demo_gives_volume_samples_from_its_lps_and_ras_phantoms(demo_data: Path, tmp_path: Path) -> None:
    """The demo's phantom CTs (stored RAS and LPS by turns) give volume samples of their
    liver lesions: counted and ranked over the whole volume, boxes equal to the masks."""
    spec = _spec("demo", None, tmp_path, demo_data)
    queries = []
    for files in find_cases(spec).cases[:2]:
        case = load_case(spec, files)
        drafts, accepted, _ = _accepted(spec, case)
        assert drafts.volume is not None and accepted
        ids = drafts.volume.object_map
        for sample in accepted:
            for target in sample.targets:
                where = np.argwhere(ids == target.object_id)
                assert target.bbox_3d == [where.min(axis=0).tolist(), (where.max(axis=0) + 1).tolist()]
        queries += [s.query for s in accepted]
    assert any("lesion" in q.lower() for q in queries)


@pytest.mark.parametrize("codes", [("L", "P", "S"), ("P", "I", "R")])
def test_a_copy_stored_another_way_gives_the_same_volume_samples(shared_data: Path, tmp_path: Path, codes) -> None:
    """The shared CT stored LPS or PIR: the same volume file (values on the RAS+ grid, and
    its affine), the same queries, the same boxes in voxels of that file and in millimetres."""
    spec = _spec("CT", shared_data, tmp_path)
    stored = load_case(spec, find_cases(spec).cases[0])
    copy = reoriented_case(stored, codes)
    assert copy.image.axcodes == codes

    def made(case):
        drafts, accepted, _ = _accepted(spec, case)
        assert drafts.volume is not None
        samples = {(s.query, tuple(tuple(map(tuple, t.bbox_3d)) for t in s.targets)) for s in accepted}
        ras = {s.query: [t.bbox_3d_ras for t in s.targets] for s in accepted}
        return drafts.volume, samples, ras

    scene, samples, ras = made(stored)
    other_scene, other_samples, other_ras = made(copy)
    assert np.array_equal(scene.array, other_scene.array)
    assert np.array_equal(scene.object_map, other_scene.object_map)
    assert np.allclose(scene.affine, other_scene.affine, atol=1e-6)
    assert samples == other_samples and len(samples) >= 20
    for query, boxes in ras.items():
        assert np.allclose(boxes, other_ras[query], atol=0.011), query


def _one(accepted: list[Sample], query_type: str, word: str) -> Sample:
    return next(s for s in accepted if s.query_type == query_type and f" {word} " in f" {s.query.lower()} ")


def test_verification_measures_the_3d_claims_again(shared_data: Path, tmp_path: Path) -> None:
    """A volume sample's claims are checked against the volume and objects files, not the
    cues: a moved box, the opposite direction, a place in an image or the wrong side fail,
    each with its reason; the sample as made passes and no visual judge is asked."""
    spec = _spec("CT", shared_data, tmp_path)
    case = load_case(spec, find_cases(spec).cases[0])
    drafts, accepted, _ = _accepted(spec, case)
    assert all("volume sample" in s.verification["visual"]["info"]["skipped"] for s in accepted)
    verifier = Verifier()
    from medground.generate import volume_measurements

    assert drafts.volume is not None
    measures = volume_measurements(drafts.volume, drafts, spec)
    facts = drafts.facts[drafts.volume.image_file]

    def verdict(sample: Sample) -> tuple[str | None, str | None]:
        _, failed = verifier.verify(replace(sample, verification={}), facts, measures)
        return (None, None) if failed is None else (failed.stage, failed.reason)

    relational = next(s for s in accepted if s.query_type == "relational" and " superior " in f" {s.query} ")
    assert verdict(relational) == (None, None)
    flipped = replace(relational, query=relational.query.replace("superior", "inferior"))
    assert verdict(flipped)[1] in ("relation_mismatch", "facts_disagree")
    target = relational.targets[0]
    low, high = target.bbox_3d
    moved = replace(relational, targets=[replace(target, bbox_3d=[[low[0] + 1, *low[1:]], high])])
    assert verdict(moved) == ("rules", "facts_disagree")
    placed = replace(relational, query=relational.query.rstrip(".?") + " in the upper part of the image.")
    assert verdict(placed) == ("rules", "unsayable_in_volume")
    right = _one(accepted, "direct", "right")
    wrong_side = replace(right, query=right.query.replace("right", "left"))
    assert verdict(wrong_side)[0] == "rules"


def test_render_axes_take_volume_and_name_the_choices(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    base = (
        'name = "d"\nmodality = "CT"\nroot = "."\n[cases]\nimage = "*.nii.gz"\nmask = "m/*.nii.gz"\n'
        '[labels]\n1 = "liver"\n'
    )
    spec.write_text(base + '[render]\naxes = ["axial", "volume"]\n')
    assert load_spec(spec).render.axes == ("axial", "volume")
    spec.write_text(base + '[render]\naxes = ["volumes"]\n')
    with pytest.raises(SpecError, match="axial, coronal, sagittal, volume"):
        load_spec(spec)


def test_a_run_with_volume_samples_writes_exports_and_scores_them(shared_data: Path, tmp_path: Path) -> None:
    """``medground run`` on the shared CT with slices and the volume: the volume and objects
    files are written once, the card counts the volume samples, m3d exports them (its
    volume the run's RAS+ copy), 2D layouts leave them out and say so, and eval scores
    3D answers in voxels (a perfect answer 100%, a missing one a miss)."""
    from click.testing import CliRunner

    from medground.cli import main
    from medground.export import export

    spec = _volume_spec(ct_mr_spec(shared_data, tmp_path, "CT"), '["axial", "volume"]')
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(spec), "--out", str(out), "--no-ray"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    volumes = [r for r in rows if (r["view"] or {}).get("axis") == VOLUME]
    assert volumes and len(volumes) < len(rows)
    assert (out / volumes[0]["image"]).is_file() and (out / volumes[0]["view"]["objects"]).is_file()
    assert f"{len(volumes)} volume samples" in (out / "README.md").read_text()
    export(out, layout="m3d")
    m3d = [json.loads(line) for line in (out / "exports" / "m3d-pixel" / "m3d.jsonl").read_text().splitlines()]
    assert m3d and all(r["volume"] == volumes[0]["image"] for r in m3d)
    by_id = {r["id"]: r for r in volumes}
    for record in m3d:
        sample = by_id[record["id"]]
        assert [b["bbox_voxel"] for b in record["boxes"]] == [t["bbox_3d"] for t in sample["targets"]]
    export(out, "refcoco")
    about = json.loads((out / "exports" / "refcoco" / "export.json").read_text())
    assert about["left_out"]["volume"] == len(volumes)
    single = [r for r in volumes if len(r["targets"]) == 1]
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "".join(
            json.dumps({"id": r["id"], "bbox_3d": [*r["targets"][0]["bbox_3d"][0], *r["targets"][0]["bbox_3d"][1]]})
            + "\n"
            for r in single[1:]
        )
    )
    result = runner.invoke(main, ["eval", "--gt", str(out), "--pred", str(pred), "--split", "train", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["volume"]
    overall = report["overall"]
    assert overall["samples"] == len(volumes) and overall["missing"] == len(volumes) - len(single) + 1
    assert overall["single"]["acc@0.5"] == pytest.approx((len(single) - 1) / len(single))
    assert report["ceiling"]["single"]["acc@0.25"] == 1.0
