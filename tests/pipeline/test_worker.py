"""The worker with its model behind a Ray batching queue (the GPU path's plumbing, without a GPU)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest


def test_models_in_a_ray_actor(demo_data: Path, tmp_path: Path, serve, monkeypatch) -> None:
    """The Ray path's plumbing (a case's judge requests sent to the stage's queue actor,
    which holds the model client), here with the openai backend and no GPU."""
    from chatserver import Reply, completion

    ray = pytest.importorskip("ray")
    from medground.io import find_cases, load_spec
    from medground.pipeline.batching import ModelQueue, QueueSettings
    from medground.pipeline.worker import process_case
    from medground.settings import VerificationSettings

    verdict = json.dumps({"verdict": "no", "confidence": 0.9, "reason": "nothing there"})
    server = serve(lambda key, attempt, payload: Reply(body=completion(verdict)))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.2", log_to_driver=False)
    try:
        settings = {"backend": "vlm", "model": "Qwen/Qwen2.5-VL-7B-Instruct", "base_url": server.base_url}
        verification = VerificationSettings.from_table({"visual": settings})
        table = dict(verification.visual.table)
        judge = ray.remote(ModelQueue).remote("judge", table, QueueSettings.of("openai", table), 0.0)
        spec = load_spec(demo_data / "demo_skin" / "spec.toml")
        files = find_cases(spec).cases[0]
        result = process_case(spec, files, verification=verification, models={"judge": judge})
    finally:
        ray.shutdown()
    assert result.error is None and not result.accepted and result.rejected
    assert {r["rejection"]["reason"] for r in result.rejected} == {"judge_rejected"}


@pytest.mark.parametrize("dataset", ["demo_ct", "demo_skin"])
def test_images_encoded_ahead_are_the_images_encoded_after(demo_data: Path, dataset: str) -> None:
    """With a second core the views' images encode while verification runs, and the next
    views are made while a part is worded and verified: the case's result (images, records,
    funnel) is the one a single-threaded run gives."""
    from medground.io import find_cases, load_spec
    from medground.pipeline.worker import process_case
    from thread_counts import one_then_two

    spec = load_spec(demo_data / dataset / "spec.toml")
    files = find_cases(spec).cases[0]
    alone, ahead = one_then_two(lambda: process_case(spec, files))
    assert alone.error is None and ahead.error is None
    assert alone.images and ahead.images == alone.images
    assert ahead.accepted == alone.accepted and ahead.rejected == alone.rejected
    assert ahead.funnel == alone.funnel


def test_views_made_ahead_come_in_order_within_their_byte_limit() -> None:
    """The views a second thread makes ahead come in the order they were made; the thread
    holds at most the limit's bytes (and the view it was making) beyond those taken; an
    error making a view is raised where it is taken, after the views before it; closing
    stops the thread, even one waiting for room."""
    import threading
    import time
    from types import SimpleNamespace

    from medground.generate import _Ahead

    made: list[int] = []

    def views(count: int, fail_at: int | None = None):
        for n in range(count):
            if n == fail_at:
                raise ValueError(f"view {n} is broken")
            made.append(n)
            yield SimpleNamespace(n=n, nbytes=10)

    ahead = _Ahead(views(50), limit=30)
    taken = []
    for view in ahead:
        time.sleep(0.002)  # the taker is slower: the maker waits for room
        # Three views' bytes ready, the one being made, and this one.
        assert len(made) - len(taken) <= 5, (len(made), len(taken))
        taken.append(view.n)
    assert taken == list(range(50))
    ahead.close()

    made.clear()
    broken = _Ahead(views(10, fail_at=3), limit=1000)
    assert [next(broken).n for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="view 3 is broken"):
        next(broken)
    with pytest.raises(ValueError):  # the error stays where the views end
        next(broken)
    broken.close()

    endless = _Ahead((SimpleNamespace(nbytes=10) for _ in iter(int, 1)), limit=30)
    next(endless)
    endless.close()
    assert not endless._thread.is_alive()
    assert not any(t.name == "medground-views" for t in threading.enumerate())


def test_a_case_whose_context_fails_while_its_views_are_made_stops_them(
    demo_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a second core the views are made while the case's context is worked out: when
    that fails, the case reports the error (stage and message) and the thread making its
    views is stopped, not left running."""
    import threading

    from medground import generate, geometry
    from medground.io import find_cases, load_spec
    from medground.pipeline.worker import process_case

    def broken(*args, **kwargs):
        raise ValueError("no context for this case")

    monkeypatch.setattr(generate, "case_context", broken)
    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    files = find_cases(spec).cases[0]
    try:
        geometry.set_num_threads(2)
        # One view's bytes ahead at most: the thread waits for room until it is stopped.
        result = process_case(spec, files, view_bytes=1)
    finally:
        geometry.set_num_threads(0)
    assert result.error is not None and result.error["stage"] == "draft"
    assert "no context for this case" in result.error["error"]
    assert not any(t.name == "medground-views" for t in threading.enumerate())
    assert geometry.kernels_on_caller(False) is False  # and this thread's kernels are as before
    assert geometry.kernels_on_caller(False) is False  # and this thread's kernels are as before


