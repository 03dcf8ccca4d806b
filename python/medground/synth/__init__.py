"""Query synthesis: from references (chosen attributes) to query drafts."""

from medground.synth.template import TemplateSynthesizer, noun_phrase

__all__ = ["TemplateSynthesizer", "noun_phrase"]
