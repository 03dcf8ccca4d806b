"""Bad input raises a clear, typed error and never crashes the interpreter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from medground import _core
from medground.geometry import (
    connected_components,
    contacts,
    dust,
    largest_k,
    overlap,
    regionprops,
    slice_areas,
    slice_bboxes,
)

MASK3 = np.zeros((4, 5, 6), np.uint8)
MASK2 = np.zeros((5, 6), np.uint8)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), ()])
def test_wrong_ndim(shape):
    with pytest.raises(ValueError, match="must be 2D or 3D"):
        connected_components(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="must be 2D or 3D"):
        regionprops(np.zeros(shape, np.uint8))


@pytest.mark.parametrize(("mask", "conn"), [(MASK2, 6), (MASK2, 26), (MASK3, 8), (MASK3, 4), (MASK3, 0), (MASK3, 27)])
def test_bad_connectivity(mask, conn):
    with pytest.raises(ValueError, match=f"got {conn}"):
        connected_components(mask, conn)
    with pytest.raises(ValueError, match=f"got {conn}"):
        contacts(mask, conn)
    with pytest.raises(ValueError, match=f"got {conn}"):
        dust(mask, 3, conn)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.dtype("U3"), object, np.float16])
def test_unsupported_dtype_lists_supported(dtype):
    with pytest.raises(TypeError, match="bool, uint8, uint16"):
        connected_components(np.zeros((3, 3), dtype=dtype))
    with pytest.raises(TypeError, match="bool, uint8, uint16"):
        regionprops(np.zeros((3, 3), dtype=dtype))


def test_core_rejects_bad_dtype_and_ndim_directly():
    with pytest.raises(TypeError, match="got float64"):
        _core.connected_components(np.zeros((3, 3)), 8, False)
    with pytest.raises(ValueError, match="2D or 3D"):
        _core.connected_components(np.zeros((3,), np.uint8), 8, False)
    with pytest.raises(ValueError, match="connectivity must be 6, 18 or 26"):
        _core.connected_components(MASK3, 8, False)
    with pytest.raises(ValueError, match="spacing"):
        _core.regionprops(MASK3, [1.0, float("nan"), 1.0])


def test_core_reads_each_label_dtype_as_itself_and_nothing_else():
    """The core picks an array's variant from its dtype: every supported dtype gives the
    same answer; a list, a swapped byte order or a float map is refused with the dtype named."""
    plane = np.array([[0, 1, 1], [2, 0, 1], [2, 2, 0]])
    expected = _core.rle_by_label(plane.astype(np.uint8))
    for dtype in (np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64, np.intc, np.longlong):
        assert _core.rle_by_label(plane.astype(dtype)) == expected, dtype
    assert _core.rle_by_label(plane.astype(bool)) == _core.rle_by_label((plane > 0).astype(np.uint8))
    for bad, named in ((plane.astype(">i4"), ">i4"), (plane.astype(np.float32), "float32")):
        with pytest.raises(TypeError, match=named):
            _core.rle_by_label(bad)
    with pytest.raises(TypeError, match="labels must be a numpy array"):
        _core.rle_by_label(plane.tolist())


@pytest.mark.parametrize(
    "spacing",
    [
        (1.0, 1.0),
        (1.0, 1.0, 1.0, 1.0),
        (0.0, 1.0, 1.0),
        (-1.0, 1.0, 1.0),
        (float("nan"), 1, 1),
        (1, float("inf"), 1),
        2.0,
    ],
)
def test_bad_spacing_names_the_value(spacing):
    with pytest.raises(ValueError, match="spacing"):
        regionprops(MASK3, spacing)


def test_intensity_shape_and_dtype():
    with pytest.raises(ValueError, match=r"shape of labels \(4, 5, 6\)"):
        regionprops(MASK3, intensity=np.zeros((4, 5, 7)))
    with pytest.raises(TypeError, match="intensity"):
        regionprops(MASK3, intensity=np.zeros((4, 5, 6), complex))


def test_other_arguments():
    with pytest.raises(ValueError, match="threshold"):
        dust(MASK3, -1)
    with pytest.raises(ValueError, match="k must be"):
        largest_k(MASK3, -2)
    with pytest.raises(ValueError, match="axis"):
        slice_areas(MASK3, 3)
    with pytest.raises(ValueError, match="index"):
        slice_bboxes(MASK3, 0, 4)
    with pytest.raises(ValueError, match="one shape"):
        overlap(MASK3, MASK2)
    with pytest.raises(ValueError, match="connectivity must be an integer"):
        connected_components(MASK3, 26.0)


def test_non_native_byte_order_and_readonly_inputs():
    vol = np.zeros((4, 5, 6), dtype=">u2")
    vol[1, 1:3, 2] = 300
    assert connected_components(vol, return_n=True)[1] == 1
    assert list(regionprops(vol).label) == [300]
    ro = np.ones((3, 3), np.uint8)
    ro.flags.writeable = False
    assert connected_components(ro, return_n=True)[1] == 1


@pytest.mark.parametrize("spacing", [(1, None, 2), ("a", 1, 1)])
def test_non_numeric_spacing_names_spacing(spacing):
    with pytest.raises(ValueError, match="spacing must be 3 numbers"):
        regionprops(MASK3, spacing)


def test_misaligned_buffers_are_read_safely():
    vol = np.zeros((4, 5, 6), np.uint16)
    vol[1, 2, 3] = 7
    buf = bytearray(1) + bytearray(vol.tobytes())
    misaligned = np.frombuffer(buf, np.uint16, offset=1).reshape(4, 5, 6)
    assert not misaligned.flags.aligned
    assert connected_components(misaligned, return_n=True)[1] == 1
    assert list(regionprops(misaligned, intensity=misaligned.astype(np.float64)).label) == [7]


def test_lists_are_accepted():
    assert connected_components([[1, 0, 1], [0, 0, 0]], 4, return_n=True)[1] == 2


def test_an_output_numpy_cannot_allocate_is_a_memory_error(tmp_path):
    """Under a memory budget (an address-space limit, as a case runs with), a label map the
    core cannot allocate raises MemoryError, which the case reports; not a panic on a null
    pointer. Run in a child process, so a regression cannot take the test run with it."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from medground import geometry\n"
        "from medground.pipeline.budget import case_budget\n"
        "a = np.zeros((400, 400, 300), np.uint8)\n"
        "a[::8, ::8, ::8] = 1\n"  # 95,000 components: a uint32 map of 183 MiB; the kernel's own buffers are small
        "with case_budget(None, 100 * 2**20):\n"
        "    try:\n"
        "        geometry.connected_components(a)\n"
        "    except MemoryError as error:\n"
        "        print('MemoryError', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("MemoryError") and "Unable to allocate" in done.stdout


