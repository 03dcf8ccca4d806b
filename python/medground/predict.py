"""Asking a vision-language model to ground each query: ``medground predict``.

Each sample's query (and, for families with ``<ref>`` spans, its referring expression) is
wrapped in the grounding prompt its model family was trained on (the registry
``presets/grounding_prompts.toml``, read by :func:`medground.boxes.grounding_prompt`, which
``medground export`` writes its instructions with too) and sent with the stored image, as it is on disk, to a
model backend (:mod:`medground.backends`: an OpenAI-compatible server with retries,
bounded concurrency and the key read from an environment variable, or in-process vLLM);
the raw answers go to a predictions JSONL that ``medground eval`` scores. Every line
records the ``format`` (so eval needs no ``--format``), the ``model``, the
``prompt_version`` and the box convention it assumed, with its parameters (``boxes``:
Qwen2.5-VL's ``min_pixels``/``max_pixels``), which eval reads back.

Runs are resumable: answers are appended as they come and ids already in the output are
skipped, so rerunning the same command after an interruption or failures finishes the job.
``medground predict`` checks its backend once before any request
(:func:`medground.backends.check_backend`), so a server that is down or a model that is not
there stops it with the reason instead of failing every sample.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground.backends import Backend, EncodedImage, Request
from medground.boxes import BoxConvention, convention, grounding_prompt, prompt_version
from medground.evaluate.files import GroundTruth
from medground.records import dumps
from medground.runfolder import RecordFileError, read_jsonl

__all__ = ["PredictSummary", "grounding_prompt", "grounding_request", "predict", "prompt_version"]


def grounding_request(truth: GroundTruth, format_name: str) -> Request:
    """The backend request for one sample: its stored image as it is on disk (image first,
    the order the Qwen and InternVL chat templates use), then the family's prompt; the
    answer is plain text."""
    assert truth.image is not None
    mime = mimetypes.guess_type(str(truth.image))[0] or "image/png"
    prompt = grounding_prompt(
        truth.query or "",
        format_name,
        multi=truth.multi,
        width=truth.width,
        height=truth.height,
        expression=truth.expression,
    )
    return Request(
        id=truth.id,
        messages=[{"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": prompt}]}],
        images=(EncodedImage(truth.image.read_bytes(), mime),),
        schema={},
        schema_name="grounding",
    )


@dataclass(frozen=True)
class PredictSummary:
    """What a predict run did.

    Attributes:
        total: Samples selected.
        skipped: Samples already answered in the output file.
        answered: Answers written by this run.
        failed: Samples the backend gave no answer for (not written; a rerun retries them).
        errors: Why, for each failed sample (``id: reason: detail``).
    """

    total: int
    skipped: int
    answered: int
    failed: int
    errors: list[str] = field(default_factory=list)


def _answered_ids(out: Path, format_name: str, model: str, boxes: dict[str, Any]) -> set[str]:
    """Ids already in ``out``, after dropping a last line cut short by an interruption.

    Raises:
        RecordFileError: When ``out`` holds answers of another format, model or box convention.
    """
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        with out.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    ids: set[str] = set()
    for line, record in read_jsonl(out):
        for key, expected in (("format", format_name), ("model", model), ("boxes", boxes)):
            if record.get(key) is not None and record[key] != expected:
                raise RecordFileError(
                    out,
                    line,
                    f"answer of {key} {record[key]!r}, not {expected!r}; use another --out for another model or format",
                )
        if "id" in record:
            ids.add(str(record["id"]))
    return ids


def predict(
    truths: Sequence[GroundTruth],
    backend: Backend,
    out: Path | str,
    *,
    format_name: str,
    model: str,
    boxes: BoxConvention | None = None,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> PredictSummary:
    """Asks ``backend`` to ground every sample not yet answered in ``out``, appending answers.

    Args:
        truths: The samples (each needs ``query`` and ``image``).
        backend: A model backend (:func:`medground.backends.make_backend`).
        out: Predictions JSONL; created, or resumed when it exists.
        format_name: The model family (chooses the prompt; recorded).
        model: The model name (recorded).
        boxes: The box convention the model answers in (recorded on every line for eval;
            default: the family's, with the released checkpoints' image limits).
        batch_size: Samples per backend call (and between writes).
        progress: Called with (done, to do) after each batch.

    Returns:
        What the run did.

    Raises:
        ValueError: For a sample without query or image, or ``batch_size < 1``.
        RecordFileError: When ``out`` holds answers of another format or model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = Path(out)
    assumed = (boxes or convention(format_name)).describe()
    done = _answered_ids(out, format_name, model, assumed)
    todo = [t for t in truths if t.id not in done]
    for truth in todo:
        if not truth.query or truth.image is None:
            raise ValueError(f"sample {truth.id!r} has no {'query' if not truth.query else 'image'} to ask about")
    version = prompt_version()
    answered = 0
    errors: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            responses = backend.run([grounding_request(t, format_name) for t in chunk])
            if len(responses) != len(chunk):
                raise RuntimeError(f"the backend answered {len(responses)} of a batch of {len(chunk)}")
            for truth, response in zip(chunk, responses, strict=True):
                if not response.ok:
                    errors.append(f"{truth.id}: {response.reason}: {response.detail}")
                    continue
                record = {
                    "id": truth.id,
                    "text": response.text,
                    "format": format_name,
                    "model": model,
                    "prompt_version": version,
                    "boxes": assumed,
                }
                handle.write(dumps(record, ensure_ascii=False) + "\n")
                answered += 1
            handle.flush()
            if progress is not None:
                progress(min(start + batch_size, len(todo)), len(todo))
    return PredictSummary(
        total=len(truths), skipped=len(truths) - len(todo), answered=answered, failed=len(errors), errors=errors
    )
