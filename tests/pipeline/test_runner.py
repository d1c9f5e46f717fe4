"""Checkpoints: a run stopped after a unit resumes without redoing it, with identical outputs."""

from __future__ import annotations

import json

import pytest

from diarized.pipeline import precision
from diarized.pipeline.runner import Hooks, Interrupted, Runner, job_fraction

STABLE = ("file_path", "total_duration", "speakers", "segments", "language")


def _stable(out):
    doc = json.loads((out / "final_transcription.json").read_text())
    return {k: doc[k] for k in STABLE}


@pytest.mark.slow
def test_interrupted_run_resumes_from_checkpoints(make_settings, data, tmp_path):
    settings = make_settings(unit_seconds=10.0, language="en")
    source = data / "pyannote-sample/sample.wav"

    stop_after_first_unit = Hooks(should_stop=lambda: True)
    with pytest.raises(Interrupted):
        Runner(settings, stop_after_first_unit).run(source, tmp_path / "work", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing published by a stopped run
    assert (tmp_path / "work/audio.f32").exists() and not (tmp_path / "work/units").exists()

    events: list[tuple[str, str]] = []
    stops = iter([False, True])  # decode is resumed (no check): unit 0 goes on, unit 1 stops
    hooks = Hooks(event=lambda k, d: events.append((k, d)), should_stop=lambda: next(stops, False))
    with pytest.raises(Interrupted):
        Runner(settings, hooks).run(source, tmp_path / "work", tmp_path / "out")
    assert len(list((tmp_path / "work/units").iterdir())) == 2

    events.clear()
    result = Runner(settings, Hooks(event=lambda k, d: events.append((k, d)))).run(
        source, tmp_path / "work", tmp_path / "out")
    kinds = [k for k, _ in events]
    assert kinds.count("unit_skipped") == 2 and kinds.count("unit_done") == 1
    assert ("resume", "decoded audio found; not decoding again") in events
    diarized = [d for k, d in events if k == "diarized"]  # the log says which number format ran
    native = precision.native_bfloat16()
    assert len(diarized) == 1 and diarized[0].endswith(f"({'bfloat16' if native else 'float32'} networks)")
    assert result.units_total == 3 and result.units_resumed == 2

    Runner(settings).run(source, tmp_path / "work2", tmp_path / "out2")  # uninterrupted
    assert _stable(tmp_path / "out") == _stable(tmp_path / "out2")


def test_job_fraction_is_monotonic():
    points = [job_fraction(stage, f) for stage in ("decode", "transcribe", "diarize", "write")
              for f in (0.0, 0.5, 1.0)]
    assert points == sorted(points) and points[0] == 0.0 and points[-1] == pytest.approx(1.0)


@pytest.mark.slow
def test_work_dir_of_another_file_is_not_reused(make_settings, data, tmp_path):
    settings = make_settings(model="tiny.en")
    Runner(settings).run(data / "pyannote-sample/sample.wav", tmp_path / "work", tmp_path / "out1")
    events: list[tuple[str, str]] = []
    result = Runner(settings, Hooks(event=lambda k, d: events.append((k, d)))).run(
        data / "en-jfk/jfk.flac", tmp_path / "work", tmp_path / "out2")
    assert result.document["total_duration"] == pytest.approx(11.0, abs=0.05)
    assert events[0][0] == "reset"


def test_a_count_at_the_ceiling_is_reported_never_silent(make_settings):
    turns = [{"speaker": s, "start": 0, "end": 1} for s in ("A", "B", "C")]
    capped = Runner(make_settings(max_speakers=3)).cap_warnings(turns)
    assert len(capped) == 1 and "3 speakers found, the max_speakers ceiling" in capped[0]
    assert Runner(make_settings(max_speakers=0)).cap_warnings(turns) == []
    assert Runner(make_settings(max_speakers=8)).cap_warnings(turns) == []


SINGLE_SPEAKER = ["en-jfk/jfk.flac", *(f"ptbr-falabrasil/{n}" for n in (
    "LapsBM_0240.wav", "LapsBM_0385.wav", "LapsBM_0415.wav", "LapsBM_0475.wav", "LapsBM_0618.wav",
    "ufpalign_M-001.wav", "ufpalign_coxinha.wav", "ufpalign_falabrasil.wav"))]


@pytest.mark.slow
def test_one_voice_stays_one_speaker_and_the_whole_run_agrees_with_the_stage(make_settings, data, tmp_path,
                                                                            diarization_pipeline):
    """Every visible single-speaker clip, and 38 s of one far-field AMI voice (bench/devset.py),
    alone and with music and noise under it, is one speaker through `diarizectl transcribe`'s path (Runner) and through the diarization
    stage alone; the two-voice sample stays two."""
    from bench import devset
    from diarized.pipeline import diarize, media

    pipeline, options = diarization_pipeline
    settings = make_settings(model="tiny.en", cpu_threads=2)
    files = [data / name for name in SINGLE_SPEAKER] + [devset.one_voice(tmp_path / "devset").wav,
                                                        devset.noisy_one_voice(tmp_path / "devset").wav]
    for file in [*files, data / "pyannote-sample/sample.wav"]:
        out = tmp_path / file.stem
        Runner(settings).run(file, out / "work", out / "out")
        whole_run = json.loads((out / "out/final_transcription.json").read_text())["speakers"]
        audio = media.open_audio(media.decode(file, out / "stage.f32").raw_path)
        stage = {t["speaker"] for t in diarize.diarize(pipeline, audio, options)}
        expected = 2 if file.name == "sample.wav" else 1
        assert (len(whole_run), len(stage)) == (expected, expected), file.name


@pytest.mark.slow
def test_an_english_only_model_on_other_speech_warns_in_outputs(make_settings, data, tmp_path):
    """tiny.en wrote fluent English for Portuguese speech with no warning (issue 25, item 6)."""
    settings = make_settings(model="tiny.en", cpu_threads=2)
    warned = Runner(settings).run(data / "ptbr-falabrasil/ufpalign_falabrasil.wav", tmp_path / "w1", tmp_path / "o1")
    document = json.loads((tmp_path / "o1/final_transcription.json").read_text())
    assert any("English-only model tiny.en" in w and "sounds like pt" in w for w in document["warnings"]), document
    assert warned.warnings == document["warnings"]
    english = Runner(settings).run(data / "en-jfk/jfk.flac", tmp_path / "w2", tmp_path / "o2")
    assert not [w for w in english.warnings if "English-only" in w]


def test_an_english_only_model_refuses_another_language(make_settings):
    from diarized.config import ConfigError

    with pytest.raises(ConfigError, match="understands English only"):
        make_settings(model="tiny.en", language="pt")
    assert make_settings(model="tiny.en", language="en").language == "en"


def test_progress_never_goes_backwards(make_settings):
    """A step that reports from 0 again (diarize 0.97 -> 0.64 was seen) must not move the job back."""
    seen = []
    runner = Runner(make_settings(), Hooks(progress=lambda stage, f, job: seen.append((stage, f, job))))
    for stage, fraction in [("transcribe", 0.5), ("transcribe", 1.0), ("diarize", 0.9), ("diarize", 1.0),
                            ("diarize", 0.35), ("diarize", 0.4), ("write", 0.0), ("write", 1.0)]:
        runner._report(stage, fraction)
    jobs = [job for _, _, job in seen]
    assert jobs == sorted(jobs) and jobs[-1] == 1.0
    assert [f for stage, f, _ in seen if stage == "diarize"] == [0.9, 1.0, 1.0, 1.0]
