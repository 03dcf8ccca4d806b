"""Asking a vision-language model to ground each query: ``medground predict``.

Each sample's query is wrapped in the grounding prompt its model family was trained on
(``presets/grounding_prompts.toml``) and sent with the stored image to a backend; the raw
answers go to a predictions JSONL that ``medground eval`` scores. Every line records the
``format`` (so eval needs no ``--format``), the ``model`` and the ``prompt_version``.

A backend is anything with the :class:`Ask` shape: given a batch of ``{"id", "image",
"prompt"}`` it returns one answer per item, or None where it got none. Two ship here: an
OpenAI-compatible HTTP client (standard library only; works against a vLLM, SGLang or
LMDeploy server) and in-process vLLM (``pip install medground[vllm]``).

Runs are resumable: answers are appended as they come and ids already in ``--out`` are
skipped, so rerunning the same command after an interruption or failures finishes the job.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import click

from medground.evaluate import (
    FORMATS,
    EvalFileError,
    GroundTruth,
    load_ground_truth,
    read_jsonl,
    samples_file,
)

__all__ = [
    "Ask",
    "OpenAIAsker",
    "PredictSummary",
    "VLLMAsker",
    "grounding_prompt",
    "image_data_url",
    "predict",
    "predict_command",
    "prompt_version",
]


class Ask(Protocol):
    """A backend: one answer (or None on failure) per ``{"id", "image", "prompt"}`` item."""

    def __call__(self, batch: list[dict[str, str]]) -> list[str | None]: ...


@lru_cache(maxsize=1)
def _prompts() -> dict[str, Any]:
    text = (resources.files("medground") / "presets" / "grounding_prompts.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def prompt_version() -> str:
    """The version of the shipped grounding prompts (recorded in every prediction line)."""
    return str(_prompts()["version"])


def grounding_prompt(query: str, format_name: str, *, multi: bool, width: int, height: int) -> str:
    """The grounding prompt of a model family for one query.

    Args:
        query: The sample's query.
        format_name: The family's coordinate convention (a key of ``evaluate.FORMATS``).
        multi: Whether the query names several objects (``multi_object``).
        width: Stored image width in pixels.
        height: Stored image height in pixels.

    Raises:
        ValueError: For an unknown format.
    """
    prompts = _prompts()
    if format_name not in FORMATS or format_name not in prompts:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format_name!r}")
    template = prompts[format_name]["multi" if multi else "single"]
    return template.format(query=query.strip(), width=width, height=height)


def image_data_url(path: Path | str) -> str:
    """The image file as a base64 ``data:`` URL (type from the suffix, PNG if unknown)."""
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def _messages(item: dict[str, str]) -> list[dict[str, Any]]:
    """One user turn with the image first, then the prompt (the order the Qwen and InternVL
    chat templates put an image and its question in)."""
    return [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_data_url(item["image"])}},
        {"type": "text", "text": item["prompt"]},
    ]}]


class OpenAIAsker:
    """Chat completions against an OpenAI-compatible server, with the standard library.

    Requests of a batch run concurrently; a request that fails (HTTP error, timeout, an
    answer without text) gives None and a line in :attr:`errors`.

    Args:
        base_url: The server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: The model name the server knows.
        api_key: Sent as a bearer token when given.
        max_tokens: Answer length limit.
        timeout: Seconds per request.
        concurrency: Requests in flight at once.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_tokens: int = 512,
                 timeout: float = 120.0, concurrency: int = 8) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.concurrency = concurrency
        self.errors: list[str] = []

    def __call__(self, batch: list[dict[str, str]]) -> list[str | None]:
        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
            return list(pool.map(self._ask_one, batch))

    def _ask_one(self, item: dict[str, str]) -> str | None:
        body = {"model": self.model, "messages": _messages(item), "max_tokens": self.max_tokens, "temperature": 0.0}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
            content = answer["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as error:
            try:
                detail = error.read(300).decode("utf-8", "replace").strip()
            finally:
                error.close()
            self.errors.append(f"{item['id']}: HTTP {error.code} from {self.url}: {detail}")
            return None
        except (urllib.error.URLError, OSError) as error:
            self.errors.append(f"{item['id']}: no answer from {self.url}: {getattr(error, 'reason', error)}")
            return None
        except (ValueError, KeyError, IndexError, TypeError) as error:
            self.errors.append(f"{item['id']}: unexpected answer from {self.url}: {error!r}")
            return None
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            self.errors.append(f"{item['id']}: answer without text from {self.url}")
            return None
        return content


class VLLMAsker:
    """Greedy answers from a model loaded in this process with vLLM.

    Args:
        model: A model name or folder vLLM can load.
        max_tokens: Answer length limit.
        **engine_args: Passed to ``vllm.LLM`` (e.g. ``tensor_parallel_size``).

    Raises:
        ImportError: When vLLM is not installed (``pip install medground[vllm]``).
    """

    def __init__(self, model: str, *, max_tokens: int = 512, **engine_args: Any) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as error:
            raise ImportError("the vllm backend needs vLLM: pip install medground[vllm] "
                              "(or serve the model and use --backend openai)") from error
        self._llm = LLM(model=model, limit_mm_per_prompt={"image": 1}, **engine_args)
        self._params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        self.errors: list[str] = []

    def __call__(self, batch: list[dict[str, str]]) -> list[str | None]:
        try:
            outputs = self._llm.chat([_messages(item) for item in batch], self._params, use_tqdm=False)
        except Exception as error:  # noqa: BLE001 (one bad batch must not end the run; a rerun retries it)
            self.errors.append(f"batch of {len(batch)} from {batch[0]['id']}: {error!r}")
            return [None] * len(batch)
        return [out.outputs[0].text if out.outputs else None for out in outputs]


@dataclass(frozen=True)
class PredictSummary:
    """What a predict run did.

    Attributes:
        total: Samples selected.
        skipped: Samples already answered in the output file.
        answered: Answers written by this run.
        failed: Samples the backend gave no answer for (not written; a rerun retries them).
    """

    total: int
    skipped: int
    answered: int
    failed: int


def _answered_ids(out: Path, format_name: str, model: str) -> set[str]:
    """Ids already in ``out``, after dropping a last line cut short by an interruption.

    Raises:
        EvalFileError: When ``out`` holds answers of another format or model.
    """
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        with out.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
    ids: set[str] = set()
    for line, record in read_jsonl(out):
        for key, expected in (("format", format_name), ("model", model)):
            if record.get(key) is not None and record[key] != expected:
                raise EvalFileError(out, line, f"answer of {key} {record[key]!r}, not {expected!r}; "
                                               "use another --out for another model or format")
        if "id" in record:
            ids.add(str(record["id"]))
    return ids


def predict(truths: Sequence[GroundTruth], ask: Ask, out: Path | str, *, format_name: str, model: str,
            batch_size: int = 16, progress: Callable[[int, int], None] | None = None) -> PredictSummary:
    """Asks ``ask`` to ground every sample not yet answered in ``out``, appending answers.

    Args:
        truths: The samples (each needs ``query`` and ``image``).
        ask: The backend.
        out: Predictions JSONL; created, or resumed when it exists.
        format_name: The model family's convention (chooses the prompt; recorded).
        model: The model name (recorded).
        batch_size: Samples per call of ``ask``.
        progress: Called with (done, to do) after each batch.

    Returns:
        What the run did.

    Raises:
        ValueError: For a sample without query or image, or ``batch_size < 1``.
        EvalFileError: When ``out`` holds answers of another format or model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = Path(out)
    done = _answered_ids(out, format_name, model)
    todo = [t for t in truths if t.id not in done]
    for truth in todo:
        if not truth.query or truth.image is None:
            raise ValueError(f"sample {truth.id!r} has no {'query' if not truth.query else 'image'} to ask about")
    version = prompt_version()
    answered = failed = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = [{"id": t.id, "image": str(t.image), "prompt": grounding_prompt(
                t.query or "", format_name, multi=t.multi, width=t.width, height=t.height)} for t in chunk]
            answers = ask(batch)
            if len(answers) != len(batch):
                raise RuntimeError(f"the backend answered {len(answers)} of a batch of {len(batch)}")
            for truth, text in zip(chunk, answers):
                if text is None:
                    failed += 1
                    continue
                record = {"id": truth.id, "text": text, "format": format_name, "model": model,
                          "prompt_version": version}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                answered += 1
            handle.flush()
            if progress is not None:
                progress(min(start + batch_size, len(todo)), len(todo))
    return PredictSummary(total=len(truths), skipped=len(truths) - len(todo), answered=answered, failed=failed)


@click.command("predict")
@click.option("--gt", "gt", required=True, type=click.Path(exists=True, path_type=Path),
              help="An output folder of `medground run` (or its samples.jsonl).")
@click.option("--split", default="test", show_default=True, help="The split to predict; 'all' for every sample.")
@click.option("--backend", required=True, type=click.Choice(["vllm", "openai"]),
              help="openai: an OpenAI-compatible server at --base-url; vllm: load --model in this process.")
@click.option("--model", required=True, help="The model (name on the server, or what vLLM loads).")
@click.option("--format", "format_name", required=True, type=click.Choice(list(FORMATS)),
              help="The model family: chooses its grounding prompt and is recorded for eval.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Predictions JSONL; an existing file is resumed (its ids are skipped).")
@click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True, help="openai: the API root.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="openai: the environment variable holding the API key (sent if set).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Queries per backend call (and between writes).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="openai: requests in flight at once.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Answer length limit.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="openai: seconds per request.")
def predict_command(gt: Path, split: str, backend: str, model: str, format_name: str, out: Path, base_url: str,
                    api_key_env: str, batch_size: int, concurrency: int, max_tokens: int, timeout: float) -> None:
    """Ask a VLM to ground each query of an output folder; `medground eval` scores the answers.

    Resumable: answers are appended to --out as they come, and ids already there are
    skipped, so rerunning the same command retries only what is left.
    """
    try:
        truths = load_ground_truth(gt, split=None if split == "all" else split)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if not truths:
        raise click.ClickException(
            f"{samples_file(gt)}: no samples with split {split!r} (use --split all for every sample)")
    ask: OpenAIAsker | VLLMAsker
    if backend == "openai":
        ask = OpenAIAsker(base_url, model, api_key=os.environ.get(api_key_env) or None, max_tokens=max_tokens,
                          timeout=timeout, concurrency=concurrency)
    else:
        try:
            ask = VLLMAsker(model, max_tokens=max_tokens)
        except ImportError as error:
            raise click.ClickException(str(error)) from error

    def progress(done: int, todo: int) -> None:
        click.echo(f"{done}/{todo} asked", err=True)

    try:
        summary = predict(truths, ask, out, format_name=format_name, model=model, batch_size=batch_size,
                          progress=progress)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{summary.total} samples: {summary.answered} answered now, {summary.skipped} already in {out}, "
               f"{summary.failed} without answer")
    if summary.failed:
        shown = "\n".join(f"  {line}" for line in ask.errors[:5])
        raise click.ClickException(
            f"{summary.failed} queries got no answer; rerun the same command to retry them:\n{shown}")
