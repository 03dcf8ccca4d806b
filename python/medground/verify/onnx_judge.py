"""A user-supplied visual judge as an ONNX model, run with onnxruntime (GPU where present).

Contract (what a model must accept and return):

* input ``image``: float32 ``[1, 3, S, S]``, RGB in [0, 1]: the stored image cropped around
  the targets' union box with a margin of 25% of its size on every side (clamped to the
  image), resized to S × S (S is the model's fixed input size, 224 when dynamic);
* input ``box``: float32 ``[1, 4]``, the union box ``[x_min, y_min, x_max, y_max]`` in the
  crop, as fractions of its width and height;
* output (the first): the probability that the query's target is visible and correctly
  boxed, any shape with one element.

A draft passes when the score is at least the threshold. Install with
``pip install medground[onnx]`` (or ``onnxruntime-gpu`` for CUDA).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground.records import Sample, StageResult
from medground.verify.judge import JudgeItem

__all__ = ["OnnxJudge", "prepare_inputs"]

MARGIN = 0.25
DEFAULT_SIZE = 224


def prepare_inputs(
    image: NDArray[np.uint8], boxes: list[list[int]], size: int = DEFAULT_SIZE
) -> dict[str, NDArray[np.float32]]:
    """The ``image`` and ``box`` inputs of the contract for an 8-bit image and target boxes."""
    from PIL import Image

    height, width = image.shape[:2]
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[2] for b in boxes)
    y1 = max(b[3] for b in boxes)
    mx, my = MARGIN * (x1 - x0), MARGIN * (y1 - y0)
    cx0, cy0 = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    cx1, cy1 = min(width, int(np.ceil(x1 + mx))), min(height, int(np.ceil(y1 + my)))
    crop = image[cy0:cy1, cx0:cx1]
    rgb = np.repeat(crop[..., None], 3, axis=2) if crop.ndim == 2 else crop[..., :3]
    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32
    )
    tensor = (resized / 255.0).transpose(2, 0, 1)[None]
    box = np.asarray(
        [[(x0 - cx0) / (cx1 - cx0), (y0 - cy0) / (cy1 - cy0), (x1 - cx0) / (cx1 - cx0), (y1 - cy0) / (cy1 - cy0)]],
        dtype=np.float32,
    )
    return {"image": np.ascontiguousarray(tensor, dtype=np.float32), "box": box}


class OnnxJudge:
    """Scores drafts with an ONNX model under the contract above (a
    :class:`medground.verify.judge.Judge`)."""

    name = "onnx"

    def __init__(self, model: Path | str, *, threshold: float = 0.5) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - exercised where onnxruntime is absent
            raise ImportError(
                "the onnx judge needs onnxruntime: pip install 'medground[onnx]' (or onnxruntime-gpu)"
            ) from exc
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX judge model not found: {path}")
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), providers=providers)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"image", "box"}:
            raise ValueError(f"{path}: the judge must take inputs 'image' and 'box', it takes {sorted(inputs)}")
        shape = inputs["image"].shape
        self.size = shape[-1] if isinstance(shape[-1], int) else DEFAULT_SIZE
        self.threshold = threshold
        self.path = path

    def score(self, image: NDArray[np.uint8], boxes: list[list[int]]) -> float:
        outputs: list[Any] = self.session.run(None, prepare_inputs(image, boxes, self.size))
        value = np.asarray(outputs[0], dtype=np.float64)
        if value.size != 1:
            raise ValueError(f"{self.path}: the judge must return one score, got shape {value.shape}")
        return float(value.reshape(()))

    def judge(self, items: Sequence[JudgeItem]) -> list[StageResult]:
        """Verdicts for :class:`medground.verify.judge.JudgeItem` s, in order."""
        return [self(item.sample, item.image) for item in items]

    def __call__(self, sample: Sample, image: NDArray[np.uint8]) -> StageResult:
        score = self.score(image, [t.box for t in sample.targets])
        info = {"judge": "onnx", "model": self.path.name, "score": round(score, 4)}
        if score >= self.threshold:
            return StageResult("visual", True, info=info)
        return StageResult("visual", False, "judge_rejected", f"ONNX judge score {score:.3f} < {self.threshold}", info)
