"""The geometry core side by side with cc3d, SimpleITK and numpy, in one run.

Run with `make bench` (pytest-benchmark; disabled in the normal test run). Test ids
name the library and thread count; bench/report.py turns the JSON into ratios.
"""

from __future__ import annotations

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk

import medground
from medground.geometry import connected_components, regionprops


def pedantic(benchmark, fn, rounds=7):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.fixture(params=[1, 2], ids=["1t", "2t"])
def threads(request):
    medground.set_num_threads(request.param)
    yield request.param
    medground.set_num_threads(0)


# --- connected components, 26-connected, multilabel -------------------------------


@pytest.mark.parametrize("volume", ["clean", "noisy"])
def test_cc26_medground(benchmark, request, volume, threads):
    vol = request.getfixturevalue(volume)
    benchmark.group = f"cc26 {volume}"
    benchmark.extra_info.update(library="medground", threads=threads)
    pedantic(benchmark, lambda: connected_components(vol, 26))


@pytest.mark.parametrize("volume", ["clean", "noisy"])
def test_cc26_cc3d(benchmark, request, volume):
    vol = request.getfixturevalue(volume)
    benchmark.group = f"cc26 {volume}"
    benchmark.extra_info.update(library="cc3d", threads=1)
    pedantic(benchmark, lambda: cc3d.connected_components(vol, connectivity=26))


def test_cc26_salt_medground(benchmark, salt, threads):
    benchmark.group = "cc26 salt"
    benchmark.extra_info.update(library="medground", threads=threads)
    pedantic(benchmark, lambda: connected_components(salt, 26))


def test_cc26_salt_cc3d(benchmark, salt):
    benchmark.group = "cc26 salt"
    benchmark.extra_info.update(library="cc3d", threads=1)
    pedantic(benchmark, lambda: cc3d.connected_components(salt, connectivity=26))


def test_read_floor_numpy(benchmark, clean):
    benchmark.group = "cc26 clean"
    benchmark.extra_info.update(library="numpy count_nonzero (read floor)", threads=1)
    pedantic(benchmark, lambda: np.count_nonzero(clean))


# --- components + statistics -------------------------------------------------------


def test_cc_stats_medground(benchmark, clean, threads):
    benchmark.group = "cc26 + statistics clean"
    benchmark.extra_info.update(library="medground", threads=threads)

    def run():
        table = regionprops(connected_components(clean, 26), contours=False)
        return table.voxel_count, table.bbox_min, table.centroid, table.axis_lengths

    pedantic(benchmark, run)


def test_cc_stats_cc3d(benchmark, clean):
    benchmark.group = "cc26 + statistics clean"
    benchmark.extra_info.update(library="cc3d", threads=1)
    pedantic(benchmark, lambda: cc3d.statistics(cc3d.connected_components(clean, connectivity=26)))


# --- region statistics on label maps -----------------------------------------------


def sitk_shape_statistics(image, threads):
    f = sitk.LabelShapeStatisticsImageFilter()
    f.ComputePerimeterOff()
    f.SetNumberOfThreads(threads)
    f.Execute(image)
    return f


@pytest.mark.parametrize("volume", ["labelmap", "salt"])
def test_regionprops_medground(benchmark, request, volume, threads):
    vol = request.getfixturevalue(volume)
    labels = connected_components(vol, 26) if volume == "salt" else vol
    benchmark.group = f"regionprops {volume}"
    benchmark.extra_info.update(library="medground", threads=threads, regions=int(labels.max()))
    pedantic(benchmark, lambda: regionprops(labels, (1.0, 0.8, 0.8), contours=False))


@pytest.mark.parametrize("volume", ["labelmap", "salt"])
def test_regionprops_with_contours_medground(benchmark, request, volume, threads):
    vol = request.getfixturevalue(volume)
    labels = connected_components(vol, 26) if volume == "salt" else vol
    benchmark.group = f"regionprops {volume}"
    benchmark.extra_info.update(library="medground with contour measures (surface area)", threads=threads)
    pedantic(benchmark, lambda: regionprops(labels, (1.0, 0.8, 0.8)), rounds=5)


@pytest.mark.parametrize("sitk_threads", [1, 2])
@pytest.mark.parametrize("volume", ["labelmap", "salt"])
def test_regionprops_simpleitk(benchmark, request, volume, sitk_threads):
    vol = request.getfixturevalue(volume)
    labels = connected_components(vol, 26, out_dtype=np.uint32) if volume == "salt" else vol
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.8, 0.8, 1.0))
    benchmark.group = f"regionprops {volume}"
    benchmark.extra_info.update(library="SimpleITK LabelShapeStatistics (perimeter off)", threads=sitk_threads)
    pedantic(benchmark, lambda: sitk_shape_statistics(image, sitk_threads), rounds=3 if volume == "salt" else 7)
