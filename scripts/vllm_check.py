"""Checks a VLM setup end to end on real images: query synthesis and visual judging.

Loads a model with vLLM in this process (or talks to a running OpenAI-compatible server
with ``--base-url``), takes the first case of a few real datasets in ``../shared/data``
(abdominal CT, chest X-ray, colonoscopy, dermoscopy), asks the model for queries about a
few targets of each, verifies the drafts (format and rules), asks the model to judge them,
and prints the parsed answers, the rejections with their reasons, and the timings.

Usage (on a machine with a CUDA GPU and ``pip install 'medground[vllm]'``)::

    python scripts/vllm_check.py --model /models/Qwen2.5-VL-7B-Instruct
    python scripts/vllm_check.py --model Qwen/Qwen2.5-VL-7B-Instruct --base-url http://127.0.0.1:8000/v1

Exit status 0 when the model answered at least one request of each kind with valid JSON,
1 otherwise. Nothing is written unless ``--out`` names a JSON Lines file (records only, no
images).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
NO_ANSWER = frozenset(
    {
        "malformed_json",
        "schema_violation",
        "truncated",
        "refused",
        "malformed_response",
        "timeout",
        "connection",
        "redirect",
        "response_too_large",
        "backend_error",
    }
)


class _Capture:
    """Stands in for a synthesizer inside ``draft_case`` to keep each view's inputs."""

    backend = version = "capture"

    def __init__(self) -> None:
        self.views: list[tuple[Any, dict[int, dict[str, Any]], list[Any]]] = []

    def synthesize(
        self, view: Any, cues: dict[int, dict[str, Any]], references: list[Any], **_: Any
    ) -> tuple[list[Any], list[Any]]:
        self.views.append((view, cues, references))
        return [], []


def _answered(reason: str) -> bool:
    """Whether a synthesis rejection still came from a valid JSON answer (a wrong query, not no answer)."""
    return reason not in NO_ANSWER and not reason.startswith("http_")


def datasets(data: Path, scratch: Path) -> list[Any]:
    """Dataset specs for the real sample data that is present."""
    from medground.io import load_preset, load_spec

    specs = []
    ct = data / "ct_abdomen_totalseg"
    if ct.is_dir():
        (scratch / "ct.toml").write_text(
            f'name = "ct_abdomen"\nmodality = "CT"\nbody_region = "abdomen"\nroot = "{ct}"\n'
            'labels_file = "labels.json"\n[cases]\nimage = "ct.nii.gz"\nmask = "seg.nii.gz"\n'
        )
        specs.append(load_spec(scratch / "ct.toml"))
    for preset, folder in (("cxr_lung", "cxr_lung"), ("kvasir_seg", "endoscopy_kvasir")):
        if (data / folder).is_dir():
            specs.append(load_preset(preset, data / folder))
    ph2 = data / "dermoscopy_ph2"  # converted to PNG, so not the preset's layout
    if ph2.is_dir():
        (scratch / "ph2.toml").write_text(
            f'name = "ph2"\nmodality = "dermoscopy"\nbody_region = "skin"\ndisplay = "image"\nroot = "{ph2}"\n'
            '[cases]\nimage = "images/{case}.png"\nmask = "masks/{case}.png"\nmask_mode = "binary"\n'
            '[labels]\n1 = "skin lesion"\n'
        )
        specs.append(load_spec(scratch / "ph2.toml"))
    return specs


