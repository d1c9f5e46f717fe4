"""Decode any container once, with PyAV, into 16 kHz mono float32 on disk.

The decoded samples are streamed to a raw float32 file and then memory-mapped,
so a two-hour recording is never held twice in RAM and every stage (chunking,
ASR, diarization) reads the same pages. pydub is not used: it shells out to an
ffmpeg binary; PyAV bundles FFmpeg's libraries.

Failure policy, per case:
- zero-byte file, not a media file, no audio stream, nothing decodable: MediaError.
- a stream that breaks part-way (truncated upload, corrupt packets): keep what
  decoded, and return a warning that says how much is missing.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000
MIN_SECONDS = 0.1
# Demuxers of single, self-contained files. Playlists and manifests (hls, concat, dash,
# image sequences, ...) make FFmpeg open other files or URLs named inside the upload: an
# m3u8 pointing at /etc/... would be read and transcribed. FFmpeg refuses every demuxer
# not listed here, and every protocol but plain files.
DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,wav,w64,rf64,flac,mp3,ogg,aac,ac3,eac3,amr,"
            "amrnb,amrwb,au,aiff,caf,avi,asf,flv,mpegts,mpeg,wv,ape,tta,dts,dtshd,truehd,mlp,gsm,"
            "voc,rm,nut,mxf,dv,opus,s337m,mpc,mpc8,tak,xwma,wsaud,live_flv,loas,latm,sox,smjpeg")
OPEN_OPTIONS = {"format_whitelist": DEMUXERS, "protocol_whitelist": "file"}
INDIRECTION_MARKS = (b"#EXTM3U", b"ffconcat", b"[playlist]", b"<?xml", b"<MPD", b"#EXTINF")


class MediaError(Exception):
    """Bad input: says which file, what is wrong, and what the operator can do."""

    def __init__(self, path: Path, problem: str, hint: str):
        self.path, self.problem, self.hint = Path(path), problem, hint
        super().__init__(f"{Path(path).name}: {problem} — {hint}")


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    container: str
    duration: float | None  # seconds, from the container header; None if unknown
    codec: str
    sample_rate: int
    channels: int
    has_video: bool


@dataclass
class Decoded:
    """Where the samples went, and what the decode noticed on the way."""

    raw_path: Path
    samples: int
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise MediaError(path, "file not found", "check the path")
    if path.stat().st_size == 0:
        raise MediaError(path, "the file is empty (0 bytes)",
                         "the upload was probably interrupted; copy the file again")
    with path.open("rb") as fh:
        head = fh.read(64).lstrip()
    if head.startswith(INDIRECTION_MARKS):
        raise MediaError(path, "a playlist or manifest that points at other files, not a recording",
                         "diarized decodes only the file itself: drop the media file instead")
    try:
        return av.open(str(path), metadata_errors="ignore", options=OPEN_OPTIONS)
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)  # without the path: callers name the file
        raise MediaError(
            path, f"not a readable audio or video file ({reason})",
            "if it is a recording, it may be truncated or still uploading; "
            "re-export or copy it again",
        ) from None


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.audio.AudioStream:
    if not container.streams.audio:
        raise MediaError(path, "the file has no audio track",
                         "export the recording again with its sound")
    return container.streams.audio[0]


def _duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe(path: Path) -> MediaInfo:
    """Read headers only: cheap enough for the inbox and for admission control."""
    path = Path(path)
    with _open(path) as container:
        stream = _audio_stream(container, path)
        duration = _duration(container, stream)
        if duration is not None and duration <= 0:
            raise MediaError(path, "the audio track has zero duration", "check the recording")
        return MediaInfo(
            path=path,
            container=container.format.name,
            duration=duration,
            codec=stream.codec_context.name,
            sample_rate=stream.codec_context.sample_rate or 0,
            channels=stream.codec_context.channels or 0,
            has_video=bool(container.streams.video),
        )


def decode(path: Path, raw_path: Path) -> Decoded:
    """Decode the first audio stream to `raw_path` (float32, 16 kHz, mono).

    Written to a temporary name and renamed, so a crash leaves either a whole
    decode or none: the worker's "decoded" checkpoint is the file itself.
    """
    path, raw_path = Path(path), Path(raw_path)
    tmp = raw_path.with_name(raw_path.name + ".tmp")
    warnings: list[str] = []
    samples = 0
    with _open(path) as container, tmp.open("wb") as out:
        stream = _audio_stream(container, path)
        expected = _duration(container, stream)
        if container.format.name == "wav":  # FFmpeg trims a WAV's duration to what is there
            expected = _wav_declared_seconds(path) or expected
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        error: Exception | None = None
        try:
            for frame in container.decode(stream):
                for rframe in resampler.resample(frame):
                    data = rframe.to_ndarray().reshape(-1)
                    out.write(data.tobytes())
                    samples += data.size
        except (av.error.FFmpegError, ValueError) as exc:
            error = exc
        for rframe in resampler.resample(None):
            data = rframe.to_ndarray().reshape(-1)
            out.write(data.tobytes())
            samples += data.size
        out.flush()
        os.fsync(out.fileno())
    got = samples / SAMPLE_RATE
    if got < MIN_SECONDS:
        tmp.unlink(missing_ok=True)
        raise MediaError(path, "no audio could be decoded"
                         + (f" ({error})" if error else ""),
                         "the file is damaged or truncated; copy or export it again")
    if error is not None:
        warnings.append(f"decoding stopped at {got:.1f} s: {error}; the rest is missing")
    if expected and got < expected - 1.0:
        warnings.append(
            f"decoded {got:.1f} s of the {expected:.1f} s the header announces: "
            "the file looks truncated; the transcript covers only the readable part"
        )
    tmp.rename(raw_path)
    return Decoded(raw_path=raw_path, samples=samples, warnings=warnings)


def _wav_declared_seconds(path: Path) -> float | None:
    """What a PCM WAV's header promises: a cut-off upload is shorter than its data chunk says."""
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / w.getframerate() if w.getframerate() else None
    except (wave.Error, EOFError, OSError):
        return None  # not PCM (or no readable header): FFmpeg's figure stands


def open_audio(raw_path: Path) -> np.ndarray:
    """Memory-map decoded samples copy-on-write: shared pages, writable for torch."""
    return np.memmap(raw_path, dtype=np.float32, mode="c")


def release(audio: np.ndarray, end: int, start: int = 0) -> None:
    """Let go of the memory-mapped pages of samples [start, end) once a stage has read past them.

    Pages a stage touched stay in this process's RSS until the kernel needs them back, so
    a two-hour file (460 MB of samples) made a worker's RSS grow by the whole file. They
    are page cache: dropping them from this mapping (MADV_DONTNEED) costs nothing, and a
    later read finds them in the cache again. Nothing happens for an array that is not
    such a mapping.
    """
    mapping = getattr(audio, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    page, size = mmap.PAGESIZE, audio.itemsize
    low = -(-max(0, start) * size // page) * page  # whole pages only: start rounded up, end down
    high = min(end, len(audio)) * size // page * page
    if high > low:
        mapping.madvise(mmap.MADV_DONTNEED, low, high - low)
