"""Prediction (medground predict): grounding prompts for every family, a run against a
chat server that resumes and is then scored, a repaired cut line, vLLM missing, the check of
the backend before any request."""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from chatserver import Reply, completion
from ground_truth import make_sample, run_eval, write_gt
from medground.backends import EncodedImage, Request, Response
from medground.boxes import GROUNDING_FAMILIES as FORMATS
from medground.cli import eval_command, predict_command
from medground.evaluate import load_ground_truth
from medground.predict import grounding_prompt, predict
from medground.runfolder import RecordFileError as EvalFileError
from qwen_vision import vision_process
from vllm_stand_in import fake_vllm


def test_every_family_has_a_grounding_prompt():
    # Families with a reference span get the noun phrase there, never the instruction; the
    # others get the instruction.
    spans = {
        "internvl": ("<ref>", "</ref>"),
        "qwen-vl": ("<ref>", "</ref>"),
        "qwen2-vl": ("<|object_ref_start|>", "<|object_ref_end|>"),
    }
    for name in FORMATS:
        for multi in (False, True):
            prompt = grounding_prompt(
                "Locate the kidney tumor. ", name, multi=multi, width=765, height=572, expression="the kidney tumor"
            )
            assert "{" not in prompt
            if name in spans:
                start, end = spans[name]
                assert f"{start}the kidney tumor{end}" in prompt and "Locate" not in prompt, prompt
            else:
                assert "Locate the kidney tumor." in prompt
    # A sample without an expression (runs written before it) falls back to its query.
    assert grounding_prompt("Find it.", "internvl", multi=False, width=1, height=1).endswith("<ref>Find it</ref>")
    assert "JSON" in grounding_prompt("Find it.", "qwen2.5-vl", multi=False, width=1, height=1)
    assert "765x572" in grounding_prompt("Find it.", "pixel", multi=False, width=765, height=572)
    with pytest.raises(ValueError, match="format must be one of"):
        grounding_prompt("Find it.", "gpt", multi=False, width=1, height=1)


class _ChatServer(ThreadingHTTPServer):
    """A loopback chat-completions server answering from a script keyed by query."""

    def __init__(self, answers: dict[str, str], fail_once: set[str], models: tuple[str, ...]) -> None:
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.answers = answers
        self.fail_once = set(fail_once)
        self.models = models
        self.requests: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.lock = threading.Lock()


class _ChatHandler(BaseHTTPRequestHandler):
    server: _ChatServer

    def do_GET(self) -> None:  # the check before any request: GET /v1/models
        with self.server.lock:
            self.server.gets.append(self.path)
        if self.path != "/v1/models":
            self._reply(404, {"error": {"message": f"no route {self.path}"}})
        else:
            self._reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.server.models]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        prompt = next(part["text"] for part in content if part["type"] == "text")
        query = next(q for q in self.server.answers if q in prompt)
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "body": body, "prompt": prompt, "auth": self.headers.get("Authorization")}
            )
            fail = query in self.server.fail_once
            self.server.fail_once.discard(query)
        if fail:
            self._reply(500, {"error": {"message": "scripted failure"}})
        else:
            self._reply(
                200,
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": self.server.answers[query]}}]},
            )

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chat_server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    servers: list[_ChatServer] = []

    def start(
        answers: dict[str, str], fail_once: set[str] = frozenset(), models: tuple[str, ...] = ("qwen25vl-test",)
    ) -> _ChatServer:
        server = _ChatServer(answers, fail_once, models)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        server.thread = thread  # type: ignore[attr-defined]
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
        server.thread.join(timeout=5)  # type: ignore[attr-defined]


