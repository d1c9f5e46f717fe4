"""Which real recordings tune the defaults and which check them: split by recording, fixed here.

A default chosen on joined clips (bench/devset.py) got worse on a real meeting, so every
default is now chosen on the tuning half and judged on the checking half, which is
reported and never tuned on. The joined cases stay as a third, synthetic column.

The split is by recording, never by excerpt. The AMI debug excerpts come from a handful
of meetings; excerpts that share a speaker are the same people in the same room on the
same microphones, so they form one recording here and fall in one half together (a test
checks that no speaker id appears in both halves). Grouped by shared speakers, the 14
excerpts are 7 recordings:

    recording     excerpts                 speakers
    ami-g1        dev00 dev01              MEE009 MEE012
    ami-g2        tst00 tst01              FEO070 FEO072 MEE071 MEE073
    ami-g3        trn00 trn01 trn02 trn03  FEO065 FEO066 MEE067 MEE068 MÉO069
    ami-g4        trn04                    MEE075 MEE076 MEO074
    ami-g5        trn05                    FEE078 FEE080 FEE081 FEO079
    ami-g6        trn06 trn09              FEE083 FEE085 MEO082 MEE094 MEE095
    ami-g7        trn07 trn08              FEE087 FEE088 MEE089 MEO086

with pyannote-sample (2 speakers, phone-like), the AMI mixture (4, heavy overlap) and
picovoice-falcon (3 speakers taking turns). Each half gets long and short, crowded and
sparse, overlapped and clean recordings; single-speaker clips are split by speaker.

Recordings of one meeting with several excerpts also make a longer real case each
(`meeting_cases`): its excerpts in their own order with a 0.75-s pause between, so the
voices share one room and channel as in a real meeting. What these cannot show: a
speaker returning after many minutes (the excerpts are 30 s each, about 1-2 minutes in
all), or a meeting longer than 2 minutes; the crowded synthetic case covers length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.scoring import DATA, DEBUG

TUNING, CHECKING, SYNTHETIC = "tuning", "checking", "synthetic (joined clips)"
HALVES = (TUNING, CHECKING, SYNTHETIC)


@dataclass(frozen=True)
class Recording:
    name: str
    half: str
    cases: tuple[str, ...]  # case names as bench.accuracy reports them


RECORDINGS = (
    Recording("ami-g1", TUNING, ("ami-debug/dev00", "ami-debug/dev01")),
    Recording("ami-g3", TUNING, ("ami-debug/trn00", "ami-debug/trn01", "ami-debug/trn02", "ami-debug/trn03")),
    Recording("ami-g5", TUNING, ("ami-debug/trn05",)),
    Recording("ami-g7", TUNING, ("ami-debug/trn07", "ami-debug/trn08")),
    Recording("pyannote-sample", TUNING, ("pyannote-sample",)),
    Recording("ami-g2", CHECKING, ("ami-debug/tst00", "ami-debug/tst01")),
    Recording("ami-g4", CHECKING, ("ami-debug/trn04",)),
    Recording("ami-g6", CHECKING, ("ami-debug/trn06", "ami-debug/trn09")),
    Recording("ami-mixture-4spk", CHECKING, ("ami-mixture-4spk",)),
    Recording("picovoice-falcon-3spk", CHECKING, ("picovoice-falcon-3spk",)),
)

# One voice each: which clips tune a single-speaker decision and which check it.
SINGLE_TUNING = ("LapsBM_0240", "LapsBM_0415", "LapsBM_0618", "ufpalign_M-001", "ufpalign_falabrasil")
SINGLE_CHECKING = ("LapsBM_0385", "LapsBM_0475", "ufpalign_coxinha", "jfk")


# the development set names a visible case by its file's stem
ALIASES = {"sample": "pyannote-sample", "mixture": "ami-mixture-4spk", "test": "picovoice-falcon-3spk"}


def half_of(case: str) -> str:
    """The half a case belongs to; a case of no real recording is synthetic."""
    case = ALIASES.get(case, case)
    if case.startswith("room-"):  # the simulated meetings of bench/room.py, one per half
        return {f"room-{TUNING}": TUNING, f"room-{CHECKING}": CHECKING}.get(case, SYNTHETIC)
    for recording in RECORDINGS:
        if case in recording.cases or case == f"meeting-{recording.name}":
            return recording.half
    stem = case.rsplit("/", 1)[-1]
    if stem in SINGLE_TUNING:
        return TUNING
    if stem in SINGLE_CHECKING:
        return CHECKING
    return SYNTHETIC


def case_files(case: str) -> tuple[Path, Path]:
    """(wav, rttm) of one case of a real recording."""
    if case.startswith("ami-debug/"):
        uri = case.split("/", 1)[1]
        split = {"dev": "development", "tst": "test", "trn": "train"}[uri[:3]]
        return DEBUG / f"{uri}.wav", DEBUG / f"debug.{split}.rttm"
    return {"pyannote-sample": (DATA / "pyannote-sample/sample.wav", DATA / "pyannote-sample/sample.rttm"),
            "ami-mixture-4spk": (DATA / "ami-mixture-4spk/mixture.wav", DATA / "ami-mixture-4spk/mixture.rttm"),
            "picovoice-falcon-3spk": (DATA / "picovoice-falcon-3spk/test.wav",
                                      DATA / "picovoice-falcon-3spk/test.rttm")}[case]


def real_cases() -> list[tuple[str, Path, Path, str]]:
    """Every real multi-speaker case: (name, wav, rttm, half), tuning half first."""
    return [(case, *case_files(case), r.half) for half in (TUNING, CHECKING)
            for r in RECORDINGS if r.half == half for case in r.cases]


def meeting_cases(out: Path) -> list:
    """Each recording of several excerpts as one longer case, its excerpts in order (devset.DevCase)."""
    from bench import devset

    cases = []
    for recording in RECORDINGS:
        if len(recording.cases) < 2:
            continue
        pieces = []
        for case in recording.cases:
            wav, rttm = case_files(case)
            pieces.append(devset.Piece(wav, devset.rttm_turns(rttm, wav.stem), devset.case_texts(wav)))
        cases.append(devset.join(f"meeting-{recording.name}", pieces, out))
    return cases
