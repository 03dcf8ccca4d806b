"""Case discovery: what a dataset spec finds on disk.

Images and masks are paired by the spec's patterns (``{case}``, ``{label}``, ``*``, ``**``);
cases are sorted by id; files that pair with nothing, patterns that match twice and files
that lead out of the dataset folder through a symlink are reported, never dropped without
a word.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from medground.io.labels import labels_from_filenames, structure_name
from medground.io.schema import DatasetSpec

__all__ = ["CaseFiles", "CaseIndex", "find_cases", "leads_outside", "printable_id", "reads_into", "resolve_labels"]


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case, as matched on disk: one label map (``labelmap``), one or
    more binary masks (``binary``; several only with ``merge_masks``), or one mask per
    structure name (``per_label_files``)."""

    case_id: str
    patient_id: str
    image: Path
    masks: tuple[Path, ...] = ()
    label_masks: tuple[tuple[str, Path], ...] = ()


@dataclass
class CaseIndex:
    """What a spec finds on disk: paired cases and the files that did not pair."""

    cases: list[CaseFiles]
    unpaired_images: list[Path] = field(default_factory=list)
    unpaired_masks: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Files the patterns matched that lead (a symlink, or one among their folders) out of
    #: the dataset folder: never read, so a dataset cannot pull in files from elsewhere.
    outside: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _Pattern:
    glob: str
    regex: re.Pattern[str]


#: Glob wildcards and the regex each matches (``**/``: any folders, possibly none).
_WILDCARDS = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


def _compile(pattern: str, **fixed: str) -> _Pattern:
    """Glob and regex of a pattern; ``fixed`` placeholders are substituted literally."""
    glob_parts: list[str] = []
    regex_parts: list[str] = []
    seen: set[str] = set()
    for token in re.split(r"(\{[a-z]+\}|\*\*/|\*\*|\*|\?)", pattern):
        if not token:
            continue
        if token.startswith("{"):
            name = token[1:-1]
            if name in fixed:
                glob_parts.append(globlib.escape(fixed[name]))
                regex_parts.append(re.escape(fixed[name]))
            else:
                glob_parts.append("*")
                regex_parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)")
                seen.add(name)
        elif token in _WILDCARDS:
            glob_parts.append(token)
            regex_parts.append(_WILDCARDS[token])
        else:
            glob_parts.append(globlib.escape(token))
            regex_parts.append(re.escape(token))
    return _Pattern("".join(glob_parts), re.compile("".join(regex_parts) + r"\Z"))


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, every symlink on it followed, is still within ``root`` (resolved);
    a symlink loop is not."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return False


def leads_outside(path: Path, root: Path) -> str:
    """What to say of a matched file that :func:`find_cases` did not read because it leads
    out of the dataset folder ``root``."""
    return (
        f"{path}: leads outside the dataset folder {root} (to {os.path.realpath(path)}) through a symbolic link; "
        "not read (point the spec at the folder the link leads to, or copy the file in)"
    )


def _matches(
    root: Path, pattern: _Pattern, outside: set[Path], exclude: tuple[str, ...] = ()
) -> list[tuple[Path, re.Match[str]]]:
    """The files under ``root`` that ``pattern`` matches, in path order; those that lead out
    of ``root`` through a symlink (the file's or a folder's) go to ``outside`` instead: a
    pattern is checked to stay in the dataset folder, and a link must not undo that."""
    found = []
    real_root = root.resolve()
    for path in sorted(root.glob(pattern.glob)):
        relative = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatchcase(relative, e) or fnmatch.fnmatchcase(path.name, e) for e in exclude):
            continue
        match = pattern.regex.match(relative)
        if match is None:
            continue
        if not _inside(path, real_root):
            outside.add(path)
            continue
        found.append((path, match))
    return found


def reads_into(spec: DatasetSpec, folder: Path) -> str | None:
    """The spec's ``image`` or ``mask`` pattern that would read the images a run writes into
    ``folder`` (when it lies inside the dataset's folder), or None."""
    root, where = Path(spec.root).resolve(), Path(folder).resolve()
    if where != root and root not in where.parents:
        return None
    base = where.relative_to(root).as_posix()
    written = [f"{base}/images/{spec.name}/{name}" for name in ("c.png", "c.jpg", "c/axial_0001.png", "c/x-lung.png")]
    written += [f"{base}/plots/labels.png"]
    for pattern in (spec.cases.image, spec.cases.mask):
        regex = _compile(pattern).regex
        if any(regex.match(path.lstrip("./")) for path in written):
            return pattern
    return None