def test_predict_against_a_chat_server_resumes_then_eval_scores_it(tmp_path, chat_server, monkeypatch):
    gt = write_gt(
        tmp_path / "out",
        [
            # 765x572 -> 756x560 (x * 84/85, y * 140/143).
            make_sample("s1", [[85, 143, 425, 429]], query="Locate the larger kidney tumor."),
            # 512x512 -> 504x504 (* 63/64).
            make_sample("s2", [[64, 128, 256, 320]], width=512, height=512, query="Find the liver lesion."),
            # 200x100 -> 196x112 (x * 49/50, y * 28/25).
            make_sample(
                "s3",
                [[0, 0, 50, 50], [100, 25, 150, 75]],
                width=200,
                height=100,
                query_type="multi_object",
                query="Locate all kidney tumors in this image.",
            ),
            make_sample("s4", [[0, 0, 10, 10]], split="train", query="Point to the spleen."),
        ],
        images=True,
    )
    server = chat_server(
        {
            "Locate the larger kidney tumor.": '```json\n[{"bbox_2d": [84, 140, 420, 420], '
            '"label": "kidney tumor"}]\n```',
            "Find the liver lesion.": '[{"bbox_2d": [63, 126, 252, 315], "label": "liver lesion"}]',
            "Locate all kidney tumors in this image.": '```json\n[{"bbox_2d": [98, 28, 147, 84], '
            '"label": "kidney tumor"}, '
            '{"bbox_2d": [0, 0, 49, 56], "label": "kidney tumor"}]\n```',
            "Point to the spleen.": "[]",
        },
        fail_once={"Find the liver lesion."},
    )
    monkeypatch.setenv("MEDGROUND_TEST_KEY", "sekret")
    out = tmp_path / "preds.jsonl"
    args = [
        "--gt",
        str(gt),
        "--backend",
        "openai",
        "--model",
        "qwen25vl-test",
        "--format",
        "qwen2.5-vl",
        "--out",
        str(out),
        "--base-url",
        f"http://127.0.0.1:{server.server_port}/v1",
        "--api-key-env",
        "MEDGROUND_TEST_KEY",
        "--batch-size",
        "2",
        "--timeout",
        "10",
        "--max-retries",
        "0",
    ]

    first = CliRunner().invoke(predict_command, args)
    assert first.exit_code == 1
    assert "3 samples: 2 answered now, 0 already in" in first.output
    assert "1 queries got no answer; rerun the same command" in first.output and "HTTP 500" in first.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s1", "s3"]

    second = CliRunner().invoke(predict_command, args)
    assert second.exit_code == 0, second.output
    assert "3 samples: 1 answered now, 2 already in" in second.output
    assert len(server.requests) == 4  # s1, s2 (failed), s3, then s2 again; never the train sample s4
    assert server.gets == ["/v1/models", "/v1/models"]  # the check, once per command, before any request

    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sekret"
    assert request["body"]["model"] == "qwen25vl-test"
    image_part = request["body"]["messages"][0]["content"][0]
    prefix = "data:image/png;base64,"
    assert image_part["image_url"]["url"].startswith(prefix)
    sent = base64.b64decode(image_part["image_url"]["url"][len(prefix) :])
    by_prompt = {r["prompt"]: r for r in server.requests}
    assert "Locate the larger kidney tumor. Output its bbox coordinates using JSON format." in by_prompt
    assert (
        "Locate all kidney tumors in this image. Output the bbox coordinates of each one using JSON format."
    ) in by_prompt
    assert sent in {(gt / f"images/kits/{s}.png").read_bytes() for s in ("s1", "s2", "s3")}

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["s1", "s3", "s2"]
    assert {(line["format"], line["model"], line["prompt_version"]) for line in lines} == {
        ("qwen2.5-vl", "qwen25vl-test", "grounding-v2")
    }

    report = run_eval(gt, out, "--split", "test")  # the format recorded by predict
    assert report["format"]["name"] == "qwen2.5-vl"
    assert report["counts"] == {"samples": 3, "predicted": 3, "missing": 0, "unparseable": 0, "extra_predictions": 0}
    single, multi = report["overall"]["single"], report["overall"]["multi"]
    assert single["samples"] == 2 and single["acc@0.9"] == 1.0 and single["miou"] == pytest.approx(1.0)
    assert (multi["matched@0.5"], multi["precision@0.5"], multi["recall@0.5"]) == (2, 1.0, 1.0)


