"""Reading datasets: specs, case discovery, image readers, label maps and orientation.

Nothing here imports a pipeline stage: the dataset layer is below all of them.
"""

from medground.io.case import Case, load_case, present_labels
from medground.io.discover import CaseFiles, CaseIndex, find_cases, resolve_labels
from medground.io.errors import CaseError, SpecError
from medground.io.labels import load_label_file
from medground.io.readers import DEFAULT_MAX_BYTES, read_image
from medground.io.schema import AnchorFilters, DatasetSpec, RenderSpec
from medground.io.spec import list_presets, load_preset, load_spec, load_specs, parse_spec
from medground.io.volume import Volume, axcodes_of, patient_side

__all__ = [
    "DEFAULT_MAX_BYTES",
    "AnchorFilters",
    "Case",
    "CaseError",
    "CaseFiles",
    "CaseIndex",
    "DatasetSpec",
    "RenderSpec",
    "SpecError",
    "Volume",
    "axcodes_of",
    "find_cases",
    "list_presets",
    "load_case",
    "load_label_file",
    "load_preset",
    "load_spec",
    "load_specs",
    "parse_spec",
    "patient_side",
    "present_labels",
    "read_image",
    "resolve_labels",
]
