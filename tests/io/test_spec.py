"""Dataset specs: parsing, path safety, case discovery and the shipped presets."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medground.io import (
    CaseError,
    SpecError,
    find_cases,
    list_presets,
    load_case,
    load_preset,
    load_spec,
    load_specs,
    resolve_labels,
)
from medground.io.inventory import format_inventory, inventory


def write_spec(folder: Path, text: str, name: str = "spec.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine), path)
    return path


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


MINIMAL = """
name = "toy"
modality = "CT"
[cases]
image = "img/{case}.nii.gz"
mask = "seg/{case}.nii.gz"
[labels]
1 = "liver"
"""


def test_minimal_spec_defaults(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, MINIMAL))
    assert spec.root == tmp_path.resolve()
    assert spec.display == "radiological" and spec.body_region == "unspecified"
    assert spec.cases.mask_mode == "labelmap" and spec.labels == {1: "liver"}
    assert spec.render.axes == ("axial",) and spec.render.slices == "max_area"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('modality = "CT"', 'modality = "XRAY"'), "modality must be one of"),
        (("[labels]", "colour = 1\n[labels]"), "unknown key(s) in [cases]: colour"),
        (("img/{case}.nii.gz", "../outside/{case}.nii.gz"), "outside the dataset folder"),
        (("img/{case}.nii.gz", "img/../../{case}.nii.gz"), "outside the dataset folder"),
        (("img/{case}.nii.gz", "/abs/{case}.nii.gz"), "must be relative"),
        (("img/{case}.nii.gz", "img/{patient}.nii.gz"), "unknown placeholder {patient}"),
        (("seg/{case}.nii.gz", "seg/x.nii.gz"), "must contain {case}"),
        (('name = "toy"', 'name = "a b"'), "name 'a b'"),
        (('[labels]\n1 = "liver"', '[labels]\n1 = "liver"\n2 = "liver"\n[render]\nslices = "spread:0"'), "spread:K"),
        (('[labels]\n1 = "liver"', '[labels]\n1 = "liver"\n[render]\nwindow = "lungs"'), "unknown window 'lungs'"),
        (('[labels]\n1 = "liver"', '[labels]\n1 = "liver"\n[render]\naxes = ["transverse"]'), "axes must be"),
        (('[labels]\n1 = "liver"', ""), "no labels"),
        (('name = "toy"', 'name = "toy"\nlabels_file = "l.json"'), "not both"),
    ],
)
def test_bad_specs_name_the_file_and_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write_spec(tmp_path, MINIMAL.replace(*edit))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_binary_jpeg_masks_need_a_threshold(tmp_path: Path) -> None:
    text = MINIMAL.replace("seg/{case}.nii.gz", "seg/{case}.jpg").replace("[labels]", 'mask_mode = "binary"\n[labels]')
    with pytest.raises(SpecError, match="mask_threshold"):
        load_spec(write_spec(tmp_path, text))
    load_spec(write_spec(tmp_path, text.replace('mask_mode = "binary"', 'mask_mode = "binary"\nmask_threshold = 127')))


def test_window_only_for_ct(tmp_path: Path) -> None:
    text = MINIMAL.replace('"CT"', '"MR"') + '[render]\nwindow = "lung"\n'
    with pytest.raises(SpecError, match="percentiles"):
        load_spec(write_spec(tmp_path, text))


def test_find_cases_pairs_and_reports_unpaired(tmp_path: Path) -> None:
    volume = np.zeros((4, 4, 3), np.int16)
    for case in ("a01", "a02", "a03"):
        nifti(tmp_path / "img" / f"{case}.nii.gz", volume)
    nifti(tmp_path / "seg" / "a01.nii.gz", volume.astype(np.uint8))
    nifti(tmp_path / "seg" / "a02.nii.gz", volume.astype(np.uint8))
    nifti(tmp_path / "seg" / "zz.nii.gz", volume.astype(np.uint8))
    index = find_cases(load_spec(write_spec(tmp_path, MINIMAL)))
    assert [c.case_id for c in index.cases] == ["a01", "a02"]
    assert index.cases[0].masks == (tmp_path.resolve() / "seg" / "a01.nii.gz",)
    assert index.unpaired_images == [tmp_path.resolve() / "img" / "a03.nii.gz"]
    assert index.unpaired_masks == [tmp_path.resolve() / "seg" / "zz.nii.gz"]
    assert [c.case_id for c in find_cases(load_spec(write_spec(tmp_path, MINIMAL)), limit=1).cases] == ["a01"]


def test_repeated_case_recursive_glob_exclude_regex_and_patients(tmp_path: Path) -> None:
    volume = np.zeros((4, 4, 3), np.int16)
    for case in ("P1-0", "P1-1", "P2-0"):
        nifti(tmp_path / "batch" / case / f"{case}_img.nii.gz", volume)
        nifti(tmp_path / "batch" / case / f"{case}_seg.nii.gz", volume.astype(np.uint8))
    nifti(tmp_path / "batch" / "P3-0" / "P3-0_img.nii.gz", volume)  # excluded below
    nifti(tmp_path / "batch" / "P1-0" / "P9-9_img.nii.gz", volume)  # {case} repeats: must not match
    text = """
