"""One case from masks to query drafts: anchors → views → cues → references → samples.

Plain functions chained in order; the pipeline places them on workers. Nothing here reads
files other than through the case already loaded.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medground import geometry, render
from medground.anchors import find_anchors
from medground.cues import case_context, compute_cues
from medground.facts import object_facts
from medground.io.case import Case
from medground.io.metadata import read_metadata
from medground.io.schema import VOLUME_AXIS, DatasetSpec
from medground.records import Sample, reject
from medground.refer import refer_view
from medground.synth import Synthesizer, TemplateSynthesizer
from medground.synth.absent import CaseLabels, absent_drafts, absent_labels
from medground.synth.base import synthesize_views
from medground.synth.template import DEFAULT_TEMPLATES
from medground.synth.volume import volume_drafts
from medground.verify import Draft, Funnel, Measurements, Verifier, evidence_of_view
from medground.verify.measure import CaseEvidence
from medground.verify.volume import VolumeMeasurements, volume_evidence
from medground.views import Skip, View, iter_views
from medground.volumes import VolumeScene, volume_scene

__all__ = [
    "PART_VIEW_BYTES",
    "CaseDrafts",
    "case_evidence",
    "draft_case",
    "draft_parts",
    "verify_drafts",
    "view_measurements",
]


@dataclass
class CaseDrafts:
    """The drafts of one case, the views they are on, and what was skipped and why.

    Attributes:
        samples: the drafts.
        views: the views they are on.
        skipped: ``skipped.jsonl`` records: labels that are not objects, objects that could
            not be targets on any view, and targets no expression could single out.
        facts: per view (``image`` path), the checkable facts of every object in it, which
            verification matches claims against.
        failures: synthesis rejections (model backends).
        checks: the case's self-checks (midline source, laterality witnessed by side-named labels).
        labels: the declared labels present in the case (id → name).
        clinical: object id → clinical attribute → term, from the dataset's case table.
        volume: the case's volume as the image of its volume samples (``[render] axes``
            with ``volume``), None otherwise.
        encoding: image file → its bytes being encoded ahead (:meth:`encode_ahead`).
        evidence: the case's volume evidence (the objects' ids on the volume's grid, which
            verification measures sizes and completeness from, and the image volume; None
            for 2D images), made once for the case and handed to each of its parts, so what
            it measures once per case (each object's voxels, the body's middle) is not
            measured again for every part.
    """

    samples: list[Sample] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    case_id: str = ""
    clinical: dict[int, dict[str, str]] = field(default_factory=dict)
    volume: VolumeScene | None = None

    encoding: dict[str, Future[bytes]] = field(default_factory=dict)
    evidence: CaseEvidence | None = None

    def encode_ahead(self) -> None:
        """Starts encoding the image of every view that has drafts on a second thread (PNG
        and JPEG encoders release the GIL), so that it overlaps verification: :meth:`images`
        then takes the finished bytes. Every view with drafts ends up stored (accepted or
        rejected), so nothing is encoded in vain; the bytes are the same either way."""
        drafted = {sample.image for sample in self.samples}
        for view in self.views:
            if view.image_file in drafted and view.image_file not in self.encoding:
                self.encoding[view.image_file] = _encoder().submit(view.encoded)

    def images(self, used: set[str]) -> dict[str, bytes]:
        """The stored files of the images ``used`` names (a volume with its objects file)."""
        out = {}
        for view in self.views:
            if view.image_file in used:
                ahead = self.encoding.get(view.image_file)
                out[view.image_file] = ahead.result() if ahead is not None else view.encoded()
        if self.volume is not None and self.volume.image_file in used:
            out.update(self.volume.files())
        return out


@functools.cache
def _encoder() -> ThreadPoolExecutor:
    """The one thread of this process that encodes views ahead (:meth:`CaseDrafts.encode_ahead`)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="medground-encode")


#: The bytes of view arrays (image, object map, stored intensities) one part of a case
#: holds, about, when the pipeline drafts and verifies it in parts (:func:`draft_parts`):
#: a 512×512×300 CT has ≈ 250 views of ≈ 1.1 MB; the shared samples' cases are one part.
PART_VIEW_BYTES = 64 << 20


