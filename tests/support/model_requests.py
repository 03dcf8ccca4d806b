"""What the model-backend tests send and expect: the test API key, the judge's verdict
schema and a good verdict, a verdict request, and reading back a PNG data URL."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
from PIL import Image

from medground.backends import Request
from medground.backends.prompts import load_prompt

KEY_ENV = "MEDGROUND_TEST_API_KEY"


KEY = "sk-test-5ecret-0123456789abcdef"


VERDICT = load_prompt("judge_v2").schema


def verdict_request(key: str, *, image: np.ndarray | None = None) -> Request:
    content: list[dict[str, Any]] = [{"type": "text", "text": key}]
    images: tuple[np.ndarray, ...] = ()
    if image is not None:
        content.insert(0, {"type": "image", "index": 0})
        images = (image,)
    return Request(
        id=key,
        messages=[{"role": "system", "content": "Answer JSON."}, {"role": "user", "content": content}],
        images=images,
        schema=VERDICT,
        schema_name="verdict",
    )


GOOD = json.dumps({"verdict": "yes", "confidence": 0.9, "reason": "clearly the boxed lesion"})


def decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
