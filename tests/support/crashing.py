"""Case functions for the worker supervisor's tests (importable by a spawned worker)."""

from __future__ import annotations

import os
import time

from medground.pipeline.worker import process_case


def crash_or_hang(spec, files):
    """``abort*`` cases abort their process (as an allocation failure in native code
    does), ``hang*`` cases block in a call no Python timer interrupts; others run."""
    if files.case_id.startswith("abort"):
        os.abort()
    if files.case_id.startswith("hang"):
        time.sleep(3600)
    return process_case(spec, files)