def draft_case(
    case: Case,
    spec: DatasetSpec,
    *,
    seed: int = 0,
    synthesizer: Synthesizer | None = None,
    negatives: bool = False,
) -> CaseDrafts:
    """Objects, views, cues and references of one case, worded by ``synthesizer`` (the
    template by default, or a :class:`medground.synth.VlmSynthesizer`; its failures are
    kept in ``failures``). With ``negatives`` (``[synthesis] negatives``), each view may also
    get a query about a structure absent from it, worded by the template whatever the
    synthesizer (:mod:`medground.synth.absent`)."""
    (whole,) = draft_parts(case, spec, seed=seed, synthesizer=synthesizer, negatives=negatives, view_bytes=None)
    return whole


def draft_parts(
    case: Case,
    spec: DatasetSpec,
    *,
    seed: int = 0,
    synthesizer: Synthesizer | None = None,
    negatives: bool = False,
    view_bytes: int | None = PART_VIEW_BYTES,
) -> Iterator[CaseDrafts]:
    """:func:`draft_case` in parts, each the drafts of a run of consecutive views whose
    arrays hold about ``view_bytes`` together (at least one view; None: the whole case in
    one part). Views are made as the parts are asked for, so a caller that verifies each
    part and lets go of it holds one part's views at a time, not the case's. Every part has
    the case's fields (``checks``, ``labels``, ``evidence``, ``clinical``); the last one
    also has the volume samples and the case's complete ``skipped``. Together the parts
    have the samples, facts and failures of :func:`draft_case`, in its order: a model gets
    one part's views per batch."""
    ahead: list[_Ahead] = []
    caller = threading.get_ident()
    on_caller: list[bool] = []

    def start(views: Iterator[View]) -> Iterator[View]:
        if geometry.get_num_threads() <= 1:
            return views
        # A second core: the views are made on it from here on, while this thread works out
        # the case's context, then refers, words and verifies the parts. Each of the two
        # threads runs its kernels on itself: this thread's (many and short: an object, a
        # view) would wait behind the views' in the pool, and the views' split over the
        # pool only took CPU from this thread and the encoder (the pool's workers burned
        # ≈ 1.0 s a 50-lesion CT to save the view thread ≈ 0.7 s).
        ahead.append(_Ahead(views, view_bytes or PART_VIEW_BYTES))
        on_caller.append(geometry.kernels_on_caller(True))
        return ahead[0]

    try:
        drafter = _Drafter(case, spec, synthesizer or TemplateSynthesizer(seed), seed, negatives, start)
        views: list[View] = []
        held = 0
        for view in drafter.views:
            views.append(view)
            held += view.nbytes
            if view_bytes is not None and held >= view_bytes:
                yield drafter.part(views)
                views, held = [], 0
        last = drafter.part(views)
        drafter.finish(last)
        yield last
    finally:
        for making in ahead:
            making.close()
        if on_caller and threading.get_ident() == caller:  # the setting is this thread's
            geometry.kernels_on_caller(on_caller[0])


class _Ahead:
    """The views of ``views`` made on a thread of their own, at most ``limit`` bytes of them
    ahead of the ones taken: while a part is referred, worded and verified (Python, holding
    the GIL), the next part's views are made, mostly in the core's kernels (no GIL). The
    views come in the same order, and an error making one is raised where it is taken."""

    def __init__(self, views: Iterator[View], limit: int) -> None:
        self._views, self._limit = views, limit
        self._ready: collections.deque[tuple[View | None, BaseException | None]] = collections.deque()
        self._held = 0
        self._stop = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._make, name="medground-views", daemon=True)
        self._thread.start()

    def _make(self) -> None:
        geometry.kernels_on_caller(True)  # this thread's setting, for its life
        try:
            for view in self._views:
                with self._changed:
                    while self._held >= self._limit and not self._stop:
                        self._changed.wait()
                    if self._stop:
                        return
                    self._ready.append((view, None))
                    self._held += view.nbytes
                    self._changed.notify_all()
            outcome: tuple[View | None, BaseException | None] = (None, None)
        except BaseException as error:  # noqa: BLE001 - raised again in the taker's thread
            outcome = (None, error)
        with self._changed:
            self._ready.append(outcome)
            self._changed.notify_all()

    def __iter__(self) -> _Ahead:
        return self

    def __next__(self) -> View:
        with self._changed:
            # A short wait at a time: the case's time budget raises in this thread only
            # between its bytecodes.
            while not self._ready:
                self._changed.wait(0.05)
            view, error = self._ready.popleft()
            if view is None:
                self._ready.appendleft((None, error))  # the end stays the end
                if error is not None:
                    raise error
                raise StopIteration
            self._held -= view.nbytes
            self._changed.notify_all()
            return view

    def close(self) -> None:
        """Stops making views (the one being made is finished) and waits for the thread."""
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        self._thread.join()


