"""connected_components against scipy.ndimage.label (binary) and cc3d (multilabel)."""

from __future__ import annotations

import os
import subprocess
import sys

import cc3d
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from medground import geometry, phantoms
from medground.geometry import connected_components, object_components, regionprops
from partitions import LABEL_DTYPES, same_partition

STRUCTURE = {(2, 4): 1, (2, 8): 2, (3, 6): 1, (3, 18): 2, (3, 26): 3}


def scipy_label(mask: np.ndarray, connectivity: int) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, STRUCTURE[(mask.ndim, connectivity)])
    return ndimage.label(mask != 0, structure=structure)[0]


def structured_volume(dtype) -> np.ndarray:
    vol = phantoms.ellipsoids((24, 40, 36), 14, labels=3, radius=(2.0, 9.0), seed=3)
    if dtype == np.bool_:
        return vol != 0
    return vol.astype(dtype) * (np.array(-1, dtype=dtype) if np.issubdtype(dtype, np.signedinteger) else 1)


@pytest.mark.parametrize("dtype", LABEL_DTYPES)
@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("order", ["C", "F"])
def test_binary_matches_scipy_3d(dtype, connectivity, order):
    vol = np.asarray(structured_volume(dtype), order=order)
    labels, n = connected_components(vol, connectivity, binary=True, return_n=True)
    ref = scipy_label(vol, connectivity)
    assert n == ref.max()
    assert same_partition(labels, ref)
    assert labels.flags.f_contiguous == (order == "F")


@pytest.mark.parametrize("dtype", LABEL_DTYPES)
@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("order", ["C", "F"])
def test_multilabel_matches_cc3d_3d(dtype, connectivity, order):
    vol = np.asarray(structured_volume(dtype), order=order)
    labels, n = connected_components(vol, connectivity, return_n=True)
    ref, ref_n = cc3d.connected_components(
        np.ascontiguousarray(vol.astype(np.int64) + 8), connectivity=connectivity, return_N=True, out_dtype=np.uint32
    )
    # cc3d labels background too once shifted; mask it back out.
    ref = np.where(vol != 0, ref, 0)
    assert same_partition(labels, ref)
    assert n == len(np.unique(ref)) - 1


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("dtype", LABEL_DTYPES)
def test_2d_against_scipy_and_cc3d(dtype, connectivity):
    img = structured_volume(dtype)[12]
    assert same_partition(connected_components(img, connectivity, binary=True), scipy_label(img, connectivity))
    if dtype != np.bool_:
        ref = cc3d.connected_components(np.ascontiguousarray(img.astype(np.int64)), connectivity=connectivity)
        assert same_partition(connected_components(img, connectivity), ref)


def test_default_connectivity_is_full():
    img = np.eye(4, dtype=np.uint8)
    assert connected_components(img, return_n=True)[1] == 1
    vol = np.zeros((2, 2, 2), np.uint8)
    vol[0, 0, 0] = vol[1, 1, 1] = 1
    assert connected_components(vol, return_n=True)[1] == 1


def test_numbering_follows_c_order_first_voxels():
    vol = phantoms.ellipsoids((20, 30, 30), 12, labels=4, radius=(2.0, 6.0), seed=5)
    labels = connected_components(vol)
    values, first = np.unique(labels.ravel(), return_index=True)
    assert np.all(np.diff(first[values > 0]) > 0)
    assert np.array_equal(values, np.arange(len(values)))


def test_fortran_numbering_follows_fortran_order():
    vol = np.asfortranarray(phantoms.ellipsoids((20, 30, 30), 12, labels=4, radius=(2.0, 6.0), seed=5))
    labels = connected_components(vol)
    values, first = np.unique(labels.ravel(order="F"), return_index=True)
    assert np.all(np.diff(first[values > 0]) > 0)


@pytest.mark.parametrize(
    "view",
    [
        lambda v: v[::2, 1:, ::3],
        lambda v: v[:, ::-1, :],
        lambda v: np.transpose(v, (1, 0, 2)),
        lambda v: np.asfortranarray(v)[:, ::2, :],
    ],
)
def test_strided_views(view):
    vol = phantoms.ellipsoids((24, 40, 36), 14, labels=3, radius=(2.0, 9.0), seed=3)
    v = view(vol)
    assert not v.flags.c_contiguous
    assert same_partition(connected_components(v, 26, binary=True), scipy_label(np.ascontiguousarray(v), 26))
    ref = cc3d.connected_components(np.ascontiguousarray(v), connectivity=18)
    assert same_partition(connected_components(v, 18), ref)


