"""``medground export``: ``samples.jsonl`` in the layouts people train and evaluate with.

An export is a *layout* (the files and record shape a framework reads) and a *box
convention* (what the numbers of a box mean, :mod:`medground.boxes`), chosen apart:
``--layout sharegpt --boxes norm1000``. Boxes start from the canonical ``bbox_xyxy``
(pixels of the stored image, max exclusive) and are converted exactly once. The names of
``--format`` are presets, sensible pairs:

============  ==========  ==========  ==========================================================
preset        layout      boxes       file(s)
============  ==========  ==========  ==========================================================
llava         llava       norm1       ``llava.json``: LLaVA conversations, ``[x1, y1, x2, y2]`` answers
sharegpt      sharegpt    pixel       ``sharegpt.json``: LLaMA-Factory ``messages`` + ``images``, ``bbox_2d`` JSON
swift         swift       pixel       ``swift.jsonl``: ms-swift ``messages`` + ``objects`` (``bbox_type`` real)
qwen2.5-vl    qwen        qwen2.5-vl  ``qwen2.5-vl.jsonl``: Qwen chat messages, ``bbox_2d`` JSON answers
qwen2-vl      qwen        norm1000    ``qwen2-vl.jsonl``: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` answers
qwen3-vl      qwen        norm1000    ``qwen3-vl.jsonl``: ``bbox_2d`` JSON answers
internvl      internvl    norm1000    ``internvl.jsonl``: ``<ref>…</ref><box>[[x1, y1, x2, y2]]</box>``
refcoco       refcoco     pixel       ``refs.json`` + ``instances.json`` (RefCOCO layout, COCO RLE masks)
parquet       parquet     pixel       ``data.parquet`` with an ``image`` column (bytes + path)
============  ==========  ==========  ==========================================================

What each framework does to an image before its model sees it is part of the convention:

- **qwen**: every image element carries Qwen2.5-VL's ``min_pixels``/``max_pixels`` (the
  released checkpoints' unless ``--min-pixels``/``--max-pixels``), where qwen-vl-utils'
  ``fetch_image`` reads them, so the image is resized exactly as the boxes assume.
- **sharegpt**: LLaMA-Factory shrinks every image above ``image_max_pixels`` (its default
  768 × 768) and never rescales box text, so pixel boxes (``pixel``, ``qwen2.5-vl``) are
  written for the shrunk image; ``--image-max-pixels`` must equal the training run's
  ``image_max_pixels`` (normalised boxes do not depend on it).
- **swift**: boxes go in ``objects`` as ``real`` pixels or ``norm1``; ms-swift converts them
  to the model's own convention itself (``pixel`` or ``norm1`` only).
- ``--pad-square``: LLaVA-1.5's ``image_aspect_ratio = "pad"`` trains on the image padded to
  a centred square; boxes are relative to that square.

The instructions come from the grounding-prompt registry ``medground predict`` asks with
(:func:`medground.boxes.grounding_prompt`), so a model is evaluated with the prompt it was
trained on; reference spans (ms-swift's ``ref``, Qwen2-VL's object-ref span, InternVL's
``<ref>``) hold the sample's ``referring_expression`` (the noun phrase, not the
instruction), and JSON ``label`` fields the targets' clinical terms.

Image paths are relative to the run folder (``images/…``; run the framework from there, or
point its image folder at it) unless ``absolute`` is set. Every export folder gets an
``export.json`` naming the layout, the convention with its parameters, and the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medground.boxes import (
    CONVENTIONS,
    LLAMAFACTORY_MAX_PIXELS,
    LLAMAFACTORY_MIN_PIXELS,
    QWEN25_MAX_PIXELS,
    QWEN25_MIN_PIXELS,
    BoxConvention,
    convention,
    grounding_prompt,
    prompt_version,
)
from medground.runfolder import RunFolder, atomic_write
from medground.terms import clinical_term

__all__ = ["FORMATS", "LAYOUTS", "PRESETS", "Preset", "export"]


@dataclass(frozen=True)
class Preset:
    """A named pair of layout and box convention, and how the answer writes the boxes."""

    layout: str
    boxes: str
    answer: str


PRESETS: dict[str, Preset] = {
    "llava": Preset("llava", "norm1", "list"),
    "sharegpt": Preset("sharegpt", "pixel", "json"),
    "swift": Preset("swift", "pixel", "swift"),
    "qwen2.5-vl": Preset("qwen", "qwen2.5-vl", "json"),
    "qwen2-vl": Preset("qwen", "norm1000", "qwen2"),
    "qwen3-vl": Preset("qwen", "norm1000", "json"),
    "internvl": Preset("internvl", "norm1000", "internvl"),
    "refcoco": Preset("refcoco", "pixel", "none"),
    "parquet": Preset("parquet", "pixel", "none"),
}
#: The ``--format`` names (presets).
FORMATS = tuple(PRESETS)
#: The layouts, each with its default convention and answer style.
LAYOUTS: dict[str, Preset] = {
    "qwen": PRESETS["qwen2.5-vl"],
    "sharegpt": PRESETS["sharegpt"],
    "swift": PRESETS["swift"],
    "llava": PRESETS["llava"],
    "internvl": PRESETS["internvl"],
    "refcoco": PRESETS["refcoco"],
    "parquet": PRESETS["parquet"],
}
# Conventions a layout can hold (all others: every convention).
_LAYOUT_BOXES = {"swift": ("pixel", "norm1"), "refcoco": ("pixel",), "parquet": ("pixel",)}
_SWIFT_BBOX_TYPE = {"pixel": "real", "norm1": "norm1"}


def _read(run: Path, split: str | None) -> list[dict[str, Any]]:
    folder = RunFolder(run)
    folder.require(reader="export")
    return [sample.to_dict() for _, sample in folder.samples(split=split)]


def _image(run: Path, sample: dict[str, Any], absolute: bool) -> str:
    return str((run / sample["image"]).resolve()) if absolute else sample["image"]


def _boxes(sample: dict[str, Any], conv: BoxConvention) -> list[Any]:
    return [conv.from_pixels(t["bbox_xyxy"], sample["width"], sample["height"]) for t in sample["targets"]]


def _expression(sample: dict[str, Any]) -> str:
    """The referring expression (the noun phrase); the query for runs written before it."""
    return str(sample.get("referring_expression") or sample["query"]).rstrip(".?")


def _label(target: dict[str, Any]) -> str:
    """A target's label as a clinical term ("left kidney", not "kidney_left")."""
    return clinical_term(target["label"]).text