class _Drafter:
    """The state :func:`draft_parts` keeps across a case's parts: the objects, the case's
    context, the queries already asked and the skips so far."""

    def __init__(
        self,
        case: Case,
        spec: DatasetSpec,
        synthesizer: Synthesizer,
        seed: int,
        negatives: bool,
        start: Callable[[Iterator[View]], Iterator[View]] | None = None,
    ) -> None:
        self.case, self.spec, self.synthesizer, self.seed = case, spec, synthesizer, seed
        self.objects = objects = find_anchors(case, spec)
        body = None if case.image.is_2d or not objects.anchors else render.body_mask(case.image, spec.modality)
        self.view_skips: list[Skip] = []
        # ``start`` takes the views as soon as they can be made (before the case's context,
        # which they do not need): :func:`draft_parts` makes them on a second core.
        made = iter_views(case, objects, spec, body, self.view_skips)
        self.views = start(made) if start is not None else made
        self.clinical, listed = _clinical(case, objects.anchors, spec)
        # The case's fields every part carries (the same objects in each).
        self.labels = {i: case.label_names[i] for i in case.present if i in spec.labels}
        self.terms = {oid: {name: item["value"] for name, item in v.items()} for oid, v in self.clinical.items()}
        self.context = case_context(case, objects, spec.modality, body, spec.body_region, self.clinical)
        if spec.metadata is not None:
            self.context.checks["metadata"] = {"listed": listed}
        self.absent = _Negatives(case, spec, synthesizer, seed) if negatives else None
        # Provenance names the source file relative to the dataset folder: portable, and the
        # same wherever the data is mounted.
        self.source = _relative(case.image.path, spec.root)
        self.said: set[tuple[str | None, tuple[Any, ...], str]] = set()
        self.evidence = (
            None
            if case.image.is_2d
            else CaseEvidence(
                objects.map, case.image.array, case.image.affine, spec.modality, areas=objects.slice_areas
            )
        )
        self.unsaid: list[dict[str, Any]] = []

    def part(self, views: list[View]) -> CaseDrafts:
        """The drafts of ``views`` (the next views of the case, in order)."""
        case, spec = self.case, self.spec
        drafts = CaseDrafts(
            views=views,
            checks=self.context.checks,
            case_id=case.case_id,
            labels=self.labels,
            clinical=self.terms,
            evidence=self.evidence,
        )
        referred = []
        for view in views:
            cues = compute_cues(view, self.context)
            facts = drafts.facts[view.image_file] = object_facts(view, cues)
            references, skips = refer_view(view, cues, spec.body_region, exhaustive=spec.exhaustive_labels, facts=facts)
            referred.append((view, cues, references, skips))
        # A part's views are worded together: a model gets them in one batch (and, on Ray,
        # batched with other cases'); the drafts are kept in view order.
        syntheses = synthesize_views(
            self.synthesizer,
            [(view, cues, references) for view, cues, references, _ in referred],
            modality=spec.modality,
            body_region=spec.body_region,
        )
        for (view, _, _, skips), (samples, failures) in zip(referred, syntheses, strict=True):
            drafts.failures.extend(failures)
            for sample in samples:
                # One (plane, targets, query) per case: spread slices never repeat a query.
                key = (view.plane, tuple(sorted({t.object_id for t in sample.targets})), sample.query.lower())
                if key in self.said:
                    continue
                self.said.add(key)
                drafts.samples.append(replace(sample, provenance={**sample.provenance, "image_path": self.source}))
            if self.absent is not None:
                drafts.samples.extend(self.absent.drafts(view, self.said, self.source))
            for unsaid in skips:
                labels = sorted({view.objects[t].anchor.label for t in unsaid.targets})
                self.unsaid.append(
                    {
                        "case_id": case.case_id,
                        "label": labels[0] if len(labels) == 1 else None,
                        "labels": labels,
                        "view": view.view_record(),
                        "query_type": unsaid.query_type,
                        "targets": list(unsaid.targets),
                        "reason": unsaid.reason,
                        "detail": unsaid.detail,
                    }
                )
        return drafts

    def finish(self, drafts: CaseDrafts) -> None:
        """Gives the last part the case's skips (objects dropped, objects no view could ask
        about, targets no expression singled out) and its volume samples."""
        case, objects = self.case, self.objects
        drafts.skipped.extend({"case_id": case.case_id, **dropped.to_record()} for dropped in objects.dropped)
        for skip in self.view_skips:
            anchor = objects.anchors[skip.object_id]
            drafts.skipped.append(
                {
                    "case_id": case.case_id,
                    "label_id": anchor.label_id,
                    "label": skip.label,
                    "object_id": skip.object_id,
                    "view": skip.view,
                    "reason": skip.reason,
                    "detail": skip.detail,
                }
            )
        drafts.skipped.extend(self.unsaid)
        scene = volume_scene(case, objects, self.context) if VOLUME_AXIS in self.spec.render.axes else None
        if scene is not None:
            _draft_volume(drafts, scene, self.spec, self.synthesizer, self.seed, self.source)


