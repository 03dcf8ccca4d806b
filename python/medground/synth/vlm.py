"""The VLM query synthesizer: a vision-language model words the queries, guided by the
computed cues and held to the referring step's attributes.

For each :class:`~medground.refer.Reference` of a view the model is shown the clean image
and a marked copy (the target boxes drawn, in memory only, never written anywhere) and is
told the attributes the query must use (and only those), the distractors it must not fit,
and the target's computed cues; it answers JSON with the queries, their type and the
attributes each uses (prompt ``presets/prompts/synthesis_v3.toml``, versioned). The
requests of a case's views go to the backend together (:meth:`VlmSynthesizer.synthesize_views`,
in chunks of whole views), so the engine batches across views — and, on Ray, across
cases (:mod:`medground.pipeline.batching`).

Everything a dataset wrote (label names, clinical records, the spec's modality and region)
reaches the model as data only: one JSON object between ``<data>`` and ``</data>``
(:func:`medground.backends.prompts.data_block`), which the instructions say is never to be
obeyed. A query that carries anything else (a link, the words of an instruction) fails
verification's rules stage (``foreign_text``).

A request that fails (timeout, HTTP error, unparseable or off-schema answer) and a query
that breaks the request (another query type, a missing or unrequested attribute, a
duplicate) become failure records shaped like ``rejected.jsonl`` lines, with
``rejection = {"stage": "synthesis", "reason", "detail"}``: nothing is dropped silently.
The accepted drafts go on to verification like the template's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from medground.backends import Backend, Request, Response, make_backend
from medground.backends.images import ImagePrep, draw_boxes, prepare_image
from medground.backends.prompts import PromptTemplate, data_block, load_prompt
from medground.boxes import FAMILIES, ModelFamily, family_for_model
from medground.facts import BUILT_IN
from medground.records import Sample, StageResult, reject
from medground.refer import Reference
from medground.synth.base import Synthesis, draft_sample, query_type_of
from medground.synth.template import noun_phrase, word_expression
from medground.terms import clinical_term
from medground.views import View

__all__ = ["DEFAULT_PROMPT", "VlmSynthesizer"]

DEFAULT_PROMPT = "synthesis_v3"
OPTIONAL_ATTRIBUTES = frozenset({"count"})  # "all liver lesions" need not say how many
_SIDES = {
    "left": "the patient's left side",
    "right": "the patient's right side",
    "midline": "midline",
    "bilateral": "both sides of the patient (bilateral)",
}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_CUE_KEYS = ("laterality", "image_position", "relations", "size", "shape", "intensity", "count", "visibility")
_MAX_LISTED = 12


def _seed_for(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def _orientation(view: View) -> str:
    if not view.case.image.oriented:
        return "none"
    return "radiological" if view.view_record() is not None else "image"


def _attribute(name: str, value: Any, body_region: str | None, findings: tuple[str, ...] = ()) -> dict[str, str]:
    """One attribute for the data block: its name, the words that say it and, where the
    model needs one, a note on how to use them (the words may be dataset text)."""
    note = None
    if name == "category":
        words = clinical_term(value, body_region).text
    elif name == "description":
        words, note = str(value), "call it this instead of naming it"
    elif name in findings:
        words, note = str(value), "a clinical finding from the patient's records: name it so"
    elif name not in BUILT_IN:
        words, note = str(value), "from the patient's records"
    elif name == "count":
        words, note = _COUNT_WORDS.get(value, "several"), "optional"
    else:
        words = _built_in_words(name, value, body_region)
    return {"name": name, "words": words, **({"note": note} if note else {})}


def _built_in_words(name: str, value: Any, body_region: str | None) -> str:
    """The words of a computed attribute (side, container, relation, place)."""
    if name == "laterality":
        return _SIDES.get(value, str(value))
    if name == "within":
        return f"inside the {clinical_term(value, body_region).text}"
    if name == "relation":
        direction, _, other = str(value).partition(":")
        return f"{direction} to the {clinical_term(other, body_region).text}"
    if name == "position":
        return "the center of the image" if value == "center" else f"the {value} part of the image"
    return str(value)


def _other_objects(reference: Reference, body_region: str | None) -> list[str]:
    objects = []
    for distractor in reference.distractors[:_MAX_LISTED]:
        values = ", ".join(f"{k}: {v}" for k, v in distractor["values"].items() if k != "category" and v is not None)
        term = clinical_term(distractor["label"], body_region).text
        objects.append(term + (f" ({values})" if values else ""))
    if len(reference.distractors) > _MAX_LISTED:
        objects.append(f"and {len(reference.distractors) - _MAX_LISTED} more")
    return objects


def _compact_cues(cues: dict[str, Any]) -> dict[str, Any]:
    return {k: cues[k] for k in _CUE_KEYS if k in cues}


class VlmSynthesizer:
    """Writes queries with a vision-language model behind a :class:`~medground.backends.Backend`.

    Args:
        backend: the model backend (``openai`` or ``vllm``; see :func:`medground.backends.make_backend`).
        seed: the run's seed; each request's sampling seed is derived from it and the
            reference, and it is stored in every sample.
        prompt: the prompt template's name under ``presets/prompts/``.
        queries_per_reference: queries asked for per reference.
        image_family: how images are prepared (a name in
            :data:`medground.boxes.FAMILIES`); by default from the model name.
        chunk_requests: the most requests of a case sent in one backend call
            (:meth:`synthesize_views`); whole views, so a call may hold a few more.
    """

    @property
    def name(self) -> str:
        """The model backend's name (``openai``, ``vllm``)."""
        return self.backend.name

    def __init__(
        self,
        backend: Backend,
        *,
        seed: int = 0,
        prompt: str = DEFAULT_PROMPT,
        queries_per_reference: int = 1,
        image_family: str | None = None,
        chunk_requests: int = 256,
    ) -> None:
        if (
            isinstance(queries_per_reference, bool)
            or not isinstance(queries_per_reference, int)
            or not 1 <= queries_per_reference <= 10
        ):
            raise ValueError(f"queries_per_reference must be an integer in 1..10, got {queries_per_reference!r}")
        if image_family is not None and image_family not in FAMILIES:
            raise ValueError(f"image_family must be one of {', '.join(FAMILIES)}, got {image_family!r}")
        self.backend = backend
        self.seed = seed
        self.prompt: PromptTemplate = load_prompt(prompt)
        self.version = self.prompt.version
        self.queries_per_reference = queries_per_reference
        self.family: ModelFamily = FAMILIES[image_family] if image_family else family_for_model(backend.model)
        self.chunk_requests = max(1, int(chunk_requests))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0, backend: Backend | None = None) -> VlmSynthesizer:
        """The synthesizer of a ``[synthesis]`` section: the backend's keys (see
        :func:`~medground.backends.make_backend`) plus ``prompt``, ``queries_per_reference``
        and ``image_family``. ``seed`` is the run's; a ``seed`` key in the section wins."""
        return cls(
            backend or make_backend(config),
            seed=config.get("seed", seed),
            prompt=config.get("prompt", DEFAULT_PROMPT),
            queries_per_reference=config.get("queries_per_reference", 1),
            image_family=config.get("image_family"),
            chunk_requests=config.get("max_batch", 256),
        )

    # ------------------------------------------------------------------ requests

    def _schema(self, query_type: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        schema = self.prompt.answer_schema()
        queries = schema["properties"]["queries"]
        queries["maxItems"] = self.queries_per_reference
        queries["items"]["properties"]["query_type"]["enum"] = [query_type]
        names = queries["items"]["properties"]["attributes"]["items"]
        names["enum"] = list(dict.fromkeys([*names["enum"], *attributes]))  # and the clinical ones
        return schema

    def _user_text(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        reference: Reference,
        *,
        modality: str,
        body_region: str | None,
    ) -> str:
        implicit = reference.query_type == "implicit"
        query_type = query_type_of(reference)
        orientation = _orientation(view)
        label = view.objects[reference.targets[0]].anchor.label
        term = clinical_term(label, body_region)
        described = "description" in reference.attributes
        if query_type == "multi_object":
            target = f"all {_COUNT_WORDS.get(len(reference.targets), 'the')} {term.plural}, as one set"
            plural = reference.attributes["description"] if described else term.plural
            phrase = f"all {plural}"
            naming = self.prompt.snippet("naming", "implicit" if described else "multi_object")
            guide = self.prompt.snippet("guides", "multi_object")
        else:
            target = f"one {term.text}" + (" (known to you, not to be named)" if implicit else "")
            phrase = noun_phrase(
                reference.attributes,
                body_region=body_region,
                oriented=orientation != "none",
                findings=reference.findings,
                label=reference.label,
            ).text
            naming = self.prompt.snippet("naming", "implicit" if implicit else "named")
            guide = self.prompt.snippet("guides", "implicit" if implicit else query_type)
        record = view.view_record()
        region = ", ".join(
            filter(
                None,
                [
                    body_region if body_region not in (None, "unspecified") else None,
                    f"{record['axis']} slice" if record else "2D image",
                ],
            )
        )
        target_cues = {str(c): _compact_cues(cues[c]) for c in reference.targets[:6]}
        # Everything a dataset wrote (label names, records, modality, region) is data: it goes
        # into the delimited block, JSON-encoded, never into the instructions.
        data = {
            "modality": modality,
            "region": region,
            "target": target,
            "attributes": [_attribute(k, v, body_region, reference.findings) for k, v in reference.attributes.items()],
            "plain_phrasing": phrase,
            "other_objects": _other_objects(reference, body_region),
            "cues": target_cues if len(target_cues) > 1 else next(iter(target_cues.values())),
        }
        return self.prompt.render(
            orientation=self.prompt.snippet("orientation", orientation),
            query_type=query_type,
            guide=guide,
            data=data_block(data),
            how_many=(
                f"one {query_type} query"
                if self.queries_per_reference == 1
                else f"{_COUNT_WORDS[self.queries_per_reference]} different {query_type} queries"
            ),
            naming=naming,
        )

    def requests(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        *,
        modality: str,
        body_region: str | None,
    ) -> tuple[list[Request], ImagePrep]:
        """The backend requests for the references of one view, and how its image was prepared.

        Request ids are the references' positions in ``references``. The clean image is
        shared by all requests; each has its own marked copy (in memory only).
        """
        clean, prep = prepare_image(view.image, self.family)
        requests = []
        for position, reference in enumerate(references):
            query_type = query_type_of(reference)
            boxes = [prep.to_prepared(list(view.objects[c].bbox_xyxy)) for c in reference.targets]
            marked = draw_boxes(clean, boxes)
            user = self._user_text(view, cues, reference, modality=modality, body_region=body_region)
            case = view.case
            key = f"{case.dataset}|{case.case_id}|{view.view_record()}|{reference.query_type}|{reference.targets}"
            requests.append(
                Request(
                    id=str(position),
                    messages=[
                        {"role": "system", "content": self.prompt.system},
                        {
                            "role": "user",
                            "content": [
                                {"type": "image", "index": 0},
                                {"type": "image", "index": 1},
                                {"type": "text", "text": user},
                            ],
                        },
                    ],
                    images=(clean, marked),
                    schema=self._schema(query_type, reference.attributes),
                    schema_name="referring_queries",
                    seed=_seed_for(self.seed, key),
                )
            )
        return requests, prep

    # ------------------------------------------------------------------ samples

    def synthesize(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        *,
        modality: str,
        body_region: str | None,
    ) -> Synthesis:
        """Query drafts for the references of one view, and the failures.

        Args:
            view: the view (its clean ``image`` is what the model sees).
            cues: computed cues per component id of the view.
            references: the referring step's references for the view.
            modality: the dataset's modality.
            body_region: the dataset's body region.

        Returns:
            The drafts (``verification`` empty, ``synthesis`` = {backend, model,
            prompt_version, seed, …}) and the failure records: ``rejected.jsonl``-shaped
            dicts whose ``rejection`` is ``{"stage": "synthesis", "reason", "detail"}``.
        """
        return self.synthesize_views([(view, cues, references)], modality=modality, body_region=body_region)[0]

    def synthesize_views(
        self,
        items: Sequence[tuple[View, dict[int, dict[str, Any]], list[Reference]]],
        *,
        modality: str,
        body_region: str | None,
    ) -> list[Synthesis]:
        """:meth:`synthesize` for several views (a case's), their requests sent together:
        one backend call per ``chunk_requests`` requests (whole views), so the engine gets
        batches across views and the images held at once stay bounded."""
        out: list[Synthesis] = [([], []) for _ in items]
        group: list[tuple[int, list[Request], ImagePrep]] = []
        held = 0

        def flush() -> None:
            requests = [request for _, batch, _ in group for request in batch]
            responses = self.backend.run(requests)
            if len(responses) != len(requests):
                raise RuntimeError(f"backend {self.backend.name} answered {len(responses)} of {len(requests)} requests")
            start = 0
            for index, batch, prep in group:
                view, cues, references = items[index]
                answers = responses[start : start + len(batch)]
                out[index] = self._samples(view, cues, references, batch, prep, answers, body_region, modality)
                start += len(batch)
            group.clear()

        for index, (view, cues, references) in enumerate(items):
            if not references:
                continue
            requests, prep = self.requests(view, cues, references, modality=modality, body_region=body_region)
            group.append((index, requests, prep))
            held += len(requests)
            if held >= self.chunk_requests:
                flush()
                held = 0
        if group:
            flush()
        return out

    def _samples(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        references: list[Reference],
        requests: list[Request],
        prep: ImagePrep,
        responses: Sequence[Response],
        body_region: str | None,
        modality: str,
    ) -> Synthesis:
        """The drafts and failures of one view from its requests' responses."""
        samples: list[Sample] = []
        failures: list[dict[str, Any]] = []
        counters: dict[tuple[tuple[int, ...], str], int] = {}
        seen: set[tuple[tuple[int, ...], str]] = set()
        for reference, request, response in zip(references, requests, responses, strict=True):
            implicit = reference.query_type == "implicit"
            query_type = query_type_of(reference)
            key = (reference.targets, query_type)
            first = counters.get(key, 0)
            counters[key] = first + self.queries_per_reference  # ids do not depend on other answers
            # Timings and attempt counts vary run to run; drafts keep only what the answer determines.
            base = {"implicit": implicit, "image_prep": prep.to_dict(), "request_seed": request.seed}
            # The referring expression comes from the reference (the attributes the model was
            # held to), worded as the template words its noun phrases.
            parts = len(view.objects[reference.targets[0]].pieces) if len(reference.targets) == 1 else 1
            expression = word_expression(
                reference, parts=parts, body_region=body_region, oriented=view.case.image.oriented
            )
            if not response.ok:
                draft = self._sample(
                    view,
                    cues,
                    reference,
                    first,
                    "",
                    {**base, "attempts": response.attempts, "answer": _excerpt(response.text)},
                    modality=modality,
                    expression=expression,
                )
                failures.append(
                    reject(
                        draft, StageResult.fail("synthesis", response.reason or "backend_error", response.detail or "")
                    )
                )
                continue
            assert response.data is not None
            for offset, item in enumerate(response.data["queries"][: self.queries_per_reference]):
                query = " ".join(str(item["query"]).split())
                used = list(dict.fromkeys(item["attributes"]))
                draft = self._sample(
                    view,
                    cues,
                    reference,
                    first + offset,
                    query,
                    {**base, "attributes_used": used},
                    modality=modality,
                    expression=expression,
                )
                problem = self._check(reference, query_type, item["query_type"], used, query, seen)
                if problem is not None:
                    failures.append(reject(draft, StageResult.fail("synthesis", *problem)))
                    continue
                seen.add((reference.targets, query.lower()))
                samples.append(draft)
        return samples, failures

    @staticmethod
    def _check(
        reference: Reference,
        query_type: str,
        answered_type: str,
        used: list[str],
        query: str,
        seen: set[tuple[tuple[int, ...], str]],
    ) -> tuple[str, str] | None:
        if answered_type != query_type:
            return "query_type_mismatch", f"asked for a {query_type} query, the model wrote a {answered_type} one"
        allowed = set(reference.attributes)
        missing = sorted(allowed - OPTIONAL_ATTRIBUTES - set(used))
        if missing:
            return "missing_attribute", f"the query does not use {', '.join(missing)} (needed to single out the target)"
        extra = sorted(set(used) - allowed)
        if extra:
            return (
                "unrequested_attribute",
                f"the query uses {', '.join(extra)}, which the referring step did not choose",
            )
        if (reference.targets, query.lower()) in seen:
            return "duplicate_query", f"the same query was already written for this target: {query!r}"
        return None

    def _sample(
        self,
        view: View,
        cues: dict[int, dict[str, Any]],
        reference: Reference,
        index: int,
        query: str,
        extra: dict[str, Any],
        *,
        modality: str,
        expression: str,
    ) -> Sample:
        synthesis = {
            "backend": self.backend.name,
            "model": self.backend.model,
            "prompt_version": self.version,
            "seed": self.seed,
            **extra,
        }
        return draft_sample(
            view, cues, reference, index, query, synthesis, modality=modality, referring_expression=expression
        )


def _excerpt(text: str | None, limit: int = 500) -> str | None:
    return None if text is None else text[:limit]
