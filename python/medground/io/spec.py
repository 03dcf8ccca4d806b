"""Dataset specs: reading and checking the TOML that says what a folder of images and masks
holds.

A spec is a TOML file (keys in docs/RECORDS.md, "Dataset spec"). Patterns and label files are
relative to the dataset's folder: the spec file's folder, or ``root`` in the spec, or the
``--data`` folder given with a preset. A pattern that would reach outside that folder is
refused. Unknown keys are errors, so a typo never silently falls back to a default. The
parsed records are in :mod:`medground.io.schema`.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from medground.anatomy import KINDS, is_lesion
from medground.io.errors import SpecError
from medground.io.labels import label_map_from_mapping, load_label_file
from medground.io.metadata import parse_metadata
from medground.io.readers import DEFAULT_MAX_BYTES
from medground.io.schema import (
    AXES,
    CT_WINDOWS,
    IMAGE_FORMATS,
    MASK_MODES,
    MODALITIES,
    RADIOLOGY_MODALITIES,
    VOLUME_AXIS,
    AnchorFilters,
    CasesSpec,
    DatasetSpec,
    RenderSpec,
)

__all__ = ["list_presets", "load_preset", "load_spec", "load_specs", "parse_spec", "read_toml"]

#: Sections a dataset spec may carry: ``[anchors]`` is the spec's own; a bare spec run as
#: a run config may also hold the run's sections (read by the pipeline's config).
_RUN_SECTIONS = {"synthesis", "verification", "split", "anchors", "run"}
_SPEC_KEYS = {
    "name",
    "modality",
    "body_region",
    "display",
    "root",
    "cases",
    "labels",
    "labels_file",
    "render",
    "label_kinds",
    "metadata",
    "exhaustive_labels",
}
_CASES_KEYS = {
    "image",
    "mask",
    "mask_mode",
    "patient",
    "patient_regex",
    "exclude",
    "case_regex",
    "merge_masks",
    "channel",
    "mask_threshold",
    "colors",
    "color_tolerance",
    "max_bytes",
    "affine_tolerance",
    "pixel_spacing",
    "metadata",
}
_RENDER_KEYS = {
    "axes",
    "slices",
    "window",
    "percentiles",
    "max_slices",
    "min_area_fraction",
    "square_pixels",
    "min_side",
    "max_side",
    "edge_margin",
    "min_target_share",
    "min_contrast",
    "windows",
    "image_format",
    "jpeg_quality",
    "max_objects",
}
#: Numeric [render] keys: (default, whether it must be an integer, test, what the test asks).
_RENDER_NUMBERS: dict[str, tuple[float, bool, Any, str]] = {
    "max_slices": (16, True, lambda v: v >= 1, "a positive integer"),
    "min_area_fraction": (0.5, False, lambda v: 0 < v <= 1, "in (0, 1]"),
    "min_side": (224, True, lambda v: v >= 1, "a positive integer"),
    "max_side": (1024, True, lambda v: v >= 16, "an integer >= 16"),
    "edge_margin": (2, True, lambda v: v >= 0, "a non-negative integer"),
    "min_target_share": (0.3, False, lambda v: 0 <= v <= 1, "in [0, 1]"),
    "min_contrast": (6.0, False, lambda v: 0 <= v <= 255, "in [0, 255] (8-bit grey levels)"),
    "max_objects": (1000, True, lambda v: v >= 1, "a positive integer"),
}
_SLICES = re.compile(r"^(max_area|all|spread:(?P<k>[1-9]\d*))$")


def list_presets() -> list[str]:
    """Names of the dataset presets shipped with medground."""
    folder = resources.files("medground") / "presets" / "datasets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str, data: Path | str | None) -> DatasetSpec:
    """A shipped preset completed with the folder that holds the dataset.

    Raises:
        SpecError: unknown preset, or no ``data`` folder.
    """
    presets = list_presets()
    if name not in presets:
        raise SpecError(None, f"unknown preset {name!r}; available: {', '.join(presets)}")
    if data is None:
        raise SpecError(None, f"preset {name!r} needs the dataset's folder (--data /path/to/{name})")
    data = Path(data)
    if not data.is_dir():
        raise SpecError(data, f"dataset folder for preset {name!r} not found")
    resource = resources.files("medground") / "presets" / "datasets" / f"{name}.toml"
    source = Path(f"<preset {name}>")
    try:
        document = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - presets are tested
        raise SpecError(source, f"invalid TOML ({exc})") from exc
    return replace(parse_spec(document, source=source, root=data.resolve()), preset=name)


def read_toml(path: Path) -> dict[str, Any]:
    """A spec or run config file as a TOML document.

    Raises:
        SpecError: naming the file: absent, unreadable, not UTF-8, not TOML, or nested too
            deeply (``tomllib`` reads arrays and tables by recursion, so ``a = [[[…]]]``
            100,000 deep is a ``RecursionError``, not a ``TOMLDecodeError``).
    """
    if not path.is_file():
        raise SpecError(path, "spec file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(path, f"invalid TOML ({exc})") from exc
    except RecursionError:
        raise SpecError(path, "invalid TOML (arrays or tables nested too deeply to read)") from None
    except OSError as exc:
        raise SpecError(path, f"cannot read the file ({exc.strerror or exc})") from exc


def load_spec(path: Path | str, *, data: Path | str | None = None) -> DatasetSpec:
    """Reads a dataset spec file; ``data`` overrides its folder (``root``)."""
    path = Path(path)
    document = read_toml(path)
    if "datasets" in document:
        raise SpecError(path, "this is a run config listing datasets; use load_specs()")
    root = Path(data).resolve() if data is not None else None
    return parse_spec(document, source=path, root=root)


def load_specs(path: Path | str, *, data: Path | str | None = None) -> list[DatasetSpec]:
    """The dataset specs of a run config (``datasets = [...]``) or of a bare dataset spec."""
    path = Path(path)
    document = read_toml(path)
    if "datasets" not in document:
        return [load_spec(path, data=data)]
    entries = document["datasets"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise SpecError(path, "datasets must be a non-empty list of spec paths")
    if data is not None:
        raise SpecError(path, "--data applies to one dataset spec or preset, not to a run config listing several")
    specs = [load_spec(path.parent / entry) for entry in entries]
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(
            path, f"dataset names must be unique (they prefix sample ids); repeated: {', '.join(duplicates)}"
        )
    return specs


def _unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str, source: Path | None) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(
            source, f"unknown key(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _string(table: Mapping[str, Any], key: str, source: Path | None, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise SpecError(source, f"missing required key {where}{key}")
    if not isinstance(value, str) or not value.strip():
        raise SpecError(source, f"{where}{key} must be a non-empty string, got {value!r}")
    return value


def parse_spec(document: Mapping[str, Any], *, source: Path | None, root: Path | None = None) -> DatasetSpec:
    """Validates a spec document. ``root`` (absolute) overrides the spec's own folder."""
    _unknown_keys(document, _SPEC_KEYS | _RUN_SECTIONS, "the spec", source)
    name = _string(document, "name", source, "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SpecError(source, f"name {name!r} must be letters, digits, '_', '-' or '.' (it prefixes sample ids)")
    modality = _string(document, "modality", source, "")
    if modality not in MODALITIES:
        raise SpecError(source, f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    body_region = _string(document, "body_region", source, "", default="unspecified")
    default_display = "radiological" if modality in RADIOLOGY_MODALITIES else "image"
    display = _string(document, "display", source, "", default=default_display)
    if display not in ("radiological", "image"):
        raise SpecError(source, f"display must be 'radiological' or 'image', got {display!r}")
    root = _dataset_root(document, source, root)

    cases_table = document.get("cases")
    if not isinstance(cases_table, Mapping):
        raise SpecError(source, "missing [cases] table with image and mask patterns")
    cases = _parse_cases(cases_table, source)
    labels = _parse_labels(document, cases, root, source)
    render = _parse_render(document.get("render", {}), modality, source)
    _check_masks_against_labels(cases, labels, source)
    try:
        anchors = AnchorFilters.from_table(document.get("anchors"))
    except (ValueError, TypeError, AttributeError) as exc:
        raise SpecError(source, str(exc)) from exc
    return DatasetSpec(
        name=name,
        modality=modality,
        body_region=body_region,
        display=display,
        root=root,
        cases=cases,
        labels=labels,
        render=render,
        source=source,
        preset=None,
        anchors=anchors,
        label_kinds=_parse_label_kinds(document.get("label_kinds", {}), labels, source),
        metadata=parse_metadata(cases_table.get("metadata"), document.get("metadata"), labels, root, source),
        exhaustive_labels=_parse_exhaustive(document.get("exhaustive_labels"), modality, labels, source),
    )


#: Modalities whose images show a finding whole, every instance of it annotated.
PHOTOGRAPHIC = ("endoscopy", "dermoscopy", "fundus", "microscopy")


def _parse_exhaustive(value: Any, modality: str, labels: Mapping[int, str], source: Path | None) -> tuple[str, ...]:
    """``exhaustive_labels``: labels a query may call "the lesion" without naming them;
    default: the lesion-like labels of photographic modalities."""
    if value is None:
        return tuple(name for name in labels.values() if modality in PHOTOGRAPHIC and is_lesion(name))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(source, f"exhaustive_labels must be a list of label names, got {value!r}")
    unknown = [v for v in value if v not in labels.values()]
    if unknown:
        raise SpecError(source, f"exhaustive_labels names {', '.join(map(repr, unknown))}, not declared labels")
    return tuple(value)


def _parse_label_kinds(table: Any, labels: Mapping[int, str], source: Path | None) -> tuple[tuple[str, str], ...]:
    """``label_kinds``: label name → organ | instance | series (over the anatomy defaults)."""
    if not isinstance(table, Mapping):
        raise SpecError(source, 'label_kinds must be a table like "kidney tumor" = "instance"')
    for name, kind in table.items():
        if kind not in KINDS:
            raise SpecError(source, f"label_kinds: {name!r} must be one of {', '.join(KINDS)}, got {kind!r}")
        if labels and name not in labels.values():
            raise SpecError(source, f"label_kinds names {name!r}, which is not a declared label")
    return tuple(sorted((str(name), str(kind)) for name, kind in table.items()))


def _dataset_root(document: Mapping[str, Any], source: Path | None, root: Path | None) -> Path:
    """The dataset's folder: ``root`` when given, else the spec's ``root`` (default ``.``)
    relative to the spec file's folder (or the working directory); it must exist."""
    if root is None:
        base = source.parent if source is not None else Path.cwd()
        root_value = document.get("root", ".")
        if not isinstance(root_value, str):
            raise SpecError(source, f"root must be a path string, got {root_value!r}")
        root = (base / root_value).resolve()
    if not root.is_dir():
        raise SpecError(source, f"dataset folder {root} not found")
    return root


def _check_masks_against_labels(cases: CasesSpec, labels: dict[int, str], source: Path | None) -> None:
    """Checks that the masks can be read as the declared labels: lossy binary masks need a
    threshold, a binary mask is one label, and colour-coded masks map to declared ids."""
    lossy = cases.mask.lower().endswith((".jpg", ".jpeg"))
    if lossy and cases.mask_mode == "binary" and cases.mask_threshold is None:
        raise SpecError(
            source, "JPEG masks are lossy: set [cases] mask_threshold (foreground = value > threshold, e.g. 127)"
        )
    if cases.mask_mode == "binary" and len(labels) != 1:
        raise SpecError(
            source, f"mask_mode = 'binary' needs exactly one label (the foreground's name), got {len(labels)}"
        )
    if cases.colors:
        unknown = sorted({label for _, label in cases.colors if label not in labels})
        if unknown:
            raise SpecError(source, f"[cases.colors] maps to label ids {unknown} that [labels] does not declare")


def _check_pattern(
    pattern: str, key: str, allowed: tuple[str, ...], required: tuple[str, ...], source: Path | None
) -> str:
    if pattern.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", pattern) or pattern.startswith("~"):
        raise SpecError(source, f"[cases] {key} = {pattern!r} must be relative to the dataset folder")
    normal = posixpath.normpath(pattern.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or "/../" in f"/{normal}/":
        raise SpecError(source, f"[cases] {key} = {pattern!r} resolves outside the dataset folder")
    placeholders = re.findall(r"\{([^{}]*)\}", pattern)
    for placeholder in placeholders:
        if placeholder not in allowed:
            raise SpecError(
                source,
                f"[cases] {key} = {pattern!r}: unknown placeholder {{{placeholder}}}; allowed: "
                + ", ".join(f"{{{a}}}" for a in allowed),
            )
    for placeholder in required:
        if placeholder not in placeholders:
            raise SpecError(source, f"[cases] {key} = {pattern!r} must contain {{{placeholder}}}")
    return normal


def _is_int(value: Any) -> bool:
    """An integer, not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """An integer or float, not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: The ``[cases]`` keys checked on their own: key → (default, test, what the value must be).
#: A key whose default is ``None`` is optional: ``None`` passes.
_CASES_VALUES: dict[str, tuple[Any, Callable[[Any], bool], str]] = {
    "merge_masks": (False, lambda v: isinstance(v, bool), "must be true or false"),
    "channel": (None, lambda v: _is_int(v) and v >= 0, "must be a non-negative integer"),
    "mask_threshold": (None, _is_number, "must be a number"),
    "color_tolerance": (0, lambda v: _is_int(v) and 0 <= v <= 255, "must be an integer 0..255"),
    "max_bytes": (DEFAULT_MAX_BYTES, lambda v: _is_int(v) and v > 0, "must be a positive integer"),
    "affine_tolerance": (1e-3, lambda v: _is_number(v) and v >= 0, "must be a non-negative number (mm)"),
}


def _cases_value(table: Mapping[str, Any], key: str, source: Path | None) -> Any:
    """``[cases] key``, or its default, checked against :data:`_CASES_VALUES`."""
    default, test, must = _CASES_VALUES[key]
    value = table.get(key, default)
    if (value is not None or default is not None) and not test(value):
        raise SpecError(source, f"[cases] {key} {must}, got {value!r}")
    return value


def _cases_patterns(table: Mapping[str, Any], mask_mode: str, source: Path | None) -> tuple[str, str]:
    """The ``image`` and ``mask`` patterns, normalised. Without ``{case}`` in the image
    pattern the folder is one case (named after the image file), and the mask pattern may
    not use ``{case}`` either."""
    image = _check_pattern(_string(table, "image", source, "[cases] "), "image", ("case",), (), source)
    single = "{case}" not in image
    mask_needs = ("case", "label") if mask_mode == "per_label_files" else ("case",)
    mask = _check_pattern(
        _string(table, "mask", source, "[cases] "), "mask", mask_needs, mask_needs[1:] if single else mask_needs, source
    )
    if single and "{case}" in mask:
        raise SpecError(source, f"[cases] mask = {mask!r} uses {{case}} but image = {image!r} does not")
    return image, mask


def _cases_patient(table: Mapping[str, Any], source: Path | None) -> str:
    """The ``patient`` template (default ``{case}``); it may use no placeholder but ``{case}``."""
    patient = _string(table, "patient", source, "[cases] ", default="{case}")
    try:
        patient.format(case="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise SpecError(source, f"[cases] patient = {patient!r} may only use {{case}}") from exc
    return patient


def _cases_regex(table: Mapping[str, Any], key: str, source: Path | None) -> re.Pattern[Any] | None:
    """``[cases] key`` compiled, or ``None`` when absent."""
    value = table.get(key)
    if value is None:
        return None
    try:
        return re.compile(value)
    except (re.error, TypeError) as exc:
        raise SpecError(source, f"[cases] {key} {value!r} is not a regular expression ({exc})") from exc


def _cases_exclude(table: Mapping[str, Any], source: Path | None) -> tuple[str, ...]:
    """The ``exclude`` globs: one string or a list of them."""
    exclude = table.get("exclude", [])
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise SpecError(source, f"[cases] exclude must be a list of glob patterns, got {exclude!r}")
    return tuple(exclude)


def _cases_pixel_spacing(table: Mapping[str, Any], source: Path | None) -> tuple[float, float] | None:
    """The optional ``pixel_spacing``: two positive millimetre values, row then column."""
    pixel_spacing = table.get("pixel_spacing")
    if pixel_spacing is None:
        return None
    if (
        not isinstance(pixel_spacing, list)
        or len(pixel_spacing) != 2
        or not all(_is_number(v) and v > 0 for v in pixel_spacing)
    ):
        raise SpecError(source, f"[cases] pixel_spacing must be [row_mm, column_mm], got {pixel_spacing!r}")
    return (float(pixel_spacing[0]), float(pixel_spacing[1]))


def _parse_cases(table: Mapping[str, Any], source: Path | None) -> CasesSpec:
    """Validates ``[cases]`` key by key; keys that only apply to some mask modes are checked
    against ``mask_mode``."""
    _unknown_keys(table, _CASES_KEYS, "[cases]", source)
    mask_mode = table.get("mask_mode", "labelmap")
    if mask_mode not in MASK_MODES:
        raise SpecError(source, f"[cases] mask_mode must be one of {', '.join(MASK_MODES)}, got {mask_mode!r}")
    image, mask = _cases_patterns(table, mask_mode, source)
    patient = _cases_patient(table, source)
    patient_regex = _cases_regex(table, "patient_regex", source)
    if patient_regex is not None and patient_regex.groups < 1:
        raise SpecError(
            source, f"[cases] patient_regex {table['patient_regex']!r} needs a group capturing the patient id"
        )
    _cases_regex(table, "case_regex", source)
    merge_masks = _cases_value(table, "merge_masks", source)
    if merge_masks and mask_mode != "binary":
        raise SpecError(
            source, "[cases] merge_masks unions several binary masks per case; it needs mask_mode = 'binary'"
        )
    exclude = _cases_exclude(table, source)
    channel = _cases_value(table, "channel", source)
    threshold = _cases_value(table, "mask_threshold", source)
    if threshold is not None and mask_mode == "labelmap":
        raise SpecError(source, "[cases] mask_threshold applies to binary masks; this spec's mask_mode is 'labelmap'")
    colors = _parse_colors(table.get("colors"), source)
    if colors and mask_mode != "labelmap":
        raise SpecError(source, "[cases.colors] describes a colour-coded label map; set mask_mode = 'labelmap'")
    tolerance = _cases_value(table, "color_tolerance", source)
    max_bytes = _cases_value(table, "max_bytes", source)
    affine_tolerance = _cases_value(table, "affine_tolerance", source)
    pixel_spacing = _cases_pixel_spacing(table, source)
    return CasesSpec(
        image=image,
        mask=mask,
        mask_mode=mask_mode,
        patient=patient,
        patient_regex=table.get("patient_regex"),
        exclude=exclude,
        case_regex=table.get("case_regex"),
        merge_masks=merge_masks,
        channel=channel,
        mask_threshold=None if threshold is None else float(threshold),
        colors=colors,
        color_tolerance=tolerance,
        max_bytes=max_bytes,
        affine_tolerance=float(affine_tolerance),
        pixel_spacing=pixel_spacing,
    )


def _parse_colors(table: Any, source: Path | None) -> tuple[tuple[tuple[int, int, int], int], ...]:
    if table is None:
        return ()
    if not isinstance(table, Mapping):
        raise SpecError(source, '[cases.colors] must be a table like "255,0,0" = 1')
    colors: list[tuple[tuple[int, int, int], int]] = []
    for key, value in table.items():
        text = key.strip()
        if text.startswith("#") and len(text) == 7:
            red, green, blue = (int(text[i : i + 2], 16) for i in (1, 3, 5))
        else:
            parts = [p.strip() for p in text.split(",")]
            if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
                raise SpecError(source, f'[cases.colors] key {key!r} must be "R,G,B" (0..255) or "#rrggbb"')
            red, green, blue = (int(p) for p in parts)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(source, f"[cases.colors] {key!r} must map to a label id, got {value!r}")
        colors.append(((red, green, blue), value))
    return tuple(colors)


def _parse_labels(document: Mapping[str, Any], cases: CasesSpec, root: Path, source: Path | None) -> dict[int, str]:
    inline = document.get("labels")
    labels_file = document.get("labels_file")
    if inline is not None and labels_file is not None:
        raise SpecError(source, "give [labels] or labels_file, not both")
    if inline is not None:
        if not isinstance(inline, Mapping):
            raise SpecError(source, "[labels] must be a table of id = name")
        return label_map_from_mapping(inline, source)
    if labels_file is not None:
        if not isinstance(labels_file, str):
            raise SpecError(source, f"labels_file must be a path string, got {labels_file!r}")
        relative = _check_pattern(labels_file, "labels_file", (), (), source)
        return load_label_file(root / relative)
    if cases.mask_mode == "per_label_files":
        return {}  # named after the files found (find_cases)
    raise SpecError(source, "no labels: give [labels] (id = name) or labels_file")


def _parse_render(table: Any, modality: str, source: Path | None) -> RenderSpec:
    if not isinstance(table, Mapping):
        raise SpecError(source, "[render] must be a table")
    _unknown_keys(table, _RENDER_KEYS, "[render]", source)
    axes = table.get("axes", ["axial"])
    if isinstance(axes, str):
        axes = [axes]
    allowed = (*AXES, VOLUME_AXIS)
    if not isinstance(axes, list) or not axes or any(a not in allowed for a in axes):
        raise SpecError(source, f"[render] axes must be a list of {', '.join(allowed)}, got {axes!r}")
    slices = table.get("slices", "max_area")
    if not isinstance(slices, str) or not _SLICES.match(slices):
        raise SpecError(source, f"[render] slices must be 'max_area', 'spread:K' (K >= 1) or 'all', got {slices!r}")
    window = _parse_window(table.get("window"), modality, source)
    percentiles = table.get("percentiles", [0.5, 99.5])
    if (
        not isinstance(percentiles, list)
        or len(percentiles) != 2
        or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in percentiles)
        or not 0 <= percentiles[0] < percentiles[1] <= 100
    ):
        raise SpecError(
            source, f"[render] percentiles must be [low, high] with 0 <= low < high <= 100, got {percentiles!r}"
        )
    numbers = {key: _render_number(table, key, source) for key in _RENDER_NUMBERS}
    if numbers["min_side"] > numbers["max_side"]:
        raise SpecError(source, f"[render] min_side {numbers['min_side']} exceeds max_side {numbers['max_side']}")
    square = table.get("square_pixels", True)
    if not isinstance(square, bool):
        raise SpecError(source, f"[render] square_pixels must be true or false, got {square!r}")
    windows = _parse_windows(table.get("windows", {}), modality, source)
    jpeg_quality = table.get("jpeg_quality")
    if jpeg_quality is not None and (
        not isinstance(jpeg_quality, int) or isinstance(jpeg_quality, bool) or not 1 <= jpeg_quality <= 100
    ):
        raise SpecError(source, f"[render] jpeg_quality must be an integer in [1, 100], got {jpeg_quality!r}")
    image_format = table.get("image_format", "auto")
    if image_format not in IMAGE_FORMATS:
        raise SpecError(
            source, f"[render] image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}"
        )
    return RenderSpec(
        axes=tuple(dict.fromkeys(axes)),
        slices=slices,
        window=window,
        percentiles=(float(percentiles[0]), float(percentiles[1])),
        max_slices=int(numbers["max_slices"]),
        min_area_fraction=float(numbers["min_area_fraction"]),
        square_pixels=square,
        min_side=int(numbers["min_side"]),
        max_side=int(numbers["max_side"]),
        edge_margin=int(numbers["edge_margin"]),
        min_target_share=float(numbers["min_target_share"]),
        min_contrast=float(numbers["min_contrast"]),
        max_objects=int(numbers["max_objects"]),
        windows=windows,
        image_format=image_format,
        jpeg_quality=jpeg_quality,
    )


def _render_number(table: Mapping[str, Any], key: str, source: Path | None) -> float:
    default, integer, test, wanted = _RENDER_NUMBERS[key]
    value = table.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not test(value):
        raise SpecError(source, f"[render] {key} must be {wanted}, got {value!r}")
    return float(value)


def _parse_windows(table: Any, modality: str, source: Path | None) -> tuple[tuple[str, str | tuple[float, float]], ...]:
    """``[render.windows]``: window group or label name → CT window."""
    if not isinstance(table, Mapping):
        raise SpecError(source, '[render.windows] must be a table like lung = "lung" or "liver" = [60, 160]')
    if table and modality != "CT":
        raise SpecError(source, f"[render.windows] applies to CT (Hounsfield units); {modality} uses percentiles")
    return tuple((str(name), _one_window(value, source)) for name, value in sorted(table.items()))


def _one_window(item: Any, source: Path | None) -> str | tuple[float, float]:
    if isinstance(item, str):
        if item not in CT_WINDOWS:
            raise SpecError(
                source, f"[render] unknown window {item!r}; presets: {', '.join(CT_WINDOWS)} or [level, width]"
            )
        return item
    if (
        isinstance(item, list)
        and len(item) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)
        and item[1] > 0
    ):
        return (float(item[0]), float(item[1]))
    raise SpecError(source, f"[render] window must be a preset name or [level, width > 0], got {item!r}")


def _parse_window(value: Any, modality: str, source: Path | None) -> Any:
    if value is None:
        return None
    windows: str | tuple[float, float] | tuple[str | tuple[float, float], ...]
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, (str, list)) for v in value):
        windows = tuple(_one_window(v, source) for v in value)
    else:
        windows = _one_window(value, source)
    if modality not in ("CT",):
        raise SpecError(source, f"[render] window applies to CT (Hounsfield units); {modality} uses percentiles")
    return windows
