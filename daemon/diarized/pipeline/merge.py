"""Words + speaker turns -> speaker-attributed segments (the seed's TranscriptionMerger).

Each word goes to the speaker whose turn overlaps it most, or to the nearest
turn when none does (diarization leaves short gaps that Whisper fills). Then
each sentence fragment (words up to punctuation or a pause) that two speakers
share goes whole to the one whose turns cover most of it: diarization's turn
changes are a few hundred ms late or early, so word by word the first words of
a reply landed on the previous speaker ("… in New Jersey. And I'm" / "Sheila
and Texas…"). A fragment longer than FRAGMENT_SECONDS with a change inside is a
real change without punctuation and keeps it; only a stray run of under
EDGE_RUN_SECONDS at its start or end moves to its neighbour. Segments break on a
speaker change, on a pause longer than MAX_PAUSE, after a sentence end, and at
MAX_SEGMENT seconds, so they read like subtitles and paragraphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PAUSE = 1.0
MAX_SEGMENT = 30.0
SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
FRAGMENT_END = SENTENCE_END + (",", ";", ":", "，", "、")
FRAGMENT_PAUSE = 0.5  # s of silence between two words that ends a fragment
FRAGMENT_SECONDS = 4.0  # a shared fragment up to this long goes whole to one speaker
EDGE_RUN_SECONDS = 1.0  # in a longer one, a run this short at either end joins its neighbour


@dataclass
class Word:
    text: str
    start: float
    end: float
    probability: float
    speaker: str = ""


def words_from_segments(segments: list[dict]) -> list[Word]:
    """Whisper words; a segment without word timings counts as one long word."""
    words = []
    for seg in segments:
        if seg.get("words"):
            words.extend(Word(w["word"], w["start"], w["end"], w["probability"]) for w in seg["words"])
        elif seg.get("text"):
            words.append(Word(" " + seg["text"], seg["start"], seg["end"],
                              float(np.exp(seg.get("avg_logprob", 0.0)))))
    return sorted(words, key=lambda w: (w.start, w.end))


def assign_speakers(words: list[Word], turns: list[dict]) -> None:
    """Set word.speaker: most overlap, else nearest turn; '' when there are no turns.

    A word that two speakers' turns both cover (overlapped speech) goes to the voice the
    ASR was following: the speaker of the nearest uncontested word before it, else after
    it, when that speaker is one of those covering it; not to whichever turn is listed first.
    """
    if not turns:
        return
    starts, ends, labels = _bounds(turns)
    contested: dict[int, set[str]] = {}
    for index, word in enumerate(words):
        overlap = _overlaps(starts, ends, word)
        best = int(np.argmax(overlap))
        if overlap[best] <= 0:
            middle = (word.start + word.end) / 2
            distance = np.maximum(starts - middle, middle - ends)
            best = int(np.argmin(distance))
        word.speaker = labels[best]
        half = 0.5 * max(word.end - word.start, 1e-3)
        covering = {labels[j] for j in np.flatnonzero(overlap >= half)}
        if len(covering) > 1:
            contested[index] = covering
    for index, covering in contested.items():
        voice = _followed_voice(words, index, contested)
        if voice in covering:
            words[index].speaker = voice


def _bounds(turns: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Turn starts, ends and speakers as arrays, for overlaps with every turn at once."""
    return (np.array([t["start"] for t in turns]), np.array([t["end"] for t in turns]),
            [t["speaker"] for t in turns])


def _overlaps(starts: np.ndarray, ends: np.ndarray, word: Word) -> np.ndarray:
    """Seconds of the word each turn covers (negative: the gap between them)."""
    return np.minimum(ends, word.end) - np.maximum(starts, word.start)


def fragments(words: list[Word]) -> list[range]:
    """Index ranges of sentence fragments: cut after punctuation and at pauses."""
    found, start = [], 0
    for i in range(1, len(words) + 1):
        if i == len(words) or words[i - 1].text.strip().endswith(FRAGMENT_END) \
                or words[i].start - words[i - 1].end > FRAGMENT_PAUSE:
            found.append(range(start, i))
            start = i
    return found


