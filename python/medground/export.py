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
refcoco       refcoco     pixel       ``instances.json`` + ``refs.json``; ``refcoco/`` for the refer toolkit
parquet       hf          pixel       ``data/{train,validation,test}-*.parquet`` + ``README.md`` (the Hub's layout)
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
- **hf**: the Hugging Face Hub's layout: ``data/{train,validation,test}-*.parquet`` shards
  streamed to disk, with TRL's ``messages`` + ``images`` (answers in ``--boxes``) beside the
  canonical boxes, masks (COCO RLE), referring expression, cues and provenance, and a
  ``README.md`` whose YAML front matter the Hub reads (licence placeholders per source
  dataset, task categories, one config with a data-files pattern per split).
- **m3d**: 3D grounding for volume datasets (M3D-style): one record per volume, object set
  and referring expression whose attributes hold in the whole volume (category,
  description, side, count), with the volume file, the instruction, and each object's 3D
  box in voxel indices (max exclusive), in patient RAS+ millimetres and in 0–1 of each
  voxel axis, every convention named in the record.
- ``--pad-square``: LLaVA-1.5's ``image_aspect_ratio = "pad"`` trains on the image padded to
  a centred square; boxes are relative to that square.

The instructions come from the grounding-prompt registry ``medground predict`` asks with
(:func:`medground.boxes.grounding_prompt`), so a model is evaluated with the prompt it was
trained on; reference spans (ms-swift's ``ref``, Qwen2-VL's object-ref span, InternVL's
``<ref>``) hold the sample's ``referring_expression`` (the noun phrase, not the
instruction), and JSON ``label`` fields the targets' clinical terms.

Image paths are relative to the run folder (``images/…``; run the framework from there, or
point its image folder at it) unless ``absolute`` is set. Every export folder gets an
``export.json`` naming the layout, the convention with its parameters, the files, the
framework's setup files written next to them (LLaMA-Factory's ``dataset_info.json``,
InternVL's ``meta.json``) and the command that trains on it (``medground export`` prints it).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medground import rle
from medground.boxes import (
    CONVENTIONS,
    LLAMAFACTORY_MAX_PIXELS,
    LLAMAFACTORY_MIN_PIXELS,
    QWEN25_MAX_PIXELS,
    QWEN25_MIN_PIXELS,
    BoxConvention,
    absent_answer,
    convention,
    grounding_prompt,
    prompt_version,
)
from medground.records import dumps, is_volume_sample
from medground.runfolder import RunFolder, atomic_write, split_name
from medground.terms import clinical_term

__all__ = ["DATASET_NAME", "FORMATS", "LAYOUTS", "PRESETS", "Preset", "export", "train_command"]


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
    "parquet": Preset("hf", "pixel", "json"),
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
    "hf": Preset("hf", "qwen2.5-vl", "json"),
    "m3d": Preset("m3d", "pixel", "volume"),
}
# Conventions a layout can hold (all others: every convention).
_LAYOUT_BOXES = {"swift": ("pixel", "norm1"), "refcoco": ("pixel",), "m3d": ("pixel",)}
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
    hold the referring expression, JSON labels the targets' clinical terms. An absent query
    (no target) is answered with an empty JSON list, or a sentence saying the structure is
    not present (``absent_answer`` of the prompt registry), its expression in the style's
    reference span."""
    targets = sample["targets"]
    if sample["query_type"] == "absent" and style != "json":
        expression = _expression(sample)
        if style == "qwen2":
            expression = f"<|object_ref_start|>{expression}<|object_ref_end|>"
        elif style == "internvl":
            expression = f"<ref>{expression}</ref>"
        else:
            expression = expression[:1].upper() + expression[1:]
        return absent_answer(expression)
    if style == "json":
        objects = [{"bbox_2d": box, "label": _label(t)} for box, t in zip(boxes, targets, strict=True)]
        return "```json\n" + dumps(objects) + "\n```"
    if style == "qwen2":
        return "".join(
            f"<|object_ref_start|>{_expression(sample)}<|object_ref_end|>"
            f"<|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>"
            for b in boxes
        )
    if style == "internvl":
        return f"<ref>{_expression(sample)}</ref><box>{dumps(boxes)}</box>"
    return "; ".join(dumps(b) for b in boxes)  # list


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
                {
                    "role": "assistant",
                    "content": "".join("<bbox>" for _ in boxes) or _answer(sample, boxes, "list"),
                },
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


def _tokens(text: str) -> list[str]:
    """Lower-case word tokens, as RefCOCO's ``tokens`` (hyphenated words kept whole)."""
    return re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", text.lower())