def test_predict_repairs_a_cut_line_and_refuses_another_format(tmp_path):
    samples = [make_sample(f"s{k}", [[0, 0, 10, 10]], query=f"Find tumor {k}.") for k in range(3)]
    gt = write_gt(tmp_path / "out", samples, images=True)
    truths = load_ground_truth(gt)
    out = tmp_path / "preds.jsonl"
    out.write_text(
        json.dumps({"id": "s0", "text": "[0, 0, 10, 10]", "format": "pixel", "model": "m"}) + "\n" + '{"id": "s1", "te'
    )
    asked: list[list[str]] = []

    class Backend:
        """A stand-in backend: answers every grounding request but s2's."""

        name, model = "stand-in", "m"

        def run(self, requests: list[Request]) -> list[Response]:
            asked.append([request.id for request in requests])
            for request in requests:
                text = request.messages[0]["content"][1]["text"].lower()
                assert "answer with its bounding box" in text and not request.schema
                assert isinstance(request.images[0], EncodedImage) and request.images[0].mime == "image/png"
            return [
                Response(r.id, text="[0, 0, 10, 10]") if r.id != "s2" else Response(r.id, reason="timeout")
                for r in requests
            ]

        def close(self) -> None:
            pass

    ask = Backend()
    summary = predict(truths, ask, out, format_name="pixel", model="m", batch_size=8)
    assert asked == [["s1", "s2"]]
    assert (summary.total, summary.skipped, summary.answered, summary.failed) == (3, 1, 1, 1)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s0", "s1"]

    with pytest.raises(EvalFileError, match=r"preds.jsonl:1: answer of format 'pixel', not 'internvl'"):
        predict(truths, ask, out, format_name="internvl", model="m")
    with pytest.raises(EvalFileError, match=r"answer of model 'm', not 'other'"):
        predict(truths, ask, out, format_name="pixel", model="other")


