"""Small real-file datasets for the isolation tests (in-process and on Ray)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image


def photos(folder: Path, names: list[str | bytes], *, pattern: str = "images/{case}.png") -> Path:
    """A dermoscopy-like set: one photograph with a round lesion per name (bytes: a raw,
    possibly undecodable, file name); returns the spec."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:120, 0:150]
    for index, name in enumerate(names):
        stem = os.fsdecode(name) if isinstance(name, bytes) else name
        lesion = (yy - 60) ** 2 + (xx - 70 - 3 * index) ** 2 < 28**2
        photo = np.stack([110 + 90 * lesion, 80 + 30 * lesion, 60 + 20 * lesion], axis=-1).astype(np.uint8)
        Image.fromarray(photo).save(folder / "images" / f"{stem}.png")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(folder / "masks" / f"{stem}.png")
    spec = folder / "spec.toml"
    spec.write_text(
        f'name = "photos"\nmodality = "dermoscopy"\ndisplay = "image"\nroot = "{folder}"\n'
        f'[cases]\nimage = "{pattern}"\nmask = "masks/{{case}}.png"\nmask_mode = "binary"\n'
        '[labels]\n1 = "melanocytic lesion"\n'
    )
    return spec


def strict_lines(path: Path) -> list[dict]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line]