def _answer(sample: dict[str, Any], boxes: list[Any], style: str) -> str:
    """The assistant's answer: the boxes written as the style writes them; reference spans
    hold the referring expression, JSON labels the targets' clinical terms."""
    targets = sample["targets"]
    if style == "json":
        objects = [{"bbox_2d": box, "label": _label(t)} for box, t in zip(boxes, targets, strict=True)]
        return "```json\n" + json.dumps(objects) + "\n```"
    if style == "qwen2":
        return "".join(
            f"<|object_ref_start|>{_expression(sample)}<|object_ref_end|>"
            f"<|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>"
            for b in boxes
        )
    if style == "internvl":
        return f"<ref>{_expression(sample)}</ref><box>{json.dumps(boxes)}</box>"
    return "; ".join(json.dumps(b) for b in boxes)  # list


#: The registry entry (presets/grounding_prompts.toml) whose prompt an answer style is asked with.
def _prompt_key(style: str, conv: BoxConvention) -> str:
    if style == "json":
        return "qwen3-vl" if conv.name in ("norm1", "norm1000") else "qwen2.5-vl"
    if style == "list":
        return conv.name if conv.name in ("norm1", "norm1000") else "pixel"
    return {"qwen2": "qwen2-vl", "internvl": "internvl"}[style]