@pytest.mark.parametrize("before", [False, True])
def test_a_case_made_on_two_threads_runs_its_own_kernels_on_itself_meanwhile(demo_data: Path, before: bool) -> None:
    """While a second thread makes a case's views (and keeps the kernels' pool busy), the
    thread that drafts and verifies the case runs its kernels on itself; afterwards its
    setting is what it was. The records are those of one thread."""
    from medground import generate, geometry
    from medground.io import find_cases, load_spec
    from medground.pipeline.worker import process_case

    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    files = find_cases(spec).cases[0]
    seen: list[bool] = []
    verify = generate.verify_drafts

    def watched(*args: object, **kwargs: object) -> object:
        seen.append(geometry.kernels_on_caller(True))  # reads the setting (and keeps it)
        return verify(*args, **kwargs)

    alone = process_case(spec, files)
    try:
        geometry.set_num_threads(2)
        geometry.kernels_on_caller(before)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("medground.pipeline.worker.verify_drafts", watched)
            beside = process_case(spec, files)
        after = geometry.kernels_on_caller(False)
    finally:
        geometry.kernels_on_caller(False)
        geometry.set_num_threads(0)
    assert seen and all(seen)
    assert after is before
    assert beside.error is None and beside.accepted == alone.accepted and beside.images == alone.images


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_a_case_drafted_in_parts_gives_the_case_drafted_whole(shared_data: Path, tmp_path: Path, kind: str) -> None:
    """A case drafted and verified one view at a time (each part let go before the next is
    made) gives what the whole case gives: the same images, records in the same order,
    skips (volume samples and absent queries included) and funnel."""
    from medground.generate import case_evidence, draft_parts
    from medground.io import find_cases, load_spec
    from medground.io.case import load_case
    from medground.pipeline.worker import process_case
    from medground.settings import SynthesisSettings

    folder = "ct_abdomen_totalseg" if kind == "CT" else "mr_abdomen_totalseg"
    path = tmp_path / "spec.toml"
    path.write_text(
        f'name = "parts"\nmodality = "{kind}"\nbody_region = "abdomen"\nroot = "{shared_data / folder}"\n'
        f'labels_file = "labels.json"\n[cases]\nimage = "{kind.lower()}.nii.gz"\nmask = "seg.nii.gz"\n'
        '[render]\naxes = ["axial", "coronal", "volume"]\nslices = "spread:2"\n'
    )
    spec = load_spec(path)
    files = find_cases(spec).cases[0]
    synthesis = SynthesisSettings.from_table({"negatives": True})
    whole = process_case(spec, files, synthesis=synthesis, view_bytes=None)
    parts = process_case(spec, files, synthesis=synthesis, view_bytes=1)
    assert whole.error is None and parts.error is None
    assert whole.accepted and whole.rejected and whole.skipped
    assert any(s["query_type"] == "absent" for s in whole.accepted)
    assert any((s["view"] or {}).get("axis") == "volume" for s in whole.accepted)
    assert parts.images == whole.images and list(parts.images) == list(whole.images)
    assert parts.accepted == whole.accepted
    assert parts.rejected == whole.rejected
    assert parts.skipped == whole.skipped
    assert parts.funnel == whole.funnel and parts.checks == whole.checks

    case = load_case(spec, files)
    split = list(draft_parts(case, spec, view_bytes=1))
    assert len(split) > 2 and all(len(part.views) == 1 for part in split[:-1])
    assert all(not part.skipped for part in split[:-1]) and split[-1].skipped
    # The parts share the case's volume evidence: what it measures once (each object's
    # voxels, the objects on the volume's border) is measured once for the case.
    shared = case_evidence(split[0])
    assert shared is not None and all(case_evidence(part) is shared for part in split if part.views)