def _union(rles: list[dict[str, Any]]) -> dict[str, Any]:
    """One COCO RLE of the union of several masks of one image."""
    return rle.encode(np.logical_or.reduce([rle.decode(r) for r in rles]))


def _refcoco(samples: list[dict[str, Any]], run: Path, absolute: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO instances and RefCOCO refs. A ref of several targets (a multi-object query, or
    an object seen in pieces) points with ``ann_id`` at a group annotation (``iscrowd`` 1,
    the union of its targets) and lists every target's annotation in ``ann_ids``."""
    images: dict[str, dict[str, Any]] = {}
    categories: dict[str, int] = {}
    annotations: dict[tuple[Any, ...], dict[str, Any]] = {}
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
        for target in sample["targets"]:
            category = categories.setdefault(_label(target), len(categories) + 1)
            key = (sample["image"], target["object_id"], target.get("part", 1))
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
                    "parts": [target["mask_rle"]],
                }
            ann_ids.append(annotations[key]["id"])
        members = [annotations[(sample["image"], t["object_id"], t.get("part", 1))] for t in sample["targets"]]
        ann_id = members[0]["id"]
        if len(members) > 1:
            group = (sample["image"], "group", tuple(sorted(ann_ids)))
            if group not in annotations:
                union = _union([m["segmentation"] for m in members])
                x0, y0, x1, y1 = rle.bbox_xyxy(union) or [0, 0, 0, 0]
                annotations[group] = {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": members[0]["category_id"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": rle.area(union),
                    "segmentation": union,
                    "iscrowd": 1,
                    "parts": [m["segmentation"] for m in members],
                }
            ann_id = annotations[group]["id"]
        expression = _expression(sample)
        tokens = _tokens(expression)
        sentence = {"tokens": tokens, "raw": expression, "sent": " ".join(tokens), "sent_id": len(refs) + 1}
        refs.append(
            {
                "ref_id": len(refs) + 1,
                "sample_id": sample["id"],
                "image_id": image["id"],
                "file_name": image["file_name"],
                "ann_id": ann_id,
                "ann_ids": ann_ids,
                "category_id": members[0]["category_id"],
                "split": sample["split"],
                "query_type": sample["query_type"],
                "query": sample["query"],
                "sentences": [sentence],
                "sent_ids": [sentence["sent_id"]],
            }
        )
    instances = {
        "images": list(images.values()),
        "annotations": list(annotations.values()),
        "categories": [{"id": i, "name": n, "supercategory": "anatomy"} for n, i in categories.items()],
    }
    return instances, refs


def _write_refcoco(samples: list[dict[str, Any]], run: Path, absolute: bool, target: Path) -> list[Path]:
    """``instances.json`` + ``refs.json`` (COCO RLE dicts: pycocotools' ``annToMask``), and
    ``refcoco/`` as the refer toolkit loads it (``REFER(TARGET, "refcoco", "unc")``:
    ``refs(unc).p`` and ``instances.json`` whose ``segmentation`` is a list of RLEs, which its
    ``getMask`` decodes and sums)."""
    instances, refs = _refcoco(samples, run, absolute)
    coco = {
        **instances,
        "annotations": [{k: v for k, v in a.items() if k != "parts"} for a in instances["annotations"]],
    }
    refer = {
        **instances,
        "annotations": [
            {**{k: v for k, v in a.items() if k != "parts"}, "segmentation": a["parts"]}
            for a in instances["annotations"]
        ],
    }
    written = [target / "instances.json", target / "refs.json", target / "refcoco" / "instances.json"]
    atomic_write(written[0], dumps(coco).encode())
    atomic_write(written[1], dumps(refs).encode())
    atomic_write(written[2], dumps(refer).encode())
    written.append(target / "refcoco" / "refs(unc).p")
    atomic_write(written[3], pickle.dumps(refs, protocol=2))
    return written


