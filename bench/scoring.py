"""WER and DER exactly as ../shared/data/README.md defines them.

DER: pyannote.metrics, skip_overlap=False, collars 0 and 0.25.
WER: lower-cased, punctuation stripped, whitespace collapsed (jiwer).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

DATA = Path(os.environ.get("DIARIZED_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))

# Diarization cases: (name, wav, rttm, reference speaker count)
DEBUG = DATA / "pyannote-ami-debug"


def diarization_cases() -> list[tuple[str, Path, Path]]:
    cases = [
        ("pyannote-sample", DATA / "pyannote-sample/sample.wav", DATA / "pyannote-sample/sample.rttm"),
        ("ami-mixture-4spk", DATA / "ami-mixture-4spk/mixture.wav", DATA / "ami-mixture-4spk/mixture.rttm"),
    ]
    for split in ("train", "development", "test"):
        for uri in (DEBUG / f"debug.{split}.lst").read_text().split():
            cases.append((f"ami-debug/{uri}", DEBUG / f"{uri}.wav", DEBUG / f"debug.{split}.rttm"))
    return cases


def load_reference(rttm: Path, uri: str | None = None):
    from pyannote.core import Annotation, Segment

    ref = Annotation()
    for line in rttm.read_text().splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[0] != "SPEAKER" or (uri and parts[1] != uri):
            continue
        start, dur = float(parts[3]), float(parts[4])
        ref[Segment(start, start + dur)] = parts[7]
    return ref


def annotation(turns: list[dict]):
    from pyannote.core import Annotation, Segment

    hyp = Annotation()
    for i, t in enumerate(turns):
        hyp[Segment(t["start"], t["end"]), i] = t["speaker"]
    return hyp


@dataclass
class DerScore:
    der: float  # collar 0
    der_collar: float  # collar 0.25
    speakers: int
    ref_speakers: int


def der(reference, turns: list[dict]) -> DerScore:
    from pyannote.metrics.diarization import DiarizationErrorRate

    hyp = annotation(turns)
    d0 = DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, hyp)
    d25 = DiarizationErrorRate(collar=0.25, skip_overlap=False)(reference, hyp)
    return DerScore(float(d0), float(d25), len(hyp.labels()), len(reference.labels()))


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text.lower())
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = text.replace("'", "")
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def wer_corpus(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER: total errors over total reference words."""
    import jiwer

    refs = [normalise(r) for r, _ in pairs]
    hyps = [normalise(h) for _, h in pairs]
    return float(jiwer.wer(refs, hyps))


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions between two normalised texts."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref or not hyp:
        return len(ref.split()) + len(hyp.split())
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions


def cpwer(reference: dict[str, str], hypothesis: dict[str, str]) -> float:
    """Concatenated minimum-permutation WER: each speaker's words joined in time order,
    reference and hypothesis speakers paired so the total errors are least (Hungarian);
    an unpaired reference speaker's words are all deletions, an unpaired hypothesis
    speaker's all insertions. Total errors over total reference words."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    refs, hyps = list(reference.values()), list(hypothesis.values())
    size = max(len(refs), len(hyps))
    refs += [""] * (size - len(refs))
    hyps += [""] * (size - len(hyps))
    cost = np.array([[word_errors(r, h) for h in hyps] for r in refs])
    rows, cols = linear_sum_assignment(cost)
    words = sum(len(normalise(r).split()) for r in refs)
    return float(cost[rows, cols].sum()) / max(1, words)
