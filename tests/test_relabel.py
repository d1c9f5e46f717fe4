"""Renaming speakers rewrites JSON, SRT, VTT and TXT from the JSON, keeping the original labels."""

from __future__ import annotations

import json

import pytest
import srt
import webvtt

from diarized.formats import write_outputs
from diarized.relabel import RenameError, current_names, rename

WORDS = [("Good", 0.0, 0.4), ("morning,", 0.45, 0.9), ("everyone.", 0.95, 1.6)]


def segment(speaker: str, start: float, text_words) -> dict:
    words = [{"word": w, "start": start + s, "end": start + e, "probability": 0.9, "space_before": True}
             for w, s, e in text_words]
    return {"speaker_id": speaker, "start_time": words[0]["start"], "end_time": words[-1]["end"],
            "text": " ".join(w["word"] for w in words), "confidence": 0.9, "words": words}


@pytest.fixture
def outputs(tmp_path):
    doc = {"file_path": "talk.wav", "total_duration": 10.0, "speakers": ["SPEAKER_00", "SPEAKER_01"],
           "segments": [segment("SPEAKER_00", 0.0, WORDS), segment("SPEAKER_01", 2.0, WORDS),
                        segment("SPEAKER_00", 4.0, WORDS)]}
    turns = [{"speaker": s["speaker_id"], "start": s["start_time"], "end": s["end_time"]} for s in doc["segments"]]
    write_outputs(tmp_path, doc, turns, ("json", "srt", "vtt", "txt", "rttm", "csv", "docx"), "talk")
    return tmp_path


def test_rename_rewrites_every_text_output_and_keeps_the_labels(outputs):
    rttm = (outputs / "diarization.rttm").read_text()
    assert rename(outputs, {"SPEAKER_00": "Ana Souza"}) == {"SPEAKER_00": "Ana Souza", "SPEAKER_01": "SPEAKER_01"}
    doc = json.loads((outputs / "final_transcription.json").read_text())
    assert doc["speakers"] == ["Ana Souza", "SPEAKER_01"]
    assert [s["speaker_id"] for s in doc["segments"]] == ["Ana Souza", "SPEAKER_01", "Ana Souza"]
    assert [s["speaker_label"] for s in doc["segments"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert doc["speaker_labels"] == {"Ana Souza": "SPEAKER_00", "SPEAKER_01": "SPEAKER_01"}
    cues = list(srt.parse((outputs / "transcription.srt").read_text()))
    assert cues[0].content.startswith("Ana Souza: Good morning") and cues[1].content.startswith("SPEAKER_01:")
    voices = [c.voice for c in webvtt.read(str(outputs / "transcription.vtt"))]
    assert voices == ["Ana Souza", "SPEAKER_01", "Ana Souza"]
    assert "] Ana Souza\n" in (outputs / "transcription.txt").read_text()
    assert "\n0.000,1.600,Ana Souza," in (outputs / "transcription.csv").read_text()
    assert not (outputs / "transcription.tsv").exists()  # only the formats the job has
    import docx
    assert "[00:00:00 - 00:00:01] Ana Souza" in [p.text for p in docx.Document(str(outputs / "transcription.docx")).paragraphs]
    assert (outputs / "diarization.rttm").read_text() == rttm  # the machine's view keeps its labels


def test_a_second_rename_works_from_names_or_labels_and_can_undo(outputs):
    rename(outputs, {"SPEAKER_00": "Ana", "SPEAKER_01": "Bruno"})
    rename(outputs, {"Ana": "Ana Souza"})
    assert current_names(outputs) == {"SPEAKER_00": "Ana Souza", "SPEAKER_01": "Bruno"}
    rename(outputs, {"SPEAKER_00": "SPEAKER_00", "Bruno": "SPEAKER_01"})
    doc = json.loads((outputs / "final_transcription.json").read_text())
    assert doc["speakers"] == ["SPEAKER_00", "SPEAKER_01"]


@pytest.mark.parametrize("names, words", [({"SPEAKER_09": "X"}, "no speaker 'SPEAKER_09'"),
                                          ({"SPEAKER_00": "  "}, "1 to 40 characters"),
                                          ({"SPEAKER_00": "x" * 41}, "1 to 40 characters"),
                                          ({"SPEAKER_00": "SPEAKER_01"}, "cannot share a name")])
def test_bad_renames_change_nothing(outputs, names, words):
    before = {p.name: p.read_bytes() for p in outputs.iterdir()}
    with pytest.raises(RenameError, match=words):
        rename(outputs, names)
    assert {p.name: p.read_bytes() for p in outputs.iterdir()} == before


def test_a_rename_waits_for_an_edit_saving_the_same_transcript(outputs):
    """Before: a rename and an editor's save both read, changed and rewrote final_transcription.json
    unlocked, so one could overwrite the other's change."""
    import threading

    from diarized.files import folder_lock

    done = threading.Event()
    worker = threading.Thread(target=lambda: (rename(outputs, {"SPEAKER_01": "Bruno"}), done.set()))
    with folder_lock(outputs):  # what editing.edit holds while it saves
        worker.start()
        worker.join(0.3)
        assert not done.is_set()  # it cannot get past the lock while it is held
    worker.join(10)
    assert done.is_set() and current_names(outputs)["SPEAKER_01"] == "Bruno"
