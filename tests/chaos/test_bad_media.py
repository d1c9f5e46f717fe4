"""Odd media through the real daemon and real models (tiny.en): every file ends in a documented
state, failures with an error.json that names the file and says what to do, and the daemon
processes the rest. Generated from ../shared/data by the test."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from bench.synth import read_audio, write_container
from tests.harness import Daemon

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

# name -> the state it must end in (and, for failures, words of the message)
EXPECTED = {
    "zero.wav": ("failed", "empty (0 bytes)"),
    "cut.mp4": ("failed", "not a readable audio or video file"),
    "cut.wav": ("succeeded", None),  # the readable part, with a warning
    "cut.mkv": ("succeeded", None),
    "blip.wav": ("succeeded", None),  # 0.2 s: a transcript with nothing in it
    "silence.wav": ("succeeded", None),
    "phone.wav": ("succeeded", None),  # 8 kHz mono
    "surround.wav": ("succeeded", None),  # 6 channels, 48 kHz
    "notes.mp4": ("failed", "not a readable audio or video file"),
}


def pcm_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    data = np.clip(samples, -1, 1)
    frames = np.repeat(data[:, None], channels, axis=1) if channels > 1 else data[:, None]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((frames * 32767).astype("<i2").tobytes())
    return path


def make_inputs(data: Path, folder: Path) -> list[Path]:
    folder.mkdir()
    jfk = read_audio(data / "en-jfk/jfk.flac")  # 11 s, 16 kHz
    (folder / "zero.wav").write_bytes(b"")
    for name in ("cut.mp4", "cut.mkv"):
        whole = write_container(folder / f"whole{Path(name).suffix}", jfk).read_bytes()
        (folder / name).write_bytes(whole[: len(whole) // 2])
    whole_wav = pcm_wav(folder / "whole.wav", jfk, 16000).read_bytes()
    (folder / "cut.wav").write_bytes(whole_wav[: len(whole_wav) * 3 // 10])
    pcm_wav(folder / "blip.wav", jfk[16000: 16000 + 3200], 16000)
    pcm_wav(folder / "silence.wav", np.zeros(16000 * 300, np.float32), 16000)
    pcm_wav(folder / "phone.wav", jfk[::2], 8000)
    surround = np.interp(np.arange(0, len(jfk), 16000 / 48000), np.arange(len(jfk)), jfk).astype(np.float32)
    pcm_wav(folder / "surround.wav", surround, 48000, channels=6)
    (folder / "notes.mp4").write_text("not a video\n" * 100)
    return [folder / name for name in EXPECTED]


def test_odd_media_end_in_documented_states(tmp_path, models_cache, data):
    inputs = make_inputs(data, tmp_path / "inputs")
    d = Daemon(tmp_path / "var", models_cache, max_workers=2).start()
    try:
        for path in inputs:
            d.drop(path)
        jobs = {j.source_name: j for j in d.wait_all_final(len(inputs), timeout=900)}
    finally:
        d.stop()
    outcomes = {name: str(job.state) for name, job in jobs.items()}
    assert outcomes == {name: state for name, (state, _) in EXPECTED.items()}
    for name, (state, words) in EXPECTED.items():
        job = jobs[name]
        if state == "failed":
            error = json.loads((Path(job.source_path).parent / "error.json").read_text())
            assert name in error["message"] and words in error["message"] and error["hint"]
            assert job.attempts == 1  # bad media is not retried
        else:
            doc = json.loads((Path(job.output_dir) / "final_transcription.json").read_text())
            assert doc["file_path"] == name
            if name.startswith("cut."):
                assert doc["warnings"], f"{name}: a truncated file must say so"
    assert json.loads((Path(jobs["silence.wav"].output_dir) / "final_transcription.json")
                      .read_text())["segments"] == []
    for name in ("phone.wav", "surround.wav"):
        text = " ".join(s["text"] for s in json.loads(
            (Path(jobs[name].output_dir) / "final_transcription.json").read_text())["segments"]).lower()
        assert "country" in text, f"{name}: {text}"
