"""The pipeline end to end: the demo's output contract, determinism, Ray (local and a
two-node cluster), SIGKILL and resume, corrupt cases, models that fail, split files and
the shared data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from chatserver import Reply, completion
from medground import rle
from medground.backends import BackendUnavailable
from medground.cli import main
from medground.pipeline import load_run_config, run
from medground.pipeline.runner import check_models
from vllm_stand_in import fake_vllm

OUTPUTS = ("samples.jsonl", "rejected.jsonl", "errors.jsonl", "skipped.jsonl")


SAMPLE_FIELDS = {
    "id",
    "dataset",
    "case_id",
    "patient_id",
    "split",
    "image",
    "width",
    "height",
    "modality",
    "view",
    "query",
    "query_type",
    "targets",
    "referring_attributes",
    "distractors",
    "synthesis",
    "verification",
}


TARGET_FIELDS = {"label_id", "label", "object_id", "bbox_xyxy", "area_px", "mask_rle", "bbox_3d", "cues"}


RAY_ENV = {"MEDGROUND_RAY_NODE_IP": "127.0.0.2", "RAY_AUTH_MODE": "disabled"}


def read(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def reference(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out"
    run(load_run_config(demo_data / "run.toml"), out, use_ray=False, progress=False)
    return out


def test_demo_output_contract(reference: Path) -> None:
    samples = read(reference, "samples.jsonl")
    assert len(samples) > 100 and len({s["id"] for s in samples}) == len(samples)
    assert {s["query_type"] for s in samples} == {"direct", "descriptive", "relational", "multi_object"}
    for sample in samples:
        assert set(sample) >= SAMPLE_FIELDS
        with Image.open(reference / sample["image"]) as image:
            assert image.size == (sample["width"], sample["height"])
        for target in sample["targets"]:
            assert set(target) >= TARGET_FIELDS
            assert rle.bbox_xyxy(target["mask_rle"]) == target["bbox_xyxy"]
        assert all(result["passed"] for result in sample["verification"].values())
        assert sample["split"] in ("train", "val", "test")
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == len(samples) and manifest["splits"]["patients_on_two_sides"] == []
    card = (reference / "README.md").read_text()
    assert "Verification funnel" in card and all(
        (reference / "plots" / p).is_file() for p in ("box_sizes.png", "labels.png")
    )
    # Patient-level split: both studies of a patient share a side.
    sides: dict[str, set[str]] = {}
    for sample in samples:
        sides.setdefault(sample["patient_id"], set()).add(sample["split"])
    assert all(len(s) == 1 for s in sides.values()) and len(sides) >= 4


def test_same_config_and_seed_same_bytes(demo_data: Path, reference: Path, tmp_path: Path) -> None:
    run(load_run_config(demo_data / "run.toml"), tmp_path / "again", use_ray=False, progress=False)
    assert outputs(tmp_path / "again") == outputs(reference)


def test_ray_local_instance_matches_in_process(demo_data: Path, reference: Path, tmp_path: Path, monkeypatch) -> None:
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medground.cli",
            "run",
            str(demo_data / "run.toml"),
            "--out",
            str(tmp_path / "ray"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert outputs(tmp_path / "ray") == outputs(reference)


def test_two_node_ray_cluster(demo_data: Path, reference: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.2", "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2")
        env = {**os.environ, **RAY_ENV}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "medground.cli",
                "run",
                str(demo_data / "run.toml"),
                "--out",
                str(tmp_path / "cluster"),
                "--ray-address",
                cluster.address,
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        cluster.shutdown()
    assert outputs(tmp_path / "cluster") == outputs(reference)
    # The manifest says what was made, not where: byte-identical to the in-process run's.
    assert (tmp_path / "cluster" / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    assert "Ray node(s)" in result.stdout


@pytest.mark.parametrize("kill_after", [1, 4, 7])
def test_sigkill_and_resume_gives_the_same_samples(
    demo_data: Path, reference: Path, tmp_path: Path, kill_after: int
) -> None:
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "medground.cli",
        "run",
        str(demo_data / "run.toml"),
        "--out",
        str(out),
        "--no-ray",
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if len(list((out / "shards").glob("*.json"))) >= kill_after:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list((out / "shards").glob("*.json")))
    assert finished >= kill_after and not (out / "samples.jsonl").exists() or finished == 8
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"({finished} already done" in resumed.stdout
    assert outputs(out) == outputs(reference)
    # No temporary files are left behind.
    assert not [p for p in out.rglob("*.tmp")]


def test_resume_refuses_another_config(demo_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(load_run_config(demo_data / "run.toml"), out, use_ray=False, progress=False, limit=1)
    with pytest.raises(ValueError, match="already holds a run"):
        run(load_run_config(demo_data / "run.toml"), out, use_ray=False, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        run(load_run_config(demo_data / "run.toml", seed=5), out, use_ray=False, progress=False, resume=True)


def test_corrupt_cases_go_to_errors_and_the_rest_completes(demo_data: Path, reference: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    (data / "demo_ct" / "images" / "patient01_study0.nii.gz").write_bytes(b"\x1f\x8b broken")
    mask = np.zeros((10, 10), np.uint8)
    Image.fromarray(mask).save(data / "demo_skin" / "masks" / "lesion001.png")  # wrong grid
    result = CliRunner().invoke(
        main, ["run", str(data / "run.toml"), "--out", str(tmp_path / "out"), "--no-ray", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    errors = read(tmp_path / "out", "errors.jsonl")
    assert {(e["dataset"], e["case_id"]) for e in errors} == {
        ("demo_ct", "patient01_study0"),
        ("demo_skin", "lesion001"),
    }
    assert any("patient01_study0.nii.gz" in e["error"] and "unreadable" in e["error"] for e in errors)
    assert any("lesion001.png" in e["error"] and "does not match" in e["error"] for e in errors)
    samples = read(tmp_path / "out", "samples.jsonl")
    others = [s for s in read(reference, "samples.jsonl") if s["case_id"] not in ("patient01_study0", "lesion001")]
    # The other cases give exactly their samples (splits may differ: fewer patients).
    strip = lambda records: [{k: v for k, v in r.items() if k != "split"} for r in records]  # noqa: E731
    assert strip(samples) == strip(others)


def test_end_to_end_on_the_shared_data(shared_data: Path, tmp_path: Path) -> None:
    specs = []
    for name, image, modality in (
        ("ct_abdomen_totalseg", "ct.nii.gz", "CT"),
        ("mr_abdomen_totalseg", "mr.nii.gz", "MR"),
    ):
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\nmodality = "{modality}"\nbody_region = "abdomen"\nroot = "{shared_data / name}"\n'
            f'labels_file = "labels.json"\n[cases]\nimage = "{image}"\nmask = "seg.nii.gz"\n'
        )
        specs.append(f"{name}.toml")
    (tmp_path / "run.toml").write_text(f"datasets = {json.dumps(specs)}\n")
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "out"), "--no-ray", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    samples = read(tmp_path / "out", "samples.jsonl")
    assert {s["dataset"] for s in samples} == {"ct_abdomen_totalseg", "mr_abdomen_totalseg"}
    # The patient's left kidney is on the viewer's right in both, whatever the storage orientation.
    for sample in samples:
        if (
            sample["query_type"] == "direct"
            and sample["view"]["axis"] == "axial"
            and sample["targets"][0]["label"] in ("kidney_left", "kidney_right")
        ):
            x0, _, x1, _ = sample["targets"][0]["bbox_xyxy"]
            assert ((x0 + x1) / 2 > sample["width"] / 2) == (sample["targets"][0]["label"] == "kidney_left")
    assert read(tmp_path / "out", "errors.jsonl") == []


def _write_config(data: Path, extra: str) -> Path:
    path = data / "run_models.toml"
    path.write_text('datasets = ["demo_ct/spec.toml", "demo_skin/spec.toml"]\n' + extra)
    return path


def test_a_model_that_answers_garbage_loses_nothing(demo_data: Path, tmp_path: Path, serve, monkeypatch) -> None:
    from chatserver import Reply, completion

    server = serve(lambda key, attempt, payload: Reply(body=completion("I cannot help with that.")))
    config = _write_config(
        demo_data,
        f'[synthesis]\nbackend = "openai"\nmodel = "Qwen/Qwen2.5-VL-7B-Instruct"\n'
        f'base_url = "{server.base_url}"\nmax_retries = 0\n',
    )
    summary = run(load_run_config(config), tmp_path / "out", use_ray=False, progress=False, limit=1)
    rejected = read(tmp_path / "out", "rejected.jsonl")
    assert summary.accepted == 0 and rejected and len(rejected) == summary.manifest["funnel"]["drafts"]
    assert {r["rejection"]["stage"] for r in rejected} == {"synthesis"}
    assert {r["rejection"]["reason"] for r in rejected} == {"malformed_json"}
    assert summary.manifest["funnel"]["rejected"]["synthesis"]["malformed_json"] == len(rejected)


def test_vlm_judge_over_http(demo_data: Path, tmp_path: Path, serve) -> None:
    from chatserver import Reply, completion

    verdict = json.dumps({"verdict": "yes", "confidence": 0.9, "reason": "the box covers the structure"})
    server = serve(lambda key, attempt, payload: Reply(body=completion(verdict)))
    config = _write_config(
        demo_data,
        f'[verification.visual]\nbackend = "vlm"\nmodel = "Qwen/Qwen2.5-VL-7B-Instruct"\n'
        f'base_url = "{server.base_url}"\nthreshold = 0.8\n',
    )
    summary = run(load_run_config(config), tmp_path / "out", use_ray=False, progress=False, limit=1)
    samples = read(tmp_path / "out", "samples.jsonl")
    assert samples and summary.rejected == 0 and len(server.payloads) == len(samples)
    assert all(s["verification"]["visual"]["info"]["judge"] == "vlm" for s in samples)


ECHO_KEY = "sk-run-0123456789abcdefghij"


def _echoing_model(key: str, attempt: int, payload: dict) -> Reply:
    """A model server that echoes the request's Authorization header into everything it
    sends: queries, off-schema answers, error bodies, the judge's reasons."""
    auth = payload["_authorization"]
    schema = payload["response_format"]["json_schema"]
    if schema["name"] == "grounding_verdict":
        return Reply(body=completion(json.dumps({"verdict": "no", "confidence": 0.9, "reason": f"seen {auth}"})))
    query_type = schema["schema"]["properties"]["queries"]["items"]["properties"]["query_type"]["enum"][0]
    item = {"query": f"Locate the liver for {auth}.", "query_type": query_type, "attributes": ["category"]}
    return [
        Reply(body=completion(json.dumps({"queries": [item]}))),
        Reply(body=completion(json.dumps({"queries": [{**item, "query_type": auth}]}))),
        Reply(500, {"error": f"engine failed for {auth}"}),
    ][len(key) % 3]