name = "nested"
modality = "MR"
[cases]
image = "**/{case}/{case}_img.nii.gz"
mask = "**/{case}/{case}_seg.nii.gz"
patient_regex = "^(P\\\\d+)-"
exclude = ["P3-*"]
case_regex = "^P[12]"
[labels]
1 = "tumor"
"""
    index = find_cases(load_spec(write_spec(tmp_path, text)))
    assert [(c.case_id, c.patient_id) for c in index.cases] == [("P1-0", "P1"), ("P1-1", "P1"), ("P2-0", "P2")]
    assert not index.unpaired_images and not index.problems


def test_single_case_folder_and_ambiguous_images(tmp_path: Path) -> None:
    volume = np.zeros((4, 4, 3), np.int16)
    nifti(tmp_path / "ct.nii.gz", volume)
    nifti(tmp_path / "seg.nii.gz", volume.astype(np.uint8))
    text = MINIMAL.replace("img/{case}.nii.gz", "ct.nii.gz").replace("seg/{case}.nii.gz", "seg.nii.gz")
    index = find_cases(load_spec(write_spec(tmp_path, text)))
    assert [c.case_id for c in index.cases] == ["ct"]
    text = MINIMAL.replace("img/{case}.nii.gz", "*.nii.gz").replace("seg/{case}.nii.gz", "seg.nii.gz")
    index = find_cases(load_spec(write_spec(tmp_path, text)))
    assert not index.cases and "has no {case}" in index.problems[0]


def test_files_leading_out_of_the_dataset_folder_are_refused(tmp_path: Path) -> None:
    volume, labels = np.zeros((4, 4, 3), np.int16), np.zeros((4, 4, 3), np.uint8)
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for case in ("a01", "a02", "a03"):
        nifti(data / "seg" / f"{case}.nii.gz", labels)
    nifti(data / "img" / "real" / "a01.nii.gz", volume)
    nifti(elsewhere / "group" / "a02.nii.gz", volume)
    nifti(elsewhere / "a04.nii.gz", volume)
    nifti(elsewhere / "seg04.nii.gz", labels)
    (data / "img" / "far").symlink_to(elsewhere / "group")  # a folder on the path leads out
    (data / "img" / "real" / "a04.nii.gz").symlink_to(elsewhere / "a04.nii.gz")  # the file leads out
    (data / "seg" / "a04.nii.gz").symlink_to(elsewhere / "seg04.nii.gz")
    (data / "img" / "real" / "a03.nii.gz").symlink_to(data / "img" / "real" / "a03.nii.gz")  # a loop
    spec = load_spec(write_spec(data, MINIMAL.replace("img/{case}", "img/*/{case}")))
    index = find_cases(spec)
    root = data.resolve()
    assert [c.case_id for c in index.cases] == ["a01"]
    assert index.outside == [
        root / "img" / "far" / "a02.nii.gz",
        root / "img" / "real" / "a03.nii.gz",
        root / "img" / "real" / "a04.nii.gz",
        root / "seg" / "a04.nii.gz",
    ]
    # The masks of the refused images pair with nothing: reported, not read.
    assert index.unpaired_masks == [root / "seg" / "a02.nii.gz", root / "seg" / "a03.nii.gz"]
    assert not index.problems and not index.unpaired_images
    report = format_inventory(inventory(spec, read_masks=False))
    assert f"problem: {root / 'img' / 'far' / 'a02.nii.gz'}: leads outside the dataset folder {root}" in report
    # A link that stays inside the folder is read.
    (data / "img" / "real" / "a03.nii.gz").unlink()
    (data / "img" / "real" / "a03.nii.gz").symlink_to(Path("..") / "real" / "a01.nii.gz")
    assert [c.case_id for c in find_cases(spec).cases] == ["a01", "a03"]


def test_merge_masks_unions_binary_masks(tmp_path: Path) -> None:
    image = np.full((6, 8), 90, np.uint8)
    png(tmp_path / "benign" / "benign (1).png", image)
    first, second = np.zeros((6, 8), np.uint8), np.zeros((6, 8), np.uint8)
    first[1:3, 1:3] = 255
    second[4:6, 5:8] = 255
    png(tmp_path / "benign" / "benign (1)_mask.png", first)
    png(tmp_path / "benign" / "benign (1)_mask_1.png", second)
    spec = load_preset("busi", tmp_path)
    index = find_cases(spec)
    assert [c.case_id for c in index.cases] == ["benign (1)"] and len(index.cases[0].masks) == 2
    case = load_case(spec, index.cases[0])
    assert np.array_equal(case.labels != 0, (first | second) != 0)


def test_per_label_files_take_names_from_files(tmp_path: Path) -> None:
    volume = np.zeros((5, 5, 4), np.int16)
    liver = np.zeros((5, 5, 4), np.uint8)
    liver[1:3, 1:3, 1:3] = 1
    kidney = np.zeros((5, 5, 4), np.uint8)
    kidney[3:5, 3:5, 0:2] = 1
    for subject in ("s0001", "s0002"):
        nifti(tmp_path / subject / "ct.nii.gz", volume)
        nifti(tmp_path / subject / "segmentations" / "liver.nii.gz", liver)
    nifti(tmp_path / "s0002" / "segmentations" / "kidney_left.nii.gz", kidney)
    spec = load_preset("totalsegmentator", tmp_path)
    index = find_cases(spec)
    spec = resolve_labels(spec, index)
    assert spec.labels == {1: "kidney_left", 2: "liver"}
    case = load_case(spec, index.cases[1])
    assert case.present == (1, 2)
    assert np.array_equal(case.labels == 2, liver == 1) and np.array_equal(case.labels == 1, kidney == 1)


def test_run_config_lists_datasets(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_spec(tmp_path / "a", MINIMAL)
    write_spec(tmp_path / "b", MINIMAL.replace('"toy"', '"toy2"'))
    config = write_spec(
        tmp_path, 'datasets = ["a/spec.toml", "b/spec.toml"]\n[synthesis]\nbackend = "template"\n', "run.toml"
    )
    assert [s.name for s in load_specs(config)] == ["toy", "toy2"]
    write_spec(tmp_path / "b", MINIMAL)
    with pytest.raises(SpecError, match="unique"):
        load_specs(config)


def test_unknown_preset_and_missing_data() -> None:
    with pytest.raises(SpecError, match="unknown preset 'kitz'.*kits"):
        load_preset("kitz", ".")
    with pytest.raises(SpecError, match="--data"):
        load_preset("kits", None)


REQUIRED_PRESETS = {
    "kits",
    "lits",
    "brats",
    "totalsegmentator",
    "isic",
    "kvasir_seg",
    "ph2",
    "busi",
    "cxr_lung",
    "msd_liver",
    "msd_brain_tumour",
    "amos_ct",
}


def test_presets_cover_the_common_datasets() -> None:
    assert set(list_presets()) >= REQUIRED_PRESETS
    assert sum(name.startswith("msd_") for name in list_presets()) == 10


def _materialise(spec_text: str, root: Path, case_id: str) -> None:
    """Writes one case in the layout a preset expects (a tiny labelled image per pattern)."""
    document = tomllib.loads(spec_text)
    cases = document["cases"]
    is_3d = cases["image"].endswith((".nii.gz", ".nii"))
    labels = {1: "structure"}
    if "labels_file" in document:
        (root / document["labels_file"]).write_text(json.dumps({"labels": {"0": "background", "1": "structure"}}))
    elif "labels" in document:
        labels = {int(k): v for k, v in document["labels"].items()}

    def concrete(pattern: str, label: str | None = None) -> Path:
        text = pattern.replace("**/", "batch1/").replace("*", "x").replace("{case}", case_id)
        return root / (text.replace("{label}", label) if label else text)

    if "metadata" in cases:
        # The case table the preset documents: its key column and every column it maps.
        table = document["metadata"]
        columns = [table["key"]] + [
            c for a in table.values() if isinstance(a, dict) for c in ([a["column"]] if "column" in a else a["one_hot"])
        ]
        separator = "\t" if cases["metadata"].endswith(".tsv") else ","
        (root / cases["metadata"]).write_text(
            separator.join(columns) + "\n" + separator.join([case_id] + ["1"] * (len(columns) - 1)) + "\n"
        )

    if is_3d:
        shape = (6, 5, 4)
        image = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
        if "channel" in cases:
            image = np.stack([image] * (cases["channel"] + 2), axis=-1)
        nifti(concrete(cases["image"]), image)
        mask = np.zeros(shape, np.uint8)
        mask[1:3, 1:3, 1:3] = max(labels)
        if cases.get("mask_mode") == "per_label_files":
            nifti(concrete(cases["mask"], "liver"), (mask > 0).astype(np.uint8))
        else:
            nifti(concrete(cases["mask"]), mask)
    else:
        image = np.full((12, 10, 3), 100, np.uint8)
        path = concrete(cases["image"])
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        mask = np.zeros((12, 10), np.uint8)
        mask[2:6, 3:8] = 255
        path = concrete(cases["mask"])
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(path)


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_reads_its_documented_layout(tmp_path: Path, preset: str) -> None:
    text = (resources.files("medground") / "presets" / "datasets" / f"{preset}.toml").read_text()
    assert text.startswith("#"), "a preset says where its dataset comes from and what --data is"
    case_id = "amos_0042" if preset == "amos_ct" else "amos_0542" if preset == "amos_mr" else "case_007"
    if preset == "brats":
        case_id = "BraTS-GLI-00007-001"
    _materialise(text, tmp_path, case_id)
    spec = load_preset(preset, tmp_path)
    index = find_cases(spec)
    assert [c.case_id for c in index.cases] == [case_id], (index.unpaired_images, index.problems)
    spec = resolve_labels(spec, index)
    case = load_case(spec, index.cases[0])
    assert case.present and not case.warnings
    if preset == "brats":
        assert index.cases[0].patient_id == "BraTS-GLI-00007"


def test_load_case_error_is_tagged_with_the_case(tmp_path: Path) -> None:
    nifti(tmp_path / "img" / "c1.nii.gz", np.zeros((4, 4, 3), np.int16))
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "c1.nii.gz").write_bytes(b"not a nifti")
    spec = load_spec(write_spec(tmp_path, MINIMAL))
    with pytest.raises(CaseError) as caught:
        load_case(spec, find_cases(spec).cases[0])
    assert caught.value.case_id == "c1" and "seg/c1.nii.gz" in str(caught.value)
    assert caught.value.to_record()["stage"] == "load"


DEEP = "[" * 100_000 + "]" * 100_000  # tomllib and json read nesting by recursion


def test_deeply_nested_files_are_spec_errors_naming_the_file(tmp_path: Path) -> None:
    from medground.pipeline import load_run_config

    for name, text in (("spec.toml", MINIMAL + f"\n[render]\nx = {DEEP}\n"), ("run.toml", f"a = {DEEP}\n")):
        path = write_spec(tmp_path, text, name)
        for load in (load_spec, load_specs, load_run_config):
            with pytest.raises(SpecError, match="nested too deeply") as caught:
                load(path)
            assert str(path) in str(caught.value)
    (tmp_path / "labels.json").write_text(DEEP)
    text = MINIMAL.replace('[labels]\n1 = "liver"\n', "").replace('"CT"', '"CT"\nlabels_file = "labels.json"')
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError, match=r"labels\.json: invalid JSON \(arrays or objects nested too deeply"):
        load_spec(path)
    (tmp_path / "splits.json").write_text(DEEP)
    write_spec(tmp_path, MINIMAL)
    config = write_spec(tmp_path, 'datasets = ["spec.toml"]\n[split]\nfile = "splits.json"\n', "run.toml")
    with pytest.raises(SpecError, match=r"splits\.json: invalid JSON \(arrays or objects nested too deeply"):
        load_run_config(config)