def test_out_dtype_and_smallest_default():
    img = np.zeros((3, 300), np.uint8)
    img[1, ::2] = 1
    labels, n = connected_components(img, 4, return_n=True)
    assert n == 150 and labels.dtype == np.uint16
    assert connected_components(img, 4, out_dtype=np.uint8).dtype == np.uint8
    assert connected_components(img, 4, out_dtype="uint64").dtype == np.uint64
    with pytest.raises(ValueError, match="cannot hold 300 labels"):
        connected_components(np.tile(img, (1, 2)), 4, out_dtype=np.uint8)
    with pytest.raises(ValueError, match="out_dtype must be one of"):
        connected_components(img, 4, out_dtype=np.int32)


def test_more_than_65535_components_switch_to_uint32():
    img = np.zeros((400, 400), np.uint8)
    img[::2, ::2] = 1
    labels, n = connected_components(img, 8, return_n=True)
    assert n == 40_000
    vol = np.zeros((2, 400, 400), np.uint8)
    vol[0, ::2, ::2] = 1
    vol[1, 1::2, 1::2] = 1
    labels, n = connected_components(vol, 6, return_n=True)
    assert n == 80_000 and labels.dtype == np.uint32
    assert labels.max() == n


def test_edge_cases():
    assert connected_components(np.zeros((0, 5), np.uint8), return_n=True)[1] == 0
    assert connected_components(np.zeros((4, 0, 3), np.uint8)).shape == (4, 0, 3)
    labels, n = connected_components(np.zeros((5, 5, 5), np.int32), return_n=True)
    assert n == 0 and not labels.any()
    one = np.zeros((1, 1, 1), np.uint8)
    one[0, 0, 0] = 9
    assert connected_components(one, return_n=True)[1] == 1
    full = np.ones((7, 9, 11), np.int64)
    assert connected_components(full, 6, return_n=True)[1] == 1


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        dtype=st.sampled_from([np.uint8, np.int16, np.uint32, np.int64]),
        shape=st.tuples(st.integers(1, 7), st.integers(1, 9), st.integers(1, 11)),
        elements=st.integers(0, 3),
    ),
    st.sampled_from([6, 18, 26]),
)
def test_random_volumes_match_references(vol, connectivity):
    assert same_partition(connected_components(vol, connectivity, binary=True), scipy_label(vol, connectivity))
    ref = cc3d.connected_components(vol.astype(np.uint32), connectivity=connectivity)
    assert same_partition(connected_components(vol, connectivity), ref)


@settings(max_examples=60, deadline=None)
@given(
    arrays(dtype=np.uint8, shape=st.tuples(st.integers(1, 40), st.integers(1, 40)), elements=st.integers(0, 2)),
    st.sampled_from([4, 8]),
)
def test_random_images_match_references(img, connectivity):
    assert same_partition(connected_components(img, connectivity, binary=True), scipy_label(img, connectivity))
    ref = cc3d.connected_components(img, connectivity=connectivity)
    assert same_partition(connected_components(img, connectivity), ref)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_labels_identical_for_any_thread_count_in_process(order, dtype):
    import medground

    vol = np.asarray(phantoms.ellipsoids((64, 96, 96), 60, labels=3, radius=(2.0, 10.0), seed=11), order=order).astype(
        dtype
    )
    vol[phantoms.salt(vol.shape, 0.01, seed=2)] = 2
    outputs = []
    try:
        for threads in (1, 2, 3):
            medground.set_num_threads(threads)
            outputs.append(connected_components(vol, 26))
    finally:
        medground.set_num_threads(0)
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:])


def test_labels_identical_for_one_and_two_threads(tmp_path):
    script = (
        "import numpy as np, sys\n"
        "from medground import phantoms, connected_components\n"
        "v = phantoms.ellipsoids((64, 96, 96), 60, labels=3, radius=(2.0, 10.0), seed=11)\n"
        "v |= phantoms.salt(v.shape, 0.01, seed=2).astype(np.uint8)\n"
        "np.save(sys.argv[1], connected_components(v, 26))\n"
    )
    outputs = []
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.npy"
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env)
        outputs.append(np.load(path))
    assert np.array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("order", ["C", "F"])
