"""SRT/VTT/TXT/RTTM on a real run, parsed back with well-kept libraries."""

from __future__ import annotations

import json
import re

import pytest
import srt
import webvtt

from diarized import formats


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_srt_cues_follow_the_rules(sample_out):
    cues = list(srt.parse((sample_out / "transcription.srt").read_text()))
    assert len(cues) > 5
    for prev, cue in zip(cues, cues[1:]):
        assert cue.start >= prev.end  # monotonic, never overlapping
    for cue in cues:
        seconds = (cue.end - cue.start).total_seconds()
        assert 0 < seconds <= formats.MAX_CUE_SECONDS
        lines = cue.content.split("\n")
        assert 0 < len(lines) <= formats.MAX_LINES
        assert all(len(line) <= formats.MAX_LINE for line in lines)
        assert re.match(r"SPEAKER_\d\d: ", lines[0])


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_vtt_cues_carry_voice_tags_and_match_srt(sample_out):
    vtt = webvtt.read(str(sample_out / "transcription.vtt"))
    cues = list(srt.parse((sample_out / "transcription.srt").read_text()))
    assert len(vtt.captions) == len(cues)
    for caption, cue in zip(vtt.captions, cues):
        speaker, text = cue.content.split(": ", 1)
        assert caption.voice == speaker
        assert _norm(caption.text) == _norm(text)
        assert caption.start == srt.timedelta_to_srt_timestamp(cue.start).replace(",", ".")
        assert caption.end == srt.timedelta_to_srt_timestamp(cue.end).replace(",", ".")
        assert all(len(line) <= formats.MAX_LINE for line in caption.text.split("\n"))  # shown text, tags excluded


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_outputs_agree_with_each_other(sample_run, sample_out):
    doc = sample_run["document"]
    srt_text = " ".join(c.content.split(": ", 1)[1].replace("\n", " ") for c in srt.parse(
        (sample_out / "transcription.srt").read_text()))
    json_text = " ".join(s["text"] for s in doc["segments"])
    assert srt_text == json_text  # exactly: line breaks aside, the cues say what the JSON says
    rttm = (sample_out / "diarization.rttm").read_text().splitlines()
    rttm_speakers = {line.split()[7] for line in rttm}
    assert {s["speaker_id"] for s in doc["segments"]} <= rttm_speakers <= set(doc["speakers"])
    assert max(float(x.split()[3]) + float(x.split()[4]) for x in rttm) <= doc["total_duration"] + 0.01
    txt = (sample_out / "transcription.txt").read_text()
    assert _norm(re.sub(r"\[[\d:. -]+\] SPEAKER_\d\d", " ", txt)) == json_text
    assert doc["total_duration"] == pytest.approx(30.0, abs=0.05)


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_json_keeps_the_seed_schema(sample_run):
    doc = sample_run["document"]
    assert {"file_path", "total_duration", "speakers", "segments"} <= set(doc)
    assert doc["file_path"] == "sample.wav"
    for seg in doc["segments"]:
        assert {"speaker_id", "start_time", "end_time", "text", "confidence"} <= set(seg)
        assert seg["speaker_id"] in doc["speakers"]
        assert 0 <= seg["confidence"] <= 1 and seg["start_time"] <= seg["end_time"]


def test_overlapping_and_long_words_are_clipped_into_valid_cues():
    segments = [
        {"speaker_id": "SPEAKER_00", "start_time": 0.0, "end_time": 12.0, "text": "x",
         "words": [{"word": "a" * 120, "start": 0.0, "end": 12.0}]},
        {"speaker_id": "SPEAKER_01", "start_time": 5.0, "end_time": 6.0, "text": "hi",
         "words": [{"word": "hi", "start": 5.0, "end": 6.0}]},
    ]
    cues = list(srt.parse(formats.render_srt(formats.build_cues(segments))))
    for prev, cue in zip(cues, cues[1:]):
        assert cue.start >= prev.end
    for cue in cues:
        assert (cue.end - cue.start).total_seconds() <= formats.MAX_CUE_SECONDS
        assert all(len(line) <= formats.MAX_LINE for line in cue.content.split("\n"))
        assert len(cue.content.split("\n")) <= formats.MAX_LINES


@pytest.mark.slow  # runs the models once (conftest's sample_run)
def test_every_output_file_is_written(sample_out):
    from diarized.config import FORMATS

    names = {p.name for p in sample_out.iterdir()}
    assert {formats.FILENAMES[f] for f in FORMATS} | {"whisper_results.json", "diarization_results.json",
                                                      "chunks"} <= names
    assert not {"transcription.csv", "transcription.tsv", "transcription.docx"} & names  # only when asked for
    meta = json.loads((sample_out / "chunks/chunks_metadata.json").read_text())
    assert meta["units"][0]["start"] == 0 and meta["units"][-1]["end"] == pytest.approx(30.0, abs=0.05)


def test_cue_text_keeps_the_asr_spacing():
    """Joined with spaces, "www.maxis.org" became "www .maxis .org" in the subtitles."""
    words = [{"word": w, "start": i * 0.3, "end": i * 0.3 + 0.2, "space_before": space}
             for i, (w, space) in enumerate([("visit", True), ("www", True), (".maxis", False), (".org", False),
                                             ("today.", True)])]
    segment = {"speaker_id": "SPEAKER_00", "start_time": 0.0, "end_time": 1.4,
               "text": "visit www.maxis.org today.", "words": words}
    cues = formats.build_cues([segment])
    assert [c.text for c in cues] == ["visit www.maxis.org today."]
    assert "SPEAKER_00: visit www.maxis.org today." in formats.render_srt(cues)
    assert "visit www.maxis.org today." in formats.render_vtt(cues)


