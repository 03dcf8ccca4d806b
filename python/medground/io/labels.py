"""Label maps (id → structure name) from the files datasets ship them in.

Supported: JSON ``{id: name}`` (or ``{name: id}``), CSV/TSV rows ``id, name`` (a header
row is skipped), the Medical Segmentation Decathlon's ``dataset.json`` (``"labels"`` as
``{"1": "liver"}``, or nnU-Net v2's ``{"liver": 1}``), ITK-SNAP label description files,
and a folder of one mask per structure (TotalSegmentator: ``liver.nii.gz`` is "liver").
Background (id 0) is never a label.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medground.io.errors import SpecError
from medground.io.readers import suffix_of

__all__ = ["label_map_from_mapping", "labels_from_filenames", "load_label_file", "structure_name"]

_BACKGROUND_NAMES = {"background", "bg", "clear label", "clear_label", "unlabeled", "unlabelled"}


def structure_name(path: Path) -> str:
    """The structure a per-structure mask file stands for: its name without the suffix."""
    suffix = suffix_of(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def labels_from_filenames(names: Iterable[str]) -> dict[int, str]:
    """Ids 1..N for structure names in sorted order (per-structure folders carry no ids)."""
    return {i: name for i, name in enumerate(sorted(set(names)), start=1)}


def label_map_from_mapping(
    mapping: Mapping[Any, Any] | Iterable[tuple[Any, Any]], source: Path | str | None
) -> dict[int, str]:
    """Normalises ``{id: name}`` or ``{name: id}`` (ids as ints or digit strings; or the
    same as a sequence of pairs, so that repeated ids are seen) to ``{int id: name}``,
    dropping background (0)."""
    labels: dict[int, str] = {}
    pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
    for key, value in pairs:
        if isinstance(value, Mapping) and "name" in value:  # {id: {name = ..., ...}}
            value = value["name"]
        key_is_id = _as_id(key) is not None
        if key_is_id and isinstance(value, str):
            label_id, name = _as_id(key), value
        elif isinstance(key, str) and _as_id(value) is not None:
            label_id, name = _as_id(value), key
        elif isinstance(key, str) and isinstance(value, list) and value and all(_as_id(v) is not None for v in value):
            # nnU-Net v2 region labels ({"tumor": [1, 2]}): a region is not one label id.
            raise SpecError(source, f"label {key!r} is a region of several ids {value}; list each id separately")
        else:
            raise SpecError(source, f"label entry {key!r} = {value!r} is neither id = name nor name = id")
        assert label_id is not None
        if label_id < 0:
            raise SpecError(source, f"label id {label_id} is negative")
        name = str(name).strip()
        if not name:
            raise SpecError(source, f"label id {label_id} has an empty name")
        if label_id == 0:
            continue
        if label_id in labels and labels[label_id] != name:
            raise SpecError(source, f"label id {label_id} named twice: {labels[label_id]!r} and {name!r}")
        labels[label_id] = name
    return labels


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def load_label_file(path: Path) -> dict[int, str]:
    """Reads a label map file, or the structure names of a per-structure folder.

    Raises:
        SpecError: the file is missing, malformed, or names an id twice.
    """
    if path.is_dir():
        names = [structure_name(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        if not names:
            raise SpecError(path, "labels folder has no files to take structure names from")
        return labels_from_filenames(names)
    if not path.is_file():
        raise SpecError(path, "label file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, f"unreadable label file ({exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(path, text)
    if suffix in (".csv", ".tsv"):
        return _from_table(path, text, "\t" if suffix == ".tsv" else ",")
    if _looks_like_itksnap(text):
        return _from_itksnap(path, text)
    if suffix in (".txt", ".label", ".lbl"):
        return _from_table(path, text, None)
    raise SpecError(path, "unknown label file type; expected .json, .csv, .tsv or an ITK-SNAP label description (.txt)")


def _from_json(path: Path, text: str) -> dict[int, str]:
    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise SpecError(path, f"id(s) {', '.join(repeated)} named twice (a key repeats in one JSON object)")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise SpecError(path, f"invalid JSON ({exc})") from exc
    except RecursionError:  # json reads nested arrays by recursion: [[[…]]] 100,000 deep
        raise SpecError(path, "invalid JSON (arrays or objects nested too deeply to read)") from None
    if isinstance(data, Mapping) and "labels" in data and isinstance(data["labels"], Mapping):
        data = data["labels"]  # MSD / nnU-Net dataset.json
    if not isinstance(data, Mapping):
        raise SpecError(path, 'expected a JSON object {"1": "liver", ...} or an MSD dataset.json with "labels"')
    return label_map_from_mapping(data, path)


def _from_table(path: Path, text: str, delimiter: str | None) -> dict[int, str]:
    rows: list[list[str]]
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if delimiter is None:
        delimiter = "\t" if any("\t" in line for line in lines) else ","
    rows = [row for row in csv.reader(lines, delimiter=delimiter)]
    mapping: list[tuple[str, str]] = []
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if len(cells) < 2:
            raise SpecError(path, f"row {number} has {len(cells)} column(s); expected id and name")
        if _as_id(cells[0]) is None:
            if number == 1:
                continue  # header
            raise SpecError(path, f"row {number}: id {cells[0]!r} is not an integer")
        mapping.append((cells[0], cells[1]))
    return label_map_from_mapping(mapping, path)


def _looks_like_itksnap(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        return bool(re.match(r'^-?\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+\s+\d+\s+\d+\s+"', stripped))
    return False


def _from_itksnap(path: Path, text: str) -> dict[int, str]:
    """ITK-SNAP: ``IDX R G B A VIS MSH "LABEL"`` per line, ``#`` comments; 0 is "Clear Label"."""
    mapping: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = shlex.split(stripped)
        except ValueError as exc:
            raise SpecError(path, f"line {number}: {exc}") from exc
        if len(fields) < 8 or _as_id(fields[0]) is None:
            raise SpecError(path, f'line {number}: expected IDX R G B A VIS MSH "LABEL", got {stripped!r}')
        if fields[7].strip().lower() in _BACKGROUND_NAMES and int(fields[0]) == 0:
            continue
        mapping.append((fields[0], fields[7]))
    return label_map_from_mapping(mapping, path)
