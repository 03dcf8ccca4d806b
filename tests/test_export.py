"""Every export format is read back and its boxes compared with the canonical ones."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ground_truth import make_sample, run_eval, write_gt
from medground import phantoms, rle
from medground.boxes import BoxConvention, convention, grounding_prompt, smart_resize
from medground.cli import main
from medground.evaluate import parse_boxes
from medground.pipeline import load_run_config, run
from medground.runfolder import atomic_write
from medground.terms import clinical_term
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
    written = [Path(line.removeprefix("wrote ")) for line in result.output.splitlines() if line.startswith("wrote ")]
    assert written[-1].name == "export.json" and result.output.splitlines()[-1].startswith("train: ")
    about = json.loads(written[-1].read_text())
    assert [p.name for p in written[:-1]] == [Path(f).name for f in about["files"] + about["setup"]]
    return [written[-1].parent / f for f in about["files"]]  # the data files


def assert_close(boxes: list, truth: list[list[int]], tolerance: float) -> None:
    assert len(boxes) == len(truth)
    for box, true in zip(boxes, truth, strict=True):
        assert max(abs(a - b) for a, b in zip(box, true, strict=True)) <= tolerance, (box, true)


# Format -> (how to read the answer text, the evaluator's convention, tolerance in stored pixels)
TEXT_FORMATS = {
    "llava": ("norm1", 0.0006),  # 3 decimals of the padded square's side: 0.0005 of it
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
        fmt = convention(name)
        if fmt.name == "norm1":  # the llava layout: boxes of the centred square LLaVA-1.5 pads to
            fmt = BoxConvention.from_description(json.loads((path.parent / "export.json").read_text())["boxes"])
            assert fmt.pad_square
        boxes = [fmt.to_pixels(b, sample["width"], sample["height"]) for b in parse_boxes(answer)]
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
    # ms-swift replaces each <ref-object> of the messages with the next objects.ref entry and
    # each <bbox> with the next box (swift/llm/template/base.py, Template._pre_tokenize):
    # the user turn must read "Find the right kidney", not "Find Point to the right kidney.".
    truth = canonical(run_dir)
    (path,) = export(run_dir, "swift")
    for row in map(json.loads, path.read_text().splitlines()):
        sample = truth[row["id"]]
        expression = sample["referring_expression"]
        assert row["objects"]["bbox_type"] == "real" and row["objects"]["ref"] == [expression]
        rendered = row["messages"][0]["content"].replace("<ref-object>", row["objects"]["ref"][0])
        assert rendered == f"<image>Find {expression}"
        words = rendered.lower().split()
        assert all(a != b for a, b in zip(words, words[1:], strict=False)), rendered  # no "every every"
        assert expression in sample["query"] or sample["query_type"] == "multi_object"
        assert row["objects"]["bbox"] == [t["bbox_xyxy"] for t in sample["targets"]]
        assert row["messages"][1]["content"].count("<bbox>") == len(sample["targets"])


# pycocotools' decode still calls __array__ without numpy 2's copy keyword.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_refcoco_loads_in_pycocotools(run_dir: Path) -> None:
    from pycocotools.coco import COCO

    truth = canonical(run_dir)
    instances_path, refs_path, *_ = export(run_dir, "refcoco")
    coco = COCO(str(instances_path))
    refs = json.loads(refs_path.read_text())
    assert len(refs) == len(truth)
    assert any(len(ref["ann_ids"]) > 1 for ref in refs)  # multi-object refs are covered
    for ref in refs:
        sample = truth[ref["sample_id"]]
        assert ref["sentences"][0]["raw"] == sample["referring_expression"] and ref["split"] == sample["split"]
        assert ref["query"] == sample["query"]
        (image,) = coco.loadImgs(ref["image_id"])
        assert image["file_name"] == sample["image"]
        assert set(ref["ann_ids"]) <= set(coco.getAnnIds(imgIds=ref["image_id"]))
        masks = []
        for ann_id, target in zip(ref["ann_ids"], sample["targets"], strict=True):
            (ann,) = coco.loadAnns(ann_id)
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == target["bbox_xyxy"]
            mask = coco.annToMask(ann)
            np.testing.assert_array_equal(mask.astype(bool), rle.decode(target["mask_rle"]))
            assert (
                int(mask.sum()) == ann["area"]
                and coco.loadCats(ann["category_id"])[0]["name"] == clinical_term(target["label"]).text
            )
            masks.append(mask.astype(bool))
        # ann_id is every target at once (a group annotation for several).
        (whole,) = coco.loadAnns(ref["ann_id"])
        np.testing.assert_array_equal(coco.annToMask(whole).astype(bool), np.logical_or.reduce(masks))
        assert whole["iscrowd"] == (len(masks) > 1)


# pycocotools' decode still calls __array__ without numpy 2's copy keyword.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_refcoco_loads_as_the_refer_toolkit_loads_it(run_dir: Path) -> None:
    """The refer toolkit (lichengunc/refer, refer.py) followed step by step: ``REFER(data_root,
    dataset="refcoco", splitBy="unc")`` reads ``data_root/refcoco/refs(unc).p`` with
    ``pickle.load`` and ``instances.json``; ``createIndex`` keys annotations by ``id``, images
    by ``id``, categories ``id -> name``, refs by ``ref_id`` with ``refToAnn[ref_id] =
    Anns[ref["ann_id"]]``, and sentences by ``sent_id`` with ``sentToTokens[sent_id] =
    sent["tokens"]``; ``getRefIds(split=...)`` keeps ``ref["split"] == split`` (``"test" in
    split`` for test); ``getMask`` takes ``ann["segmentation"]``, treats it as polygons when
    its first item is a list and as RLEs otherwise, ``mask.decode``s it and sums axis 2."""
    from pycocotools import mask as coco_mask

    truth = canonical(run_dir)
    folder = export(run_dir, "refcoco")[0].parent / "refcoco"
    with open(folder / "refs(unc).p", "rb") as handle:
        refs = pickle.load(handle, fix_imports=True)
    instances = json.loads((folder / "instances.json").read_text())
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    imgs = {img["id"]: img for img in instances["images"]}
    cats = {cat["id"]: cat["name"] for cat in instances["categories"]}
    ref_to_ann, sent_to_tokens = {}, {}
    for ref in refs:
        ref_to_ann[ref["ref_id"]] = anns[ref["ann_id"]]
        assert ref["category_id"] in cats and ref["image_id"] in imgs
        assert [s["sent_id"] for s in ref["sentences"]] == ref["sent_ids"]
        for sent in ref["sentences"]:
            sent_to_tokens[sent["sent_id"]] = sent["tokens"]
    by_split = {split: [r["ref_id"] for r in refs if r["split"] == split] for split in ("train", "val")}
    by_split["test"] = [r["ref_id"] for r in refs if "test" in r["split"]]
    assert sum(map(len, by_split.values())) == len(refs) == len(truth)
    for ref in refs:
        sample = truth[ref["sample_id"]]
        tokens = sent_to_tokens[ref["sent_ids"][0]]
        assert " ".join(tokens) == sample["referring_expression"].lower()
        ann = ref_to_ann[ref["ref_id"]]
        image = imgs[ref["image_id"]]
        if type(ann["segmentation"][0]) == list:  # noqa: E721 - the toolkit's own test
            rles = coco_mask.frPyObjects(ann["segmentation"], image["height"], image["width"])
        else:
            rles = ann["segmentation"]
        m = np.sum(coco_mask.decode(rles), axis=2).astype(np.uint8)
        union = np.logical_or.reduce([rle.decode(t["mask_rle"]) for t in sample["targets"]])
        np.testing.assert_array_equal(m > 0, union)
        assert sum(coco_mask.area(rles)) == sum(t["area_px"] for t in sample["targets"])


def test_hf_layout_loads_with_datasets(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``datasets.load_dataset`` on the export folder: the card's configs give the splits,
    ``images`` decode as PIL images, TRL's ``messages`` sit beside the canonical boxes, masks,
    referring expression, cues and provenance."""
    datasets = pytest.importorskip("datasets")
    import pyarrow.parquet as pq

    from medground import export as export_module

    # Small shards and batches: a split spans several files, and no write holds more than
    # BATCH_ROWS rows (the export streams; it never builds the whole table).
    monkeypatch.setattr(export_module, "SHARD_ROWS", 40)
    monkeypatch.setattr(export_module, "BATCH_ROWS", 16)
    batches: list[int] = []
    original = pq.ParquetWriter.write_table

    def counting(self: pq.ParquetWriter, table: Any, *args: Any, **kwargs: Any) -> None:
        batches.append(table.num_rows)
        original(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", counting)
    truth = canonical(run_dir)
    out = tmp_path / "hub"
    files = export(run_dir, "parquet", "--out", str(out))
    assert batches and max(batches) <= 16
    shards = sorted(p.name for p in files if p.suffix == ".parquet")
    assert any(name.startswith("train-00001-of-") for name in shards), shards
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    loaded = datasets.load_dataset(str(out))
    by_split = {"train": "train", "val": "validation", "test": "test"}
    expected = {split: {i for i, s in truth.items() if by_split[s["split"]] == split} for split in by_split.values()}
    assert set(loaded) == {name for name, ids in expected.items() if ids}
    for split, rows in loaded.items():
        assert set(rows["id"]) == expected[split]
        feature = rows.features["images"]  # a list of images: List(Image()), or [Image()] in older datasets
        assert isinstance(feature.feature if hasattr(feature, "feature") else feature[0], datasets.Image)
        for row in rows.select(range(min(len(rows), 12))):
            sample = truth[row["id"]]
            (image,) = row["images"]
            assert image.size == (sample["width"], sample["height"])
            assert row["bboxes"] == [t["bbox_xyxy"] for t in sample["targets"]]
            assert [m["counts"] for m in row["masks"]] == [t["mask_rle"]["counts"] for t in sample["targets"]]
            assert row["referring_expression"] == sample["referring_expression"] and row["split"] == split
            assert [json.loads(c) for c in row["cues"]] == [t["cues"] for t in sample["targets"]]
            assert json.loads(row["provenance"]) == sample["provenance"]
            user, assistant = row["messages"]
            assert [part["type"] for part in user["content"]] == ["image", "text"] and user["role"] == "user"
            boxes = parse_boxes(assistant["content"][0]["text"])
            assert [list(b) for b in boxes] == [t["bbox_xyxy"] for t in sample["targets"]]


def test_hf_card_is_parsed_by_huggingface_hub_and_names_no_local_path(run_dir: Path, tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    out = tmp_path / "hub"
    export(run_dir, "parquet", "--out", str(out))
    text = (out / "README.md").read_text()
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other" and "object-detection" in data["task_categories"]
    (config,) = data["configs"]
    assert config["config_name"] == "default"
    assert {f["split"]: f["path"] for f in config["data_files"]} == {
        s: f"data/{s}-*" for s in ("train", "validation", "test")
    }
    for dataset in {s["dataset"] for s in canonical(run_dir).values()}:
        assert f"| {dataset} | TODO: the licence of {dataset} |" in text
    for local in (str(tmp_path), str(run_dir), str(run_dir.resolve()), str(Path.home())):
        assert local not in text


def test_validation_is_a_split_name_everywhere(run_dir: Path, tmp_path: Path) -> None:
    truth = canonical(run_dir)
    val = {i for i, s in truth.items() if s["split"] == "val"}
    assert val
    for name in ("val", "validation"):
        (path,) = export(run_dir, "qwen2.5-vl", "--split", name, "--out", str(tmp_path / name))
        assert {json.loads(line)["id"] for line in path.read_text().splitlines()} == val
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": i, "bbox": [0, 0, 1, 1]}) + "\n" for i in val))
    report = run_eval(run_dir, predictions, "--format", "pixel", "--split", "validation")
    assert report["counts"]["samples"] == len(val)


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


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Samples on images above LLaMA-Factory's 768 x 768 and Qwen's class-default limits
    (each target's mask fills its box)."""
    samples = [
        make_sample("photo", [[1203, 811, 1291, 873]], width=2295, height=1716),
        make_sample(
            "xray", [[600, 300, 650, 350], [100, 700, 180, 790]], width=1024, height=1024, query_type="multi_object"
        ),
        make_sample("slice", [[20, 10, 60, 90]], width=200, height=100),
    ]
    for sample in samples:
        for target in sample["targets"]:
            x0, y0, x1, y1 = target["bbox_xyxy"]
            mask = np.zeros((sample["height"], sample["width"]), bool)
            mask[y0:y1, x0:x1] = True
            target.update(mask_rle=rle.encode(mask), area_px=int(mask.sum()))
    return write_gt(tmp_path_factory.mktemp("big") / "run", samples, images=True)


def rows_of(path: Path) -> list[dict]:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines()]


def answer_of(row: dict) -> str:
    if "conversations" in row:
        return row["conversations"][1]["value"]
    answer = row["messages"][1]["content"]
    return answer[0]["text"] if isinstance(answer, list) else answer


@pytest.mark.parametrize("layout", ["qwen", "sharegpt", "llava", "internvl"])
@pytest.mark.parametrize("boxes", ["pixel", "norm1", "norm1000", "qwen2.5-vl"])
def test_every_layout_holds_every_convention_and_says_which(
    big_run: Path, tmp_path: Path, layout: str, boxes: str
) -> None:
    # export.json names the convention with its parameters; read back with it, every answer
    # gives the canonical boxes to within the convention's own rounding (its round trip).
    truth = canonical(big_run)
    result = CliRunner().invoke(
        main, ["export", str(big_run), "--layout", layout, "--boxes", boxes, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    about = json.loads((tmp_path / "x" / "export.json").read_text())
    assert about["layout"] == layout and about["boxes"]["name"] == boxes and about["samples"] == 3
    fmt = BoxConvention.from_description(about["boxes"])
    # LLaMA-Factory shrinks images whatever the layout asks: sharegpt boxes assume it.
    assert (fmt.image_max_pixels == 768 * 768) == (layout == "sharegpt")
    (path,) = [tmp_path / "x" / name for name in about["files"]]
    for row in rows_of(path):
        sample = truth[row["id"]]
        w, h = sample["width"], sample["height"]
        read = [fmt.to_pixels(b, w, h) for b in parse_boxes(answer_of(row))]
        expected = [fmt.round_trip(t["bbox_xyxy"], w, h) for t in sample["targets"]]
        assert_close(read, expected, 1e-6)
        # and the rounding is bounded: half a step of the model's grid, in stored pixels (a pixel
        # of the image the model sees, or a thousandth of the side: 3 decimals of 0-1, or 0-1000)
        if boxes in ("pixel", "qwen2.5-vl"):
            seen_w, seen_h = fmt.model_size(w, h)
            step = max(w / seen_w, h / seen_h)
        else:
            step = max(w, h) / 1000
        assert_close(read, [t["bbox_xyxy"] for t in sample["targets"]], step / 2 + 1e-6)


def test_sharegpt_boxes_follow_llamafactory_resize(big_run: Path, tmp_path: Path) -> None:
    """LLaMA-Factory's multimodal plugin (hiyouga/LLaMA-Factory, src/llamafactory/data/mm_plugin.py,
    ``_preprocess_image``) opens each image of ``images``, and when width * height exceeds
    ``image_max_pixels`` multiplies both sides by sqrt(image_max_pixels / (width * height)),
    truncates them with int() and resizes; the box text is left as it is. Followed step by
    step here: the boxes must be pixels of the image it trains on."""
    truth = canonical(big_run)
    for max_pixels in (None, 262144):
        extra = ["--image-max-pixels", str(max_pixels)] if max_pixels else []
        (path,) = export(big_run, "sharegpt", "--out", str(tmp_path / str(max_pixels)), *extra)
        limit = max_pixels or 768 * 768
        for row in rows_of(path):
            sample = truth[row["id"]]
            with Image.open(big_run / row["images"][0]) as image:
                if image.width * image.height > limit:
                    factor = math.sqrt(limit / (image.width * image.height))
                    image = image.resize((int(image.width * factor), int(image.height * factor)))
                trained = image.size
            sx, sy = trained[0] / sample["width"], trained[1] / sample["height"]
            answer = parse_boxes(row["messages"][1]["content"])
            expected = [
                [x0 * sx, y0 * sy, x1 * sx, y1 * sy] for x0, y0, x1, y1 in (t["bbox_xyxy"] for t in sample["targets"])
            ]
            assert_close(answer, expected, 0.5 + 1e-9)
            if row["id"] == "photo":
                assert trained == ((888, 664) if max_pixels is None else (592, 442))


def test_swift_boxes_as_ms_swift_normalises_them(big_run: Path, tmp_path: Path) -> None:
    """ms-swift (modelscope/ms-swift, swift/llm/template/base.py, ``Template.normalize_bbox``)
    reads ``objects``: ``bbox_type`` 'real' (default) divides by the image's width and height,
    'norm1' by 1, then multiplies by 1000 and rounds (``norm_bbox = 'norm1000'``: Qwen2-VL,
    InternVL) or by the model input's width and height (``'none'``: Qwen2.5-VL). Followed
    step by step for both box conventions the swift layout holds."""
    truth = canonical(big_run)
    for boxes in ("pixel", "norm1"):
        result = CliRunner().invoke(
            main, ["export", str(big_run), "--layout", "swift", "--boxes", boxes, "--out", str(tmp_path / boxes)]
        )
        assert result.exit_code == 0, result.output
        for row in rows_of(tmp_path / boxes / "swift.jsonl"):
            sample = truth[row["id"]]
            objects = row["objects"]
            assert objects["bbox_type"] == {"pixel": "real", "norm1": "norm1"}[boxes]
            assert len(objects["image_id"]) == len(objects["bbox"]) == row["messages"][1]["content"].count("<bbox>")
            width, height = (1, 1) if objects["bbox_type"] == "norm1" else (sample["width"], sample["height"])
            for bbox, target in zip(objects["bbox"], sample["targets"], strict=True):
                norm1000 = [int(round(v / (width if k % 2 == 0 else height) * 1000)) for k, v in enumerate(bbox)]
                ours = convention("norm1000").from_pixels(target["bbox_xyxy"], sample["width"], sample["height"])
                assert max(abs(a - b) for a, b in zip(norm1000, ours, strict=True)) <= 1


def test_llava_pad_square_boxes_are_on_the_padded_image(big_run: Path, tmp_path: Path) -> None:
    """LLaVA-1.5 (haotian-liu/LLaVA, llava/mm_utils.py, ``expand2square``) with
    ``image_aspect_ratio = "pad"`` pastes a wide image at (0, (width - height) // 2) of a
    width x width square (a tall one at ((height - width) // 2, 0)) before its encoder; a
    0-1 box is a fraction of that square."""
    truth = canonical(big_run)
    (path,) = export(big_run, "llava", "--pad-square", "--out", str(tmp_path / "pad"))
    for row in rows_of(path):
        sample = truth[row["id"]]
        w, h = sample["width"], sample["height"]
        side = max(w, h)
        left, top = (0, (w - h) // 2) if w > h else ((h - w) // 2, 0)
        assert "padded to a square" in row["conversations"][0]["value"]
        read = [
            [x0 * side - left, y0 * side - top, x1 * side - left, y1 * side - top]
            for x0, y0, x1, y1 in parse_boxes(answer_of(row))
        ]
        assert_close(read, [t["bbox_xyxy"] for t in sample["targets"]], 0.0005 * side + 1e-9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "swift", "--layout", "swift"], "not both"),
        ([], "not both and not neither"),
        (["--layout", "swift", "--boxes", "norm1000"], "holds boxes pixel or norm1"),
        (["--format", "refcoco", "--pad-square"], "keeps stored-image pixels"),
    ],
)
def test_export_refuses_pairs_that_do_not_go(big_run: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["export", str(big_run), *args])
    assert result.exit_code == 1 and message in result.output, result.output


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_exported_and_run_files_honour_the_umask(
    run_dir: Path, big_run: Path, tmp_path: Path, umask: int, mode: int
) -> None:
    # Files go through a temporary file and a rename; they must still get the mode a plain
    # open gives (another user, or a training container, reads them).
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "run" / "manifest.json", b"{}")
        written = [
            *export(big_run, "qwen2.5-vl", "--out", str(tmp_path / "q")),
            *export(run_dir, "refcoco", "--out", str(tmp_path / "r")),
            *export(big_run, "parquet", "--out", str(tmp_path / "p")),
        ]
    finally:
        os.umask(previous)
    for path in [tmp_path / "run" / "manifest.json", *written, tmp_path / "q" / "export.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_reference_spans_hold_the_noun_phrase_and_labels_the_clinical_term(run_dir: Path) -> None:
    # The issue this guards: <ref> spans and object-ref spans held whole instructions, and JSON
    # labels raw label ids ("kidney_right"). Training and predict prompts come from one registry.
    truth = canonical(run_dir)
    (internvl,) = export(run_dir, "internvl")
    (qwen2,) = export(run_dir, "qwen2-vl")
    (sharegpt,) = export(run_dir, "sharegpt")
    for row in rows_of(internvl):
        expression = truth[row["id"]]["referring_expression"]
        assert row["conversations"][0]["value"].endswith(f"<ref>{expression}</ref>")
        assert answer_of(row).startswith(f"<ref>{expression}</ref><box>")
    for row in rows_of(qwen2):
        expression = truth[row["id"]]["referring_expression"]
        assert f"<|object_ref_start|>{expression}<|object_ref_end|>" in answer_of(row)
    labels = set()
    for row in rows_of(sharegpt):
        sample = truth[row["id"]]
        answer = json.loads(answer_of(row).removeprefix("```json\n").removesuffix("\n```"))
        assert [a["label"] for a in answer] == [clinical_term(t["label"]).text for t in sample["targets"]]
        labels |= {a["label"] for a in answer}
        assert row["messages"][0]["content"] == "<image>" + grounding_prompt(
            sample["query"],
            "qwen2.5-vl",
            multi=sample["query_type"] == "multi_object",
            width=sample["width"],
            height=sample["height"],
        )
    assert {"right kidney", "left kidney"} <= labels and not any("_" in label for label in labels)


def test_llamafactory_finds_the_dataset_its_images_and_its_placeholders(big_run: Path, tmp_path: Path) -> None:
    """LLaMA-Factory's loading, followed step by step (hiyouga/LLaMA-Factory,
    src/llamafactory/data/parser.py ``get_dataset_list``: ``dataset_dir/dataset_info.json``
    [name] gives ``file_name``, ``formatting``, ``columns`` and ``tags``; converter.py
    ``SharegptDatasetConverter``: the messages column alternates the user and assistant tags;
    ``_find_medias``: an image path that is a file under ``media_dir`` is joined to it;
    mm_plugin.py ``_validate_input``: as many ``<image>`` placeholders as images)."""
    out = tmp_path / "lf"
    result = CliRunner().invoke(main, ["export", str(big_run), "--format", "sharegpt", "--out", str(out)])
    assert result.exit_code == 0, result.output
    train = result.output.splitlines()[-1]
    dataset_dir = Path(re.search(r"--dataset_dir (\S+)", train).group(1))
    media_dir = Path(re.search(r"--media_dir (\S+)", train).group(1))
    name = re.search(r"--dataset (\S+)", train).group(1)
    about = json.loads((out / "export.json").read_text())
    assert f"--image_max_pixels {about['boxes']['image_max_pixels']}" in train
    attr = json.loads((dataset_dir / "dataset_info.json").read_text())[name]
    assert attr["formatting"] == "sharegpt"
    rows = json.loads((dataset_dir / attr["file_name"]).read_text())
    tags, columns = attr["tags"], attr["columns"]
    assert len(rows) == 3
    for row in rows:
        messages = row[columns["messages"]]
        roles = [m[tags["role_tag"]] for m in messages]
        assert roles == [tags["user_tag"], tags["assistant_tag"]]
        images = [media_dir / p if (media_dir / p).is_file() else Path(p) for p in row[columns["images"]]]
        assert all(p.is_file() for p in images)
        placeholders = sum(m[tags["content_tag"]].count("<image>") for m in messages)
        assert placeholders == len(images) == 1


def test_internvl_meta_points_at_the_annotation_and_the_image_root(big_run: Path, tmp_path: Path) -> None:
    """InternVL's chat fine-tuning (OpenGVLab/InternVL, internvl_chat/internvl/train/
    internvl_chat_finetune.py ``build_datasets``) reads ``--meta_path``: per dataset
    ``annotation`` (a JSONL file), ``root`` (joined to each line's ``image``: os.path.join),
    ``repeat_time`` and ``length``; a line's first ``human`` turn holds ``<image>``."""
    out = tmp_path / "ivl"
    result = CliRunner().invoke(main, ["export", str(big_run), "--format", "internvl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta_path = Path(re.search(r"--meta_path (\S+)", result.output.splitlines()[-1]).group(1))
    (entry,) = json.loads(meta_path.read_text()).values()
    lines = [json.loads(line) for line in Path(entry["annotation"]).read_text().splitlines()]
    assert entry["length"] == len(lines) == 3 and entry["repeat_time"] == 1
    for item in lines:
        image = Path(os.path.join(entry["root"], item["image"]))
        with Image.open(image) as opened:
            assert opened.size == (item["width"], item["height"])
        assert item["conversations"][0]["from"] == "human" and item["conversations"][0]["value"].count("<image>") == 1
        assert item["conversations"][1]["from"] == "gpt"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("swift", ["swift sft", "MAX_PIXELS=12845056", "swift.jsonl"]),
        ("llava", ["llava/train/train_mem.py", "--image_aspect_ratio pad", "llava.json"]),
        ("refcoco", ["REFER(", "'refcoco', 'unc'"]),
    ],
)
def test_the_train_command_is_printed(big_run: Path, tmp_path: Path, fmt: str, expected: list[str]) -> None:
    result = CliRunner().invoke(main, ["export", str(big_run), "--format", fmt, "--out", str(tmp_path / fmt)])
    assert result.exit_code == 0, result.output
    train = result.output.splitlines()[-1]
    assert train.startswith("train: ") and all(e in train for e in expected), train
    assert train.removeprefix("train: ") == json.loads((tmp_path / fmt / "export.json").read_text())["train"]


def test_m3d_records_give_each_object_in_voxels_and_in_ras_millimetres(run_dir: Path) -> None:
    """Read back with nibabel (not medground's reader): the volume file opens with the shape
    recorded; each object's voxel box is the bounding box of its label in the mask file
    beside it; the RAS box is the outer faces of those voxels through the file's own affine."""
    nib = pytest.importorskip("nibabel")
    from scipy import ndimage

    truth = canonical(run_dir)
    result = CliRunner().invoke(main, ["export", str(run_dir), "--layout", "m3d"])
    assert result.exit_code == 0, result.output
    rows = rows_of(run_dir / "exports" / "m3d-pixel" / "m3d.jsonl")
    assert rows and len({(r["case_id"], r["referring_expression"]) for r in rows}) == len(rows)
    # An expression names one set of objects per volume: never two records for one wording.
    by_wording: dict[tuple[str, str], set] = {}
    for r in rows:
        by_wording.setdefault((r["case_id"], r["referring_expression"]), set()).add(
            tuple(sorted(b["object_id"] for b in r["boxes"]))
        )
    assert all(len(v) == 1 for v in by_wording.values())
    assert any(len(r["boxes"]) > 1 for r in rows)
    for row in rows:
        sample = truth[row["id"]]
        assert set(sample["referring_attributes"]) <= {"category", "description", "laterality", "count"}
        assert row["referring_expression"] in row["question"] and "volume" in row["question"]
        volume = nib.load(row["volume"])
        assert list(volume.shape) == row["volume_shape"]
        labels = np.asarray(nib.load(row["volume"].replace("/images/", "/labels/")).dataobj)
        spacing = np.abs(np.diag(volume.affine)[:3])
        for box in row["boxes"]:
            target = next(t for t in sample["targets"] if t["object_id"] == box["object_id"])
            voxels = np.argwhere(labels == target["label_id"])
            if target["cues"]["kind"] == "organ":
                low, high = voxels.min(axis=0), voxels.max(axis=0) + 1
                assert box["bbox_voxel"] == [low.tolist(), high.tolist()]
            low, high = np.array(box["bbox_voxel"][0]), np.array(box["bbox_voxel"][1])
            centres = nib.affines.apply_affine(volume.affine, np.array([low, high - 1]))
            expected = [centres.min(axis=0) - spacing / 2, centres.max(axis=0) + spacing / 2]
            np.testing.assert_allclose(box["bbox_ras_mm"], expected, atol=0.006)
            assert box["bbox_ras_mm"] == target["bbox_3d_ras"]
            assert box["bbox_norm1"] == [
                [round(v / n, 4) for v, n in zip(end, row["volume_shape"], strict=True)] for end in box["bbox_voxel"]
            ]
        # A lesion named in 3D is every lesion of its label in the volume (26-connected
        # components of the mask, counted by scipy): one visible on a slice may have twins.
        for label_id in {t["label_id"] for t in sample["targets"] if t["cues"]["kind"] != "organ"}:
            _, components = ndimage.label(labels == label_id, structure=np.ones((3, 3, 3)))
            named = {t["object_id"] for t in sample["targets"] if t["label_id"] == label_id}
            assert len(named) == components, (row["referring_expression"], components)
        answered = [json.loads(part) for part in row["answer"].split("; ")]
        assert answered == [[*b["bbox_norm1"][0], *b["bbox_norm1"][1]] for b in row["boxes"]]
    # The phantoms' livers hold two lesions each: "the liver lesion", unique on the slices its
    # samples were written for, names neither in 3D.
    sliced = {(s["case_id"], s["referring_expression"]) for s in truth.values() if s["view"]}
    ambiguous = {key for key in sliced if key[1] == "the liver lesion"}
    assert ambiguous and not ambiguous & {(r["case_id"], r["referring_expression"]) for r in rows}


@pytest.fixture(scope="module")
def absent_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo with ``[synthesis] negatives = true``: absent queries (no target) among the samples."""
    root = tmp_path_factory.mktemp("absent")
    phantoms.demo_dataset(root / "data", volumes=2, photos=2)
    config = root / "data" / "run.toml"
    config.write_text(config.read_text() + "\n[synthesis]\nnegatives = true\n")
    run(load_run_config(config), root / "run", use_ray=False, progress=False)
    return root / "run"


def test_every_layout_handles_absent_queries(absent_run: Path) -> None:
    """Absent queries export with no box: an empty JSON list, or a sentence saying the
    structure is not present; layouts that cannot hold a query without a target (RefCOCO's
    refs, M3D's volume records) leave them out and count them."""
    from medground.export import FORMATS, export

    samples = canonical(absent_run)
    absent = {i: s for i, s in samples.items() if s["query_type"] == "absent"}
    assert absent and len(absent) < len(samples)
    for fmt in FORMATS:
        written = export(absent_run, fmt)
        about = json.loads(written[-1].read_text())
        if fmt == "refcoco":
            refs = json.loads((written[0].parent / "refs.json").read_text())
            assert about["left_out"] == {"absent": len(absent)} and about["samples"] == len(samples) - len(absent)
            assert not {r["sample_id"] for r in refs} & set(absent)
            continue
        assert about["samples"] == len(samples) and "left_out" not in about
        if fmt == "parquet":
            pq = pytest.importorskip("pyarrow.parquet")
            rows = [r for path in written if path.suffix == ".parquet" for r in pq.read_table(path).to_pylist()]
            for row in (r for r in rows if r["id"] in absent):
                assert row["bboxes"] == [] and row["labels"] == [] and row["masks"] == []
                assert row["query_type"] == "absent"
            continue
        text = written[0].read_text()
        rows = json.loads(text) if written[0].suffix == ".json" else [json.loads(line) for line in text.splitlines()]
        answers = {r["id"]: _assistant(r) for r in rows if r["id"] in absent}
        assert set(answers) == set(absent)
        for sample_id, answer in answers.items():
            assert parse_boxes(answer) == [], (fmt, answer)
            if answer != "```json\n[]\n```":
                assert answer.endswith("not present in this image."), (fmt, answer)
                assert absent[sample_id]["referring_expression"] in answer.lower()
        if fmt == "swift":
            assert all(r["objects"]["bbox"] == [] for r in rows if r["id"] in absent)
    written = export(absent_run, layout="m3d")
    about = json.loads(written[-1].read_text())
    assert about["left_out"] == {"absent": len(absent)}


def _assistant(row: dict[str, Any]) -> str:
    """The answer of an exported conversation, whatever the layout."""
    if "conversations" in row:
        return str(row["conversations"][1]["value"])
    content = row["messages"][1]["content"]
    return str(content if isinstance(content, str) else content[0]["text"])
