"""Correcting a transcript after the machine's pass: paragraph edits applied to final_transcription.json.

A paragraph is a run of segments of one speaker, up to the next segment marked
`"break": true` (a split): formats.spans, the rule every writer uses too. Four edits: new words for a paragraph, the paragraph
to another speaker, a split at a word, a merge with the next paragraph; and undo.
Words that did not change keep their timings (difflib aligns old and new); new
ones share the time between their unchanged neighbours. The machine's segments
are kept once, beside the edited ones (`machine_segments`), and every edit keeps
what it replaced (`edits`, the last MAX_UNDO), so any edit can be undone. Every
format the job has is written again from the JSON by formats.py, each file
atomically, the JSON last (it is the record). `version` rises with each edit: an
edit made on an older version (another tab, another person) is refused.
Imports nothing heavy: it runs in the API process.
"""

from __future__ import annotations

import copy
import difflib
import json
import time
from pathlib import Path

from diarized.files import folder_lock, write_bytes, write_json
from diarized.formats import FILENAMES, render_document, spans

MAX_UNDO = 50
MAX_TEXT = 20_000  # characters of one paragraph's words


class EditError(ValueError):
    """An edit that cannot be applied; the message says why."""


class Stale(EditError):
    """The transcript changed since the editor loaded it."""


def words_of(segments: list[dict]) -> list[dict]:
    """Every word with its timing; a segment without words gets its text spread over its time."""
    found = []
    for seg in segments:
        if seg.get("words"):
            found += [dict(w) for w in seg["words"]]
        else:
            found += spread(seg["text"].split(), seg["start_time"], seg["end_time"])
    return found


def spread(texts: list[str], start: float, end: float) -> list[dict]:
    step = max(0.0, end - start) / max(1, len(texts))
    return [{"word": t, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3),
             "probability": 1.0} for i, t in enumerate(texts)]


def realign(old: list[dict], texts: list[str], start: float, end: float) -> list[dict]:
    """New words with timings: unchanged ones keep theirs, changed runs share their neighbours' gap."""
    matcher = difflib.SequenceMatcher(a=[w["word"] for w in old], b=texts, autojunk=False)
    words: list[dict] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            words += [dict(w) for w in old[a0:a1]]
            continue
        if b0 == b1:
            continue  # deleted words leave their time to the neighbours
        begin = old[a0]["start"] if a0 < a1 else (words[-1]["end"] if words else start)
        finish = old[a1 - 1]["end"] if a0 < a1 else (old[a0]["start"] if a0 < len(old) else end)
        for w in spread(texts[b0:b1], begin, max(begin, finish)):
            w["edited"] = True
            words.append(w)
    return words


def segment(words: list[dict], speaker: str, label: str, brk: bool) -> dict:
    text = " ".join(w["word"] for w in words)
    probabilities = [w.get("probability", 1.0) for w in words]
    seg = {"speaker_id": speaker, "speaker_label": label, "start_time": words[0]["start"] if words else 0.0,
           "end_time": words[-1]["end"] if words else 0.0, "text": text,
           "confidence": round(sum(probabilities) / len(probabilities), 4) if probabilities else 1.0,
           "words": words, "edited": True}
    if brk:
        seg["break"] = True
    return seg