# Each kernel's working buffers that cannot be allocated (issue #17). Per case: the
# input, built before the limit, and the call, made under it. Every input is small
# against what the kernel would need for it: runs of a striped mask, moments, spans and
# label pairs that grow past the limit, and tables sized by the input's shape or labels
# that are asked for in one piece.
_STRIPES = "a = np.zeros((32, 512, 512), np.uint8); a[..., ::2] = 1"  # 4M runs
_DISTINCT = "a = np.arange(1, 2**22 + 1, dtype=np.uint32).reshape(2048, 2048)"  # 4M labels
_KERNEL_CASES = {
    "connected_components": (_STRIPES, "_core.connected_components(a, 26, False)"),
    "largest_k": (_STRIPES, "_core.largest_k(a, 1, 26, False)"),
    "dust": (_STRIPES, "_core.dust(a, 2, 26, False, False)"),
    # No voxels, 2^30 rows: the row index of the (empty) volume.
    "dust_in_place": ("a = np.zeros((1, 2**30, 0), np.uint8)", "_core.dust_in_place(a, 2, 6, False, False)"),
    "regionprops": (_DISTINCT + "[None]", "_core.regionprops(a, [1.0, 1.0, 1.0])"),
    # Two labels 16 million apart: the slab's dense label lookup.
    "regionprops_label_span": ("a = np.array([[[1, 16_000_000]]], np.uint32)", "_core.regionprops(a, [1.0, 1.0, 1.0])"),
    # 4M rows of one voxel: the per-row extents.
    "surface_areas": ("a = np.ones((2048, 2048, 1), np.uint8)", "_core.surface_areas(a, [1.0] * 3, a[0, 0])"),
    # 4M rows: the row spans of the one region.
    "shape2d": ("a = np.ones((2**22, 1), np.uint8)", "_core.shape2d(a, [1.0, 1.0], a[0])"),
    # 65,535 regions by 257 slice columns: the slice table.
    "slice_areas": (
        "a = np.zeros((4, 64, 256), np.uint16); r = np.arange(1, 2**16, dtype=np.uint16)",
        "_core.slice_areas(a, 2, r)",
    ),
    # Region labels 16 million apart: the dense label lookup table.
    "slice_areas_label_span": (
        "a = np.zeros((4, 64, 256), np.uint32); r = np.array([1, 16_000_000], np.uint32)",
        "_core.slice_areas(a, 2, r)",
    ),
    "contacts": (_DISTINCT, "_core.contacts(a, 4)"),
    "overlap": (_DISTINCT, "_core.overlap(a, a)"),
}

_KERNEL_SCRIPT = """
import resource, sys
import numpy as np
from medground import _core

setup, call = sys.argv[1], sys.argv[2]
# Start the worker threads and warm the allocator before the limit.
_core.set_num_threads(2)
warm = np.zeros((64, 128, 128), np.uint8)
warm[::2, ::2, ::2] = 1
_core.regionprops(_core.connected_components(warm, 26, False)[0], [1.0, 1.0, 1.0])
exec(setup)
with open("/proc/self/status") as status:
    held = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (held + 16 * 2**20, resource.RLIM_INFINITY))
try:
    eval(call)
    print("no error")
except MemoryError as error:
    print("MemoryError", error)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("case", sorted(_KERNEL_CASES))
def test_a_kernel_buffer_that_cannot_be_allocated_is_a_memory_error(case):
    """Under an address-space limit 16 MiB above what the process holds (a case's memory
    budget), a kernel whose own working buffers do not fit raises MemoryError naming the
    buffer; it does not abort the process. In a child process (one malloc arena, so the
    limit is what the allocator meets), so a regression cannot take the test run with it."""
    import subprocess
    import sys

    setup, call = _KERNEL_CASES[case]
    env = dict(os.environ, MALLOC_ARENA_MAX="1")
    done = subprocess.run(
        [sys.executable, "-c", _KERNEL_SCRIPT, setup, call], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    # The kernel's error (bytes and buffer named), not numpy's for an output array.
    assert done.stdout.startswith("MemoryError out of memory: cannot allocate"), done.stdout + done.stderr[-2000:]
    assert " bytes for " in done.stdout
