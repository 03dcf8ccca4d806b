"""The JSON Schema of samples.jsonl that the package ships: valid itself, met by every
sample of a run (the session fixture in conftest.py checks every run the tests write), and
able to refuse what a reader must not get."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from medground import phantoms
from medground.pipeline import load_run_config, run
from medground.records import Sample, sample_schema

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    root = tmp_path_factory.mktemp("schema")
    phantoms.demo_dataset(root / "data", volumes=1, photos=2)
    run(load_run_config(root / "data" / "run.toml"), root / "run", use_ray=False, progress=False)
    return [json.loads(line) for line in (root / "run" / "samples.jsonl").read_text().splitlines()]


def test_the_schema_is_a_valid_draft_2020_12_schema_and_names_every_field() -> None:
    schema = sample_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    fields = set(Sample.__dataclass_fields__)
    assert set(schema["properties"]) == fields
    # Fields added after runs were written are optional: old runs stay valid.
    assert set(schema["required"]) == fields - {"referring_expression", "subset"}


def test_every_sample_of_a_run_meets_it(records: list[dict]) -> None:
    validator = jsonschema.Draft202012Validator(sample_schema())
    assert records and any(r["view"] is None for r in records) and any(r["view"] for r in records)
    for record in records:
        assert not list(validator.iter_errors(record)), record["id"]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r.pop("query"), ""),
        (lambda r: r.update(split="validation"), "split"),
        (lambda r: r.update(extra=1), ""),
        (lambda r: r["targets"][0].update(bbox_xyxy=[1, 2, 3]), "targets/0/bbox_xyxy"),
        (lambda r: r["targets"][0].update(bbox_xyxy=[1.5, 2, 3, 4]), "targets/0/bbox_xyxy"),
        (lambda r: r["targets"][0]["mask_rle"].pop("counts"), "targets/0/mask_rle"),
        (lambda r: r.update(targets=[]), "targets"),
        (lambda r: r.update(query_type="implicit"), "query_type"),
        (lambda r: r.update(image="/abs/path.png"), "image"),
        (lambda r: r.update(schema_version=2), "schema_version"),
    ],
)
def test_it_refuses_broken_records(records: list[dict], change, where: str) -> None:
    record = copy.deepcopy(records[0])
    change(record)
    errors = list(jsonschema.Draft202012Validator(sample_schema()).iter_errors(record))
    assert errors and any("/".join(map(str, e.absolute_path)) == where for e in errors), [e.message for e in errors]


def test_the_schema_ships_as_package_data() -> None:
    import medground

    shipped = Path(medground.__file__).parent / "presets" / "schemas" / "sample.schema.json"
    assert json.loads(shipped.read_text()) == sample_schema()