def _prompt(sample: dict[str, Any], style: str, conv: BoxConvention) -> str:
    """The instruction, from the registry predict asks with (the same words for the same family)."""
    width, height = conv.model_size(sample["width"], sample["height"])
    return grounding_prompt(
        sample["query"],
        _prompt_key(style, conv),
        multi=sample["query_type"] == "multi_object" or len(sample["targets"]) > 1,
        width=width,
        height=height,
        expression=sample.get("referring_expression"),
        pad_square=conv.pad_square,
    )


def _row(sample: dict[str, Any], image: str, layout: str, style: str, conv: BoxConvention) -> dict[str, Any]:
    """One exported record of ``sample`` in ``layout``."""
    boxes = _boxes(sample, conv)
    if layout == "llava":
        prompt = f"<image>\n{_prompt(sample, style, conv)}"
        return {
            "id": sample["id"],
            "image": image,
            "conversations": [
                {"from": "human", "value": prompt},
                {"from": "gpt", "value": _answer(sample, boxes, style)},
            ],
        }
    if layout == "internvl":
        return {
            "id": sample["id"],
            "image": image,
            "width": sample["width"],
            "height": sample["height"],
            "conversations": [
                {"from": "human", "value": f"<image>\n{_prompt(sample, style, conv)}"},
                {"from": "gpt", "value": _answer(sample, boxes, style)},
            ],
        }
    if layout == "sharegpt":
        return {
            "id": sample["id"],
            "images": [image],
            "messages": [
                {"role": "user", "content": "<image>" + _prompt(sample, style, conv)},
                {"role": "assistant", "content": _answer(sample, boxes, style)},
            ],
        }
    if layout == "swift":
        return {
            "id": sample["id"],
            "images": [image],
            "messages": [
                # the expression says the number itself ("every liver lesion", "both kidneys")
                {"role": "user", "content": "<image>Find <ref-object>"},
                {"role": "assistant", "content": "".join("<bbox>" for _ in boxes)},
            ],
            "objects": {
                "ref": [_expression(sample)],
                "bbox": boxes,
                "bbox_type": _SWIFT_BBOX_TYPE[conv.name],
                "image_id": [0] * len(boxes),
            },
        }
    # qwen: content lists; the image element carries the processor limits the boxes assume
    # (qwen-vl-utils' fetch_image and ms-swift read them there).
    element = {"type": "image", "image": image, **conv.image_fields()}
    return {
        "id": sample["id"],
        "messages": [
            {"role": "user", "content": [element, {"type": "text", "text": _prompt(sample, style, conv)}]},
            {"role": "assistant", "content": [{"type": "text", "text": _answer(sample, boxes, style)}]},
        ],
    }


def _conversations(
    samples: Iterable[dict[str, Any]], run: Path, layout: str, style: str, conv: BoxConvention, absolute: bool
) -> list[dict[str, Any]]:
    return [_row(sample, _image(run, sample, absolute), layout, style, conv) for sample in samples]