#: Sample splits as the Hugging Face Hub names them (samples without a split train).
HF_SPLITS = {"train": "train", "val": "validation", "test": "test", None: "train"}
#: Rows per Parquet shard, and per row group written at once (what is held in memory).
SHARD_ROWS = 2000
BATCH_ROWS = 64


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


# The Hugging Face ``datasets`` features of the hf layout (stored in each shard's schema
# metadata, so the image columns load as Image features); a list is written as ``[feature]``,
# which every version of ``datasets`` reads.
_HF_FEATURES: dict[str, Any] = {
    "id": _value("string"),
    "images": [{"_type": "Image"}],
    "messages": [{"role": _value("string"), "content": [{"type": _value("string"), "text": _value("string")}]}],
    "query": _value("string"),
    "referring_expression": _value("string"),
    "query_type": _value("string"),
    "bboxes": [[_value("int64")]],
    "labels": [_value("string")],
    "label_names": [_value("string")],
    "masks": [{"size": [_value("int64")], "counts": _value("string")}],
    "cues": [_value("string")],
    "width": _value("int64"),
    "height": _value("int64"),
    "split": _value("string"),
    "dataset": _value("string"),
    "modality": _value("string"),
    "case_id": _value("string"),
    "patient_id": _value("string"),
    "view": _value("string"),
    "provenance": _value("string"),
}


def _hf_schema() -> Any:
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    content = pa.struct([("type", pa.string()), ("text", pa.string())])
    message = pa.struct([("role", pa.string()), ("content", pa.list_(content))])
    rle_type = pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.string())])
    fields = [
        ("id", pa.string()),
        ("images", pa.list_(image)),
        ("messages", pa.list_(message)),
        ("query", pa.string()),
        ("referring_expression", pa.string()),
        ("query_type", pa.string()),
        ("bboxes", pa.list_(pa.list_(pa.int64()))),
        ("labels", pa.list_(pa.string())),
        ("label_names", pa.list_(pa.string())),
        ("masks", pa.list_(rle_type)),
        ("cues", pa.list_(pa.string())),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("split", pa.string()),
        ("dataset", pa.string()),
        ("modality", pa.string()),
        ("case_id", pa.string()),
        ("patient_id", pa.string()),
        ("view", pa.string()),
        ("provenance", pa.string()),
    ]
    schema = pa.schema(fields)
    return schema.with_metadata({"huggingface": dumps({"info": {"features": _HF_FEATURES}})})


def _hf_row(sample: dict[str, Any], run: Path, style: str, conv: BoxConvention) -> dict[str, Any]:
    """One row: TRL's ``messages`` + ``images`` (the instruction and the answer in ``conv``)
    beside the canonical boxes, masks, referring expression, cues and provenance."""
    boxes = _boxes(sample, conv)
    targets = sample["targets"]
    return {
        "id": sample["id"],
        "images": [{"bytes": (run / sample["image"]).read_bytes(), "path": sample["image"]}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "text": None}, {"type": "text", "text": _prompt(sample, style, conv)}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": _answer(sample, boxes, style)}]},
        ],
        "query": sample["query"],
        "referring_expression": _expression(sample),
        "query_type": sample["query_type"],
        "bboxes": [list(t["bbox_xyxy"]) for t in targets],
        "labels": [_label(t) for t in targets],
        "label_names": [t["label"] for t in targets],
        "masks": [{"size": list(t["mask_rle"]["size"]), "counts": str(t["mask_rle"]["counts"])} for t in targets],
        "cues": [dumps(t["cues"], sort_keys=True) for t in targets],
        "width": sample["width"],
        "height": sample["height"],
        "split": HF_SPLITS[sample["split"]],
        "dataset": sample["dataset"],
        "modality": sample["modality"],
        "case_id": sample["case_id"],
        "patient_id": sample["patient_id"],
        "view": dumps(sample["view"], sort_keys=True),
        "provenance": dumps(sample.get("provenance", {}), sort_keys=True),
    }


