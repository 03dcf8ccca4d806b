"""The ONNX judge, with a stand-in model built with onnx and run with onnxruntime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medground.generate import view_measurements
from medground.verify import Verifier, make_judge
from phantom_drafts import lesion_sample, phantom


def test_onnx_judge(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from medground.verify.onnx_judge import OnnxJudge, prepare_inputs

    # score = mean brightness of the crop inside the box: a stand-in for a trained judge.
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["score"], keepdims=0)],
        "judge",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64]),
            helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "judge.onnx"
    onnx.save(model, path)
    spec, drafts = phantom(tmp_path)
    sample = lesion_sample(drafts)
    bright = np.full((sample.height, sample.width), 230, np.uint8)
    dark = np.zeros((sample.height, sample.width), np.uint8)
    inputs = prepare_inputs(bright, [sample.targets[0].bbox_xyxy], 64)
    assert inputs["image"].shape == (1, 3, 64, 64) and inputs["box"].shape == (1, 4)
    x0, y0, x1, y1 = inputs["box"][0]
    assert 0 < x0 < x1 < 1 and 0 < y0 < y1 < 1
    judge = OnnxJudge(path, threshold=0.5)
    assert judge.size == 64 and judge(sample, bright).passed
    result = judge(sample, dark)
    assert (result.passed, result.reason) == (False, "judge_rejected") and result.info["score"] == 0.0
    verifier = Verifier(make_judge({"backend": "onnx", "model": str(path)}))
    view = next(v for v in drafts.views if v.view_record() == sample.view)
    # The view as if stored bright (what the stand-in judge scores highly).
    evidence = view_measurements(drafts, spec, view).evidence
    bright_view = replace(evidence, image=bright, values=bright.astype(np.float32))
    checked, failed = verifier.verify(sample, drafts.facts[sample.image], bright_view)
    assert failed is None and checked.verification["visual"]["info"]["judge"] == "onnx"