def _refcoco(samples: list[dict[str, Any]], run: Path, absolute: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    images: dict[str, dict[str, Any]] = {}
    categories: dict[str, int] = {}
    annotations: dict[tuple[str, int, int], dict[str, Any]] = {}
    refs: list[dict[str, Any]] = []
    for sample in samples:
        image = images.setdefault(
            sample["image"],
            {
                "id": len(images) + 1,
                "file_name": _image(run, sample, absolute),
                "width": sample["width"],
                "height": sample["height"],
            },
        )
        ann_ids = []
        ann_keys = []
        for target in sample["targets"]:
            category = categories.setdefault(target["label"], len(categories) + 1)
            key = (sample["image"], target["object_id"], target.get("part", 1))
            ann_keys.append(key)
            if key not in annotations:
                x0, y0, x1, y1 = target["bbox_xyxy"]
                annotations[key] = {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": target["area_px"],
                    "segmentation": target["mask_rle"],
                    "iscrowd": 0,
                }
            ann_ids.append(annotations[key]["id"])
        refs.append(
            {
                "ref_id": len(refs) + 1,
                "sample_id": sample["id"],
                "image_id": image["id"],
                "ann_id": ann_ids[0],
                "ann_ids": ann_ids,
                "category_id": annotations[ann_keys[0]]["category_id"],
                "split": sample["split"],
                "query_type": sample["query_type"],
                "sentences": [
                    {"raw": sample["query"], "sent": sample["query"].lower().rstrip(".?"), "sent_id": len(refs) + 1}
                ],
            }
        )
    instances = {
        "images": list(images.values()),
        "annotations": list(annotations.values()),
        "categories": [{"id": i, "name": n} for n, i in categories.items()],
    }
    return instances, refs


def _parquet(samples: list[dict[str, Any]], run: Path, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache: dict[str, bytes] = {}
    rows = {
        k: []
        for k in (
            "id",
            "image",
            "query",
            "query_type",
            "bboxes",
            "labels",
            "width",
            "height",
            "split",
            "dataset",
            "modality",
            "case_id",
            "patient_id",
        )
    }  # type: dict[str, list[Any]]
    for sample in samples:
        if sample["image"] not in cache:
            cache[sample["image"]] = (run / sample["image"]).read_bytes()
        rows["id"].append(sample["id"])
        rows["image"].append({"bytes": cache[sample["image"]], "path": sample["image"]})
        rows["query"].append(sample["query"])
        rows["query_type"].append(sample["query_type"])
        rows["bboxes"].append([list(t["bbox_xyxy"]) for t in sample["targets"]])
        rows["labels"].append([t["label"] for t in sample["targets"]])
        for key in ("width", "height", "split", "dataset", "modality", "case_id", "patient_id"):
            rows[key].append(sample[key])
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", image_type),
            ("query", pa.string()),
            ("query_type", pa.string()),
            ("bboxes", pa.list_(pa.list_(pa.int64()))),
            ("labels", pa.list_(pa.string())),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("split", pa.string()),
            ("dataset", pa.string()),
            ("modality", pa.string()),
            ("case_id", pa.string()),
            ("patient_id", pa.string()),
        ]
    )
    # Hugging Face datasets reads the struct column as an Image feature with this metadata.
    metadata = {
        "huggingface": json.dumps(
            {
                "info": {
                    "features": {
                        "id": {"dtype": "string", "_type": "Value"},
                        "image": {"_type": "Image"},
                        "query": {"dtype": "string", "_type": "Value"},
                        "query_type": {"dtype": "string", "_type": "Value"},
                        "bboxes": {
                            "feature": {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "Sequence"},
                            "_type": "Sequence",
                        },
                        "labels": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
                        "width": {"dtype": "int64", "_type": "Value"},
                        "height": {"dtype": "int64", "_type": "Value"},
                        "split": {"dtype": "string", "_type": "Value"},
                        "dataset": {"dtype": "string", "_type": "Value"},
                        "modality": {"dtype": "string", "_type": "Value"},
                        "case_id": {"dtype": "string", "_type": "Value"},
                        "patient_id": {"dtype": "string", "_type": "Value"},
                    }
                }
            }
        )
    }
    table = pa.table(rows, schema=schema.with_metadata(metadata))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary)
    temporary.replace(path)


def _resolve(
    fmt: str | None,
    layout: str | None,
    boxes: str | None,
    *,
    min_pixels: int,
    max_pixels: int,
    image_max_pixels: int | None,
    image_min_pixels: int,
    pad_square: bool,
) -> tuple[str, Preset, BoxConvention]:
    """The export's name (its default folder), its layout and answer style, and its convention."""
    if (fmt is None) == (layout is None):
        raise ValueError("give a --format preset or a --layout (with --boxes), not both and not neither")
    if fmt is not None:
        if fmt not in PRESETS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        preset = PRESETS[fmt]
        name = fmt
    else:
        assert layout is not None
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        preset = LAYOUTS[layout]
        name = f"{layout}-{boxes or preset.boxes}"
    if boxes is not None:
        preset = Preset(preset.layout, boxes, preset.answer)
    allowed = _LAYOUT_BOXES.get(preset.layout, tuple(CONVENTIONS))
    if preset.boxes not in allowed:
        raise ValueError(f"the {preset.layout} layout holds boxes {' or '.join(allowed)}, not {preset.boxes!r}")
    if preset.layout in ("refcoco", "parquet") and (pad_square or image_max_pixels is not None):
        raise ValueError(f"the {preset.layout} layout keeps stored-image pixels: no --pad-square or --image-max-pixels")
    if preset.layout == "sharegpt" and image_max_pixels is None:
        image_max_pixels = LLAMAFACTORY_MAX_PIXELS  # LLaMA-Factory resizes whether asked or not
    conv = convention(
        preset.boxes,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        pad_square=pad_square,
        image_max_pixels=image_max_pixels,
        image_min_pixels=image_min_pixels,
    )
    return name, preset, conv


