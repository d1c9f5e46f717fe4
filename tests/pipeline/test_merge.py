"""Word-to-speaker assignment and segment breaking, on a real run of the sample."""

from __future__ import annotations

import json

import pytest

from bench.scoring import DATA
from diarized.pipeline import merge


def _turns(sample_out):
    return json.loads((sample_out / "diarization_results.json").read_text())["turns"]


def _words(document):
    return [(w, seg["speaker_id"]) for seg in document["segments"] for w in seg["words"]]


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_each_word_goes_to_the_turn_it_overlaps_most_unless_its_fragment_moved_it(sample_run, sample_out):
    """Word by word the turn that overlaps most (in overlaps: a covering voice); the only words that
    differ are near a turn change, moved with their sentence fragment (merge.settle_fragments)."""
    turns = _turns(sample_out)
    changes = [t["start"] for t in turns] + [t["end"] for t in turns]
    checked, moved = 0, []
    for word, speaker in _words(sample_run["document"]):
        overlaps = {}
        for t in turns:
            ov = min(t["end"], word["end"]) - max(t["start"], word["start"])
            overlaps[t["speaker"]] = max(overlaps.get(t["speaker"], 0.0), ov)
        best = max(overlaps.values())
        covering = {s for s, ov in overlaps.items() if ov >= 0.5 * max(word["end"] - word["start"], 1e-3)}
        if len(covering) > 1:  # overlapped speech: one of the voices covering it (the followed one)
            assert speaker in covering, word
        elif best > 0:
            checked += 1
            if overlaps[speaker] != pytest.approx(best):
                moved.append(word)
                assert min(abs(word["start"] - c) for c in changes) < merge.FRAGMENT_SECONDS, word
    assert checked > 30 and len(moved) <= 0.1 * checked, moved


def test_words_outside_every_turn_go_to_the_nearest():
    words = [merge.Word(" hi", 4.5, 4.7, 0.9), merge.Word(" there", 9.0, 9.5, 0.8)]
    turns = [{"speaker": "A", "start": 0.0, "end": 4.0}, {"speaker": "B", "start": 6.0, "end": 8.7}]
    merge.assign_speakers(words, turns)
    assert [w.speaker for w in words] == ["A", "B"]


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_words_match_the_reference_speakers(sample_run):
    """Against sample.stm: most words are said by the speaker we attribute them to."""
    stm = [line.split(maxsplit=5) for line in (DATA / "pyannote-sample/sample.stm").read_text().splitlines()]
    utterances = [(parts[2], float(parts[3]), float(parts[4])) for parts in stm]
    pairs = {}
    for word, speaker in _words(sample_run["document"]):
        mid = (word["start"] + word["end"]) / 2
        for ref, start, end in utterances:
            if start <= mid <= end:
                pairs.setdefault((speaker, ref), 0)
                pairs[(speaker, ref)] += 1
    # best one-to-one mapping of our labels to Diane/Sheila
    total = sum(pairs.values())
    mapped = max(pairs.get(("SPEAKER_00", a), 0) + pairs.get(("SPEAKER_01", b), 0)
                 for a, b in (("Diane", "Sheila"), ("Sheila", "Diane")))
    assert total > 40
    assert mapped / total >= 0.9


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_segments_break_where_the_rules_say(sample_run):
    segments = sample_run["document"]["segments"]
    assert len(segments) > 5
    for seg in segments:
        words = seg["words"]
        assert seg["end_time"] - seg["start_time"] <= merge.MAX_SEGMENT
        for a, b in zip(words, words[1:]):
            assert b["start"] - a["end"] <= merge.MAX_PAUSE
            assert not a["word"].endswith(merge.SENTENCE_END)
        assert seg["confidence"] == pytest.approx(
            sum(w["probability"] for w in words) / len(words), abs=1e-4)
    for prev, seg in zip(segments, segments[1:]):
        last, first = prev["words"][-1], seg["words"][0]
        assert (prev["speaker_id"] != seg["speaker_id"]
                or first["start"] - last["end"] > merge.MAX_PAUSE
                or last["word"].endswith(merge.SENTENCE_END)
                or seg["end_time"] - prev["start_time"] > merge.MAX_SEGMENT)


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_speakers_are_numbered_in_order_of_first_appearance(sample_run):
    seen = []
    for seg in sample_run["document"]["segments"]:
        if seg["speaker_id"] not in seen:
            seen.append(seg["speaker_id"])
    assert seen == [f"SPEAKER_{i:02d}" for i in range(len(seen))]
    assert sample_run["document"]["speakers"][: len(seen)] == seen