def _draft_volume(
    drafts: CaseDrafts, scene: VolumeScene, spec: DatasetSpec, synthesizer: Synthesizer, seed: int, source: str
) -> None:
    """The case's volume samples (worded by the template, with the synthesizer's seed and
    phrasings when it is the template) and the targets no expression singles out in the
    whole volume."""
    template = synthesizer if isinstance(synthesizer, TemplateSynthesizer) else None
    samples, skips = volume_drafts(
        scene,
        seed=template.seed if template is not None else seed,
        modality=spec.modality,
        body_region=spec.body_region,
        exhaustive=tuple(spec.exhaustive_labels),
        template=template.template if template is not None else DEFAULT_TEMPLATES,
        source=source,
    )
    drafts.volume = scene
    drafts.samples.extend(samples)
    drafts.facts[scene.image_file] = scene.facts
    view = scene.view_record()
    for unsaid in skips:
        labels = sorted({scene.facts[t]["label"] for t in unsaid.targets})
        drafts.skipped.append(
            {
                "case_id": drafts.case_id,
                "label": labels[0] if len(labels) == 1 else None,
                "labels": labels,
                "view": view,
                "query_type": unsaid.query_type,
                "targets": list(unsaid.targets),
                "reason": unsaid.reason,
                "detail": unsaid.detail,
            }
        )


class _Negatives:
    """The absent queries of a case's views (:mod:`medground.synth.absent`), worded by the
    template with the synthesizer's seed and phrasings when it is the template."""

    def __init__(self, case: Case, spec: DatasetSpec, synthesizer: Synthesizer, seed: int) -> None:
        self.case, self.spec = case, spec
        self.labels = CaseLabels(case)
        template = synthesizer if isinstance(synthesizer, TemplateSynthesizer) else None
        self.seed = template.seed if template is not None else seed
        self.template = template.template if template is not None else DEFAULT_TEMPLATES
        self.oriented = case.image.oriented and spec.is_radiological

    def drafts(self, view: View, said: set[tuple[str | None, tuple[Any, ...], str]], source: str) -> list[Sample]:
        """The view's absent drafts, less those whose query the case already asked on the
        plane (``said``: "Locate the spleen." once per plane and structure), with the
        image's path relative to the dataset folder (``source``)."""
        kept = []
        for sample in self._drafts(view):
            key = (view.plane, (-1, sample.referring_attributes["category"]), sample.query.lower())
            if key not in said:
                said.add(key)
                kept.append(replace(sample, provenance={**sample.provenance, "image_path": source}))
        return kept

    def _drafts(self, view: View) -> list[Sample]:
        spec = self.spec
        chosen = absent_labels(
            self.case,
            spec.labels,
            self.labels.in_view(view),
            body_region=spec.body_region,
            oriented=self.oriented,
            key=view.image_file,
            seed=self.seed,
        )
        return absent_drafts(
            view,
            chosen,
            seed=self.seed,
            modality=spec.modality,
            body_region=spec.body_region,
            oriented=self.oriented,
            template=self.template,
        )


