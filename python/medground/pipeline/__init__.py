"""The pipeline: run configs, the per-case worker, the Ray runner, the output folder."""

from medground.pipeline.config import RunConfig, SplitConfig, load_run_config
from medground.pipeline.runner import RunSummary, assemble, plan, run
from medground.pipeline.store import CaseResult
from medground.pipeline.worker import process_case

__all__ = [
    "CaseResult",
    "RunConfig",
    "RunSummary",
    "SplitConfig",
    "assemble",
    "load_run_config",
    "plan",
    "process_case",
    "run",
]