class _Tally:
    """What the check gathers: the records to write, the drafts to judge (with the images
    they were drawn on), the count of valid answers per kind, and the synthesis time."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.drafts: list[Any] = []
        self.images: list[Any] = []
        self.answered = {"synthesis": 0, "judge": 0}
        self.synthesis_s = 0.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="local model folder (or a name the server/vLLM knows)")
    parser.add_argument("--base-url", help="use a running OpenAI-compatible server instead of in-process vLLM")
    parser.add_argument("--api-key-env", help="environment variable holding the server's API key")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"real sample data (default {DEFAULT_DATA})")
    parser.add_argument("--references", type=int, default=4, help="targets asked about per dataset (default 4)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    parser.add_argument("--max-model-len", type=int, default=16384)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--image-family", help="override the image family guessed from the model name")
    parser.add_argument("--threshold", type=float, default=0.5, help="judge confidence needed to accept")
    parser.add_argument("--out", type=Path, help="write the drafts, failures and verdicts here (JSON Lines)")
    return parser.parse_args(argv)


def _backend_config(args: argparse.Namespace) -> dict[str, Any]:
    """The backend's configuration: a running server's when ``--base-url`` names one, else in-process vLLM."""
    config: dict[str, Any] = {
        "model": args.model,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "seed": 0,
    }
    if args.base_url:
        config.update(backend="openai", base_url=args.base_url, api_key_env=args.api_key_env)
    else:
        config.update(
            backend="vllm",
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
            limit_mm_per_prompt={"image": 2},
        )
    return config


def _format_and_rules(sample: Any, facts: dict[int, dict[str, Any]], measures: Any) -> list[Any]:
    """The format check's result, then the rules' when the format passed."""
    from medground.verify import check_format, check_rules

    checks = [check_format(sample)]
    if checks[-1].passed:
        checks.append(check_rules(sample, facts, measures))
    return checks


def _synthesize_dataset(spec: Any, references_per_dataset: int, synthesizer: Any, tally: _Tally) -> None:
    """Asks for queries about a few targets of the dataset's first case and checks the drafts."""
    from medground.generate import draft_case, view_measurements
    from medground.io import find_cases, load_case

    found = find_cases(spec, limit=1).cases
    if not found:
        print(f"\n== {spec.name}: no cases found under {spec.root}, skipped")
        return
    case = load_case(spec, found[0])
    capture = _Capture()
    draft_case(case, spec, synthesizer=capture)
    view, cues, references = next((v for v in capture.views if v[2]), (None, None, []))
    if view is None:
        print(f"\n== {spec.name}: no references, skipped")
        return
    chosen = references[:references_per_dataset]
    print(
        f"\n== {spec.name} ({spec.modality}, case {case.case_id}, {view.width}x{view.height}): "
        f"{len(chosen)} of {len(references)} references"
    )
    started = time.monotonic()
    samples, failures = synthesizer.synthesize(view, cues, chosen, modality=spec.modality, body_region=spec.body_region)
    elapsed = time.monotonic() - started
    tally.synthesis_s += elapsed
    tally.answered["synthesis"] += len(samples) + sum(_answered(f["rejection"]["reason"]) for f in failures)
    print(f"   synthesis: {len(samples)} drafts, {len(failures)} rejected, {elapsed:.1f} s")
    template_drafts = draft_case(case, spec)
    facts = template_drafts.facts[samples[0].image] if samples else {}
    measures = view_measurements(template_drafts, spec, view)
    for sample in samples:
        checks = _format_and_rules(sample, facts, measures)
        failed = next((c for c in checks if not c.passed), None)
        verdict = "passes format+rules" if failed is None else f"{failed.stage}: {failed.reason}"
        print(f"   + {sample.query!r}  [{', '.join(sample.synthesis['attributes_used'])}]  -> {verdict}")
        tally.drafts.append(sample)
        tally.images.append(view.image)
        tally.records.append({"kind": "draft", **sample.to_dict(), "checks": [c.to_dict() for c in checks]})
    for failure in failures:
        print(f"   - {failure['rejection']['reason']}: {failure['rejection']['detail']}")
        tally.records.append({"kind": "failure", **failure})


def _judge_drafts(judge: Any, tally: _Tally) -> float:
    """Asks the judge about every draft; returns the time it took."""
    from medground.verify import JudgeItem

    started = time.monotonic()
    results = judge.judge([JudgeItem(s, i, i) for s, i in zip(tally.drafts, tally.images, strict=True)])
    judge_s = time.monotonic() - started
    print(f"\n== judge: {len(results)} drafts in {judge_s:.1f} s")
    for sample, result in zip(tally.drafts, results, strict=True):
        info = result.info
        if "verdict" in info:
            tally.answered["judge"] += 1
            print(f"   {info['verdict']:>3} {info['confidence']:.2f}  {sample.query!r}: {info['reason']}")
        else:
            print(f"   failed ({info.get('failure')}): {result.detail}")
        tally.records.append({"kind": "verdict", "id": sample.id, **result.to_dict()})
    return judge_s


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)

    from medground.backends import make_backend
    from medground.synth import VlmSynthesizer
    from medground.verify.vlm_judge import VlmJudge

    if not args.data.is_dir():
        print(f"real sample data not found at {args.data} (pass --data)", file=sys.stderr)
        return 1
    started = time.monotonic()
    backend = make_backend(_backend_config(args))
    load_s = time.monotonic() - started
    print(f"backend {backend.name}: {args.model} ready in {load_s:.1f} s")
    synthesizer = VlmSynthesizer(backend, seed=0, image_family=args.image_family)
    judge = VlmJudge(backend, args.threshold, image_family=args.image_family)
    print(f"image family {synthesizer.family.name}; prompts {synthesizer.version}, {judge.version}")

    tally = _Tally()
    with tempfile.TemporaryDirectory() as scratch:
        for spec in datasets(args.data, Path(scratch)):
            _synthesize_dataset(spec, args.references, synthesizer, tally)
    judge_s = _judge_drafts(judge, tally) if tally.drafts else 0.0
    answered = tally.answered
    print(
        f"\ntimings: load {load_s:.1f} s, synthesis {tally.synthesis_s:.1f} s, judge {judge_s:.1f} s; "
        f"valid answers: synthesis {answered['synthesis']}, judge {answered['judge']}"
    )
    if args.out:
        with args.out.open("w", encoding="utf-8") as out:
            for record in tally.records:
                out.write(json.dumps(record, default=str) + "\n")
        print(f"records written to {args.out}")
    backend.close()
    ok = answered["synthesis"] > 0 and answered["judge"] > 0
    print("OK" if ok else "FAILED: no valid answers of each kind")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
