"""Query synthesis: from references (the attributes that single out each target) to query
drafts, by the offline template or a vision-language model; one protocol
(:class:`Synthesizer`), one factory (:func:`make_synthesizer`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medground.settings import SynthesisSettings
from medground.synth.base import Synthesis, Synthesizer, draft_sample
from medground.synth.template import DEFAULT_TEMPLATES, TemplateSynthesizer, noun_phrase
from medground.synth.vlm import VlmSynthesizer

__all__ = [
    "Synthesis",
    "Synthesizer",
    "TemplateSynthesizer",
    "VlmSynthesizer",
    "draft_sample",
    "make_synthesizer",
    "noun_phrase",
]


def make_synthesizer(
    settings: SynthesisSettings | Mapping[str, Any] | None = None, *, seed: int = 0, backend: Any = None
) -> Synthesizer:
    """The synthesizer ``[synthesis]`` asks for: the template (default, no model) or a
    :class:`VlmSynthesizer` over the ``vllm``/``openai`` backend.

    Args:
        settings: the parsed section (a plain mapping is parsed first).
        seed: the run's seed (a ``seed`` key in the section wins).
        backend: a model backend to use instead of building one.
    """
    if not isinstance(settings, SynthesisSettings):
        settings = SynthesisSettings.from_table(settings)
    if not settings.uses_model:
        return TemplateSynthesizer(settings.get("seed", seed), settings.get("templates", DEFAULT_TEMPLATES))
    return VlmSynthesizer.from_config(settings.table, seed=seed, backend=backend)
