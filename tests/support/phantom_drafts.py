"""The liver phantom's template drafts, and one draft run through the verifier."""

from __future__ import annotations

from pathlib import Path

from medground.generate import draft_case, view_measurements
from medground.records import Sample
from medground.verify import Verifier
from phantom_cases import liver_phantom


def phantom(tmp_path: Path, faint: bool = False):
    """The shared liver phantom and its template drafts."""
    spec, case = liver_phantom(tmp_path, faint)
    return spec, draft_case(case, spec)


def run(spec, drafts, sample: Sample):
    view = next(v for v in drafts.views if v.view_record() == sample.view)
    return Verifier().verify(sample, drafts.facts[sample.image], view_measurements(drafts, spec, view))


def lesion_sample(drafts, query_type: str = "direct") -> Sample:
    return next(s for s in drafts.samples if s.query_type == query_type and s.targets[0].label == "liver lesion")
