"""Ground truth and predictions for the evaluation and prediction tests: samples.jsonl
records (through records.Sample), prediction files and ``medground eval --json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from PIL import Image

from medground.cli import eval_command
from medground.records import Sample, Target


def make_sample(
    sample_id: str,
    boxes: list[list[int]],
    *,
    width: int = 765,
    height: int = 572,
    label: str = "kidney tumor",
    dataset: str = "kits",
    modality: str = "CT",
    split: str | None = "test",
    query_type: str = "direct",
    distractor_labels: tuple[str, ...] = (),
    query: str = "Locate the kidney tumor.",
    labels: list[str] | None = None,
    others: tuple[tuple[str, list[int]], ...] = (),
    subset: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A samples.jsonl record (through records.Sample, so the fields are the real ones).

    ``labels`` gives each target its own label (else every target is ``label``);
    ``others`` are distractors with boxes, ``(label, box)``, after the box-less
    ``distractor_labels``."""
    names = labels if labels is not None else [label] * len(boxes)
    targets = [
        Target(
            label_id=1,
            label=names[k],
            object_id=k + 1,
            bbox_xyxy=box,
            area_px=0,
            mask_rle={"size": [height, width], "counts": ""},
            bbox_3d=None,
            cues={},
        )
        for k, box in enumerate(boxes)
    ]
    distractors = [{"label": name, "object_id": 100 + k, "values": {}} for k, name in enumerate(distractor_labels)]
    distractors += [
        {"label": name, "object_id": 200 + k, "bbox_xyxy": box, "values": {}} for k, (name, box) in enumerate(others)
    ]
    return Sample(
        id=sample_id,
        dataset=dataset,
        case_id=sample_id,
        patient_id=sample_id,
        split=split,
        image=f"images/{dataset}/{sample_id}.png",
        width=width,
        height=height,
        modality=modality,
        view=None,
        query=query,
        query_type=query_type,
        targets=targets,
        referring_attributes=dict(attributes or {}),
        subset=subset,
        distractors=distractors,
        synthesis={"backend": "template"},
    ).to_dict()


def write_gt(folder: Path, samples: list[dict[str, Any]], *, images: bool = False) -> Path:
    """An output folder with samples.jsonl (and blank images of the right sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    if images:
        for s in samples:
            path = folder / s["image"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (s["width"], s["height"]), color=len(s["id"])).save(path)
    return folder


def write_preds(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run_eval(gt: Path, pred: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(pred), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def breakdown_fixture(tmp_path: Path) -> tuple[Path, Path]:
    gt = write_gt(
        tmp_path / "out",
        [
            # 1 same-label distractor (the other kidney tumor; the kidney does not count).
            make_sample("s1", [[0, 0, 10, 10]], distractor_labels=("kidney tumor", "kidney"), subset="appearance"),
            make_sample(
                "s2", [[0, 0, 10, 10]], label="kidney", query_type="descriptive", distractor_labels=("kidney",)
            ),
            make_sample("s3", [[0, 0, 10, 10]], label="lesion", dataset="isic", modality="dermoscopy", split="train"),
            make_sample(
                "s4", [[0, 0, 10, 10], [20, 0, 30, 10]], query_type="multi_object", split=None, subset="appearance"
            ),
            make_sample(
                "s5",
                [[0, 0, 10, 10]],
                label="liver tumor",
                dataset="lits",
                query_type="relational",
                split="val",
                distractor_labels=("liver tumor", "liver tumor", "liver"),
            ),
        ],
    )
    pred = write_preds(
        tmp_path / "preds.jsonl",
        [
            {"id": "s1", "bbox": [0, 0, 10, 10]},  # IoU 1
            {"id": "s2", "text": "no idea"},  # unparseable
            # s3 missing
            {"id": "s4", "bboxes": [[20, 0, 30, 10]]},  # 1 of 2
            {"id": "s5", "bbox": [0, 0, 10, 5]},  # IoU 0.5
        ],
    )
    return gt, pred