def export(
    run: Path | str,
    fmt: str | None = None,
    *,
    layout: str | None = None,
    boxes: str | None = None,
    out: Path | str | None = None,
    split: str | None = None,
    absolute: bool = False,
    min_pixels: int = QWEN25_MIN_PIXELS,
    max_pixels: int = QWEN25_MAX_PIXELS,
    image_max_pixels: int | None = None,
    image_min_pixels: int = LLAMAFACTORY_MIN_PIXELS,
    pad_square: bool = False,
) -> list[Path]:
    """Writes ``samples.jsonl`` of a run folder in a layout and box convention; returns the
    files written (``export.json``, which describes the export, last).

    Args:
        run: the output folder of ``medground run``.
        fmt: a preset (one of :data:`FORMATS`), or None with ``layout``.
        layout: one of :data:`LAYOUTS` (instead of ``fmt``).
        boxes: the box convention (default: the preset's or layout's).
        out: where to write (default ``RUN/exports/FMT``, or ``RUN/exports/LAYOUT-BOXES``).
        split: only this split (train, val, test).
        absolute: absolute image paths instead of paths relative to ``run``.
        min_pixels, max_pixels: Qwen2.5-VL processor limits (``qwen2.5-vl`` boxes).
        image_max_pixels, image_min_pixels: LLaMA-Factory's resize (sharegpt: its default
            768 x 768 unless given; other layouts: none unless given).
        pad_square: boxes relative to the image padded to a centred square (LLaVA-1.5).

    Raises:
        ValueError: for an unknown preset, layout or convention, or a pair that does not go.
    """
    name, preset, conv = _resolve(
        fmt,
        layout,
        boxes,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        image_max_pixels=image_max_pixels,
        image_min_pixels=image_min_pixels,
        pad_square=pad_square,
    )
    run = Path(run)
    samples = _read(run, split)
    target = Path(out) if out is not None else run / "exports" / name
    if preset.layout == "refcoco":
        instances, refs = _refcoco(samples, run, absolute)
        atomic_write(target / "instances.json", json.dumps(instances).encode())
        atomic_write(target / "refs.json", json.dumps(refs).encode())
        written = [target / "instances.json", target / "refs.json"]
    elif preset.layout == "parquet":
        _parquet(samples, run, target / "data.parquet")
        written = [target / "data.parquet"]
    else:
        rows = _conversations(samples, run, preset.layout, preset.answer, conv, absolute)
        stem = fmt if fmt is not None else preset.layout
        if preset.layout in ("llava", "sharegpt"):
            path = target / f"{stem}.json"
            atomic_write(path, json.dumps(rows, indent=1).encode())
        else:
            path = target / f"{stem}.jsonl"
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
        written = [path]
    about = {
        "layout": preset.layout,
        "boxes": conv.describe(),
        "answer": preset.answer,
        "prompt_version": prompt_version(),
        "preset": fmt,
        "split": split,
        "samples": len(samples),
        "files": [p.name for p in written],
        "image_paths": "absolute" if absolute else "relative to the run folder",
    }
    atomic_write(target / "export.json", (json.dumps(about, indent=1) + "\n").encode())
    return [*written, target / "export.json"]