def test_the_key_never_reaches_the_run_folder(demo_data: Path, tmp_path: Path, serve, monkeypatch) -> None:
    """Whatever the server echoes the key into, no file of the run holds it: not the drafts,
    not rejection.detail in rejected.jsonl or the per-case shards, not the manifest or card."""
    server = serve(_echoing_model)
    monkeypatch.setenv("MEDGROUND_RUN_KEY", ECHO_KEY)
    model = (
        f'model = "Qwen/Qwen2.5-VL-7B-Instruct"\nbase_url = "{server.base_url}"\napi_key_env = "MEDGROUND_RUN_KEY"\n'
    )
    runs = {
        "synthesis": f'[synthesis]\nbackend = "openai"\n{model}max_retries = 0\n',
        "judge": f'[verification.visual]\nbackend = "vlm"\n{model}max_retries = 0\n',
    }
    details = []
    for name, extra in runs.items():
        out = tmp_path / name
        run(load_run_config(_write_config(demo_data, extra)), out, use_ray=False, progress=False, limit=1)
        for path in out.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert ECHO_KEY.encode() not in data and ECHO_KEY[:10].encode() not in data, path
        details += [r["rejection"]["detail"] for r in read(out, "rejected.jsonl")]
    assert server.authorizations and set(server.authorizations) == {f"Bearer {ECHO_KEY}"}
    # The echoes were there, scrubbed: in rejection details (an off-schema answer, an error
    # body, the judge's reason) and in the drafts' queries.
    assert any("Bearer ***" in d and "is not one of" in d for d in details)
    assert any("HTTP 500" in d and "Bearer ***" in d for d in details)
    assert any(d.startswith("the judge says no") and "Bearer ***" in d for d in details)
    queries = [r["query"] for r in read(tmp_path / "synthesis", "rejected.jsonl")]
    assert "Locate the liver for Bearer ***." in queries


