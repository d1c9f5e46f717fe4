"""A finished transcript as a few figures for the job record: language, words, who spoke how long.

Read from final_transcription.json once, when a job succeeds (lifecycle.py) and again
when its speakers are renamed (relabel.py), so the API, webhooks and `diarizectl show`
answer "what came out" from the store without opening a file of megabytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from diarized.files import display_name


@dataclass(frozen=True)
class SpeakerTime:
    label: str  # the machine's label (SPEAKER_00), never renamed
    name: str  # what the transcript shows now (a rename changes it)
    seconds: float  # speech time: the sum of its segments


@dataclass(frozen=True)
class Summary:
    language: str | None = None
    language_probability: float | None = None
    word_count: int = 0
    speakers: list[SpeakerTime] = field(default_factory=list)
    text: str = ""  # the transcript's words, for search (job_text)

    def speakers_json(self) -> str:
        return json.dumps([{"label": s.label, "name": s.name, "seconds": s.seconds} for s in self.speakers],
                          ensure_ascii=False)


def summarize(doc: dict) -> Summary:
    labels = doc.get("speaker_labels") or {}
    seconds: dict[str, float] = {name: 0.0 for name in doc.get("speakers", [])}
    words, texts = 0, []
    for seg in doc.get("segments", []):
        name = seg["speaker_id"]
        seconds[name] = seconds.get(name, 0.0) + max(0.0, seg["end_time"] - seg["start_time"])
        words += len(seg.get("words") or seg.get("text", "").split())
        texts.append(seg.get("text", ""))
    probability = doc.get("language_probability")
    return Summary(doc.get("language"), round(probability, 4) if probability is not None else None, words,
                   [SpeakerTime(labels.get(name, name), name, round(total, 2)) for name, total in seconds.items()],
                   " ".join(texts))


def read(output_dir: str | Path) -> Summary:
    """The summary of a published folder's final_transcription.json; ValueError if it cannot be read."""
    path = Path(output_dir) / "final_transcription.json"
    try:
        return summarize(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{display_name(str(path))}: {exc}") from None