def _write_hf(
    samples: list[dict[str, Any]],
    run: Path,
    target: Path,
    style: str,
    conv: BoxConvention,
    *,
    shard_rows: int | None = None,
) -> list[Path]:
    """``data/{split}-NNNNN-of-MMMMM.parquet`` per split, streamed: at most ``BATCH_ROWS``
    rows (with their image bytes) are held at once; each shard is written through a
    temporary file and renamed when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard_rows = shard_rows or SHARD_ROWS
    schema = _hf_schema()
    by_split: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_split.setdefault(HF_SPLITS[sample["split"]], []).append(sample)
    written = []
    for split in ("train", "validation", "test"):
        rows = by_split.get(split, [])
        shards = max(1, -(-len(rows) // shard_rows)) if rows else 0
        for shard in range(shards):
            path = target / "data" / f"{split}-{shard:05d}-of-{shards:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            part = rows[shard * shard_rows : (shard + 1) * shard_rows]
            with pq.ParquetWriter(temporary, schema) as writer:
                for start in range(0, len(part), BATCH_ROWS):
                    batch = [_hf_row(s, run, style, conv) for s in part[start : start + BATCH_ROWS]]
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            temporary.replace(path)
            written.append(path)
    return written


#: The Hub's task categories of a referring-grounding dataset.
_TASKS = ("object-detection", "image-text-to-text", "visual-question-answering")


def _hf_card(samples: list[dict[str, Any]], target: Path, conv: BoxConvention) -> Path:
    """``README.md`` with the YAML front matter the Hub reads: a licence placeholder per
    source dataset, task categories and one data-files pattern per split; no local paths."""
    counts: dict[str, int] = {}
    for sample in samples:
        counts[HF_SPLITS[sample["split"]]] = counts.get(HF_SPLITS[sample["split"]], 0) + 1
    datasets = sorted({s["dataset"] for s in samples})
    modalities = sorted({s["modality"] for s in samples})
    splits = [s for s in ("train", "validation", "test") if counts.get(s)]
    size = len(samples)
    bounds = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
    size_category = next((name for limit, name in bounds if size < limit), "n>1M")
    lines = [
        "---",
        "license: other",
        "license_name: per-source-dataset",
        "task_categories:",
        *(f"- {task}" for task in _TASKS),
        "language:",
        "- en",
        "tags:",
        "- medical",
        "- referring-expression-grounding",
        "- visual-grounding",
        *(f"- {m.lower()}" for m in modalities),
        "size_categories:",
        f"- {size_category}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *(line for split in splits for line in (f"  - split: {split}", f"    path: data/{split}-*")),
        "---",
        "",
        "# Medical referring-grounding data (medground)",
        "",
        "Queries written from expert segmentation masks and verified (medground). Each row has",
        "`messages` + `images` for TRL's vision SFT, and beside them the canonical boxes",
        "(`bboxes`: `[x_min, y_min, x_max, y_max]` in pixels of the image, max exclusive), the",
        "masks (`masks`: COCO RLE), the `referring_expression`, per-target `cues` (JSON) and",
        "`provenance` (JSON).",
        "",
        f"Boxes in the assistant's answers: `{dumps(conv.describe())}` (medground.boxes).",
        "",
        "| split | rows |",
        "|---|---|",
        *(f"| {split} | {counts[split]} |" for split in splits),
        "",
        "## Licences",
        "",
        "Every source dataset keeps its own licence and terms; fill in each before publishing:",
        "",
        "| source dataset | licence |",
        "|---|---|",
        *(f"| {name} | TODO: the licence of {name} |" for name in datasets),
        "",
    ]
    path = target / "README.md"
    atomic_write(path, "\n".join(lines).encode())
    return path


#: Referring attributes that hold in the whole volume, not only on the slice a query was
#: written for: samples whose attributes are all of these go to the 3D export.
VOLUME_ATTRIBUTES = frozenset({"category", "description", "laterality", "count"})
M3D_CONVENTIONS = {
    "bbox_voxel": "[[i, j, k]_min, [i, j, k]_max]: voxel indices of the volume file as stored, max exclusive "
    "(for a volume sample, its RAS+ copy in the run folder)",
    "bbox_ras_mm": "[[r, a, s]_min, [r, a, s]_max]: patient RAS+ millimetres, the outer faces of the box's voxels",
    "bbox_norm1": "bbox_voxel divided by volume_shape (0-1 along each array axis), rounded to 4 decimals",
}


def _volume_candidates(samples: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[int, dict[str, Any]]]]:
    """The samples whose referring expression also singles out its objects in the whole
    volume, each with its objects (one per object id), first per (case, expression).

    A slice's query may be unique on its slice only ("the liver lesion" where one of two
    shows), so an expression is kept only when its attributes hold in the whole volume, it
    names the same objects on every slice of the case, and, for instances and series
    members, every object of that label the case shows (as target or distractor) is named.
    """
    seen: dict[tuple[str, str, str], set[int]] = {}
    named: dict[tuple[str, str, str], set[tuple[int, ...]]] = {}
    for sample in samples:
        case = (sample["dataset"], sample["case_id"])
        for obj in [*sample["targets"], *sample["distractors"]]:
            seen.setdefault((*case, obj["label"]), set()).add(obj["object_id"])
        ids = tuple(sorted({t["object_id"] for t in sample["targets"]}))
        named.setdefault((*case, _expression(sample)), set()).add(ids)
    chosen: dict[tuple[str, str, str], tuple[dict[str, Any], dict[int, dict[str, Any]]]] = {}
    for sample in samples:
        if sample["view"] is None or not set(sample["referring_attributes"]) <= VOLUME_ATTRIBUTES:
            continue
        case, expression = (sample["dataset"], sample["case_id"]), _expression(sample)
        objects: dict[int, dict[str, Any]] = {}
        for t in sample["targets"]:
            objects.setdefault(t["object_id"], t)
        if len(named[(*case, expression)]) > 1 or (*case, expression) in chosen:
            continue
        whole = all(
            t["cues"].get("kind") == "organ"
            or seen[(*case, t["label"])] == {i for i, o in objects.items() if o["label"] == t["label"]}
            for t in objects.values()
        )
        if whole:
            chosen[(*case, expression)] = (sample, objects)
    return list(chosen.values())


def _write_m3d(samples: list[dict[str, Any]], run: Path, target: Path, absolute: bool = False) -> list[Path]:
    """``m3d.jsonl``: one 3D grounding record per volume and referring expression that
    singles out its objects in the whole volume. A case with volume samples
    (``view.axis = "volume"``) gives those, its volume file being the run's RAS+ copy; a
    case without gives the slice samples whose expression holds in the whole volume
    (:func:`_volume_candidates`), the volume being the dataset's file."""
    folder = RunFolder(run)
    roots = {d["name"]: d.get("root") for d in folder.manifest().get("config", {}).get("datasets", [])}
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    volumes = [s for s in samples if is_volume_sample(s)]
    with_volumes = {(s["dataset"], s["case_id"]) for s in volumes}
    slices = [s for s in samples if not is_volume_sample(s) and (s["dataset"], s["case_id"]) not in with_volumes]
    candidates = [(s, {t["object_id"]: t for t in s["targets"]}) for s in volumes] + _volume_candidates(slices)
    for sample, objects in candidates:
        expression = _expression(sample)
        key = (sample["dataset"], sample["case_id"], expression)
        if key in rows:
            continue
        provenance = sample["provenance"]
        if is_volume_sample(sample):
            shape = sample["view"]["shape"]
            volume = str(folder.path(sample["image"])) if absolute else sample["image"]
        else:
            shape = provenance["map"]["volume_shape"]
            root = roots.get(sample["dataset"])
            volume = str(Path(root) / provenance["image_path"]) if root else provenance["image_path"]
        boxes = []
        for t in objects.values():
            low, high = t["bbox_3d"]
            boxes.append(
                {
                    "label": _label(t),
                    "object_id": t["object_id"],
                    "bbox_voxel": [list(low), list(high)],
                    "bbox_ras_mm": t.get("bbox_3d_ras"),
                    "bbox_norm1": [[round(v / n, 4) for v, n in zip(end, shape, strict=True)] for end in (low, high)],
                }
            )
        multi = len(boxes) > 1
        answer = "; ".join(dumps([*b["bbox_norm1"][0], *b["bbox_norm1"][1]]) for b in boxes)
        rows[key] = {
            "id": sample["id"],
            "volume": volume,
            "volume_shape": shape,
            "dataset": sample["dataset"],
            "case_id": sample["case_id"],
            "split": sample["split"],
            "modality": sample["modality"],
            "referring_expression": expression,
            "question": grounding_prompt(
                sample["query"], "volume", multi=multi, width=shape[0], height=shape[1], expression=expression
            ),
            "answer": answer,
            "boxes": boxes,
            "conventions": M3D_CONVENTIONS,
        }
    path = target / "m3d.jsonl"
    atomic_write(path, "".join(dumps(r) + "\n" for r in rows.values()).encode())
    return [path]