def test_input_is_walked_in_place_not_copied(order):
    import tracemalloc

    vol = np.asarray(phantoms.ellipsoids((64, 128, 128), 30, labels=2, radius=(4.0, 20.0), seed=8), order=order)
    vol = vol.astype(np.uint32, order=order)  # 4 MiB: a copy would show
    tracemalloc.start()
    try:
        labels = connected_components(vol, 26)
        table = regionprops(vol, contours=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy's allocations are traced: only the output (and the small table) may appear.
    assert peak < labels.nbytes + vol.nbytes // 4
    assert len(table) > 0


_ONE_THREAD_SCRIPT = """
import os, threading, time
import numpy as np
from medground import geometry

def threads():
    return len(os.listdir("/proc/self/task"))

default = geometry.get_num_threads()
labels = np.zeros((96, 96), np.uint8)
labels[10:40, 10:40] = 1
labels[50:90, 20:30] = 2
before = threads()
geometry.set_num_threads(1)
one = [geometry.connected_components(labels, 8) for _ in range(3)]
stats = geometry.object_stats(labels, labels * 100, [1, 2], 3, "disk")
print("one", geometry.get_num_threads(), threads() - before)

# Another thread of the process runs its kernels on itself too.
done = []
worker = threading.Thread(target=lambda: done.append(geometry.connected_components(labels, 8)))
worker.start(); worker.join()
# join() returns once the thread's Python part is done; the thread itself may still be
# ending (its thread-locals, the core's one-thread pool among them, being dropped) and
# listed for a moment. A pool thread started for it would stay.
deadline = time.monotonic() + 5
while threads() > before and time.monotonic() < deadline:
    time.sleep(0.01)
print("other", threads() - before)

geometry.set_num_threads(0)
print("all", geometry.get_num_threads() == default, default)
again = geometry.connected_components(labels, 8)
print("same", all(np.array_equal(again, o) for o in one + done))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_one_thread_means_the_calling_thread_and_all_threads_come_back():
    """``set_num_threads(1)`` runs each kernel on the thread that calls it (no pool thread
    is started to hand the calls to: on a virtual machine each hand-off woke the other core);
    ``set_num_threads(0)`` then gives every core back, also to a thread that ran kernels
    on itself, and the labels are the same. In a fresh process (no pool started yet)."""
    out = subprocess.run(
        [sys.executable, "-c", _ONE_THREAD_SCRIPT], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert out[0] == "one 1 0", out
    assert out[1] == "other 0", out
    assert out[2].startswith("all True"), out
    assert out[3] == "same True", out


_ON_CALLER_SCRIPT = """
import os, threading, time
import numpy as np
from medground import geometry, phantoms

def cpu(task):
    fields = open(f"/proc/self/task/{task}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

def share_on_this_thread(work):
    # The share of the process's CPU time, while ``work`` runs, spent on this thread.
    tasks = os.listdir("/proc/self/task")
    me = str(threading.get_native_id())
    before = {t: cpu(t) for t in tasks}
    start = time.process_time()
    while time.process_time() - start < 0.5:
        out = work()
    spent = {t: cpu(t) - before[t] for t in tasks}
    return round(spent[me] / max(1, sum(spent.values())), 1), out

volume = phantoms.ellipsoids((64, 96, 96), 40, labels=3, radius=(2.0, 10.0), seed=5)
work = lambda: geometry.connected_components(volume, 26)
geometry.set_num_threads(2)  # a pool of two threads
print("was", geometry.kernels_on_caller(True))
here, first = share_on_this_thread(work)
print("here", geometry.get_num_threads(), here >= 0.9)

# The setting is this thread's: another thread hands its kernels to the pool.
done = []
worker = threading.Thread(target=lambda: done.append((geometry.kernels_on_caller(False),) + share_on_this_thread(work)))
worker.start(); worker.join()
print("other", done[0][0], done[0][1] <= 0.5)

print("restored", geometry.kernels_on_caller(False), geometry.kernels_on_caller(False))
pooled, again = share_on_this_thread(work)
print("pooled", pooled <= 0.5, np.array_equal(first, again) and np.array_equal(done[0][2], again))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_kernels_on_the_caller_run_on_its_thread_and_belong_to_it():
    """With a pool of two threads set, ``kernels_on_caller(True)`` runs the calling
    thread's kernels on that thread (its CPU time is the process's), leaves other threads'
    on the pool (theirs a minority of it: the call's own set-up and output, 10–20%), says
    what it replaced, and changes no result."""
    out = subprocess.run(
        [sys.executable, "-c", _ON_CALLER_SCRIPT], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert out[0] == "was False", out
    assert out[1] == "here 2 True", out
    assert out[2] == "other False True", out
    assert out[3] == "restored True False", out
    assert out[4] == "pooled True True", out


def test_kernels_on_caller_takes_only_a_truth_value():
    with pytest.raises(ValueError, match="True or False"):
        geometry.kernels_on_caller(1)  # type: ignore[arg-type]


def _objects_by_hand(vol: np.ndarray, policy: dict[int, int]) -> tuple[np.ndarray, list[int], list[int]]:
    """The reference: connected_components, each component's label from scipy, the objects
    numbered by ascending label then component, the map through a lookup table."""
    components = connected_components(vol)
    ids = np.arange(1, int(components.max()) + 1)
    values = [0] + [int(v) for v in ndimage.minimum(vol, components, ids)] if ids.size else [0]
    owners, objects = [0] * len(values), 0
    for label in sorted(set(values[1:])):
        members = [c for c in range(1, len(values)) if values[c] == label]
        rule = policy.get(label, 0) if label >= 0 else 0  # label maps hold no negative ids
        if rule == 1:
            objects += 1
        for c in members if rule else []:
            if rule == 2:
                objects += 1
            owners[c] = objects
    return np.asarray(owners, dtype=np.int64)[components], values, owners


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("rules", ["merge", "split", "mixed"])
def test_object_components_equal_grouping_by_hand(dtype, order, ndim, rules):
    """The objects made in the labelling pass are those of labelling, reading each
    component's label and relabelling through a table (the anchors' old three passes),
    for organs (one object per label), instances (one per component), a label ruled out
    and labels without a rule (none; a negative label never has one)."""
    vol = np.asarray(structured_volume(dtype), order=order)
    if ndim == 2:
        vol = np.asarray(vol[vol.shape[0] // 2], order=order)
    policy = {"merge": {1: 1, 2: 1, 3: 1}, "split": {1: 2, 2: 2, 3: 2}, "mixed": {1: 2, 2: 0, -1: 1}}[rules]
    objects, values, owners = object_components(vol, policy)
    expected, expected_values, expected_owners = _objects_by_hand(vol, policy)
    np.testing.assert_array_equal(objects, expected)
    assert values.dtype == vol.dtype and values.tolist() == expected_values
    assert owners.tolist() == expected_owners
    assert objects.dtype == np.min_scalar_type(max(expected_owners))
    assert objects.flags.f_contiguous == (order == "F" and ndim > 1 and not vol.flags.c_contiguous)


def test_object_components_of_many_objects_widen_the_map():
    """Past 255 objects the map is uint16 (uint8 first)."""
    vol = np.zeros((40, 40), np.uint16)
    vol[::2, ::2] = 1  # 400 lone pixels of one instance label
    objects, _, owners = object_components(vol, {1: 2}, connectivity=4)
    assert objects.dtype == np.uint16 and int(objects.max()) == 400 == max(owners.tolist())


def test_object_components_of_label_ids_past_two_to_the_63():
    """uint64 label maps may hold any id: a rule reaches it, and an id without one (an
    undeclared label) costs no table of its size."""
    vol = np.zeros((6, 6), np.uint64)
    vol[0, :2] = 2**63 + 5
    vol[4:, 4:] = 2**64 - 1
    vol[2, 2] = 3
    objects, values, owners = object_components(vol, {3: 1, 2**63 + 5: 2})
    assert sorted(values.tolist()[1:]) == [3, 2**63 + 5, 2**64 - 1]
    assert objects[2, 2] == 1 and objects[0, 0] == 2 and objects[5, 5] == 0 and objects.dtype == np.uint8
