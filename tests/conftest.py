"""Fixtures shared by several test folders, and the markers added at collection.

Helper modules (the loopback chat server, phantom cases, stand-in engines) are in
tests/support/, importable by their names (``pythonpath`` in pyproject.toml). Markers:
``realdata`` is added to every test that uses the ``shared_data`` fixture (the real sample
data in ../shared/data), ``browser`` to every test that drives Chromium, and a ``gpu``
test is skipped where CUDA or vLLM is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatserver import ChatServer, Script
from medground import phantoms

SHARED_DATA = Path(os.environ.get("MEDGROUND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

#: Fixture → marker: a test using the fixture gets the marker.
MARKED_FIXTURES = {"shared_data": "realdata", "browser": "browser"}


def _gpu_missing() -> str | None:
    """Why the ``gpu`` tests cannot run here, or None where they can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'medground[vllm]')"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKED_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    reason = _gpu_missing() if gpu else None
    if reason:
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set MEDGROUND_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ChatServer]]:
    servers: list[ChatServer] = []

    def start(script: Script) -> ChatServer:
        server = ChatServer(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    phantoms.demo_dataset(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def runs_write_schema_valid_samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, every ``samples.jsonl`` a run wrote during it (a run folder:
    ``manifest.json`` beside it) is checked line by line against the JSON Schema the package
    ships (``medground.records.sample_schema``); a record that breaks it fails the session."""
    yield
    try:
        import jsonschema
    except ImportError:  # the test extra installs it
        return
    from medground.records import sample_schema

    validator = jsonschema.Draft202012Validator(sample_schema())
    problems = []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("samples.jsonl")):
        if not (path.parent / "manifest.json").is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for error in validator.iter_errors(json.loads(line)):
                problems.append(f"{path}:{number}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
    assert not problems, "samples that break the JSON Schema:\n" + "\n".join(problems[:20])
