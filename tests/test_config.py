"""Settings: TOML + environment + overrides, and clear messages for mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from diarized.config import ConfigError, load_settings


def test_precedence_override_env_file_default(tmp_path):
    toml = tmp_path / "d.toml"
    toml.write_text('max_workers = 1\nmodel = "tiny.en"\nlanguage = "pt"\n')
    s = load_settings(toml, {"language": "en"}, env={"DIARIZED_MODEL": "base"})
    assert (s.max_workers, s.model, s.language) == (1, "base", "en")
    assert s.settle_seconds == 5.0 and s.max_attempts == 3


def test_env_values_are_typed(tmp_path):
    s = load_settings(None, {"state_dir": tmp_path}, env={
        "DIARIZED_MAX_WORKERS": "1", "DIARIZED_ALLOW_DOWNLOADS": "yes",
        "DIARIZED_FORMATS": "json,srt", "DIARIZED_SETTLE_SECONDS": "2.5"})
    assert s.max_workers == 1 and s.allow_downloads is True
    assert s.formats == ("json", "srt") and s.settle_seconds == 2.5
    assert s.inbox == tmp_path / "inbox" and s.db_path == tmp_path / "state/diarized.db"


@pytest.mark.parametrize("text, message", [
    ("max_wokers = 2\n", "unknown key"),
    ("max_workers = 'two'\n", "max_workers: expected int"),
    ("max_memory_gb = 100000\n", "more than this machine's RAM"),
    ("max_memory_gb = 1.5\nmax_workers = 2\n", "at least 1 GiB"),
    ("done_policy = 'shred'\n", "done_policy must be keep or delete"),
    ("formats = ['json', 'pdf']\n", "formats must be a subset"),
    ("diarization_precision = 'float16'\n", "diarization_precision must be auto, float32, bfloat16"),
    ("max_workers = [\n", "not valid TOML"),
])
def test_mistakes_are_named(tmp_path, text, message):
    toml = tmp_path / "d.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(toml, env={})


def test_unknown_environment_key_is_an_error():
    with pytest.raises(ConfigError, match="DIARIZED_MAX_WORKRS"):
        load_settings(None, env={"DIARIZED_MAX_WORKRS": "2"})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_example_config_documents_every_key():
    from diarized.config import KEYS

    example = Path(__file__).resolve().parents[1] / "etc/diarized.toml"
    text = example.read_text()
    missing = [k for k in KEYS if f"{k} =" not in text]
    assert missing == []
    load_settings(example, {"state_dir": "/tmp/x"}, env={})  # the example itself is valid


@pytest.mark.parametrize("key, value, message", [
    ("max_memory_gb", "nan", "max_memory_gb must be a finite number"),
    ("max_memory_gb", "inf", "max_memory_gb must be a finite number"),
    ("max_memory_gb", "0", "max_memory_gb must be more than 0"),
    ("worker_memory_gb", "-1", "worker_memory_gb must be at least 0"),
    ("unit_timeout_seconds", "0", "unit_timeout_seconds must be more than 0"),
    ("stop_timeout_seconds", "-5", "stop_timeout_seconds must be more than 0"),
    ("settle_seconds", "nan", "settle_seconds must be a finite number"),
    ("retry_backoff_seconds", "-1", "retry_backoff_seconds must be at least 0"),
    ("max_attempts", "0", "max_attempts must be at least 1"),
    ("max_workers", "0", "max_workers must be at least 1"),
    ("cpu_threads", "-2", "cpu_threads must be at least 0"),
    ("beam_size", "0", "beam_size must be at least 1"),
    ("batch_size", "0", "batch_size must be at least 1"),
    ("max_file_gb", "0", "max_file_gb must be more than 0"),
    ("language", "klingon", "language must be auto or a Whisper language code"),
    ("compute_type", "int3", "compute_type must be one of"),
    ("state_dir", "", "state_dir must not be empty"),
    ("segmentation_step", "1.5", "segmentation_step must be at most 1"),
])
def test_every_value_is_checked_and_the_key_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(None, {"state_dir": "/tmp/x", key: value}, env={})


def test_valid_edge_values_pass():
    s = load_settings(None, {"state_dir": "/tmp/x", "language": "pt", "compute_type": "int8_float32",
                             "retry_backoff_seconds": 0, "cpu_threads": 0}, env={})
    assert s.language == "pt" and s.retry_backoff_seconds == 0


def test_folders_that_overlap_are_refused(tmp_path):
    from diarized.config import check_folders

    settings = load_settings(None, {"state_dir": tmp_path, "done_dir": tmp_path / "inbox/done"}, env={})
    with pytest.raises(ConfigError, match="done folder .* is inside .* inbox folder"):
        check_folders(settings)
    check_folders(load_settings(None, {"state_dir": tmp_path / "ok"}, env={}))  # the default layout


def test_folders_on_another_filesystem_are_refused(tmp_path):
    from diarized.config import check_folders

    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine")
    outbox = Path(__import__("tempfile").mkdtemp(dir=other))
    try:
        settings = load_settings(None, {"state_dir": tmp_path, "outbox_dir": outbox}, env={})
        with pytest.raises(ConfigError, match="outbox folder .* is on another filesystem"):
            check_folders(settings)
    finally:
        outbox.rmdir()


@pytest.mark.parametrize("num, low, high, problem", [
    (None, None, None, None), (3, None, None, None), (None, 2, 0, None), (None, 2, 5, None),
    (3, 2, None, "not both"), (None, 5, 2, "min_speakers (5) is larger than max_speakers (2)"),
    (-1, None, None, "0 or more"), ("3", None, None, "whole number"),
])
def test_speaker_hints_mean_what_they_say(num, low, high, problem):
    from diarized.config import speaker_hint_problems

    problems = speaker_hint_problems(num, low, high)
    assert (problems == []) if problem is None else any(problem in p for p in problems)


def test_there_is_no_speaker_ceiling_by_default():
    assert load_settings(None, {"state_dir": "/tmp/x"}, env={}).max_speakers == 0