def printable_id(name: str) -> str:
    """A case id as records hold it: a file name's bytes that are not UTF-8 (decoded by
    Python as lone surrogates) written as ``\\xNN``, so every output can name the case."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _patient_id(spec: DatasetSpec, case_id: str) -> str:
    cases = spec.cases
    if cases.patient_regex is not None:
        match = re.search(cases.patient_regex, case_id)
        if match is not None:
            return match.group("patient") if "patient" in match.re.groupindex else match.group(1)
        return case_id
    return cases.patient.format(case=case_id)


def _find_images(
    spec: DatasetSpec, case_filter: re.Pattern[str] | None, problems: list[str], outside: set[Path]
) -> dict[str, Path]:
    """Case id → image, for the images the spec's ``image`` pattern matches; ids matching two
    images, and a pattern without ``{case}`` matching several, are added to ``problems``."""
    images: dict[str, Path] = {}
    for path, match in _matches(spec.root, _compile(spec.cases.image), outside, spec.cases.exclude):
        case_id = match.group("case") if "case" in match.re.groupindex else structure_name(path)
        if case_filter is not None and not case_filter.search(case_id):
            continue
        if case_id in images:
            problems.append(f"case {case_id!r} matches two images: {images[case_id]} and {path}")
            continue
        images[case_id] = path
    if "{case}" not in spec.cases.image and len(images) > 1:
        problems.append(
            f"image = {spec.cases.image!r} has no {{case}} but matches {len(images)} files; "
            f"a pattern without {{case}} must name one image"
        )
        return {}
    return images


def _unpaired_masks(
    spec: DatasetSpec, case_filter: re.Pattern[str] | None, paired: set[Path], outside: set[Path]
) -> list[Path]:
    """Files the ``mask`` pattern matches (within the case filter) that are in no case and
    are not ``paired`` (masks in use, or images)."""
    unpaired = []
    for path, match in _matches(spec.root, _compile(spec.cases.mask), outside):
        if case_filter is not None and "case" in match.re.groupindex and not case_filter.search(match.group("case")):
            continue
        if path not in paired:
            unpaired.append(path)
    return unpaired


def find_cases(spec: DatasetSpec, *, limit: int | None = None) -> CaseIndex:
    """Pairs images with masks on disk; cases are sorted by id.

    For ``per_label_files`` specs without declared labels, the labels are the union of the
    structure names found, in sorted order (see :func:`resolve_labels`).
    """
    case_filter = re.compile(spec.cases.case_regex) if spec.cases.case_regex else None
    index = CaseIndex(cases=[])
    outside: set[Path] = set()
    images = _find_images(spec, case_filter, index.problems, outside)
    masks_seen: set[Path] = set()
    for case_id in sorted(images):
        files = _case_masks(spec, case_id, index, outside)
        if files is None:
            index.unpaired_images.append(images[case_id])
            continue
        masks, label_masks = files
        masks_seen.update(masks or [p for _, p in label_masks])
        name = printable_id(case_id)
        index.cases.append(CaseFiles(name, _patient_id(spec, name), images[case_id], masks, label_masks))
    # Masks whose case has no image (only checked for one-file-per-case masks: cheap and common).
    if spec.cases.mask_mode != "per_label_files":
        index.unpaired_masks = _unpaired_masks(spec, case_filter, masks_seen | set(images.values()), outside)
    index.outside = sorted(outside)
    if limit is not None:
        index.cases = index.cases[:limit]
    return index


def _case_masks(
    spec: DatasetSpec, case_id: str, index: CaseIndex, outside: set[Path]
) -> tuple[tuple[Path, ...], tuple[tuple[str, Path], ...]] | None:
    pattern = _compile(spec.cases.mask, case=case_id)
    found = _matches(spec.root, pattern, outside)
    if spec.cases.mask_mode != "per_label_files":
        if not found:
            return None
        if len(found) > 1 and not spec.cases.merge_masks:
            index.problems.append(f"case {case_id!r} matches {len(found)} masks: {', '.join(str(p) for p, _ in found)}")
            return None
        return tuple(path for path, _ in found), ()
    by_name = {match.group("label"): path for path, match in found}
    if not by_name:
        return None
    # "{label}.nii.gz" matches "liver.nii.gz" with label "liver"; names keep no suffix.
    label_masks = tuple(
        sorted((structure_name(Path(name)) if "." in name else name, path) for name, path in by_name.items())
    )
    return (), label_masks


def resolve_labels(spec: DatasetSpec, index: CaseIndex) -> DatasetSpec:
    """A per-structure spec without declared labels gets ids 1..N for the structure names
    found across all cases (sorted); other specs are returned unchanged."""
    if spec.labels or spec.cases.mask_mode != "per_label_files":
        return spec
    names = {name for case in index.cases for name, _ in case.label_masks}
    return replace(spec, labels=labels_from_filenames(names))
