"""Benchmark fixtures: the seeded volumes of bench/volumes.py, loaded once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import volumes  # noqa: E402


@pytest.fixture(scope="session")
def clean():
    return volumes.clean()


@pytest.fixture(scope="session")
def noisy():
    return volumes.noisy()


@pytest.fixture(scope="session")
def salt():
    return volumes.salt()


@pytest.fixture(scope="session")
def labelmap():
    return volumes.labelmap()