def test_predict_vllm_without_vllm_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[0, 0, 10, 10]])], images=True)
    result = CliRunner().invoke(
        predict_command,
        [
            "--gt",
            str(gt),
            "--backend",
            "vllm",
            "--model",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "--format",
            "qwen2.5-vl",
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
    )
    assert result.exit_code == 1
    assert "pip install 'medground[vllm]'" in result.output
    assert not (tmp_path / "p.jsonl").exists()


def test_predict_checks_the_backend_once_before_any_request(tmp_path, chat_server, monkeypatch):
    """A server that is down, a model it does not list, a wrong base URL, a vLLM model folder
    that is not there: predict stops before sending a query (status 1, the reason, nothing
    written) instead of writing one failure per sample."""
    gt = write_gt(
        tmp_path / "out",
        [make_sample(f"s{k}", [[0, 0, 10, 10]], query=f"Find tumor {k}.") for k in range(3)],
        images=True,
    )
    server = chat_server({f"Find tumor {k}.": "[0, 0, 10, 10]" for k in range(3)})
    monkeypatch.delenv("MEDGROUND_PREDICT_UNSET", raising=False)
    out = tmp_path / "preds.jsonl"

    def predict_with(*options: str) -> Any:
        args = ["--gt", str(gt), "--format", "pixel", "--out", str(out), "--max-retries", "0", "--timeout", "5"]
        return CliRunner().invoke(predict_command, [*args, *options])

    base_url = f"http://127.0.0.1:{server.server_port}/v1"
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    for options, message in (
        (
            ("--backend", "openai", "--model", "not-served", "--base-url", base_url),
            f"the model server at {base_url} does not serve model 'not-served' (it lists 'qwen25vl-test')",
        ),
        (
            ("--backend", "openai", "--model", "qwen25vl-test", "--base-url", down),
            f"the model server at {down} cannot be used: connection",
        ),
        (
            ("--backend", "openai", "--model", "qwen25vl-test", "--base-url", base_url + "/wrong"),
            "answered GET /models with HTTP 404",
        ),
    ):
        result = predict_with(*options, "--api-key-env", "MEDGROUND_PREDICT_UNSET")
        assert result.exit_code == 1, result.output
        assert message in result.output, result.output
        assert "answered now" not in result.output  # stopped before asking anything
        assert not out.exists()
    assert server.requests == [] and len(server.gets) == 2

    fake_vllm(monkeypatch)
    missing = tmp_path / "models" / "qwen"
    result = predict_with("--backend", "vllm", "--model", str(missing))
    assert result.exit_code == 1 and f"model = '{missing}': no such folder" in result.output, result.output
    assert not out.exists()

    # Backends that can be used pass the check and every sample is asked.
    result = predict_with("--backend", "openai", "--model", "qwen25vl-test", "--base-url", base_url)
    assert result.exit_code == 0, result.output
    assert "3 samples: 3 answered now" in result.output and len(server.requests) == 3
    missing.mkdir(parents=True)
    (missing / "config.json").write_text("{}")
    (missing / "model.safetensors").write_text("weights")
    out.unlink()
    result = predict_with("--backend", "vllm", "--model", str(missing))  # the stand-in engine answers
    assert result.exit_code == 0, result.output
    assert "3 samples: 3 answered now" in result.output


def test_predict_without_samples_of_the_split(tmp_path):
    gt = write_gt(tmp_path / "out", [make_sample("s1", [[0, 0, 10, 10]], split="train")], images=True)
    result = CliRunner().invoke(
        predict_command,
        [
            "--gt",
            str(gt),
            "--backend",
            "openai",
            "--model",
            "m",
            "--format",
            "pixel",
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
    )
    assert result.exit_code == 1 and "no samples with split 'test'" in result.output


def test_a_perfect_qwen25_vl_at_checkpoint_limits_scores_100(tmp_path, serve, monkeypatch):
    """A server that answers perfectly in the model's own input space: it resizes the image it
    receives with qwen-vl-utils' fetch_image at the library's (= the checkpoints') defaults and
    writes the true box in pixels of that image. predict records the limits; eval reads them."""
    qwen = vision_process()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    truth = {
        # A 2295x1716 photograph (3.9 MP: the processor class default would shrink it to 1148x868).
        "Locate the melanoma.": [1203, 811, 1291, 873],
        # A 50-px nodule on a 1024x1024 radiograph.
        "Locate the lung nodule.": [600, 300, 650, 350],
    }
    gt = write_gt(
        tmp_path / "out",
        [
            make_sample(
                "photo", [truth["Locate the melanoma."]], width=2295, height=1716, query="Locate the melanoma."
            ),
            make_sample(
                "xray", [truth["Locate the lung nodule."]], width=1024, height=1024, query="Locate the lung nodule."
            ),
        ],
        images=True,
    )
    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def model(key: str, attempt: int, payload: dict[str, Any]) -> Reply:
        url = payload["messages"][0]["content"][0]["image_url"]["url"]
        with Image.open(io.BytesIO(base64.b64decode(url.split("base64,", 1)[1]))) as received:
            original = received.size
        model_input = qwen.fetch_image({"image": url}).size  # at the library's defaults
        seen.append((original, model_input))
        sx, sy = model_input[0] / original[0], model_input[1] / original[1]
        x0, y0, x1, y1 = truth[next(q for q in truth if q in key)]
        box = [round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)]
        return Reply(body=completion(json.dumps([{"bbox_2d": box, "label": "finding"}])))

    server = serve(model)
    out = tmp_path / "preds.jsonl"
    args = ["--gt", str(gt), "--backend", "openai", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--format"]
    args += ["qwen2.5-vl", "--out", str(out), "--base-url", server.base_url, "--max-retries", "0"]
    result = CliRunner().invoke(predict_command, args)
    assert result.exit_code == 0, result.output
    assert sorted(seen) == [((1024, 1024), (1036, 1036)), ((2295, 1716), (2296, 1708))]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {json.dumps(line["boxes"], sort_keys=True) for line in lines} == {
        json.dumps({"name": "qwen2.5-vl", "factor": 28, "min_pixels": 3136, "max_pixels": 12845056}, sort_keys=True)
    }

    report = run_eval(gt, out)  # no --format, no limits: both as predict recorded them
    assert report["format"]["max_pixels"] == 12845056
    assert report["overall"]["single"]["acc@0.5"] == 1.0 and report["overall"]["single"]["samples"] == 2
    assert report["ceiling"]["single"]["acc@0.5"] == 1.0
    assert report["overall"]["single"]["miou"] == pytest.approx(report["ceiling"]["single"]["miou"])
    table = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(out)])
    assert any(line.startswith("ceiling ") for line in table.output.splitlines()), table.output

    # Scored at the processor class default instead, the same perfect answers miss.
    refused = CliRunner().invoke(eval_command, ["--gt", str(gt), "--pred", str(out), "--max-pixels", "1003520"])
    assert refused.exit_code == 1 and "record max_pixels 12845056 but --max-pixels is 1003520" in refused.output
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in lines))
    wrong = run_eval(gt, bare, "--format", "qwen2.5-vl", "--max-pixels", "1003520")["overall"]["single"]
    assert wrong["acc@0.5"] == 0.0