def _clinical(
    case: Case, anchors: dict[int, Any], spec: DatasetSpec
) -> tuple[dict[int, dict[str, dict[str, str]]], bool]:
    """Each object's clinical attributes from the dataset's case table, and whether the
    table lists the case."""
    if spec.metadata is None:
        return {}, False
    table = read_metadata(spec.metadata, spec.root)
    roles = table.roles()
    clinical = {
        object_id: {
            name: {"value": value, "role": roles[name]}
            for name, value in table.for_label(case.case_id, anchor.label).items()
        }
        for object_id, anchor in anchors.items()
    }
    return {k: v for k, v in clinical.items() if v}, case.case_id in table.rows


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def case_evidence(drafts: CaseDrafts) -> CaseEvidence | None:
    """The case's volume evidence (objects on the volume's grid, the image volume), shared by
    its views' measurements and by the case's parts; None for 2D images and a part without
    views."""
    return drafts.evidence if drafts.views else None


def view_measurements(drafts: CaseDrafts, spec: DatasetSpec, view: View) -> Measurements:
    """What verification measures a view's samples against: the view's stored image, its
    masks, its map and the case's volume evidence, which the case's views and parts share
    (:mod:`medground.verify.measure`)."""
    terms = tuple(t for a in spec.metadata.attributes for t in a.terms) if spec.metadata is not None else ()
    evidence = evidence_of_view(
        view,
        case_evidence=case_evidence(drafts),
        clinical=drafts.clinical,
        clinical_terms=terms,
        modality=spec.modality,
        body_region=spec.body_region,
        oriented_display=spec.is_radiological,
    )
    return Measurements(evidence)


def volume_measurements(scene: VolumeScene, drafts: CaseDrafts, spec: DatasetSpec) -> Measurements:
    """What verification measures a case's volume samples against: the arrays written to
    its volume and objects files, on their RAS+ grid (:mod:`medground.verify.volume`)."""
    case = scene.case
    terms = tuple(t for a in spec.metadata.attributes for t in a.terms) if spec.metadata is not None else ()
    anchors = scene.objects.anchors
    evidence = volume_evidence(
        scene.object_map,
        scene.array,
        scene.affine,
        {oid: a.label for oid, a in anchors.items()},
        {oid: a.kind for oid, a in anchors.items()},
        modality=spec.modality,
        body_region=spec.body_region,
        clinical={oid: dict(v) for oid, v in drafts.clinical.items() if oid in anchors},
        clinical_terms=terms,
        labels_known=tuple(case.label_names.values()),
        spacing_known=case.image.spacing_known,
    )
    return VolumeMeasurements(evidence)


def verify_drafts(
    drafts: CaseDrafts, spec: DatasetSpec, verifier: Verifier | None = None
) -> tuple[list[Sample], list[dict[str, Any]], Funnel]:
    """Runs verification on a case's drafts.

    Returns:
        accepted samples (with ``verification``), rejected records (with ``rejection``; the
        synthesis failures first) and the case's :class:`medground.verify.Funnel`.
    """
    verifier = verifier or Verifier()
    views = {v.image_file: v for v in drafts.views}
    accepted: list[Sample] = []
    rejected, funnel = list(drafts.failures), Funnel()
    for failure in drafts.failures:
        funnel.add_failure(failure["rejection"]["stage"], failure["rejection"]["reason"])
    batch = []
    measures: dict[str, Measurements] = {}
    for sample in drafts.samples:
        if sample.image not in measures:
            if drafts.volume is not None and sample.image == drafts.volume.image_file:
                measures[sample.image] = volume_measurements(drafts.volume, drafts, spec)
            else:
                measures[sample.image] = view_measurements(drafts, spec, views[sample.image])
        batch.append(Draft(sample, drafts.facts[sample.image], measures[sample.image]))
    for checked, failed, results in verifier.verify_many(batch):
        funnel.add(results)
        if failed is None:
            accepted.append(checked)
        else:
            rejected.append(reject(checked, failed))
    return accepted, rejected, funnel
