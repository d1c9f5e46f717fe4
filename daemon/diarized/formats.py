"""Writers for the outputs: JSON (the seed's schema), SRT, VTT, TXT, RTTM, CSV, TSV and DOCX.

Subtitle cues follow the Netflix Timed Text Style Guide's general rules (the
usual reference for subtitles): at most two lines of 42 characters (speaker
prefix included), at most 7 s and at least 5/6 s on screen, never overlapping.
A cue that would be shorter ("Hello." in 50 ms) is first merged with its
neighbour of the same speaker when the two fit one cue, else extended into the
silence after it (and then before it), as far as the neighbours allow. Cues are
built once and rendered twice, so SRT and VTT agree. Every file is written
atomically.

CSV and TSV are one row per segment (start, end, speaker, text) for
spreadsheets: a cell that a spreadsheet would run as a formula (=, +, -, @
first) is quoted with a leading apostrophe (OWASP's CSV injection advice), since
speaker names are typed by users. DOCX (python-docx, imported only when asked
for) is the TXT's paragraphs per speaker turn, for people who edit in a word
processor.
"""

from __future__ import annotations

import csv
import html
import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

from diarized.files import write_bytes, write_json, write_text

MAX_LINE = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0
MIN_CUE_SECONDS = 5 / 6  # readable: the style guide's minimum (20 frames at 24 fps)
MIN_SHOWN_SECONDS = 0.05  # where neighbours leave no room, still a cue a player shows

FILENAMES = {
    "json": "final_transcription.json",
    "srt": "transcription.srt",
    "vtt": "transcription.vtt",
    "txt": "transcription.txt",
    "rttm": "diarization.rttm",
    "csv": "transcription.csv",
    "tsv": "transcription.tsv",
    "docx": "transcription.docx",
}
FORMULA_FIRST = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Cue:
    start: float
    end: float
    speaker: str
    text: str

    @property
    def prefix(self) -> str:
        return f"{self.speaker}: "

    def lines(self, prefix: str = "") -> list[str]:
        return textwrap.wrap(prefix + self.text, MAX_LINE, break_long_words=True)


def _fits(speaker: str, text: str, start: float, end: float) -> bool:
    lines = textwrap.wrap(f"{speaker}: {text}", MAX_LINE, break_long_words=True)
    return len(lines) <= MAX_LINES and end - start <= MAX_CUE_SECONDS


def join_words(words: list[dict]) -> str:
    """Words as the ASR wrote them: a space only where its token had one (not "www .maxis .org")."""
    return "".join((" " if w.get("space_before", True) else "") + w["word"] for w in words).strip()


def _segment_cues(segment: dict) -> list[Cue]:
    words = segment.get("words") or [{"word": segment["text"], "start": segment["start_time"],
                                      "end": segment["end_time"]}]
    speaker, cues = segment["speaker_id"], []
    current: list[dict] = []
    for word in words:
        candidate = current + [word]
        text = join_words(candidate)
        if current and not _fits(speaker, text, candidate[0]["start"], word["end"]):
            cues.append(Cue(current[0]["start"], current[-1]["end"], speaker, join_words(current)))
            current = []
        current.append(word)
    if current:
        cues.append(Cue(current[0]["start"], current[-1]["end"], speaker, join_words(current)))
    return cues


def _truncate_words(cue: Cue) -> Cue:
    """A single over-long word still has to fit two lines: cut it with an ellipsis."""
    room = MAX_LINE * MAX_LINES - len(cue.prefix)
    if len(cue.lines(cue.prefix)) > MAX_LINES:
        cue.text = cue.text[: room - 2] + "…"
        while len(cue.lines(cue.prefix)) > MAX_LINES:
            cue.text = cue.text[:-2] + "…"
    return cue


def build_cues(segments: list[dict]) -> list[Cue]:
    """Cues in time order, none overlapping the next, 5/6 s to 7 s on screen where there is room."""
    cues = [_truncate_words(c) for s in segments for c in _segment_cues(s) if c.text.strip()]
    cues = _merge_short(sorted(cues, key=lambda c: c.start))
    for prev, cue in zip(cues, cues[1:]):
        if cue.start < prev.end:
            prev.end = max(prev.start + MIN_SHOWN_SECONDS, cue.start)
            cue.start = max(cue.start, prev.end)
    for cue in cues:
        cue.end = min(max(cue.end, cue.start + MIN_SHOWN_SECONDS), cue.start + MAX_CUE_SECONDS)
    for prev, cue in zip(cues, cues[1:]):  # the minimum length may have pushed into the next
        cue.start = max(cue.start, prev.end)
        cue.end = max(cue.end, cue.start)
    _lengthen_short(cues)
    return cues


def _merge_short(cues: list[Cue]) -> list[Cue]:
    """A too-short cue joins its same-speaker neighbour when both fit one cue."""
    merged: list[Cue] = []
    for cue in cues:
        last = merged[-1] if merged else None
        short = last is not None and min(last.end - last.start, cue.end - cue.start) < MIN_CUE_SECONDS
        text = f"{last.text} {cue.text}" if last else ""
        if short and last.speaker == cue.speaker and _fits(cue.speaker, text, last.start, max(last.end, cue.end)):
            last.text, last.end = text, max(last.end, cue.end)
            _truncate_words(last)
        else:
            merged.append(cue)
    return merged


