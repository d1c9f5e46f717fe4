"""`diarizectl transcribe` as an operator runs it: a real process on a real file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synth import read_audio, write_container

CTL = [sys.executable, "-m", "diarized.cli.ctl"]


def run_ctl(*args: str, cache: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIARIZED_CACHE_DIR": str(cache), "DIARIZED_CONFIG": "",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CTL, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_transcribe_a_video_end_to_end(data, tmp_path, models_cache):
    video = write_container(tmp_path / "meeting.mp4", read_audio(data / "ami-mixture-4spk/mixture.wav"))
    out = tmp_path / "out"
    proc = run_ctl("transcribe", str(video), "--out", str(out), "--language", "en",
                   "--keep-chunks", cache=models_cache)
    assert proc.returncode == 0, proc.stderr
    assert "meeting.mp4: 60.0 s, language en" in proc.stderr
    assert "write" in proc.stderr and "100%" in proc.stderr  # the progress bar got to the end
    doc = json.loads((out / "final_transcription.json").read_text())
    assert doc["file_path"] == "meeting.mp4" and doc["total_duration"] == pytest.approx(60.0, abs=0.1)
    assert len(doc["speakers"]) >= 3 and doc["language"] == "en"
    assert "remote control" in " ".join(s["text"] for s in doc["segments"]).lower()
    for name in ("transcription.srt", "transcription.vtt", "transcription.txt", "diarization.rttm",
                 "whisper_results.json", "diarization_results.json", "chunks/chunks_metadata.json",
                 "chunks/chunk_0000.wav"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_formats_option_limits_outputs(data, tmp_path, models_cache):
    out = tmp_path / "out"
    proc = run_ctl("transcribe", str(data / "en-jfk/jfk.flac"), "--out", str(out),
                   "--formats", "json,txt", "--model", "tiny.en", cache=models_cache)
    assert proc.returncode == 0, proc.stderr
    assert (out / "final_transcription.json").is_file() and (out / "transcription.txt").is_file()
    assert not (out / "transcription.srt").exists()
    assert "ask not what your country" in (out / "transcription.txt").read_text().lower()


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty (0 bytes)"),
    (b"hello, this is a text file\n" * 20, "not a readable audio or video file"),
])
def test_bad_input_is_one_clear_line(tmp_path, models_cache, content, message):
    bad = tmp_path / "upload.mp4"
    bad.write_bytes(content)
    proc = run_ctl("transcribe", str(bad), "--out", str(tmp_path / "out"), cache=models_cache)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "upload.mp4" in lines[0] and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_file_exit_code_3(tmp_path, models_cache):
    proc = run_ctl("transcribe", str(tmp_path / "nope.wav"), cache=models_cache)
    assert proc.returncode == 3 and "no such file" in proc.stderr


def test_conflicting_speaker_options_are_a_usage_error(data, models_cache):
    proc = run_ctl("transcribe", str(data / "en-jfk/jfk.flac"), "--num-speakers", "2",
                   "--max-speakers", "3", cache=models_cache)
    assert proc.returncode == 2


def test_unknown_model_is_a_clear_error(data, tmp_path, models_cache):
    proc = run_ctl("transcribe", str(data / "en-jfk/jfk.flac"), "--model", "large-v9",
                   "--out", str(tmp_path / "o"), cache=models_cache)
    assert proc.returncode == 1
    assert "'large-v9' not found" in proc.stderr and "allow_downloads" in proc.stderr


def test_models_lists_bundled_models_as_json(models_cache):
    proc = run_ctl("models", "--json", cache=models_cache)
    assert proc.returncode == 0, proc.stderr
    names = {row["name"]: row for row in json.loads(proc.stdout)}
    assert names["base"]["available"] and names["tiny.en"]["available"]


@pytest.mark.slow
def test_a_transcription_never_touches_the_network(data, tmp_path, models_cache):
    """strace sees every connect() of the process and its threads, in C libraries too
    (onnxruntime's telemetry resolved a Microsoft host from every run until switched off)."""
    import shutil

    if shutil.which("strace") is None:
        pytest.fail("strace is missing: `make system-deps` installs it")
    trace = tmp_path / "connect.trace"
    env = {**os.environ, "DIARIZED_CACHE_DIR": str(models_cache), "DIARIZED_CONFIG": "",
           "HF_HUB_OFFLINE": "1"}
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the package must switch it off itself
    env.pop("ORT_TELEMETRY_DISABLED", None)
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace),
                           *CTL, "transcribe", str(data / "en-jfk/jfk.flac"), "--out", str(tmp_path / "out"),
                           "--model", "tiny.en"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    network = [line for line in trace.read_text().splitlines()
               if "AF_INET" in line or "htons(" in line]
    assert network == [], "\n".join(network[:10])