def test_a_speaker_name_cannot_break_out_of_its_vtt_voice_tag(tmp_path):
    """A name given in the dashboard ("Ana <Chair> & co") was written raw into <v ...>."""
    name = "Ana <Chair> & co </v><c.x>"
    cues = formats.build_cues([{"speaker_id": name, "start_time": 0.0, "end_time": 2.0, "text": "Good morning."}])
    text = formats.render_vtt(cues)
    assert "<v Ana &lt;Chair&gt; &amp; co &lt;/v&gt;&lt;c.x&gt;>Good morning.</v>" in text
    (tmp_path / "t.vtt").write_text(text)
    caption = webvtt.read(str(tmp_path / "t.vtt")).captions[0]
    assert caption.text == "Good morning." and caption.voice == "Ana &lt;Chair&gt; &amp; co &lt;/v&gt;&lt;c.x&gt;"


def _cue_segment(speaker: str, words: list[tuple[str, float, float]]) -> dict:
    return {"speaker_id": speaker, "start_time": words[0][1], "end_time": words[-1][2],
            "text": " ".join(w for w, _, _ in words),
            "words": [{"word": w, "start": s, "end": e} for w, s, e in words]}


def test_a_50_ms_cue_is_lengthened_into_the_silence_after_it():
    """"Hello." from 8.760 to 8.810 was a 50-ms cue (issue 25, item 5)."""
    cues = formats.build_cues([_cue_segment("SPEAKER_00", [("Hello.", 8.76, 8.81)]),
                               _cue_segment("SPEAKER_01", [("Hi", 12.0, 12.5), ("there.", 12.5, 13.0)])])
    assert [(c.start, round(c.end, 3)) for c in cues] == [(8.76, round(8.76 + 5 / 6, 3)), (12.0, 13.0)]


def test_a_short_cue_joins_its_same_speaker_neighbour_or_borrows_the_silence_before_it():
    joined = formats.build_cues([_cue_segment("SPEAKER_00", [("Right.", 1.0, 1.2)]),
                                 _cue_segment("SPEAKER_00", [("So", 1.3, 1.5), ("then.", 1.5, 1.9)])])
    assert [(c.text, c.start, c.end) for c in joined] == [("Right. So then.", 1.0, 1.9)]
    boxed = formats.build_cues([_cue_segment("SPEAKER_00", [("Well", 0.0, 2.0)]),
                                _cue_segment("SPEAKER_01", [("No.", 3.0, 3.1)]),
                                _cue_segment("SPEAKER_00", [("OK", 3.1, 4.5)])])
    no = boxed[1]
    assert no.text == "No." and no.end == 3.1 and no.end - no.start == pytest.approx(5 / 6)
    assert no.start >= boxed[0].end


def test_cues_without_any_room_stay_valid():
    cues = formats.build_cues([_cue_segment("SPEAKER_00", [("a", 1.0, 1.05)]),
                               _cue_segment("SPEAKER_01", [("b", 1.05, 1.1)]),
                               _cue_segment("SPEAKER_00", [("c", 1.1, 1.15)])])
    for prev, cue in zip(cues, cues[1:]):
        assert cue.start >= prev.end
    assert all(c.end > c.start for c in cues)


def test_csv_tsv_and_docx_carry_every_segment_and_refuse_formulas(tmp_path):
    import csv
    import io

    import docx

    segments = [{"speaker_id": "=HYPERLINK(\"http://x\")", "start_time": 0.0, "end_time": 1.5,
                 "text": "Olá, tudo bem?"},
                {"speaker_id": "=HYPERLINK(\"http://x\")", "start_time": 1.5, "end_time": 2.0, "text": "-5 graus"},
                {"speaker_id": "Bob", "start_time": 2.5, "end_time": 4.0, "text": "Tab\there, \"quotes\", commas"}]
    document = {"file_path": "reunião.mp4", "segments": segments, "speakers": []}
    written = formats.write_outputs(tmp_path, document, [], ("csv", "tsv", "docx", "json"), "reunião")
    assert sorted(written) == ["csv", "docx", "json", "tsv"]
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        rows = list(csv.reader(io.StringIO(written[fmt].read_text()), delimiter=delimiter))
        assert rows[0] == ["start", "end", "speaker", "text"] and len(rows) == 4
        assert rows[1] == ["0.000", "1.500", "'=HYPERLINK(\"http://x\")", "Olá, tudo bem?"]
        assert rows[2][3] == "'-5 graus" and rows[3][3] == "Tab here, \"quotes\", commas"
    doc = docx.Document(str(written["docx"]))
    texts = [p.text for p in doc.paragraphs]
    assert texts[0] == "reunião.mp4" and doc.core_properties.title == "reunião.mp4"
    assert texts[1:] == ["[00:00:00 - 00:00:02] =HYPERLINK(\"http://x\")", "Olá, tudo bem? -5 graus",
                         "[00:00:02 - 00:00:04] Bob", "Tab\there, \"quotes\", commas"]