def test_a_run_whose_model_backend_cannot_be_used_stops_before_any_case(
    demo_data: Path, tmp_path: Path, serve, monkeypatch
) -> None:
    """Checked once before any case (exit status 1, nothing written): a model the server does
    not list, a server that is down, a key variable that is not set."""
    import socket

    server = serve(lambda key, attempt, payload: Reply(body=completion("{}")))
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    monkeypatch.delenv("MEDGROUND_UNSET_KEY", raising=False)
    cases = [
        (
            f'[synthesis]\nbackend = "openai"\nmodel = "not-served"\nbase_url = "{server.base_url}"\n',
            "does not serve model 'not-served'",
        ),
        (
            f'[verification.visual]\nbackend = "vlm"\nmodel = "not-served"\nbase_url = "{server.base_url}"\n',
            "does not serve model 'not-served'",
        ),
        (
            f'[synthesis]\nbackend = "openai"\nmodel = "Qwen/Qwen2.5-VL-7B-Instruct"\nbase_url = "{down}"\n',
            f"the model server at {down} cannot be used: connection",
        ),
        (
            f'[synthesis]\nbackend = "openai"\nmodel = "Qwen/Qwen2.5-VL-7B-Instruct"\nbase_url = "{server.base_url}"\n'
            'api_key_env = "MEDGROUND_UNSET_KEY"\n',
            "'MEDGROUND_UNSET_KEY', but that environment variable is not set",
        ),
    ]
    for index, (extra, message) in enumerate(cases):
        out = tmp_path / f"out{index}"
        config = _write_config(demo_data, extra)
        result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--no-ray", "--quiet"])
        assert result.exit_code == 1, result.output
        assert message in result.output, result.output
        assert not out.exists()  # stopped before the output folder was touched
    assert server.payloads == []  # no case asked the model anything
    assert len(server.gets) == 2  # one check per run that reached the server

    # A backend that can be used passes the check, and the run goes on.
    extra = f'[synthesis]\nbackend = "openai"\nmodel = "Qwen/Qwen2.5-VL-7B-Instruct"\nbase_url = "{server.base_url}"\n'
    summary = run(
        load_run_config(_write_config(demo_data, extra)), tmp_path / "ok", use_ray=False, progress=False, limit=1
    )
    assert summary.cases == 2 and server.payloads