def settle_fragments(words: list[Word], turns: list[dict]) -> None:
    """A fragment two speakers share goes to the one who covers most of it (module docstring)."""
    bounds = _bounds(turns)
    for fragment in fragments(words):
        if len({words[i].speaker for i in fragment}) < 2:
            continue
        first, last = words[fragment[0]], words[fragment[-1]]
        if last.end - first.start <= FRAGMENT_SECONDS:
            cover = _coverage([words[i] for i in fragment], *bounds)
            if cover:
                for i in fragment:
                    words[i].speaker = max(cover, key=cover.get)
        else:
            _absorb_edge_runs(words, fragment)


def _coverage(words: list[Word], starts: np.ndarray, ends: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Seconds of these words each speaker's turns cover."""
    cover: dict[str, float] = {}
    for word in words:
        overlap = _overlaps(starts, ends, word)
        for j in np.flatnonzero(overlap > 0):
            cover[labels[j]] = cover.get(labels[j], 0.0) + float(overlap[j])
    return cover


def _absorb_edge_runs(words: list[Word], fragment: range) -> None:
    runs = []  # [first index, last index] of consecutive words of one speaker
    for i in fragment:
        if runs and words[i].speaker == words[runs[-1][0]].speaker:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    for run, neighbour in ((runs[0], runs[1]), (runs[-1], runs[-2])):
        if words[run[1]].end - words[run[0]].start < EDGE_RUN_SECONDS:
            for i in range(run[0], run[1] + 1):
                words[i].speaker = words[neighbour[0]].speaker


def _followed_voice(words: list[Word], index: int, contested: dict[int, set[str]]) -> str | None:
    """The speaker of the nearest word outside the overlap: before it first, then after."""
    for j in [*range(index - 1, -1, -1), *range(index + 1, len(words))]:
        if j not in contested:
            return words[j].speaker
    return None


def speaker_order(words: list[Word], turns: list[dict]) -> dict[str, str]:
    """Map raw labels to SPEAKER_00, SPEAKER_01… by first appearance.

    Speakers who said words come first, in the order they first speak; speakers
    with turns but no recognised words follow, so RTTM and transcript agree.
    """
    order: list[str] = []
    for label in [w.speaker for w in words] + [t["speaker"] for t in turns]:
        if label and label not in order:
            order.append(label)
    return {label: f"SPEAKER_{i:02d}" for i, label in enumerate(order)}


def _closes_segment(current: list[Word], word: Word) -> bool:
    last = current[-1]
    return (
        word.speaker != last.speaker
        or word.start - last.end > MAX_PAUSE
        or last.text.strip().endswith(SENTENCE_END)
        or word.end - current[0].start > MAX_SEGMENT
    )


def _segment(words: list[Word]) -> dict:
    return {
        "speaker_id": words[0].speaker,
        "start_time": round(words[0].start, 3),
        "end_time": round(max(w.end for w in words), 3),
        "text": "".join(w.text for w in words).strip(),
        "confidence": round(float(np.mean([w.probability for w in words])), 4),
        # space_before keeps the ASR's own spacing, so cue text can be rebuilt exactly
        # ("www.maxis.org" is three tokens, the last two without a space)
        "words": [{"word": w.text.strip(), "start": w.start, "end": w.end, "probability": w.probability,
                   "space_before": w.text[:1].isspace()} for w in words],
    }


def build_segments(words: list[Word]) -> list[dict]:
    segments, current = [], []
    for word in words:
        if current and _closes_segment(current, word):
            segments.append(_segment(current))
            current = []
        current.append(word)
    if current:
        segments.append(_segment(current))
    return segments


def merge(whisper_segments: list[dict], turns: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """Returns (segments, relabelled turns, speakers in order)."""
    words = words_from_segments(whisper_segments)
    assign_speakers(words, turns)
    settle_fragments(words, turns)
    mapping = speaker_order(words, turns)
    for word in words:
        word.speaker = mapping.get(word.speaker, "SPEAKER_00")
    relabelled = [{**t, "speaker": mapping[t["speaker"]]} for t in turns]
    segments = build_segments(words)
    speakers = sorted({s["speaker_id"] for s in segments} | {t["speaker"] for t in relabelled})
    return segments, relabelled, speakers
