"""Where batched Whisper loses words against sequential decoding: one knob at a time, WER and speed.

    .venv/bin/python -m bench.asr_variants [--model base] [--minutes 5] [--speed]

Every variant decodes the same audio with the same model, beam 5, the same
temperature fallback and word timestamps; only the named knob changes from
ours (BatchedInferencePipeline, batch 8, its VAD cut at 160-ms silences, no
timestamp tokens, no conditioning on previous text). WER: the eight Portuguese
clips (language forced) and jfk, corpus WER as bench.accuracy scores it; with
--speed also English meeting speech (the pyannote sample, each AMI mixture speaker).
Speed: a meeting of --minutes built from the AMI mixture, seconds per variant
side by side in this one run. Writes bench/results/asr-variants.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.accuracy import ptbr_cases
from bench.scoring import DATA, wer_corpus
from bench.synth import read_audio
from diarized.pipeline.transcribe import TEMPERATURES

VARIANTS = {
    "ours: batched, VAD 160 ms, no timestamp tokens": {"batched": True},
    "batched, timestamp tokens": {"batched": True, "without_timestamps": False},
    "batched, VAD as sequential (2 s silences)": {"batched": True,
                                                  "vad_parameters": {"min_silence_duration_ms": 2000}},
    "batched, batch 1": {"batched": True, "batch_size": 1},
    "sequential with VAD, previous text": {"batched": False, "vad_filter": True},
    "sequential with VAD, no previous text": {"batched": False, "vad_filter": True,
                                              "condition_on_previous_text": False},
    "sequential with VAD, no previous text, no temperature fallback": {
        "batched": False, "vad_filter": True, "condition_on_previous_text": False, "temperature": 0.0},
    "sequential, no VAD (faster-whisper's README)": {"batched": False, "vad_filter": False},
}
# Speed knobs of the batched pipeline (issue 22, item 2): beam and batch size, nothing else changed.
SPEED_VARIANTS = {
    "ours: batched, batch 8, beam 5": {"batched": True},
    "batched, beam 1 (greedy)": {"batched": True, "beam_size": 1},
    "batched, beam 2": {"batched": True, "beam_size": 2},
    "batched, batch 16": {"batched": True, "batch_size": 16},
    "batched, beam 1, batch 16": {"batched": True, "beam_size": 1, "batch_size": 16},
}


def transcribe(model, batched, audio: np.ndarray, language: str, variant: dict) -> str:
    options = {k: v for k, v in variant.items() if k != "batched"}
    common = {"language": language, "beam_size": 5, "word_timestamps": True,
              "temperature": list(TEMPERATURES), "vad_filter": True}
    if variant["batched"]:
        segments, _ = batched.transcribe(audio, **{"batch_size": 8, **common, **options})
    else:
        segments, _ = model.transcribe(audio, **{**common, **options})
    return " ".join(s.text.strip() for s in segments)


def conversation_clips() -> list[tuple[np.ndarray, str, str]]:
    """English meeting speech with reference words: the sample (its STM in time order) and each
    speaker of the AMI mixture cut out by its reference turns (that speaker's words; the mixture
    overlaps a lot, so others are heard too, the same for every variant)."""
    from bench.devset import case_texts, rttm_turns

    stm = [line.split(maxsplit=5) for line in (DATA / "pyannote-sample/sample.stm").read_text().splitlines()]
    text = " ".join(parts[5] for parts in sorted((p for p in stm if len(p) == 6), key=lambda p: float(p[3])))
    clips = [(read_audio(DATA / "pyannote-sample/sample.wav"), text, "en")]
    folder = DATA / "ami-mixture-4spk"
    mixture = read_audio(folder / "mixture.wav")
    texts = case_texts(folder / "mixture.wav")
    turns = rttm_turns(folder / "mixture.rttm")
    pause = np.zeros(8000, dtype=mixture.dtype)
    for speaker, words in sorted(texts.items()):
        cuts = [mixture[int(s * 16000): int(e * 16000)] for s, e, spk in sorted(turns) if spk == speaker]
        clips.append((np.concatenate([c for cut in cuts for c in (cut, pause)]), words, "en"))
    return clips


def main() -> None:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from diarized.models import resolve_whisper

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--speed", action="store_true", help="beam and batch size instead of the decoding knobs")
    ap.add_argument("--repeat", type=int, default=1, help="time the meeting this many times, variants interleaved")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    path = resolve_whisper(args.model, Path(tempfile.gettempdir()) / "diarized-bench-models")
    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)
    batched = BatchedInferencePipeline(model)
    clips = [(read_audio(w), ref, "pt") for w, ref in ptbr_cases()]
    pt = len(clips)
    clips.append((read_audio(DATA / "en-jfk/jfk.flac"), (DATA / "en-jfk/jfk.txt").read_text(), "en"))
    if args.speed:  # conversations in English too, for the speed knobs
        clips += conversation_clips()
    meeting = read_audio(DATA / "ami-mixture-4spk/mixture.wav")
    meeting = np.tile(meeting, int(np.ceil(args.minutes * 60 / (len(meeting) / 16000))))[: int(args.minutes * 960000)]
    variants = SPEED_VARIANTS if args.speed else VARIANTS
    out = args.out or Path(f"bench/results/asr-{'speed' if args.speed else 'variants'}.json")
    rows = []
    for name, variant in variants.items():
        hyps = [transcribe(model, batched, audio, lang, variant) for audio, _, lang in clips]
        rows.append({"variant": name, "ptbr_wer": wer_corpus([(r, h) for (_, r, _), h in zip(clips[:pt], hyps)]),
                     "jfk_wer": wer_corpus([(clips[pt][1], hyps[pt])]), "meeting_s": [], "ptbr_hyps": hyps[:pt]})
        if len(clips) > pt + 1:
            rows[-1]["sample_wer"] = wer_corpus([(clips[pt + 1][1], hyps[pt + 1])])
            rows[-1]["mixture_wer"] = wer_corpus([(r, h) for (_, r, _), h in zip(clips[pt + 2:], hyps[pt + 2:])])
            rows[-1]["english_hyps"] = hyps[pt:]
    for _ in range(args.repeat):  # interleaved, so a slow minute of a shared machine hits every variant
        for row in rows:
            started = time.monotonic()
            transcribe(model, batched, meeting, "en", variants[row["variant"]])
            row["meeting_s"].append(round(time.monotonic() - started, 2))
    for row in rows:
        row["median_s"] = statistics.median(row["meeting_s"])
        row["rtf"] = row["median_s"] / (len(meeting) / 16000)
        sample = (f", pyannote-sample {row['sample_wer']:.1%}, mixture by speaker {row['mixture_wer']:.1%}"
                  if "sample_wer" in row else "")
        print(f"{row['variant']}: ptbr WER {row['ptbr_wer']:.1%}, jfk {row['jfk_wer']:.1%}{sample}, "
              f"{args.minutes:g} min meeting {row['median_s']:.1f} s (median of {row['meeting_s']})", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
