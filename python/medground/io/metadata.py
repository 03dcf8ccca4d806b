"""Per-case clinical facts from a table the dataset ships (PH2's diagnoses, KiTS's
histology, ISIC's ground-truth classes).

A spec names the table (``[cases] metadata = "diagnosis.tsv"``, CSV or TSV by extension,
relative to the dataset folder) and says what its columns mean (``[metadata]``): the column
with the case id, and per clinical attribute either a coded column with its codes'
clinical terms or one-hot columns each naming a term::

    [metadata]
    key = "Name"

    [metadata.diagnosis]
    role = "finding"
    labels = ["skin lesion"]
    column = "Clinical Diagnosis"
    values = { "0" = "common nevus", "1" = "atypical nevus", "2" = "melanoma" }

:func:`parse_metadata` checks the declaration against the table's header when the spec is
read (a wrong column name fails there, naming the file); :func:`read_metadata` gives each
case's attributes. A case missing from the table, or a code the mapping does not list,
gives no attribute (the run's card counts them); a row with a case id given twice is an
error naming the file and the id.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from medground.io.errors import SpecError
from medground.io.schema import CLINICAL_ROLES, ClinicalAttribute, MetadataSpec
from medground.words import ATTRIBUTES

__all__ = ["CaseMetadata", "MetadataTable", "parse_metadata", "read_metadata"]

#: Names a clinical attribute may not take: the referring step's own attributes.
RESERVED = ATTRIBUTES
_TRUE = frozenset({"1", "1.0", "true", "yes", "y", "t"})
_ATTRIBUTE_KEYS = {"role", "labels", "column", "values", "one_hot", "otherwise"}

#: One case's clinical attributes: attribute name → clinical term.
CaseMetadata = dict[str, str]


@dataclass(frozen=True)
class MetadataTable:
    """A parsed table: each case's clinical attributes, and the case ids the table lists."""

    spec: MetadataSpec
    rows: Mapping[str, CaseMetadata]

    def for_case(self, case_id: str) -> CaseMetadata:
        """The case's attributes (empty when the table does not list it)."""
        return dict(self.rows.get(case_id, {}))

    def for_label(self, case_id: str, label: str) -> CaseMetadata:
        """The case's attributes that describe objects of ``label``."""
        mine = self.rows.get(case_id, {})
        return {a.name: mine[a.name] for a in self.spec.attributes if label in a.labels and a.name in mine}

    def roles(self) -> dict[str, str]:
        return {a.name: a.role for a in self.spec.attributes}


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") else ","


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV/TSV file, values stripped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise SpecError(path, "metadata table not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, f"metadata table cannot be read ({exc})") from exc
    reader = csv.reader(text.splitlines(), delimiter=_delimiter(path))
    lines = [row for row in reader if any(cell.strip() for cell in row)]
    if not lines:
        raise SpecError(path, "metadata table is empty (no header)")
    header = [cell.strip() for cell in lines[0]]
    rows = []
    for number, row in enumerate(lines[1:], start=2):
        if len(row) > len(header):
            raise SpecError(path, f"line {number} has {len(row)} fields, the header {len(header)}")
        rows.append({header[i]: row[i].strip() if i < len(row) else "" for i in range(len(header))})
    return header, rows


def _strings(value: Any, where: str, source: Path | None) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) and v.strip() for v in value.values()):
        raise SpecError(source, f"{where} must map codes or columns to clinical terms (strings)")
    return {str(k).strip(): re.sub(r"\s+", " ", v.strip()).lower() for k, v in value.items()}


