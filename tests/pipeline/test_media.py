"""Decoding every container the service accepts, and every kind of bad input."""

from __future__ import annotations


import numpy as np
import pytest

from bench.synth import CONTAINERS, read_audio, write_container
from diarized.pipeline import media


@pytest.fixture(scope="module")
def jfk(data) -> np.ndarray:
    return read_audio(data / "en-jfk/jfk.flac")


def test_flac_44k_stereo_24bit_is_downmixed_and_resampled(data, tmp_path):
    decoded = media.decode(data / "en-jfk/jfk.flac", tmp_path / "a.f32")
    audio = media.open_audio(decoded.raw_path)
    assert audio.dtype == np.float32
    assert decoded.duration == pytest.approx(11.0, abs=0.01)
    assert 0.05 < float(np.abs(audio).max()) < 1.5  # float scale, not int16 (resampling may ring past 1)
    assert decoded.warnings == []


def test_probe_reads_headers(data):
    info = media.probe(data / "en-jfk/jfk.flac")
    assert (info.container, info.codec, info.sample_rate, info.channels) == ("flac", "flac", 44100, 2)
    assert info.duration == pytest.approx(11.0, abs=0.01)
    assert not info.has_video


@pytest.mark.parametrize("suffix", sorted(CONTAINERS))
def test_every_container_decodes_to_the_same_audio(suffix, jfk, tmp_path):
    path = write_container(tmp_path / f"jfk{suffix}", jfk)
    info = media.probe(path)
    decoded = media.decode(path, tmp_path / "a.f32")
    audio = media.open_audio(decoded.raw_path)
    assert info.has_video == (CONTAINERS[suffix][1] is not None)
    assert decoded.duration == pytest.approx(11.0, abs=0.15)
    assert decoded.warnings == []
    # lossy codecs change samples, not the signal: the same loudness envelope,
    # allowing for the encoder's priming delay (AAC/MP3 add up to ~2000 samples)
    assert _envelope_match(jfk, np.asarray(audio)) > 0.95


def _envelope_match(a: np.ndarray, b: np.ndarray, frame: int = 160, max_lag: int = 20) -> float:
    n = min(len(a), len(b)) // frame
    env_a = np.sqrt((a[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    env_b = np.sqrt((b[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    return max(np.corrcoef(env_a[: n - lag], env_b[lag:])[0, 1] for lag in range(max_lag))


def test_video_without_audio_track_is_a_clear_error(tmp_path):
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    with pytest.raises(media.MediaError, match="no audio track") as err:
        media.decode(path, tmp_path / "a.f32")
    assert "silent_film.mp4" in str(err.value)


def test_zero_byte_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(media.MediaError, match=r"empty.mp4: the file is empty \(0 bytes\)"):
        media.probe(path)


def test_text_file_named_mp4_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("minutes of the meeting, not a recording\n" * 50)
    with pytest.raises(media.MediaError, match="notes.mp4: not a readable audio or video file"):
        media.decode(path, tmp_path / "a.f32")
    assert not (tmp_path / "a.f32").exists()


def test_truncated_mp4_without_index_is_a_clear_error(jfk, tmp_path):
    """A plain mp4 keeps its index (moov) at the end: cut it off and nothing is readable."""
    whole = write_container(tmp_path / "whole.mp4", jfk).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(media.MediaError, match="cut.mp4: not a readable audio or video file"):
        media.decode(path, tmp_path / "a.f32")


def test_truncated_stream_keeps_the_readable_part_and_warns(jfk, tmp_path):
    """A stream format (mp3) cut half-way: decode what is there, say what is missing."""
    long = np.concatenate([jfk, jfk, jfk])
    whole = write_container(tmp_path / "whole.mp3", long).read_bytes()
    path = tmp_path / "cut.mp3"
    path.write_bytes(whole[: len(whole) // 2])
    decoded = media.decode(path, tmp_path / "a.f32")
    assert 10 < decoded.duration < 22
    assert decoded.warnings and "truncated" in decoded.warnings[-1]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(media.MediaError, match="file not found"):
        media.probe(tmp_path / "nope.wav")


def test_empty_wav_from_pyannote_debug_set_decodes(data, tmp_path):
    decoded = media.decode(data / "pyannote-ami-debug/empty.wav", tmp_path / "a.f32")
    assert decoded.duration == pytest.approx(1.0, abs=0.01)


def test_decode_is_atomic_no_partial_raw_file_on_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\0" * 100)
    with pytest.raises(media.MediaError):
        media.decode(bad, tmp_path / "a.f32")
    assert list(tmp_path.glob("a.f32*")) == []


def test_playlists_and_manifests_never_open_other_files(jfk, tmp_path):
    """An m3u8 naming a .ts elsewhere was transcribed; now neither the marker nor FFmpeg lets it."""
    import av

    target = tmp_path / "elsewhere.ts"  # a real MPEG-TS segment outside the job's folder
    with av.open(str(tmp_path / "jfk.flac.ts"), "w", format="mpegts") as out, \
            av.open(str(write_container(tmp_path / "jfk.flac", jfk))) as inp:
        stream = out.add_stream("mp2", rate=16000)
        for frame in inp.decode(audio=0):
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    (tmp_path / "jfk.flac.ts").rename(target)
    assert media.probe(target).duration > 10  # on its own, the segment is valid media
    playlist = tmp_path / "x.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:12\n#EXTINF:11.0,\n{target}\n#EXT-X-ENDLIST\n")
    concat = tmp_path / "y.txt"
    concat.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    for path in (playlist, concat):
        with pytest.raises(media.MediaError, match="playlist or manifest"):
            media.probe(path)
    # behind the marker check, FFmpeg itself refuses the hls demuxer with our options,
    # while with its defaults it follows the playlist into the other file
    with av.open(str(playlist)) as followed:
        assert followed.format.name == "hls" and followed.streams.audio
    with pytest.raises(av.error.FFmpegError):
        av.open(str(playlist), options=media.OPEN_OPTIONS)


def _mapped_rss_kib(path) -> int:
    """This process's resident KiB of the mapping of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_released_audio_pages_leave_the_resident_set_and_read_back_the_same(data, tmp_path):
    """A two-hour file made a worker's RSS grow by all of its 460 MB of samples; stages now let go."""
    raw = media.decode(data / "ami-mixture-4spk/mixture.wav", tmp_path / "a.f32").raw_path
    audio = media.open_audio(raw)
    first = float(np.asarray(audio, dtype=np.float64).sum())  # every page touched
    full = _mapped_rss_kib(raw)
    assert full >= audio.nbytes // 1024 - 8
    media.release(audio, len(audio) // 2)
    half = _mapped_rss_kib(raw)
    assert abs(half - full / 2) < 64, (full, half)
    media.release(audio, len(audio))
    assert _mapped_rss_kib(raw) < 8
    assert float(np.asarray(audio, dtype=np.float64).sum()) == first  # read back from the page cache
    media.release(np.zeros(10, np.float32), 10)  # not a mapping: nothing to do
