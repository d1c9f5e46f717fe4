"""Correcting a transcript: words, speakers, splits and merges applied to the JSON, every format rewritten."""

from __future__ import annotations

import copy
import json

import pytest
import srt

from diarized.editing import EditError, Stale, edit, spans
from diarized.formats import write_outputs
from tests.test_relabel import WORDS, segment


@pytest.fixture
def outputs(tmp_path):
    doc = {"file_path": "talk.wav", "total_duration": 10.0, "speakers": ["SPEAKER_00", "SPEAKER_01"],
           "segments": [segment("SPEAKER_00", 0.0, WORDS), segment("SPEAKER_00", 2.0, WORDS),
                        segment("SPEAKER_01", 4.0, WORDS)]}
    write_outputs(tmp_path, doc, [], ("json", "srt", "vtt", "txt", "csv"), "talk")
    return tmp_path


def load(folder) -> dict:
    return json.loads((folder / "final_transcription.json").read_text())


def test_new_words_keep_the_timings_of_the_words_that_did_not_change(outputs):
    machine = load(outputs)["segments"]
    doc, notes = edit(outputs, [{"op": "text", "paragraph": 0,
                                 "text": "Good morning, everyone. Good evening, everyone."}], 0, "ana")
    assert notes == ["paragraph 1: words"] and doc["version"] == 1 and doc["edited_at"]
    words = doc["segments"][0]["words"]
    assert [w["word"] for w in words] == ["Good", "morning,", "everyone.", "Good", "evening,", "everyone."]
    assert (words[0]["start"], words[0]["end"]) == (0.0, 0.4) and "edited" not in words[0]  # unchanged
    assert words[4]["edited"] and words[3]["end"] <= words[4]["start"] <= words[4]["end"] <= words[5]["start"]
    assert doc["machine_segments"] == machine  # the machine's words stay beside the edited ones
    cues = list(srt.parse((outputs / "transcription.srt").read_text()))
    assert "Good evening" in " ".join(" ".join(c.content.split()) for c in cues)
    assert "evening," in (outputs / "transcription.txt").read_text()
    assert "Good evening, everyone." in (outputs / "transcription.csv").read_text()
    assert load(outputs) == doc


def test_move_split_merge_and_undo_each_step(outputs):
    start = load(outputs)["segments"]
    assert [s.speaker for s in spans(start)] == ["SPEAKER_00", "SPEAKER_01"]
    doc, _ = edit(outputs, [{"op": "speaker", "paragraph": 1, "speaker": "SPEAKER_00"}], 0, "ana")
    assert [s.speaker for s in spans(doc["segments"])] == ["SPEAKER_00", "SPEAKER_00"]  # a break keeps it apart
    assert [bool(s.get("break")) for s in doc["segments"]] == [False, False, True]
    assert "SPEAKER_01" not in (outputs / "transcription.srt").read_text()
    doc, _ = edit(outputs, [{"op": "merge", "paragraph": 0}], 1, "ana")
    assert len(spans(doc["segments"])) == 1
    doc, notes = edit(outputs, [{"op": "split", "paragraph": 0, "word": 3}], 2, "bruno")
    assert notes == ["paragraph 1: split before 'Good'"] and len(spans(doc["segments"])) == 2
    assert (outputs / "transcription.txt").read_text().count("SPEAKER_00") == 2  # two paragraphs in the TXT
    for version in (3, 4, 5):
        doc, notes = edit(outputs, [{"op": "undo"}], version, "ana")
    assert doc["segments"] == start and notes == ["undid paragraph 2: SPEAKER_01 → SPEAKER_00"]
    with pytest.raises(EditError, match="no edit to undo"):
        edit(outputs, [{"op": "undo"}], None, "ana")


def test_stale_and_impossible_edits_are_refused_and_change_nothing(outputs):
    before = (outputs / "final_transcription.json").read_bytes()
    for edits, version, words in (([{"op": "text", "paragraph": 0, "text": "x"}], 7, "changed since"),
                                  ([{"op": "text", "paragraph": 9, "text": "x"}], 0, "no paragraph 9"),
                                  ([{"op": "text", "paragraph": 0, "text": "  "}], 0, "1 to 20000"),
                                  ([{"op": "speaker", "paragraph": 0, "speaker": "Eve"}], 0, "no speaker 'Eve'"),
                                  ([{"op": "split", "paragraph": 0, "word": 0}], 0, "split at a word inside"),
                                  ([{"op": "merge", "paragraph": 1}], 0, "nothing after it"),
                                  ([{"op": "drop"}], 0, "unknown edit")):
        with pytest.raises(Stale if version == 7 else EditError, match=words):
            edit(outputs, copy.deepcopy(edits), version, "ana")
    assert (outputs / "final_transcription.json").read_bytes() == before
