"""Speech to words with faster-whisper (CTranslate2, int8 on CPU), one unit at a time.

The language is decided once for the whole file (forced, or detected by voting
over several speech windows) so units cannot flip between languages, and each
unit is retried on failure before the job is given up.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from diarized.pipeline.chunking import Unit
from diarized.pipeline.media import SAMPLE_RATE

log = logging.getLogger(__name__)

DETECT_WINDOWS = 4
DETECT_SPAN_SECONDS = 600.0
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

Progress = Callable[[float], None]  # seconds of the unit done


def quiet_onnxruntime() -> None:
    """onnxruntime (faster-whisper's VAD) sends usage events to a Microsoft host, a DNS
    lookup from every worker, unless told not to before its first session. This service
    never talks to the network; its unit's isolation is the second line, not the first."""
    import onnxruntime

    onnxruntime.disable_telemetry_events()


@dataclass(frozen=True)
class AsrOptions:
    model_path: Path
    model_name: str = "base"
    language: str = "auto"
    compute_type: str = "int8"
    beam_size: int = 5
    batch_size: int = 8
    word_timestamps: bool = True
    initial_prompt: str = ""
    hotwords: str = ""
    cpu_threads: int = 2
    retries: int = 2


class Transcriber:
    """Holds one loaded Whisper model for a whole job."""

    def __init__(self, options: AsrOptions):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        quiet_onnxruntime()
        self.options = options
        self.model = WhisperModel(
            str(options.model_path), device="cpu", compute_type=options.compute_type,
            cpu_threads=options.cpu_threads, num_workers=1,
        )
        self.batched = BatchedInferencePipeline(self.model) if options.batch_size > 1 else None

    @property
    def multilingual(self) -> bool:
        return self.model.model.is_multilingual

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Forced language, or a vote over up to four 30-s speech windows.

        faster-whisper's own detection stops at the first confident window;
        short Portuguese can come out as Spanish that way, so we average.
        """
        if self.options.language not in ("", "auto"):
            return self.options.language, 1.0
        if not self.multilingual:
            return "en", 1.0
        from faster_whisper.vad import get_speech_timestamps

        head = np.asarray(audio[: int(DETECT_SPAN_SECONDS * SAMPLE_RATE)])
        speech = get_speech_timestamps(head)
        pieces = [head[c["start"]: c["end"]] for c in speech] or [head]
        joined = np.concatenate(pieces)
        n = self.model.feature_extractor.n_samples
        votes: dict[str, float] = defaultdict(float)
        windows = [joined[i: i + n] for i in range(0, len(joined), n)][:DETECT_WINDOWS]
        for window in windows:
            _, _, probs = self.model.detect_language(audio=window)
            for lang, prob in probs:
                votes[lang] += prob * len(window)
        total = sum(len(w) for w in windows) or 1
        language = max(votes, key=votes.get)
        return language, votes[language] / total

    def _transcribe(self, audio: np.ndarray, language: str, progress: Progress | None):
        o = self.options
        common = dict(
            language=language, beam_size=o.beam_size, word_timestamps=o.word_timestamps,
            vad_filter=True, temperature=list(TEMPERATURES),
            initial_prompt=o.initial_prompt or None, hotwords=o.hotwords or None,
        )
        if self.batched is not None:
            segments, _ = self.batched.transcribe(audio, batch_size=o.batch_size, **common)
        else:
            segments, _ = self.model.transcribe(audio, **common)
        out = []
        for seg in segments:  # a generator: the work happens while we iterate
            out.append(seg)
            if progress:
                progress(seg.end)
        return out

    def transcribe_unit(self, audio: np.ndarray, unit: Unit, language: str,
                        progress: Progress | None = None) -> list[dict]:
        """Segments of one unit with absolute times; retried `retries` times."""
        piece = np.ascontiguousarray(
            audio[int(unit.start * SAMPLE_RATE): int(unit.end * SAMPLE_RATE)], dtype=np.float32)
        for attempt in range(self.options.retries + 1):
            try:
                segments = self._transcribe(piece, language, progress)
                break
            except (RuntimeError, ValueError) as exc:
                if attempt == self.options.retries:
                    raise
                log.warning("unit %d failed (%s); retrying", unit.index, exc)
        return [_segment_dict(s, unit.start) for s in segments]


def _segment_dict(seg, offset: float) -> dict:
    words = [
        {"word": w.word, "start": round(w.start + offset, 3), "end": round(w.end + offset, 3),
         "probability": round(w.probability, 4)}
        for w in (seg.words or [])
    ]
    return {
        "start": round(seg.start + offset, 3), "end": round(seg.end + offset, 3),
        "text": seg.text.strip(), "avg_logprob": round(seg.avg_logprob, 4),
        "no_speech_prob": round(seg.no_speech_prob, 4), "words": words,
    }


def results_document(language: str, probability: float, model: str,
                     unit_segments: list[list[dict]]) -> dict:
    """whisper_results.json: every unit's segments in time order."""
    segments = [s for unit in unit_segments for s in unit]
    for i, seg in enumerate(segments):
        seg["id"] = i
    return {"language": language, "language_probability": round(probability, 4),
            "model": model, "segments": segments}
