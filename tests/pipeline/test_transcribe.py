"""Words right, with Whisper base, against the bare faster-whisper on the same audio.

Thresholds come from bench/accuracy.py (README, Accuracy): en-jfk is 0.0 % for
both; ptbr-falabrasil (8 clips, corpus WER) measured 22.1 % ours / 20.8 % bare,
most of it numbers written as digits ("266" for "duzentos e sessenta e seis").
"""

from __future__ import annotations

import pytest

from bench.accuracy import bare_transcript, ours_transcript, ptbr_cases
from bench.scoring import wer, wer_corpus
from diarized.pipeline.transcribe import AsrOptions, Transcriber

pytestmark = pytest.mark.slow

PTBR_MAX_WER = 0.24  # bare measured 20.8 %; two words of slack on ~75


@pytest.fixture(scope="module")
def auto(base_model):
    return Transcriber(AsrOptions(model_path=base_model, language="auto", cpu_threads=2))


@pytest.fixture(scope="module")
def portuguese(base_model):
    return Transcriber(AsrOptions(model_path=base_model, language="pt", cpu_threads=2))


def test_jfk_words_and_timestamps(auto, data):
    text, language, segments = ours_transcript(auto, data / "en-jfk/jfk.flac")
    reference = (data / "en-jfk/jfk.txt").read_text()
    assert language == "en"
    assert wer(reference, text) <= 0.10
    words = [w for s in segments for w in s["words"]]
    americans = next(w for w in words if "Americans" in w["word"])
    assert 0.5 <= americans["end"] - americans["start"] <= 2.5  # whisper's own test: ~1.8 s
    assert all(a["start"] <= b["start"] for a, b in zip(words, words[1:]))
    assert all(0 <= w["probability"] <= 1 for w in words)


def test_ptbr_wer_with_language_forced(portuguese, base_model):
    pairs = [(ref, ours_transcript(portuguese, wav)[0]) for wav, ref in ptbr_cases()]
    assert len(pairs) == 8
    assert wer_corpus(pairs) <= PTBR_MAX_WER


def test_ptbr_language_is_detected_as_portuguese(auto):
    detected = {ours_transcript(auto, wav)[1] for wav, _ in ptbr_cases()[:4]}
    assert detected == {"pt"}


def test_ours_no_worse_than_bare_on_jfk(auto, base_model, data):
    reference = (data / "en-jfk/jfk.txt").read_text()
    ours = wer(reference, ours_transcript(auto, data / "en-jfk/jfk.flac")[0])
    bare = wer(reference, bare_transcript(base_model, data / "en-jfk/jfk.flac", None))
    assert ours <= bare


def test_forced_language_and_prompt_are_honoured(base_model, data):
    t = Transcriber(AsrOptions(model_path=base_model, language="en", initial_prompt="Kennedy.",
                               hotwords="Americans", batch_size=1, cpu_threads=2))
    assert t.detect_language(None)[0] == "en"
    text, _, segments = ours_transcript(t, data / "en-jfk/jfk.flac")
    assert "fellow americans" in text.lower() and segments[0]["words"]
