"""The same work on one thread of the core and on two, for tests that a second core
changes no result: ``alone, beside = one_then_two(lambda: ...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from medground import geometry

T = TypeVar("T")


def one_then_two(work: Callable[[], T]) -> tuple[T, T]:
    """``work()`` with the core's kernels on one thread, then on two; every core after."""
    try:
        geometry.set_num_threads(1)
        alone = work()
        geometry.set_num_threads(2)
        return alone, work()
    finally:
        geometry.set_num_threads(0)
