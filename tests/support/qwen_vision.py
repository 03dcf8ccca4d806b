"""qwen-vl-utils' own image code, loaded without torch.

qwen-vl-utils (the Qwen team's preprocessing library, ``qwen_vl_utils/vision_process.py``)
imports torch and torchvision at module level, for its video readers only: ``smart_resize``,
``fetch_image`` and ``process_vision_info`` on images use PIL alone. This loads the installed
file with empty placeholder modules standing in for torch and torchvision during the import
(``sys.modules`` is restored afterwards), so the tests run the library's real image code
rather than a copy of it. Tests that need it skip where qwen-vl-utils is not installed (the
``test`` extra installs it).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import cache
from pathlib import Path

import pytest

_PLACEHOLDERS = ("torch", "torchvision", "torchvision.io", "torchvision.transforms")


@cache
def _load() -> types.ModuleType | None:
    spec = importlib.util.find_spec("qwen_vl_utils")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "vision_process.py"
    saved = {name: sys.modules.get(name) for name in _PLACEHOLDERS}
    placeholders = {name: types.ModuleType(name) for name in _PLACEHOLDERS}
    placeholders["torchvision"].io = placeholders["torchvision.io"]  # type: ignore[attr-defined]
    placeholders["torchvision"].transforms = placeholders["torchvision.transforms"]  # type: ignore[attr-defined]
    placeholders["torchvision.transforms"].InterpolationMode = type("InterpolationMode", (), {})  # type: ignore[attr-defined]
    placeholders["torch"].Tensor = type("Tensor", (), {})  # type: ignore[attr-defined]  # in annotations
    module_spec = importlib.util.spec_from_file_location("_qwen_vl_utils_vision_process", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    try:
        sys.modules.update(placeholders)
        module_spec.loader.exec_module(module)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
    return module


def vision_process() -> types.ModuleType:
    """The installed ``qwen_vl_utils.vision_process`` (the test is skipped without it)."""
    module = _load()
    if module is None:
        pytest.skip("qwen-vl-utils is not installed (pip install 'medground[test]')")
    return module