def _lengthen_short(cues: list[Cue]) -> None:
    """Extend a short cue into the silence after it, then before it, never into a neighbour."""
    for i, cue in enumerate(cues):
        if cue.end - cue.start >= MIN_CUE_SECONDS:
            continue
        after = cues[i + 1].start if i + 1 < len(cues) else float("inf")
        cue.end = max(cue.end, min(cue.start + MIN_CUE_SECONDS, after))
        before = cues[i - 1].end if i else 0.0
        cue.start = min(cue.start, max(before, cue.end - MIN_CUE_SECONDS))


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render_srt(cues: list[Cue]) -> str:
    blocks = []
    for i, cue in enumerate(cues, 1):
        blocks.append(f"{i}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n"
                      + "\n".join(cue.lines(cue.prefix)) + "\n")
    return "\n".join(blocks)


def render_vtt(cues: list[Cue]) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues:
        # wrap with the prefix so line breaks match the SRT, then drop it for the voice tag
        lines = cue.lines(cue.prefix)
        lines[0] = lines[0][len(cue.prefix):]
        body = "\n".join(html.escape(line, quote=False) for line in lines)
        blocks.append(f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n"
                      f"<v {_annotation(cue.speaker)}>{body}</v>\n")
    return "\n".join(blocks)


def _annotation(speaker: str) -> str:
    """A speaker name as WebVTT voice annotation text: escaped, on one line (a renamed speaker may be
    "Ana <Chair> & co"; unescaped, `>` would end the tag and the rest would show as text)."""
    return html.escape(" ".join(speaker.split()), quote=False)


@dataclass(frozen=True)
class Span:
    """A paragraph's place: segments[first:last], all of one speaker."""

    first: int
    last: int
    speaker: str


def spans(segments: list[dict]) -> list[Span]:
    """Speaker turns: consecutive segments of one speaker, unless an editor split them ("break").
    The one rule for paragraphs: the TXT and DOCX writers, the transcript page and its editor."""
    found: list[Span] = []
    for i, seg in enumerate(segments):
        if found and found[-1].speaker == seg["speaker_id"] and not seg.get("break"):
            found[-1] = Span(found[-1].first, i + 1, found[-1].speaker)
        else:
            found.append(Span(i, i + 1, seg["speaker_id"]))
    return found


@dataclass
class Paragraph:
    speaker: str
    start: float
    end: float
    text: str

    @property
    def heading(self) -> str:
        return f"[{_clock(self.start, '.')[:-4]} - {_clock(self.end, '.')[:-4]}] {self.speaker}"


def paragraphs(segments: list[dict]) -> list[Paragraph]:
    """Each span's segments joined: its speaker, start, end and text."""
    return [Paragraph(span.speaker, segments[span.first]["start_time"], segments[span.last - 1]["end_time"],
                      " ".join(s["text"] for s in segments[span.first:span.last])) for span in spans(segments)]


def render_txt(segments: list[dict]) -> str:
    return "\n".join(f"{p.heading}\n{textwrap.fill(p.text, 80)}\n" for p in paragraphs(segments))


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_FIRST) else value


def render_table(segments: list[dict], delimiter: str) -> str:
    """One row per segment, with a header; seconds with millisecond precision."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["start", "end", "speaker", "text"])
    for seg in segments:
        writer.writerow([f"{seg['start_time']:.3f}", f"{seg['end_time']:.3f}", _cell(str(seg["speaker_id"])),
                         _cell(" ".join(str(seg["text"]).split()))])
    return out.getvalue()


def render_docx(segments: list[dict], title: str) -> bytes:
    import docx  # python-docx: only where a .docx is asked for

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    for p in paragraphs(segments):
        heading = document.add_paragraph()
        heading.add_run(p.heading).bold = True
        document.add_paragraph(p.text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def render_document(document: dict, formats: tuple[str, ...], title: str) -> dict[str, bytes]:
    """Every requested format that is rendered from the JSON's segments (all but json and rttm):
    the pipeline writes them, and a rename (relabel.py) writes them again by the same code."""
    segments = document["segments"]
    cues = build_cues(segments) if {"srt", "vtt"} & set(formats) else []
    renderers = {
        "srt": lambda: render_srt(cues).encode(), "vtt": lambda: render_vtt(cues).encode(),
        "txt": lambda: render_txt(segments).encode(),
        "csv": lambda: render_table(segments, ",").encode(), "tsv": lambda: render_table(segments, "\t").encode(),
        "docx": lambda: render_docx(segments, title),
    }
    return {fmt: renderers[fmt]() for fmt in formats if fmt in renderers}


def to_rttm(turns: list[dict], uri: str) -> str:
    uri = "_".join(uri.split()) or "audio"
    return "".join(
        f"SPEAKER {uri} 1 {t['start']:.3f} {t['end'] - t['start']:.3f} <NA> <NA> {t['speaker']} <NA> <NA>\n"
        for t in turns
    )


def write_outputs(out_dir: Path, document: dict, turns: list[dict], formats: tuple[str, ...],
                  uri: str) -> dict[str, Path]:
    """Write the requested formats; returns {format: path}."""
    written = {fmt: write_bytes(out_dir / FILENAMES[fmt], data)
               for fmt, data in render_document(document, formats, document.get("file_path") or uri).items()}
    if "rttm" in formats:
        written["rttm"] = write_text(out_dir / FILENAMES["rttm"], to_rttm(turns, uri))
    if "json" in formats:
        written["json"] = write_json(out_dir / FILENAMES["json"], document)
    return written
