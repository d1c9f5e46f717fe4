"""Cut the audio into ~10-minute work units at quiet moments.

Units exist for checkpoints, progress and the daemon's per-unit timeout, not for
model context: Whisper windows the audio itself, so units never overlap and no
text is deduplicated at seams. Cuts are deterministic (same audio, same units),
which is what lets a restarted job skip the units it already finished.
"""

from __future__ import annotations

import json
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from diarized.files import write_json
from diarized.pipeline.media import SAMPLE_RATE

FRAME_SECONDS = 0.03
SMOOTH_SECONDS = 0.5


@dataclass(frozen=True)
class Unit:
    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {**asdict(self), "duration": round(self.duration, 3)}


def _quietest_point(audio: np.ndarray, lo: float, hi: float) -> float:
    """Time (s) of the lowest smoothed energy in [lo, hi)."""
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    a, b = int(lo * SAMPLE_RATE), int(hi * SAMPLE_RATE)
    window = np.asarray(audio[a:b], dtype=np.float32)
    n = len(window) // frame
    if n < 1:
        return (lo + hi) / 2
    energy = np.square(window[: n * frame].reshape(n, frame)).mean(axis=1)
    k = max(1, int(SMOOTH_SECONDS / FRAME_SECONDS))
    smooth = np.convolve(energy, np.ones(k) / k, mode="same")
    best = int(np.argmin(smooth))
    return lo + (best + 0.5) * FRAME_SECONDS


def plan_units(audio: np.ndarray, unit_seconds: float = 600.0,
               search_seconds: float = 30.0) -> list[Unit]:
    """Units of about `unit_seconds`, each cut within ±`search_seconds` of its target."""
    total = len(audio) / SAMPLE_RATE
    search = min(search_seconds, unit_seconds / 2)  # every cut moves forward by >= unit/2
    cuts = [0.0]
    while total - cuts[-1] > 1.5 * unit_seconds:
        target = cuts[-1] + unit_seconds
        cuts.append(_quietest_point(audio, target - search, target + search))
    cuts.append(total)
    return [Unit(i, round(s, 3), round(e, 3)) for i, (s, e) in enumerate(zip(cuts, cuts[1:]))]


def write_metadata(units: list[Unit], chunks_dir: Path, total_duration: float) -> Path:
    chunks_dir.mkdir(parents=True, exist_ok=True)
    return write_json(chunks_dir / "chunks_metadata.json", {
        "total_duration": round(total_duration, 3),
        "sample_rate": SAMPLE_RATE,
        "units": [u.to_dict() for u in units],
    })


def read_metadata(chunks_dir: Path) -> list[Unit]:
    data = json.loads((chunks_dir / "chunks_metadata.json").read_text())
    return [Unit(u["index"], u["start"], u["end"]) for u in data["units"]]


def write_chunk_wavs(audio: np.ndarray, units: list[Unit], chunks_dir: Path) -> list[Path]:
    """The seed's chunk_0000.wav files (16-bit PCM), for operators who keep them."""
    paths = []
    for unit in units:
        path = chunks_dir / f"chunk_{unit.index:04d}.wav"
        samples = np.asarray(audio[int(unit.start * SAMPLE_RATE): int(unit.end * SAMPLE_RATE)])
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(pcm.tobytes())
        paths.append(path)
    return paths