def apply(doc: dict, edit: dict, who: str) -> str:
    """Apply one edit to the document in place; returns what happened, for the job's timeline."""
    segments = doc["segments"]
    if edit.get("op") == "undo":
        return undo(doc)
    if edit.get("op") not in ("text", "speaker", "split", "merge"):
        raise EditError(f"unknown edit {edit.get('op')!r}: text, speaker, split, merge or undo")
    found = spans(segments)
    index = edit.get("paragraph")
    if not isinstance(index, int) or not 0 <= index < len(found):
        raise EditError(f"there is no paragraph {index!r} (this transcript has {len(found)})")
    span = found[index]
    end = span.last
    label = segments[span.first].get("speaker_label") or span.speaker
    brk = bool(segments[span.first].get("break"))
    if edit.get("op") == "text":
        text = str(edit.get("text", ""))
        if not text.split() or len(text) > MAX_TEXT:
            raise EditError(f"a paragraph needs 1 to {MAX_TEXT} characters of words (to remove one, merge it)")
        old = words_of(segments[span.first:end])
        first, last = (old[0]["start"], old[-1]["end"]) if old else (0.0, 0.0)
        new = [segment(realign(old, text.split(), first, last), span.speaker, label, brk)]
        note = f"paragraph {index + 1}: words"
    elif edit.get("op") == "speaker":
        name = _speaker(doc, edit.get("speaker"))
        new = [dict(s, speaker_id=name, speaker_label=_label_of(doc, name), edited=True)
               for s in copy.deepcopy(segments[span.first:end])]
        for s in new[1:]:
            s.pop("break", None)
        new[0]["break"] = True  # it stays a paragraph of its own, even beside one of its new speaker
        note = f"paragraph {index + 1}: {span.speaker} → {name}"
    elif edit.get("op") == "split":
        words = words_of(segments[span.first:end])
        at = edit.get("word")
        if not isinstance(at, int) or not 0 < at < len(words):
            raise EditError(f"split at a word inside the paragraph (1 to {len(words) - 1}), not {at!r}")
        new = [segment(words[:at], span.speaker, label, brk), segment(words[at:], span.speaker, label, True)]
        note = f"paragraph {index + 1}: split before {words[at]['word']!r}"
    elif edit.get("op") == "merge":
        if index + 1 >= len(found):
            raise EditError("the last paragraph has nothing after it to merge with")
        end = found[index + 1].last
        new = [dict(s, speaker_id=span.speaker, speaker_label=label, edited=True)
               for s in copy.deepcopy(segments[span.first:end])]
        for s in new[span.last - span.first:]:
            s.pop("break", None)
        note = f"paragraphs {index + 1} and {index + 2} merged"
    doc.setdefault("machine_segments", copy.deepcopy(segments))
    history = doc.setdefault("edits", [])
    history.append({"at": time.time(), "by": who, "what": note, "first": span.first, "count": len(new),
                    "replaced": copy.deepcopy(segments[span.first:end])})
    del history[:-MAX_UNDO]
    segments[span.first:end] = new
    return note


def undo(doc: dict) -> str:
    history = doc.get("edits") or []
    if not history:
        raise EditError("there is no edit to undo")
    last = history.pop()
    doc["segments"][last["first"]:last["first"] + last["count"]] = last["replaced"]
    return f"undid {last['what']}"


def _speaker(doc: dict, name) -> str:
    if name not in doc["speakers"]:
        raise EditError(f"there is no speaker {name!r}; the transcript has {', '.join(doc['speakers'])}")
    return name


def _label_of(doc: dict, name: str) -> str:
    return (doc.get("speaker_labels") or {}).get(name, name)


def edit(output_dir: Path, edits: list[dict], version: int | None, who: str) -> tuple[dict, list[str]]:
    """Apply edits to a published transcript and write every format it has again; returns (doc, notes)."""
    output_dir = Path(output_dir)
    path = output_dir / FILENAMES["json"]
    with folder_lock(output_dir):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EditError("only a succeeded job's transcript can be edited") from None
        if version is not None and version != doc.get("version", 0):
            raise Stale(f"the transcript changed since you opened it (version {doc.get('version', 0)}, "
                        f"yours {version}): reload it and edit again")
        notes = [apply(doc, one, who) for one in edits]
        doc["version"] = doc.get("version", 0) + 1
        doc["edited_at"] = time.time()
        present = tuple(fmt for fmt, name in FILENAMES.items() if fmt not in ("json", "rttm")
                        and (output_dir / name).exists())
        for fmt, data in render_document(doc, present, doc.get("file_path") or output_dir.name).items():
            write_bytes(output_dir / FILENAMES[fmt], data)
        write_json(path, doc)  # last: the record
    return doc, notes