#: The dataset name the setup files register (LLaMA-Factory's dataset_info.json, InternVL's meta).
DATASET_NAME = "medground"


def _setup(
    layout: str, conv: BoxConvention, target: Path, run: Path, written: list[Path], count: int, absolute: bool
) -> tuple[list[Path], str]:
    """The framework's setup files next to the export, and the command that trains on it.

    Image paths in the records are relative to the run folder (unless ``absolute``): the
    setup files and commands point the framework's image folder there.
    """
    data = written[0].resolve()
    media = run.resolve()
    if layout == "sharegpt":
        # LLaMA-Factory: dataset_dir/dataset_info.json names the file and its columns;
        # media_dir is where relative image paths resolve.
        entry = {
            DATASET_NAME: {
                "file_name": data.name,
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "images": "images"},
                "tags": {
                    "role_tag": "role",
                    "content_tag": "content",
                    "user_tag": "user",
                    "assistant_tag": "assistant",
                },
            }
        }
        path = target / "dataset_info.json"
        atomic_write(path, (dumps(entry, indent=1) + "\n").encode())
        command = (
            "llamafactory-cli train --stage sft --do_train --finetuning_type lora "
            "--model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --template qwen2_vl "
            f"--dataset {DATASET_NAME} --dataset_dir {target.resolve()} --media_dir {media} "
            f"--image_max_pixels {conv.image_max_pixels} --image_min_pixels {conv.image_min_pixels} "
            "--output_dir saves/medground"
        )
        return [path], command
    if layout == "internvl":
        # InternVL's chat fine-tuning reads a meta file: image root, annotation file, length.
        meta = {
            DATASET_NAME: {
                "root": f"{media}/",
                "annotation": str(data),
                "data_augment": False,
                "max_dynamic_patch": 12,
                "repeat_time": 1,
                "length": count,
            }
        }
        path = target / "meta.json"
        atomic_write(path, (dumps(meta, indent=1) + "\n").encode())
        command = (
            "torchrun --nproc_per_node=1 internvl/train/internvl_chat_finetune.py "
            "--model_name_or_path OpenGVLab/InternVL2_5-8B --conv_style internvl2_5 "
            f"--meta_path {path.resolve()} --force_image_size 448 --max_dynamic_patch 12 --down_sample_ratio 0.5 "
            "--dynamic_image_size True --use_thumbnail True --output_dir work_dirs/medground  "
            "# from InternVL's internvl_chat folder"
        )
        return [path], command
    cd = "" if absolute else f"cd {media} && "
    if layout == "swift":
        limits = conv.image_fields() or {"max_pixels": 12845056}
        return [], (
            f"{cd}MAX_PIXELS={limits['max_pixels']} swift sft --model Qwen/Qwen2.5-VL-7B-Instruct "
            f"--dataset {data} --train_type lora --output_dir output/medground"
        )
    if layout == "llava":
        aspect = "pad" if conv.pad_square else "square"
        return [], (
            "deepspeed llava/train/train_mem.py --model_name_or_path liuhaotian/llava-v1.5-7b --version v1 "
            f"--data_path {data} --image_folder {media} --image_aspect_ratio {aspect} "
            "--vision_tower openai/clip-vit-large-patch14-336 --mm_projector_type mlp2x_gelu "
            "--output_dir checkpoints/medground  # from the LLaVA repository"
        )
    if layout == "qwen":
        return [], (
            f'{cd}python -c "from qwen_vl_utils import process_vision_info; import json; '
            f"rows = [json.loads(l) for l in open('{data}')]; print(process_vision_info(rows[0]['messages']))\""
            "  # each image element carries the processor limits its boxes assume"
        )
    if layout == "m3d":
        return [], (
            f"python -c \"import json, nibabel; r = json.loads(open('{data}').readline()); "
            "print(nibabel.load(r['volume']).shape, r['question'], r['answer'])\"  # M3D-style 3D grounding records"
        )
    if layout == "refcoco":
        return [], f"python -c \"from refer import REFER; REFER('{target.resolve()}', 'refcoco', 'unc')\""
    return [], (
        f"trl sft --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --dataset_name {target.resolve()} "
        "--output_dir trl/medground  # datasets.load_dataset reads the folder: messages + images, splits from the card"
    )