def test_a_worker_sets_its_start_up_objects_aside_once_without_keeping_garbage(demo_data: Path) -> None:
    """A case actor collects, then freezes what is alive (the collector's full passes then
    skip the imports), once per process; garbage cycles from before are freed, not frozen.
    A case run in-process leaves the caller's collector alone (frozen objects are hidden
    from gc.get_referrers). In a fresh process: this one may hold an actor already."""
    script = f"""
import gc, weakref
from medground.io import find_cases, load_spec
from medground.pipeline.budget import settle_collector
from medground.pipeline.worker import CaseActor, process_case

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
spec = load_spec({str(demo_data / "demo_skin" / "spec.toml")!r})
case = find_cases(spec).cases[0]
assert process_case(spec, case).error is None
assert gc.get_freeze_count() == 0, "an in-process case froze the caller's objects"
actor = CaseActor(None)
frozen = gc.get_freeze_count()
assert frozen > 10_000, frozen
assert gone() is None, "a garbage cycle was frozen"
assert actor.process(spec, case).error is None
assert settle_collector() is False and CaseActor(None) is not None
assert gc.get_freeze_count() == frozen
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


_REFAULTS = """
import os, resource, sys
import numpy as np
from medground.pipeline.budget import keep_freed_memory, small_pages

small_pages()
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True and keep_freed_memory() is False


def fill() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    volume = np.empty(200 << 20, np.uint8)
    volume.fill(1)  # every page touched, as a case's volume is
    del volume
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


