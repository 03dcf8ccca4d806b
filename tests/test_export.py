"""Every export format is read back and its boxes compared with the canonical ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ground_truth import make_sample, write_gt
from medground import phantoms, rle
from medground.boxes import convention, smart_resize
from medground.cli import main
from medground.evaluate import parse_boxes
from medground.pipeline import load_run_config, run
from qwen_vision import vision_process


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    phantoms.demo_dataset(root / "data", volumes=2, photos=3)
    run(load_run_config(root / "data" / "run.toml"), root / "run", use_ray=False, progress=False)
    return root / "run"


def canonical(run_dir: Path) -> dict[str, dict]:
    return {s["id"]: s for s in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}


def export(run_dir: Path, fmt: str, *extra: str) -> list[Path]:
    result = CliRunner().invoke(main, ["export", str(run_dir), "--format", fmt, *extra])
    assert result.exit_code == 0, result.output
    return [Path(line.removeprefix("wrote ")) for line in result.output.splitlines()]


def assert_close(boxes: list, truth: list[list[int]], tolerance: float) -> None:
    assert len(boxes) == len(truth)
    for box, true in zip(boxes, truth, strict=True):
        assert max(abs(a - b) for a, b in zip(box, true, strict=True)) <= tolerance, (box, true)


# Format -> (how to read the answer text, the evaluator's convention, tolerance in stored pixels)
TEXT_FORMATS = {
    "llava": ("norm1", 0.0006),  # 3 decimals of the side: at most 0.0005 of it, in units of the side
    "sharegpt": ("pixel", 0),
    "qwen2.5-vl": ("qwen2.5-vl", None),
    "qwen2-vl": ("qwen2-vl", None),
    "qwen3-vl": ("qwen3-vl", None),
    "internvl": ("internvl", None),
}


@pytest.mark.parametrize("fmt", sorted(TEXT_FORMATS))
def test_text_answers_read_back_to_the_canonical_boxes(run_dir: Path, fmt: str) -> None:
    truth = canonical(run_dir)
    (path,) = export(run_dir, fmt)
    text = path.read_text()
    rows = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    assert len(rows) == len(truth)
    name, relative = TEXT_FORMATS[fmt]
    for row in rows:
        sample = truth[row["id"]]
        if "conversations" in row:
            answer = row["conversations"][1]["value"]
            image = row["image"]
        else:
            answer = row["messages"][1]["content"]
            answer = answer[0]["text"] if isinstance(answer, list) else answer
            image = row["images"][0] if "images" in row else row["messages"][0]["content"][0]["image"]
        assert (run_dir / image).is_file() and "<image>" not in answer
        boxes = [convention(name).to_pixels(b, sample["width"], sample["height"]) for b in parse_boxes(answer)]
        expected = [t["bbox_xyxy"] for t in sample["targets"]]
        if relative is None:
            # Rounded to integers in the model's grid: half a grid step, in stored pixels.
            if name == "qwen2.5-vl":
                height, width = smart_resize(sample["height"], sample["width"])
                tolerance = max(sample["width"] / width, sample["height"] / height) / 2 + 1e-9
            else:
                tolerance = max(sample["width"], sample["height"]) / 1000 / 2 + 1e-9
        else:
            tolerance = relative * max(sample["width"], sample["height"])
        assert_close(boxes, expected, tolerance)


def test_swift_objects_are_real_pixels(run_dir: Path) -> None:
    truth = canonical(run_dir)
    (path,) = export(run_dir, "swift")
    for row in map(json.loads, path.read_text().splitlines()):
        sample = truth[row["id"]]
        assert row["objects"]["bbox_type"] == "real" and row["objects"]["ref"] == [sample["query"]]
        assert row["objects"]["bbox"] == [t["bbox_xyxy"] for t in sample["targets"]]
        assert row["messages"][1]["content"].count("<bbox>") == len(sample["targets"])


def test_refcoco_layout(run_dir: Path) -> None:
    truth = canonical(run_dir)
    instances_path, refs_path = export(run_dir, "refcoco")
    instances = json.loads(instances_path.read_text())
    refs = json.loads(refs_path.read_text())
    annotations = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    assert len(refs) == len(truth)
    for ref in refs:
        sample = truth[ref["sample_id"]]
        assert ref["sentences"][0]["raw"] == sample["query"] and ref["split"] == sample["split"]
        assert images[ref["image_id"]]["file_name"] == sample["image"]
        for ann_id, target in zip(ref["ann_ids"], sample["targets"], strict=True):
            x, y, w, h = annotations[ann_id]["bbox"]
            assert [x, y, x + w, y + h] == target["bbox_xyxy"]
            assert rle.area(annotations[ann_id]["segmentation"]) == annotations[ann_id]["area"]


def test_parquet_with_image_column(run_dir: Path) -> None:
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    truth = canonical(run_dir)
    (path,) = export(run_dir, "parquet", "--split", "train")
    table = pq.read_table(path)
    assert b"huggingface" in table.schema.metadata
    rows = table.to_pylist()
    assert rows and {r["id"] for r in rows} == {i for i, s in truth.items() if s["split"] == "train"}
    for row in rows:
        sample = truth[row["id"]]
        assert row["bboxes"] == [t["bbox_xyxy"] for t in sample["targets"]]
        with Image.open(io.BytesIO(row["image"]["bytes"])) as image:
            assert image.size == (sample["width"], sample["height"])


def test_qwen25_exports_are_read_by_qwen_vl_utils_as_the_boxes_assume(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # process_vision_info is what Qwen2.5-VL fine-tuning scripts call on a messages list: it
    # opens each image element (paths relative to the working folder: the run folder here)
    # and resizes it with the element's own min_pixels/max_pixels. The answer's boxes must be
    # pixels of the image it returns, on images above 1 MP too.
    qwen = vision_process()
    big = write_gt(
        tmp_path / "big",
        [
            make_sample("photo", [[1203, 811, 1291, 873]], width=2295, height=1716),
            make_sample("xray", [[600, 300, 650, 350]], width=1024, height=1024),
        ],
        images=True,
    )
    for folder, extra in ((run_dir, ()), (big, ()), (big, ("--max-pixels", str(256 * 28 * 28)))):
        truth = canonical(folder)
        (path,) = export(folder, "qwen2.5-vl", "--out", str(tmp_path / "exports" / folder.name), *extra)
        monkeypatch.chdir(folder)
        sizes = set()
        for row in map(json.loads, path.read_text().splitlines()):
            sample = truth[row["id"]]
            element = row["messages"][0]["content"][0]
            (image,), _ = qwen.process_vision_info(row["messages"])
            sizes.add(image.size)
            expected = smart_resize(sample["height"], sample["width"], max_pixels=int(extra[1]) if extra else 12845056)
            assert image.size == expected[::-1] and element["max_pixels"] == (int(extra[1]) if extra else 12845056)
            sx, sy = sample["width"] / image.size[0], sample["height"] / image.size[1]
            answer = row["messages"][1]["content"][0]["text"]
            boxes = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in parse_boxes(answer)]
            assert_close(boxes, [t["bbox_xyxy"] for t in sample["targets"]], max(sx, sy) / 2 + 1e-9)
        if folder == big and not extra:
            assert sizes == {(2296, 1708), (1036, 1036)}