def _resolve(
    fmt: str | None,
    layout: str | None,
    boxes: str | None,
    *,
    min_pixels: int,
    max_pixels: int,
    image_max_pixels: int | None,
    image_min_pixels: int,
    pad_square: bool | None,
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
    if pad_square is None:  # LLaVA-1.5 trains on padded squares (its CLIP processor would crop)
        pad_square = preset.layout == "llava"
    if preset.layout in ("refcoco", "m3d") and (pad_square or image_max_pixels is not None):
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
    pad_square: bool | None = None,
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
        pad_square: boxes relative to the image padded to a centred square (LLaVA-1.5's
            ``image_aspect_ratio = "pad"``; default: for the llava layout only).

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
    split = split_name(split)
    samples = _read(run, split)
    target = Path(out) if out is not None else run / "exports" / name
    left_out: dict[str, int] = {}
    if preset.layout != "m3d":
        # A volume sample's image is a volume and its boxes are 3D: only m3d holds it.
        kept = [s for s in samples if not is_volume_sample(s)]
        if len(kept) != len(samples):
            left_out["volume"] = len(samples) - len(kept)
        samples = kept
    if preset.layout in ("refcoco", "m3d"):
        # A RefCOCO ref points at an annotation, an M3D record at boxes in a volume: neither
        # holds a query without a target, so absent queries are left out (and counted).
        kept = [s for s in samples if s["query_type"] != "absent"]
        if len(kept) != len(samples):
            left_out["absent"] = len(samples) - len(kept)
        samples = kept
    if preset.layout == "refcoco":
        written = _write_refcoco(samples, run, absolute, target)
    elif preset.layout == "m3d":
        written = _write_m3d(samples, run, target, absolute)
    elif preset.layout == "hf":
        written = [*_write_hf(samples, run, target, preset.answer, conv), _hf_card(samples, target, conv)]
    else:
        rows = _conversations(samples, run, preset.layout, preset.answer, conv, absolute)
        stem = fmt if fmt is not None else preset.layout
        if preset.layout in ("llava", "sharegpt"):
            path = target / f"{stem}.json"
            atomic_write(path, dumps(rows, indent=1).encode())
        else:
            path = target / f"{stem}.jsonl"
            atomic_write(path, "".join(dumps(r) + "\n" for r in rows).encode())
        written = [path]
    setup, train = _setup(preset.layout, conv, target, run, written, len(samples), absolute)
    about = {
        "train": train,
        "layout": preset.layout,
        "boxes": conv.describe(),
        "answer": preset.answer,
        "prompt_version": prompt_version(),
        "preset": fmt,
        "split": split,
        "samples": len(samples),
        "files": [p.relative_to(target).as_posix() for p in written],
        "setup": [p.relative_to(target).as_posix() for p in setup],
        "image_paths": "absolute" if absolute else "relative to the run folder",
    }
    if left_out:
        about["left_out"] = left_out
    atomic_write(target / "export.json", (dumps(about, indent=1) + "\n").encode())
    return [*written, *setup, target / "export.json"]


def train_command(export_dir: Path | str) -> str:
    """The command that trains on an export, as ``export.json`` records it."""
    return str(json.loads((Path(export_dir) / "export.json").read_text(encoding="utf-8"))["train"])