print(fill(), fill())
"""


@pytest.mark.parametrize("mode", ["keep", "default", "user"])
def test_a_worker_reuses_the_memory_its_last_case_freed(mode: str) -> None:
    """A worker process keeps what a case frees (glibc's heap, nothing unmapped), so the
    next case's volumes land on pages it has already faulted in (bench/README.md: ≈ 93,000
    faults a real-size CT case otherwise). Measured by page faults, in fresh processes: a
    second 200 MB volume faults next to nothing after the setting, as much as the first
    without it, and a user's own malloc settings are left alone."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's allocator")
    own = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    env = {k: v for k, v in os.environ.items() if k not in own}
    if mode == "user":
        env["MALLOC_TRIM_THRESHOLD_"] = "0"
        script = _REFAULTS.replace("assert keep_freed_memory() is True", "assert keep_freed_memory() is False")
    else:
        script = _REFAULTS
    done = subprocess.run(
        [sys.executable, "-c", script, "default" if mode == "default" else "keep"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    first, second = map(int, done.stdout.split())
    pages = (200 << 20) // resource.getpagesize()
    assert first > 0.9 * pages
    if mode == "keep":
        assert second < 0.05 * pages, (first, second)
    else:
        assert second > 0.9 * pages, (first, second)


def test_cases_run_on_ordinary_pages_unless_the_user_chose(demo_data: Path, monkeypatch) -> None:
    """A case turns numpy's huge pages off in its process (fresh huge pages are slow to
    fault in: bench/README.md), and leaves them alone when NUMPY_MADVISE_HUGEPAGE is set."""
    import importlib

    import numpy

    from medground.io import find_cases, load_spec
    from medground.pipeline.budget import small_pages
    from medground.pipeline.worker import process_case

    multiarray = importlib.import_module(
        "numpy._core.multiarray" if hasattr(numpy, "_core") else "numpy.core.multiarray"
    )
    before = multiarray._set_madvise_hugepage(True)
    try:
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        assert small_pages() is False
        assert multiarray._set_madvise_hugepage(True) is True  # left on
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
        spec = load_spec(demo_data / "demo_skin" / "spec.toml")
        assert process_case(spec, find_cases(spec).cases[0]).error is None
        assert multiarray._set_madvise_hugepage(True) is False  # the case turned them off
    finally:
        multiarray._set_madvise_hugepage(before)


def test_a_case_collects_young_objects_less_often_and_puts_the_collector_back(demo_data: Path) -> None:
    """While a case runs the youngest generation is collected every 10,000 allocations (its
    containers made 570 collections on the real-size CT: bench/README.md); afterwards, and
    after a failed case, the caller's thresholds are back, cycles made meanwhile collected."""
    import gc
    import threading
    import weakref

    from medground import generate
    from medground.io import find_cases, load_spec
    from medground.pipeline.budget import CASE_GEN0_THRESHOLD, fewer_collections
    from medground.pipeline.worker import process_case

    spec = load_spec(demo_data / "demo_skin" / "spec.toml")
    case = find_cases(spec).cases[0]
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    real = generate.find_anchors

    def watched(*args, **kwargs):  # inside the case
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    gc.set_threshold(500, 7, 9)
    try:
        generate.find_anchors = watched
        assert process_case(spec, case).error is None
        assert seen == [(CASE_GEN0_THRESHOLD, 7, 9)]
        assert gc.get_threshold() == (500, 7, 9)
        # Nested and concurrent: the outermost puts it back, whatever order they end in.
        inner_in, inner_done = threading.Event(), threading.Event()

        def inner() -> None:
            with fewer_collections():
                inner_in.set()
                inner_done.wait(5)

        with fewer_collections():
            other = threading.Thread(target=inner)
            other.start()
            assert inner_in.wait(5)
        assert gc.get_threshold()[0] == CASE_GEN0_THRESHOLD  # the other case still runs
        inner_done.set()
        other.join()
        assert gc.get_threshold() == (500, 7, 9)
        # A failing case puts it back too, and a cycle made in a case is still collected.
        generate.find_anchors = _raise

        class Node:
            pass

        with fewer_collections():
            a, b = Node(), Node()
            a.other, b.other = b, a  # type: ignore[attr-defined]
            gone = weakref.ref(a)
            del a, b
            assert process_case(spec, case).error is not None
        assert gc.get_threshold() == (500, 7, 9)
        gc.collect()
        assert gone() is None
    finally:
        generate.find_anchors = real
        gc.set_threshold(*before)


def _raise(*args, **kwargs):
    raise RuntimeError("a broken case")


def test_parts_are_small_unless_a_model_batches_a_parts_views() -> None:
    """A case's parts hold 64 MB of views when a model (the synthesizer or the visual judge)
    gets a part's views as one batch, and 8 MB when none does (the template and the evidence
    judge): small parts keep the view thread busy through the case."""
    from dataclasses import replace

    from medground.generate import PART_VIEW_BYTES
    from medground.pipeline.worker import OFFLINE_PART_VIEW_BYTES, part_bytes
    from medground.settings import SynthesisSettings, VerificationSettings

    offline, verification = SynthesisSettings(), VerificationSettings()
    assert OFFLINE_PART_VIEW_BYTES < PART_VIEW_BYTES
    assert part_bytes(offline, verification) == OFFLINE_PART_VIEW_BYTES
    for backend in ("vllm", "openai"):
        assert part_bytes(replace(offline, backend=backend), verification) == PART_VIEW_BYTES
    for judge in ("vlm", "onnx"):
        judged = replace(verification, visual=replace(verification.visual, backend=judge))
        assert part_bytes(offline, judged) == PART_VIEW_BYTES