def test_predict_never_prints_or_stores_the_key_a_server_echoes(tmp_path, serve, monkeypatch):
    """A server that echoes the Authorization header into its answers and its error bodies:
    the key reaches neither the predictions file nor anything predict prints."""
    key = "sk-predict-0123456789abcdef"
    gt = write_gt(
        tmp_path / "out",
        [
            make_sample("s1", [[0, 0, 10, 10]], query="Locate the liver."),
            make_sample("s2", [[0, 0, 10, 10]], query="Locate the spleen."),
            make_sample("s3", [[0, 0, 10, 10]], query="Locate the aorta."),
        ],
        images=True,
    )

    def model(query: str, attempt: int, payload: dict[str, Any]) -> Reply:
        auth = payload["_authorization"]
        if "liver" in query:
            return Reply(body=completion(f'[{{"bbox_2d": [0, 0, 10, 10]}}] (asked with {auth})'))
        if "spleen" in query:
            return Reply(500, {"error": {"message": f"upstream rejected {auth}"}})
        return Reply(401, "x" * 270 + f"invalid key {auth}")

    server = serve(model)
    monkeypatch.setenv("MEDGROUND_PREDICT_KEY", key)
    out = tmp_path / "preds.jsonl"
    args = ["--gt", str(gt), "--backend", "openai", "--model", "m", "--format", "qwen2.5-vl", "--out", str(out)]
    args += ["--base-url", server.base_url, "--api-key-env", "MEDGROUND_PREDICT_KEY", "--max-retries", "0"]
    result = CliRunner().invoke(predict_command, args)
    assert result.exit_code == 1  # two answers failed
    assert set(server.authorizations) == {f"Bearer {key}"}
    assert "HTTP 500" in result.output and "HTTP 401" in result.output and "Bearer ***" in result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["s1"] and lines[0]["text"].endswith("(asked with Bearer ***)")
    assert key not in result.output and key not in out.read_text()
    assert key[:8] not in result.output  # not even in part, where an excerpt was cut


def test_predict_asks_an_absent_query_the_same_prompt_and_eval_scores_its_answers(tmp_path):
    """An absent query (no target) is asked with the family's single-object prompt, like any
    other; an answer with no box read from it is a correct rejection, a box a false positive."""
    positive = make_sample("p", [[0, 0, 10, 10]], query="Locate the kidney tumor.")
    absent = [
        make_sample(
            f"a{k}",
            [],
            query_type="absent",
            query="Locate the kidney tumor.",
            attributes={"category": "kidney tumor", "absent_from": "case"},
        )
        for k in range(2)
    ]
    gt = write_gt(tmp_path / "out", [positive, *absent], images=True)
    truths = load_ground_truth(gt)
    prompts: dict[str, str] = {}

    class Backend:
        name, model = "stand-in", "m"

        def run(self, requests: list[Request]) -> list[Response]:
            prompts.update({r.id: r.messages[0]["content"][1]["text"] for r in requests})
            answers = {
                "p": "[0, 0, 10, 10]",
                "a0": "The kidney tumor is not present in this image.",
                "a1": "[1, 1, 5, 5]",
            }
            return [Response(r.id, text=answers[r.id]) for r in requests]

        def close(self) -> None:
            pass

    out = tmp_path / "preds.jsonl"
    summary = predict(truths, Backend(), out, format_name="pixel", model="m")
    assert summary.answered == 3
    assert (
        prompts["a0"]
        == prompts["p"]
        == grounding_prompt("Locate the kidney tumor.", "pixel", multi=False, width=765, height=572)
    )
    report = run_eval(gt, out)
    assert report["overall"]["absent"] == {"samples": 2, "rejected": 1, "false_positive": 1, "rejection_accuracy": 0.5}
    assert report["overall"]["single"]["acc@0.5"] == 1.0
