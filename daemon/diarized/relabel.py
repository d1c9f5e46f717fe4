"""Naming a job's speakers after the fact: SPEAKER_00 -> "Ana" in its published outputs.

The JSON and every format rendered from it (SRT, VTT, TXT, CSV, TSV, DOCX) are rendered again from final_transcription.json
by the same writers the pipeline used (formats.py), each file
replaced atomically; a reader sees the old file or the new one. The JSON keeps
every segment's original label (`speaker_label`) and the mapping
(`speaker_labels`: name -> original), so a rename can be undone or redone, and
diarization.rttm keeps the original labels: it is the machine's view.
"""

from __future__ import annotations

import json
from pathlib import Path

from diarized.files import folder_lock, write_bytes, write_json
from diarized.formats import FILENAMES, render_document

MAX_NAME = 40


class RenameError(ValueError):
    """A rename that cannot be applied; the message says why."""


def labels_of(doc: dict) -> dict[str, str]:
    """The names shown in a final_transcription.json -> their original labels (never renamed: the same)."""
    return doc.get("speaker_labels") or {s: s for s in doc["speakers"]}


def current_names(output_dir: Path) -> dict[str, str]:
    """Original label -> the name shown now, in order of first speech."""
    doc = _load(output_dir)
    labels = labels_of(doc)
    return {labels[name]: name for name in doc["speakers"]}


def rename(output_dir: Path, names: dict[str, str]) -> dict[str, str]:
    """Give speakers new names (keys: original labels or current names); returns label -> name."""
    return renamed(output_dir, names)[2]


def renamed(output_dir: Path, names: dict[str, str]) -> tuple[dict, dict[str, str], dict[str, str]]:
    """rename(), under the folder's lock (an edit may be saving), reading the JSON once; returns the
    document as written, label -> name before, and label -> name now."""
    if not Path(output_dir).is_dir():
        _load(output_dir)  # says which file is missing, and why
    with folder_lock(Path(output_dir)):
        doc = _load(output_dir)
        labels = labels_of(doc)
        before = {original: name for name, original in labels.items()}
        shown = _new_names(doc, labels, names)
        _apply(output_dir, doc, labels, shown)
    return doc, before, shown


def _new_names(doc: dict, labels: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    """label -> name after the rename; RenameError names what cannot be."""
    shown = {original: name for name, original in labels.items()}
    for key, new in names.items():
        original = key if key in shown else labels.get(key)
        if original is None:
            raise RenameError(f"this job has no speaker {key!r}; it has {', '.join(doc['speakers'])}")
        new = " ".join(str(new).split())
        if not new or len(new) > MAX_NAME:
            raise RenameError(f"a speaker name must be 1 to {MAX_NAME} characters, not {new!r}")
        shown[original] = new
    if len(set(shown.values())) != len(shown):
        raise RenameError("two speakers cannot share a name (that would merge them in the transcript)")
    return shown


def _apply(output_dir: Path, doc: dict, labels: dict[str, str], shown: dict[str, str]) -> None:
    """labels: the names shown until now -> original label; shown: original label -> new name."""
    for segment in doc["segments"]:
        original = segment.get("speaker_label") or labels.get(segment["speaker_id"], segment["speaker_id"])
        segment["speaker_label"] = original
        segment["speaker_id"] = shown[original]
    doc["speakers"] = [shown[labels[name]] for name in doc["speakers"]]
    doc["speaker_labels"] = {name: original for original, name in shown.items()}
    present = tuple(fmt for fmt, name in FILENAMES.items() if (output_dir / name).exists())
    title = doc.get("file_path") or output_dir.name
    for fmt, data in render_document(doc, present, title).items():  # first: the JSON, written last, is the record
        write_bytes(output_dir / FILENAMES[fmt], data)
    write_json(output_dir / FILENAMES["json"], doc)


def _load(output_dir: Path) -> dict:
    path = Path(output_dir) / FILENAMES["json"]
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RenameError(f"{path} does not exist: only a succeeded job's speakers can be named") from None