def test_a_run_whose_vllm_engine_cannot_be_built_stops_before_any_case(
    demo_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """What a vLLM engine needs is checked before any case, without loading it (exit status
    1, nothing written): vLLM installed, the model folder there with its config.json and
    weights, a Hugging Face repo id in the cache when downloads are off, valid settings."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE", "VLLM_USE_MODELSCOPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "qwen"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_text("weights")
    bare = tmp_path / "bare"
    bare.mkdir()
    good = f'[synthesis]\nbackend = "vllm"\nmodel = "{model}"\n'

    def refused(extra: str, message: str) -> None:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        config = _write_config(demo_data, extra)
        result = CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--no-ray", "--quiet"])
        assert result.exit_code == 1, result.output
        assert message in result.output, result.output
        assert not out.exists()  # stopped before the output folder was touched

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    refused(good, "[synthesis] backend 'vllm' needs vLLM, which is not installed: pip install 'medground[vllm]'")
    fake_vllm(monkeypatch)
    refused(
        f'[synthesis]\nbackend = "vllm"\nmodel = "{tmp_path / "missing"}"\n',
        f"[synthesis] model = '{tmp_path / 'missing'}': no such folder",
    )
    refused(
        f'[verification.visual]\nbackend = "vlm"\nmodel = "{bare}"\n',
        f"[verification.visual] model = '{bare}': the folder has no config.json",
    )
    refused(
        '[synthesis]\nbackend = "vllm"\nmodel = "Org/Not-Downloaded"\n',
        "and HF_HUB_OFFLINE is set, so it cannot be downloaded: download it first (hf download Org/Not-Downloaded)",
    )
    refused(good + "tensor_parallel_size = 0\n", "[synthesis] the vllm backend cannot be used: tensor_parallel_size")

    # A model that can be loaded passes (nothing is loaded by the check) ...
    check_models(load_run_config(_write_config(demo_data, good)))
    # ... and engines that load on the nodes of a cluster the run joins are not looked for here.
    monkeypatch.setitem(sys.modules, "vllm", None)
    config = load_run_config(_write_config(demo_data, good))
    with pytest.raises(BackendUnavailable, match="needs vLLM"):
        check_models(config)
    check_models(config, engines_here=False)


def test_resume_retries_failed_cases_and_refuses_changed_settings(
    demo_data: Path, reference: Path, tmp_path: Path
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    image = data / "demo_skin" / "images" / "lesion002.png"
    good = image.read_bytes()
    image.write_bytes(b"not a png")
    out = tmp_path / "out"
    first = run(load_run_config(data / "run.toml"), out, use_ray=False, progress=False)
    assert first.failed == 1
    image.write_bytes(good)  # the user fixes the file and resumes: only that case is redone
    second = run(load_run_config(data / "run.toml"), out, use_ray=False, progress=False, resume=True)
    assert second.failed == 0 and second.skipped_done == 7
    assert outputs(out)["samples.jsonl"] == outputs(reference)["samples.jsonl"]
    # A different [render] is a different run.
    spec = data / "demo_ct" / "spec.toml"
    spec.write_text(spec.read_text().replace('slices = "spread:2"', 'slices = "max_area"'))
    with pytest.raises(ValueError, match="different settings"):
        run(load_run_config(data / "run.toml"), out, use_ray=False, progress=False, resume=True)


def test_bad_split_file_fails_before_the_run(demo_data: Path, tmp_path: Path) -> None:
    from medground.io import SpecError

    (tmp_path / "splits.csv").write_text("patient00\npatient01,train\n")
    config = tmp_path / "run.toml"
    config.write_text(f'datasets = ["{demo_data / "demo_ct" / "spec.toml"}"]\n[split]\nfile = "splits.csv"\n')
    with pytest.raises(SpecError, match="row 1 has no split column"):
        load_run_config(config)
    (tmp_path / "splits.csv").write_text("patient,split\npatient00,test\npatient01,train\n")
    out = tmp_path / "out"
    run(load_run_config(config), out, use_ray=False, progress=False)
    sides = {s["patient_id"]: s["split"] for s in read(out, "samples.jsonl")}
    assert sides == {"patient00": "test", "patient01": "train"}


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_at_random_moments_and_resumed_gives_the_same_bytes(
    demo_data: Path, reference: Path, tmp_path: Path
) -> None:
    """SIGKILL at seeded random moments (while cases run, while shards or canonical files
    are written), resumed each time: the outputs and the manifest are byte-identical to an
    uninterrupted run, no temporary file is left, and the worker process of a killed run
    goes with it."""
    rng = np.random.default_rng(17)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "medground.cli", "run", str(demo_data / "run.toml"), "--out", str(out)]
    command += ["--no-ray", "--quiet"]
    kills = 0
    for attempt in range(12):
        process = subprocess.Popen(
            command + (["--resume"] if attempt else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + float(rng.uniform(0.8, 2.2))  # the whole demo takes ~3 s
        workers: set[int] = set()
        while time.time() < deadline and process.poll() is None:
            workers |= _children(process.pid)
            time.sleep(0.01)
        if process.poll() is not None:
            assert process.returncode == 0
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        # The worker reads EOF on its pipe and exits (after the case it is on, at most).
        gone = time.time() + 60
        while time.time() < gone and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "a killed run's worker process stayed behind"
    else:
        finished = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
    assert kills >= 2
    assert outputs(out) == outputs(reference)
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    assert not list(out.rglob("*.tmp"))
