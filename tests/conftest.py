"""Shared fixtures: reference partitions and the real sample data in ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from chatserver import ChatServer, Script

SHARED_DATA = Path(os.environ.get("MEDGROUND_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

LABEL_DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the voxels into the same components (up to renumbering)."""
    if a.shape != b.shape or not np.array_equal(a != 0, b != 0):
        return False
    fg = a != 0
    pairs = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1)
    return pairs.shape[1] == len(np.unique(a[fg])) == len(np.unique(b[fg]))


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
