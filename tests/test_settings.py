"""The model stages' settings: a key never goes into a config (refused, never echoed, never
written), and every key of [synthesis] / [verification] and their sub-tables is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from medground.io import SpecError
from medground.pipeline.config import load_run_config
from medground.settings import SynthesisSettings, VerificationSettings, VisualSettings

KEY = "sk-live-0123456789abcdefSECRET"

SPEC = """
name = "toy"
modality = "CT"
[cases]
image = "img/{case}.nii.gz"
mask = "seg/{case}.nii.gz"
[labels]
1 = "liver"
"""

OPENAI = 'backend = "openai"\nmodel = "m"\nbase_url = "http://127.0.0.1:8000/v1"\n'
JUDGE = 'backend = "vlm"\nmodel = "m"\nbase_url = "http://127.0.0.1:8000/v1"\n'


def config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (f'[synthesis]\n{OPENAI}api_key = "{KEY}"\n', "[synthesis] holds api_key"),
        (f'[synthesis]\n{OPENAI}openai_api_key = "{KEY}"\n', "[synthesis] holds openai_api_key"),
        (f'[verification.visual]\n{JUDGE}apiKey = "{KEY}"\n', "[verification.visual] holds apiKey"),
        (f'[verification.visual]\n{JUDGE}access_token = "{KEY}"\n', "[verification.visual] holds access_token"),
        (f'[verification]\npassword = "{KEY}"\n', "[verification] holds password"),
        (
            f'[synthesis]\nbackend = "vllm"\nmodel = "m"\n[synthesis.mm_processor_kwargs]\ntoken = "{KEY}"\n',
            "[synthesis.mm_processor_kwargs] holds token",
        ),
        # The variable's name, not the key: a key pasted into api_key_env is refused too.
        (f'[synthesis]\n{OPENAI}api_key_env = "{KEY}"\n', "api_key_env must be the name of an environment variable"),
        (
            f'[verification.visual]\nbackend = "vlm"\nmodel = "m"\nbase_url = "https://user:{KEY}@api.example.com/v1"\n',
            "base_url must not hold a user name or password",
        ),
    ],
)
def test_a_key_written_into_the_config_is_refused_and_never_echoed(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(SpecError) as error:
        load_run_config(config(tmp_path, extra))
    assert named in str(error.value)
    assert KEY not in str(error.value) and "SECRET" not in str(error.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (f"[synthesis]\n{OPENAI}temprature = 0.1\n", "unknown key(s) in [synthesis]: temprature; allowed: "),
        (f"[synthesis]\n{OPENAI}[synthesis.sampling]\ntemperature = 0.1\n", "unknown key(s) in [synthesis]: sampling"),
        (f"[verification.visual]\n{JUDGE}treshold = 0.5\n", "unknown key(s) in [verification.visual]: treshold"),
        ("[verification]\nvisuals = {}\n", "unknown key(s) in [verification]: visuals; allowed: visual"),
        (
            '[verification.visual]\nbackend = "vlm"\nmodel = "m"\n'
            "[verification.visual.limit_mm_per_prompt]\nimages = 2\n",
            "unknown key(s) in [verification.visual.limit_mm_per_prompt]: images; allowed: audio, image, video",
        ),
        (f"[synthesis]\n{OPENAI}[synthesis.timeout_s]\nconnect = 1\n", "[synthesis] timeout_s must be a value"),
        (
            '[synthesis]\nbackend = "vllm"\nmodel = "m"\nlimit_mm_per_prompt = 2\n',
            "limit_mm_per_prompt must be a table",
        ),
        ('[verification]\nvisual = "vlm"\n', "[verification] visual must be a table"),
    ],
)
def test_unknown_keys_and_sub_table_keys_are_errors_naming_them(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        load_run_config(config(tmp_path, extra))
    assert message in str(error.value)
    if "allowed: " in message and message.endswith("allowed: "):
        assert "temperature" in str(error.value)  # the allowed keys are listed


def test_a_good_config_records_the_variable_name_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDGROUND_SETTINGS_KEY", KEY)
    extra = (
        f'[synthesis]\n{OPENAI}api_key_env = "MEDGROUND_SETTINGS_KEY"\nmax_tokens = 64\nmax_response_bytes = 1048576\n'
        '[verification.visual]\nbackend = "vlm"\nmodel = "m"\n'
        "[verification.visual.limit_mm_per_prompt]\nimage = 1\n"
        "[verification.visual.chat_template_kwargs]\nenable_thinking = false\n"
    )
    loaded = load_run_config(config(tmp_path, extra))
    assert loaded.synthesis.get("api_key_env") == "MEDGROUND_SETTINGS_KEY"
    assert KEY not in repr(loaded.describe()) and KEY not in loaded.fingerprint
    assert loaded.verification.visual.get("limit_mm_per_prompt") == {"image": 1}
    # Parsed the same way when built in code.
    assert SynthesisSettings.from_table({"backend": "template"}).backend == "template"
    assert VerificationSettings.from_table(None).visual.backend == "evidence"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"backend": "simulated", "max_batch": 0}, "[synthesis] max_batch must be an integer >= 1, got 0"),
        ({"backend": "simulated", "num_replicas": 1.5}, "[synthesis] num_replicas must be an integer >= 1"),
        ({"backend": "simulated", "batch_wait_s": -1}, "[synthesis] batch_wait_s must be a number in [0.0, 3600.0]"),
        ({"backend": "openai", "model": "m", "concurrency": "many"}, "[synthesis] concurrency must be an integer"),
    ],
)
def test_batching_settings_are_checked_when_the_config_is_read(table: dict, message: str) -> None:
    """A bad batching setting is a config error naming the key, found when the config is
    read, not a crash inside the queue actor once the run has started."""
    with pytest.raises(SpecError) as error:
        SynthesisSettings.from_table(table)
    assert message in str(error.value)


def test_the_stand_in_engine_is_a_backend_and_a_judge_engine() -> None:
    synthesis = SynthesisSettings.from_table({"backend": "simulated", "max_batch": 8, "cost_t0_s": 0.1})
    visual = VisualSettings.from_table({"backend": "vlm", "engine": "simulated", "num_replicas": 2})
    assert synthesis.uses_model and synthesis.num_gpus == 0 and visual.engine == "simulated" and visual.num_gpus == 0
    with pytest.raises(SpecError, match="engine must be one of vllm, openai, simulated"):
        VisualSettings.from_table({"backend": "vlm", "engine": "tgi"})
