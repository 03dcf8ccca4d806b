"""medground: verified referring-grounding data from medical segmentation masks."""

from medground._core import __version__
from medground.geometry import (
    PairTable,
    RegionTable,
    connected_components,
    contacts,
    dust,
    get_num_threads,
    largest_k,
    overlap,
    regionprops,
    set_num_threads,
    slice_areas,
    slice_bboxes,
)

__all__ = [
    "PairTable",
    "RegionTable",
    "__version__",
    "connected_components",
    "contacts",
    "dust",
    "get_num_threads",
    "largest_k",
    "overlap",
    "regionprops",
    "set_num_threads",
    "slice_areas",
    "slice_bboxes",
]
