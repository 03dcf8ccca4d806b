"""medground.io.labels: label files in every supported layout, per-structure folders, the
real TotalSegmentator labels, and malformed or missing label files."""

from __future__ import annotations

import json

import pytest

from medground.io.errors import SpecError
from medground.io.labels import load_label_file

ITKSNAP = """################################################
# ITK-SnAP Label Description File
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
################################################
    0     0    0    0        0  0  0    "Clear Label"
    1   255    0    0        1  1  1    "liver"
    2     0  255    0     0.50  1  1    "kidney left"
"""


LABEL_FILES = {
    "id_name.json": ('{"1": "liver", "2": "spleen"}', {1: "liver", 2: "spleen"}),
    "name_id.json": ('{"liver": 1, "spleen": 2}', {1: "liver", 2: "spleen"}),
    "nested.json": ('{"1": {"name": "liver", "color": [255, 0, 0]}}', {1: "liver"}),
    "msd/dataset.json": (
        json.dumps({"name": "Liver", "labels": {"0": "background", "1": "liver", "2": "tumour"}}),
        {1: "liver", 2: "tumour"},
    ),
    "nnunet/dataset.json": (
        json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}}),
        {1: "liver"},
    ),
    "header.csv": ("id,name\n0,background\n1,liver\n2,kidney_left\n", {1: "liver", 2: "kidney_left"}),
    "plain.csv": ("1,liver\n2, kidney_left \n", {1: "liver", 2: "kidney_left"}),
    "labels.tsv": ("id\tname\n1\tliver\n2\tkidney left\n", {1: "liver", 2: "kidney left"}),
    "itksnap.txt": (ITKSNAP, {1: "liver", 2: "kidney left"}),
}


@pytest.mark.parametrize("name", list(LABEL_FILES))
def test_label_files(tmp_path, name):
    text, expected = LABEL_FILES[name]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert load_label_file(path) == expected


def test_per_structure_folder(tmp_path):
    for name in ("liver.nii.gz", "kidney_left.nii.gz", "spleen.nii", ".DS_Store"):
        (tmp_path / name).write_bytes(b"")
    assert load_label_file(tmp_path) == {1: "kidney_left", 2: "liver", 3: "spleen"}


def test_real_totalseg_labels(shared_data):
    folder = shared_data / "ct_abdomen_totalseg"
    labels = load_label_file(folder / "labels.json")
    assert len(labels) == 117 and labels[1] == "spleen" and labels[3] == "kidney_left"
    structures = load_label_file(folder / "structures")
    assert len(structures) == len(list((folder / "structures").glob("*.nii.gz")))
    assert set(structures.values()) <= set(labels.values())
    assert list(structures) == list(range(1, len(structures) + 1))
    assert list(structures.values()) == sorted(structures.values())


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("twice.json", '{"liver": 1, "spleen": 1}', "named twice"),
        ("twice_padded.json", '{"1": "liver", "01": "spleen"}', "named twice"),
        ("twice_key.json", '{"1": "liver", "1": "spleen"}', "named twice"),
        ("twice.csv", "1,liver\n1,spleen\n", "named twice"),
        ("twice.txt", ITKSNAP + '    1   0 0 255   1 1 1   "spleen"\n', "named twice"),
        ("bad_id.csv", "id,name\n1,liver\nx,spleen\n", "not an integer"),
        ("negative.csv", "1,liver\n-2,spleen\n", "negative"),
        ("negative.json", '{"-1": "liver"}', "negative"),
        ("broken.json", '{"1": "liver"', "invalid JSON"),
        ("list.json", '["liver"]', "JSON object"),
        ("neither.json", '{"liver": "spleen"}', "neither"),
        ("empty_name.json", '{"1": " "}', "empty name"),
        ("region.json", '{"labels": {"background": 0, "tumour": [1, 2]}}', "region"),
        ("short.csv", "1\n", "column"),
        ("labels.xml", "<labels/>", "unknown label file type"),
    ],
)
def test_label_file_errors(tmp_path, name, text, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as info:
        load_label_file(tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and problem in info.value.problem


@pytest.mark.parametrize("name", ["absent.json", "empty_folder"])
def test_missing_label_file(tmp_path, name):
    if name == "empty_folder":
        (tmp_path / name).mkdir()
    with pytest.raises(SpecError) as info:
        load_label_file(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)
