"""``medground export``: ``samples.jsonl`` in the formats people train and evaluate with.

Every format states its coordinate convention; boxes start from the canonical
``bbox_xyxy`` (pixels of the stored image, max exclusive) and are converted exactly once:

============  =====================================================================  ============================
format        file(s)                                                                boxes
============  =====================================================================  ============================
llava         ``llava.json``: LLaVA/Qwen fine-tune conversations                     0–1 of the stored image, 3 decimals
sharegpt      ``sharegpt.json``: LLaMA-Factory ``messages`` + ``images``             stored-image pixels (``bbox_2d``)
swift         ``swift.jsonl``: ms-swift ``messages`` + ``objects``                   stored-image pixels (``real``)
qwen2.5-vl    ``qwen2.5-vl.jsonl``: Qwen2.5-VL chat with ``bbox_2d`` JSON answers    pixels of the smart-resized image
qwen2-vl      ``qwen2-vl.jsonl``: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``      0–1000
qwen3-vl      ``qwen3-vl.jsonl``: ``bbox_2d`` JSON answers                           0–1000
internvl      ``internvl.jsonl``: ``<ref>…</ref><box>[[x1, y1, x2, y2]]</box>``      0–1000
refcoco       ``refs.json`` + ``instances.json`` (RefCOCO layout, COCO RLE masks)    COCO ``[x, y, w, h]`` pixels
parquet       ``data.parquet`` with an ``image`` column (bytes + path)               stored-image pixels
============  =====================================================================  ============================

Image paths are relative to the run folder (``images/…``) unless ``absolute`` is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medground.boxes import QWEN25_MAX_PIXELS, QWEN25_MIN_PIXELS, convention
from medground.runfolder import RunFolder, atomic_write

__all__ = ["FORMATS", "export"]

FORMATS = ("llava", "sharegpt", "swift", "qwen2.5-vl", "qwen2-vl", "qwen3-vl", "internvl", "refcoco", "parquet")


def _read(run: Path, split: str | None) -> list[dict[str, Any]]:
    folder = RunFolder(run)
    folder.require(reader="export")
    return [sample.to_dict() for _, sample in folder.samples(split=split)]


def _image(run: Path, sample: dict[str, Any], absolute: bool) -> str:
    return str((run / sample["image"]).resolve()) if absolute else sample["image"]


def _boxes(sample: dict[str, Any], name: str, **resize: int) -> list[Any]:
    out = convention(
        name,
        min_pixels=resize.get("min_pixels", QWEN25_MIN_PIXELS),
        max_pixels=resize.get("max_pixels", QWEN25_MAX_PIXELS),
    )
    return [out.from_pixels(t["bbox_xyxy"], sample["width"], sample["height"]) for t in sample["targets"]]


def _json_answer(sample: dict[str, Any], boxes: list[Any]) -> str:
    objects = [{"bbox_2d": box, "label": t["label"]} for box, t in zip(boxes, sample["targets"], strict=True)]
    return "```json\n" + json.dumps(objects) + "\n```"


def _prompt(sample: dict[str, Any], family: str) -> str:
    many = sample["query_type"] == "multi_object"
    if family in ("qwen2.5-vl", "qwen3-vl", "sharegpt"):
        what = "each of them" if many else "it"
        return f"{sample['query']} Output the bounding box{'es' if many else ''} of {what} in JSON format."
    return str(sample["query"])


def _conversations(
    samples: Iterable[dict[str, Any]], run: Path, fmt: str, absolute: bool, **resize: int
) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        image = _image(run, sample, absolute)
        if fmt == "llava":
            boxes = _boxes(sample, "norm1")
            answer = "; ".join(json.dumps(b) for b in boxes)
            rows.append(
                {
                    "id": sample["id"],
                    "image": image,
                    "conversations": [
                        {
                            "from": "human",
                            "value": f"<image>\n{sample['query']} Answer with the bounding box coordinates "
                            "[x1, y1, x2, y2] normalised to 0-1.",
                        },
                        {"from": "gpt", "value": answer},
                    ],
                }
            )
        elif fmt == "sharegpt":
            boxes = _boxes(sample, "pixel")
            rows.append(
                {
                    "id": sample["id"],
                    "images": [image],
                    "messages": [
                        {"role": "user", "content": "<image>" + _prompt(sample, fmt)},
                        {"role": "assistant", "content": _json_answer(sample, boxes)},
                    ],
                }
            )
        elif fmt == "swift":
            boxes = _boxes(sample, "pixel")
            rows.append(
                {
                    "id": sample["id"],
                    "images": [image],
                    "messages": [
                        {
                            "role": "user",
                            "content": "<image>Find <ref-object>"
                            if len(boxes) == 1
                            else "<image>Find every <ref-object>",
                        },
                        {"role": "assistant", "content": "".join("<bbox>" for _ in boxes)},
                    ],
                    "objects": {
                        "ref": [sample["query"]],
                        "bbox": boxes,
                        "bbox_type": "real",
                        "image_id": [0] * len(boxes),
                    },
                }
            )
        elif fmt in ("qwen2.5-vl", "qwen3-vl"):
            boxes = _boxes(sample, "qwen2.5-vl", **resize) if fmt == "qwen2.5-vl" else _boxes(sample, "norm1000")
            # qwen-vl-utils' fetch_image (and ms-swift) read the processor limits from the
            # image element itself: the image is resized as the boxes assume.
            limits = convention(fmt, min_pixels=resize["min_pixels"], max_pixels=resize["max_pixels"]).image_fields()
            element = {"type": "image", "image": image, **limits}
            rows.append(
                {
                    "id": sample["id"],
                    "messages": [
                        {"role": "user", "content": [element, {"type": "text", "text": _prompt(sample, fmt)}]},
                        {"role": "assistant", "content": [{"type": "text", "text": _json_answer(sample, boxes)}]},
                    ],
                }
            )
        elif fmt == "qwen2-vl":
            boxes = _boxes(sample, "norm1000")
            answer = "".join(
                f"<|object_ref_start|>{sample['query']}<|object_ref_end|><|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>"
                for b in boxes
            )
            rows.append(
                {
                    "id": sample["id"],
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image", "image": image}, {"type": "text", "text": sample["query"]}],
                        },
                        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                    ],
                }
            )
        elif fmt == "internvl":
            boxes = _boxes(sample, "norm1000")
            answer = f"<ref>{sample['query']}</ref><box>{json.dumps(boxes)}</box>"
            rows.append(
                {
                    "id": sample["id"],
                    "image": image,
                    "width": sample["width"],
                    "height": sample["height"],
                    "conversations": [
                        {
                            "from": "human",
                            "value": "<image>\nPlease provide the bounding box coordinate of the region this "
                            f"sentence describes: <ref>{sample['query']}</ref>",
                        },
                        {"from": "gpt", "value": answer},
                    ],
                }
            )
    return rows


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


def export(
    run: Path | str,
    fmt: str,
    *,
    out: Path | str | None = None,
    split: str | None = None,
    absolute: bool = False,
    min_pixels: int = QWEN25_MIN_PIXELS,
    max_pixels: int = QWEN25_MAX_PIXELS,
) -> list[Path]:
    """Writes ``samples.jsonl`` of a run folder in ``fmt``; returns the files written.

    Args:
        run: the output folder of ``medground run``.
        fmt: one of :data:`FORMATS`.
        out: where to write (default ``RUN/exports/FMT``).
        split: only this split (train, val, test).
        absolute: absolute image paths instead of paths relative to ``run``.
        min_pixels, max_pixels: Qwen2.5-VL processor limits used for ``qwen2.5-vl``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run = Path(run)
    samples = _read(run, split)
    target = Path(out) if out is not None else run / "exports" / fmt
    resize = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if fmt == "refcoco":
        instances, refs = _refcoco(samples, run, absolute)
        atomic_write(target / "instances.json", json.dumps(instances).encode())
        atomic_write(target / "refs.json", json.dumps(refs).encode())
        return [target / "instances.json", target / "refs.json"]
    if fmt == "parquet":
        _parquet(samples, run, target / "data.parquet")
        return [target / "data.parquet"]
    rows = _conversations(samples, run, fmt, absolute, **resize)
    if fmt in ("llava", "sharegpt"):
        path = target / f"{fmt}.json"
        atomic_write(path, json.dumps(rows, indent=1).encode())
    else:
        path = target / f"{fmt}.jsonl"
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    return [path]
