"""Make real containers (audio, optionally a black video track) from real audio, with PyAV.

Used by the media tests (every container the service accepts) and by the
benchmark (a long meeting "video"), so both exercise the same decode path as an
operator's upload.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# container suffix -> (audio codec, video codec or None)
CONTAINERS = {
    ".mp4": ("aac", "mpeg4"),
    ".mkv": ("libopus", "mpeg4"),
    ".mov": ("aac", "mpeg4"),
    ".webm": ("libopus", "libvpx"),
    ".avi": ("libmp3lame", "mpeg4"),
    ".mp3": ("libmp3lame", None),
    ".m4a": ("aac", None),
    ".aac": ("aac", None),
    ".wav": ("pcm_s16le", None),
    ".flac": ("flac", None),
    ".ogg": ("libopus", None),
    ".opus": ("libopus", None),
}


def read_audio(path: Path) -> np.ndarray:
    """16 kHz mono float32 through the service's own decoder."""
    import tempfile

    from diarized.pipeline import media

    with tempfile.TemporaryDirectory() as tmp:
        raw = media.decode(Path(path), Path(tmp) / "a.f32").raw_path
        return np.array(media.open_audio(raw))


def write_container(path: Path, samples: np.ndarray, sample_rate: int = 16000,
                    video: bool | None = None, block_seconds: float = 1.0) -> Path:
    """Encode mono float32 `samples` into `path`; the suffix picks the codecs."""
    path = Path(path)
    audio_codec, video_codec = CONTAINERS[path.suffix]
    if video is False:
        video_codec = None
    rate = 48000 if "opus" in audio_codec else sample_rate
    with av.open(str(path), "w") as out:
        astream = out.add_stream(audio_codec, rate=rate, layout="mono")
        vstream = None
        if video_codec:
            vstream = out.add_stream(video_codec, rate=1)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
            black = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        block = int(block_seconds * sample_rate)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        for n, start in enumerate(range(0, len(pcm), block)):
            chunk = pcm[start: start + block]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts, frame.time_base = start, Fraction(1, sample_rate)
            out.mux(astream.encode(frame))
            if vstream is not None:
                vframe = black.reformat(format="yuv420p")
                vframe.pts = n
                out.mux(vstream.encode(vframe))
        out.mux(astream.encode(None))
        if vstream is not None:
            out.mux(vstream.encode(None))
    return path


def pinkish_noise(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Background noise with most energy low, as rooms have: brown noise, high-passed (a 25-ms mean removed)."""
    noise = np.cumsum(rng.standard_normal(samples))
    return noise - np.convolve(noise, np.ones(400) / 400, mode="same")


def at_level(signal: np.ndarray, level: float, db: float) -> np.ndarray:
    """`signal` scaled to `db` decibels relative to the RMS `level`."""
    return signal * level / np.sqrt(np.mean(signal ** 2)) * 10 ** (db / 20)
