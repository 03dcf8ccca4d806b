"""The visual stage with a vision-language model as judge.

The model sees the stored image with the target box(es) drawn (a marked copy, in memory
only) and the query, and answers JSON ``{verdict: yes|no, confidence: 0..1, reason}``
(prompt ``presets/prompts/judge_v2.toml``, versioned; the query reaches the model as data
between ``<data>`` markers, never as instructions). A draft passes when the verdict is
``yes`` with a confidence of at least the threshold. Reason codes of this judge:

* ``judge_rejected``: the verdict is ``no``.
* ``judge_unsure``: ``yes``, but with a confidence below the threshold.
* ``judge_failed``: no usable answer (timeout, HTTP error, malformed JSON, off-schema);
  ``info.failure`` holds the backend's reason code, or ``invalid_confidence`` /
  ``invalid_verdict`` for an answer whose confidence is not a finite number in [0, 1]
  (``NaN``, ``Infinity``, a string) or whose verdict is neither yes nor no, whatever
  backend let it through.

The model, prompt version, verdict, confidence and the model's reason are kept in the
stage result's ``info``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground.backends import Backend, Request, make_backend
from medground.backends.images import draw_boxes, prepare_image
from medground.backends.prompts import PromptTemplate, data_block, load_prompt
from medground.boxes import FAMILIES, ModelFamily, family_for_model
from medground.records import Sample, StageResult
from medground.verify.judge import JudgeItem

__all__ = ["DEFAULT_JUDGE_PROMPT", "VlmJudge"]

DEFAULT_JUDGE_PROMPT = "judge_v2"


def _orientation(sample: Sample) -> str:
    if all(t.cues.get("laterality") is None for t in sample.targets):
        return "none"
    return "radiological" if sample.view is not None else "image"


def _unusable(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(failure, detail)`` when the answer's verdict or confidence cannot be used: a
    confidence that is not a finite number in [0, 1] never passes (a NaN would compare
    false with any threshold), whichever backend let it through."""
    verdict, confidence = data.get("verdict"), data.get("confidence")
    if verdict not in ("yes", "no"):
        return "invalid_verdict", f"the verdict {str(verdict)[:40]!r} is neither yes nor no"
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not math.isfinite(confidence)
        or not 0.0 <= confidence <= 1.0
    ):
        return "invalid_confidence", f"the confidence {str(confidence)[:40]!r} is not a finite number in [0, 1]"
    return None


class VlmJudge:
    """Judges drafts with a vision-language model behind a :class:`~medground.backends.Backend`.

    Args:
        backend: the model backend (``openai`` or ``vllm``).
        threshold: the least confidence of a ``yes`` that passes, in [0, 1].
        prompt: the prompt template's name under ``presets/prompts/``.
        image_family: how images are prepared; by default from the model name.

    Raises:
        ValueError: for a threshold outside [0, 1] or an unknown image family.
    """

    stage = "visual"
    name = "vlm"

    def __init__(
        self,
        backend: Backend,
        threshold: float = 0.5,
        *,
        prompt: str = DEFAULT_JUDGE_PROMPT,
        image_family: str | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if image_family is not None and image_family not in FAMILIES:
            raise ValueError(f"image_family must be one of {', '.join(FAMILIES)}, got {image_family!r}")
        self.backend = backend
        self.seed = int(seed)
        self.threshold = float(threshold)
        self.prompt: PromptTemplate = load_prompt(prompt)
        self.version = self.prompt.version
        self.family: ModelFamily = FAMILIES[image_family] if image_family else family_for_model(backend.model)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, backend: Backend | None = None) -> VlmJudge:
        """The judge of a ``[verification.visual]`` section with ``backend = "vlm"``: the
        backend's keys (see :func:`~medground.backends.make_backend`) plus ``threshold``
        (0.5), ``prompt`` and ``image_family``."""
        return cls(
            backend or make_backend(config),
            config.get("threshold", 0.5),
            prompt=config.get("prompt", DEFAULT_JUDGE_PROMPT),
            image_family=config.get("image_family"),
            seed=int(config.get("seed", 0)),
        )

    def request(self, sample: Sample, image: NDArray[np.uint8]) -> Request:
        """The backend request for one draft: the marked image and the query."""
        prepared, prep = prepare_image(image, self.family)
        marked = draw_boxes(prepared, [prep.to_prepared(t.box) for t in sample.targets])
        region = f"{sample.view['axis']} slice" if sample.view else "2D image"
        # The query (another model's words) and the dataset's modality are data, never instructions.
        text = self.prompt.render(
            data=data_block({"modality": sample.modality, "region": region, "query": sample.query}),
            orientation=self.prompt.snippet("orientation", _orientation(sample)),
        )
        return Request(
            id=sample.id,
            messages=[
                {"role": "system", "content": self.prompt.system},
                {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": text}]},
            ],
            images=(marked,),
            schema=self.prompt.answer_schema(),
            schema_name="grounding_verdict",
            # Reproducible sampling: the seed follows the draft, not the order of requests.
            seed=int.from_bytes(hashlib.sha256(f"{self.seed}|{sample.id}".encode()).digest()[:4], "big"),
        )

    def judge(self, items: Sequence[JudgeItem]) -> list[StageResult]:
        """Stage results for drafts (:class:`medground.verify.judge.JudgeItem` s) in one backend batch."""
        if not items:
            return []
        samples = [item.sample for item in items]
        images = [item.image for item in items]
        responses = self.backend.run([self.request(s, i) for s, i in zip(samples, images, strict=True)])
        results = []
        for response in responses:
            info: dict[str, Any] = {
                "judge": "vlm",
                "backend": self.backend.name,
                "model": self.backend.model,
                "prompt_version": self.version,
                "threshold": self.threshold,
            }
            if not response.ok:
                info["failure"] = response.reason
                results.append(
                    StageResult(
                        self.stage,
                        False,
                        "judge_failed",
                        f"no usable verdict: {response.reason}: {response.detail}",
                        info,
                    )
                )
                continue
            assert response.data is not None
            problem = _unusable(response.data)
            if problem is not None:
                info["failure"] = problem[0]
                results.append(StageResult(self.stage, False, "judge_failed", f"no usable verdict: {problem[1]}", info))
                continue
            verdict, confidence = str(response.data["verdict"]), float(response.data["confidence"])
            info.update(verdict=verdict, confidence=round(confidence, 4), reason=response.data["reason"])
            if verdict != "yes":
                results.append(
                    StageResult(
                        self.stage,
                        False,
                        "judge_rejected",
                        f"the judge says no ({confidence:.2f}): {response.data['reason']}",
                        info,
                    )
                )
            elif confidence < self.threshold:
                results.append(
                    StageResult(
                        self.stage,
                        False,
                        "judge_unsure",
                        f"yes with confidence {confidence:.2f} < {self.threshold}",
                        info,
                    )
                )
            else:
                results.append(StageResult(self.stage, True, info=info))
        return results

    def __call__(self, sample: Sample, image: NDArray[np.uint8]) -> StageResult:
        """The stage result for one draft on its stored 8-bit image."""
        return self.judge([JudgeItem(sample, image, image)])[0]