def _attribute(name: str, table: Any, labels: tuple[str, ...], source: Path | None) -> ClinicalAttribute:
    where = f"[metadata.{name}]"
    if not isinstance(table, Mapping):
        raise SpecError(source, f"{where} must be a table")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in RESERVED:
        raise SpecError(
            source,
            f"{where}: the attribute name must be lowercase letters, digits and '_' and not one of the "
            f"referring step's own ({', '.join(sorted(RESERVED))})",
        )
    unknown = sorted(set(table) - _ATTRIBUTE_KEYS)
    if unknown:
        raise SpecError(
            source, f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_ATTRIBUTE_KEYS))}"
        )
    role = table.get("role", "descriptor")
    if role not in CLINICAL_ROLES:
        raise SpecError(source, f"{where} role must be one of {', '.join(CLINICAL_ROLES)}, got {role!r}")
    described = table.get("labels", list(labels))
    if isinstance(described, str):
        described = [described]
    if not isinstance(described, list) or not described or not all(d in labels for d in described):
        raise SpecError(source, f"{where} labels must list declared labels ({', '.join(labels)}), got {described!r}")
    column = table.get("column")
    has_values, has_one_hot = "values" in table, "one_hot" in table
    if (column is None) == (not has_one_hot) or (column is not None and not has_values) or (has_values and has_one_hot):
        raise SpecError(source, f"{where} needs either column and values (a coded column) or one_hot (columns)")
    if column is not None and not isinstance(column, str):
        raise SpecError(source, f"{where} column must be a column name, got {column!r}")
    otherwise = table.get("otherwise")
    if otherwise is not None and (not isinstance(otherwise, str) or not has_one_hot):
        raise SpecError(source, f"{where} otherwise is a clinical term for one-hot columns")
    values = (
        {_code(k): v for k, v in _strings(table["values"], f"{where} values", source).items()} if has_values else {}
    )
    one_hot = _strings(table["one_hot"], f"{where} one_hot", source) if has_one_hot else {}
    return ClinicalAttribute(
        name=name,
        role=str(role),
        labels=tuple(described),
        column=column,
        values=tuple(values.items()),
        one_hot=tuple(one_hot.items()),
        otherwise=None if otherwise is None else otherwise.strip().lower(),
    )


def parse_metadata(
    path_value: Any, table: Any, labels: Mapping[int, str], root: Path, source: Path | None
) -> MetadataSpec | None:
    """The spec's metadata declaration (``[cases] metadata`` and ``[metadata]``), checked
    against the table's header; None when the spec names no table.

    Raises:
        SpecError: naming the spec or the table: a missing file, an unknown column, an
            attribute without a mapping, or a ``[metadata]`` without a table to read.
    """
    if path_value is None:
        if table is not None:
            raise SpecError(source, "[metadata] describes a case table, but [cases] metadata names none")
        return None
    if not isinstance(path_value, str) or not path_value.strip() or Path(path_value).is_absolute():
        raise SpecError(source, f"[cases] metadata must be a path relative to the dataset folder, got {path_value!r}")
    path = (root / path_value).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SpecError(source, f"[cases] metadata = {path_value!r} resolves outside the dataset folder")
    table = dict(table or {})
    key = table.pop("key", None)
    if not table:
        raise SpecError(source, "[cases] metadata needs [metadata.<attribute>] tables saying what its columns mean")
    header, _ = _read_rows(path)
    key = header[0] if key is None else key
    if key not in header:
        raise SpecError(path, f"no key column {key!r} (columns: {', '.join(header)})")
    attributes = tuple(_attribute(name, value, tuple(labels.values()), source) for name, value in table.items())
    for attribute in attributes:
        needed = [attribute.column] if attribute.column else [c for c, _ in attribute.one_hot]
        missing = [c for c in needed if c not in header]
        if missing:
            raise SpecError(
                path, f"[metadata.{attribute.name}] names column(s) {', '.join(missing)}, not in {', '.join(header)}"
            )
    return MetadataSpec(path=path_value, key=key, attributes=attributes)


def read_metadata(spec: MetadataSpec, root: Path) -> MetadataTable:
    """Every case's clinical attributes (read once per file and modification time).

    Raises:
        SpecError: naming the table: unreadable, or a case id listed twice.
    """
    path = (root / spec.path).resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise SpecError(path, "metadata table not found") from exc
    return _read_cached(spec, path, stamp)


@lru_cache(maxsize=8)
def _read_cached(spec: MetadataSpec, path: Path, stamp: int) -> MetadataTable:
    del stamp  # part of the cache key only
    _, rows = _read_rows(path)
    out: dict[str, CaseMetadata] = {}
    for row in rows:
        case_id = row.get(spec.key, "")
        if not case_id:
            continue
        if case_id in out:
            raise SpecError(path, f"case {case_id!r} is listed twice")
        values: CaseMetadata = {}
        for attribute in spec.attributes:
            term = _value(attribute, row)
            if term is not None:
                values[attribute.name] = term
        out[case_id] = values
    return MetadataTable(spec, out)


def _value(attribute: ClinicalAttribute, row: Mapping[str, str]) -> str | None:
    if attribute.column is not None:
        return dict(attribute.values).get(_code(row.get(attribute.column, "")))
    hits = [term for column, term in attribute.one_hot if row.get(column, "").strip().lower() in _TRUE]
    if len(hits) == 1:
        return hits[0]
    return attribute.otherwise if not hits else None


def _code(text: str) -> str:
    """A cell as a code: "2", "2.0" and " 2 " are the same code."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text
