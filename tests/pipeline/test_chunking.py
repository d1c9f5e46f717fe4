"""Work units: ~10 minutes, cut at quiet moments, deterministic, no overlap."""

from __future__ import annotations

import numpy as np
import pytest

from bench.synth import read_audio
from diarized.pipeline import chunking
from diarized.pipeline.media import SAMPLE_RATE


@pytest.fixture(scope="module")
def meeting(data) -> np.ndarray:
    """About 7 minutes of real meeting audio: the AMI mixture seven times over."""
    mix = read_audio(data / "ami-mixture-4spk/mixture.wav")
    return np.concatenate([mix] * 7)


def test_short_audio_is_one_unit(data):
    audio = read_audio(data / "pyannote-sample/sample.wav")
    units = chunking.plan_units(audio, unit_seconds=600)
    assert [(u.start, u.end) for u in units] == [(0.0, 30.0)]


def test_units_tile_the_audio_without_overlap(meeting):
    units = chunking.plan_units(meeting, unit_seconds=60, search_seconds=10)
    total = len(meeting) / SAMPLE_RATE
    assert units[0].start == 0 and units[-1].end == pytest.approx(total, abs=1e-3)
    for a, b in zip(units, units[1:]):
        assert a.end == b.start
    assert all(40 <= u.duration <= 95 for u in units)


def test_cuts_fall_on_quiet_frames(meeting):
    units = chunking.plan_units(meeting, unit_seconds=60, search_seconds=10)
    frame = int(0.03 * SAMPLE_RATE)
    energy = lambda t: float(np.mean(meeting[int(t * SAMPLE_RATE) - frame: int(t * SAMPLE_RATE) + frame] ** 2))  # noqa: E731
    median = float(np.median(np.square(meeting).reshape(-1, 4800).mean(axis=1)))
    for unit in units[1:]:
        assert energy(unit.start) < median


def test_plan_is_deterministic_and_round_trips(meeting, tmp_path):
    first = chunking.plan_units(meeting, unit_seconds=60, search_seconds=10)
    assert chunking.plan_units(meeting, unit_seconds=60, search_seconds=10) == first
    chunking.write_metadata(first, tmp_path, len(meeting) / SAMPLE_RATE)
    assert chunking.read_metadata(tmp_path) == first


def test_keep_chunks_writes_the_seed_wavs(meeting, tmp_path):
    import wave

    units = chunking.plan_units(meeting, unit_seconds=60, search_seconds=10)
    paths = chunking.write_chunk_wavs(meeting, units, tmp_path)
    assert [p.name for p in paths][:2] == ["chunk_0000.wav", "chunk_0001.wav"]
    with wave.open(str(paths[0])) as w:
        assert w.getframerate() == SAMPLE_RATE and w.getnframes() == int(units[0].end * SAMPLE_RATE)