def test_pause_longer_than_a_second_breaks_a_segment():
    words = [merge.Word(" one", 0.0, 0.4, 0.9, "S"), merge.Word(" two", 0.5, 0.9, 0.9, "S"),
             merge.Word(" three", 2.1, 2.5, 0.7, "S")]
    segments = merge.build_segments(words)
    assert [s["text"] for s in segments] == ["one two", "three"]


def test_words_in_overlapped_speech_go_to_the_voice_the_asr_followed():
    """A long turn of A, split by diarization around B's interjection: the overlapped words
    are A's (the voice before and after), not B's because B's turn is listed first."""
    turns = [{"speaker": "A", "start": 0.0, "end": 4.2}, {"speaker": "B", "start": 4.0, "end": 5.0},
             {"speaker": "A", "start": 4.1, "end": 10.0}]
    words = [merge.Word(" so", 3.5, 3.8, 0.9), merge.Word(" the", 4.3, 4.5, 0.9),
             merge.Word(" budget", 4.6, 4.9, 0.9), merge.Word(" grew", 6.0, 6.3, 0.9)]
    merge.assign_speakers(words, turns)
    assert [w.speaker for w in words] == ["A", "A", "A", "A"]
    alone = [merge.Word(" yeah", 4.3, 4.6, 0.9)]  # nothing before or after to follow: most overlap
    merge.assign_speakers(alone, turns)
    assert alone[0].speaker == "B"


def _said(text: str, start: float, step: float = 0.3) -> list[merge.Word]:
    return [merge.Word(" " + w, start + i * step, start + i * step + 0.25, 0.9) for i, w in enumerate(text.split())]


def test_a_late_turn_change_does_not_leave_the_reply_s_first_words_behind():
    """pyannote-sample: "This is Diane in New Jersey. And I'm" / "Sheila and Texas…" (issue 23, item 4)."""
    words = _said("This is Diane in New Jersey.", 0.0) + _said("And I'm Sheila and Texas originally from Chicago", 2.0)
    turns = [{"speaker": "A", "start": 0.0, "end": 2.55}, {"speaker": "B", "start": 2.55, "end": 6.0}]
    merge.assign_speakers(words, turns)
    assert [w.speaker for w in words[6:8]] == ["A", "A"]  # word by word, "And I'm" went to A
    merge.settle_fragments(words, turns)
    assert [w.speaker for w in words] == ["A"] * 6 + ["B"] * 8


def test_a_long_fragment_keeps_a_real_change_and_loses_a_stray_word():
    words = _said("so we decided to go with the blue one then yes I agree that works for me", 0.0)
    turns = [{"speaker": "A", "start": 0.0, "end": 3.2}, {"speaker": "B", "start": 3.2, "end": 6.0}]
    merge.assign_speakers(words, turns)
    merge.settle_fragments(words, turns)
    assert [w.speaker for w in words] == ["A"] * 11 + ["B"] * 6  # 5 s without punctuation: both keep theirs
    stray = [{"speaker": "B", "start": 0.0, "end": 0.3}, {"speaker": "A", "start": 0.3, "end": 3.2},
             {"speaker": "B", "start": 3.2, "end": 6.0}]
    merge.assign_speakers(words, stray)
    assert words[0].speaker == "B"
    merge.settle_fragments(words, stray)
    assert words[0].speaker == "A"  # one stray word at the start joins its fragment's neighbour


def test_fragments_end_at_punctuation_and_pauses():
    words = _said("Yes, I know.", 0.0) + _said("Then what", 3.0)
    assert [list(f) for f in merge.fragments(words)] == [[0], [1, 2], [3, 4]]
