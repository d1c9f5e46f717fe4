"""Longer development cases made only from ../shared/data, with their references shifted.

    .venv/bin/python -m bench.devset OUT_DIR     # writes the WAVs, RTTMs and speaker texts

The visible cases are 11 s to 60 s; recordings that break speaker counting are
longer and more crowded. These cases join the visible recordings end to end,
each piece followed by a short pause, and shift every reference turn by the
piece's offset:

- ami-joined: the 14 AMI debug excerpts and the 4-speaker AMI mixture
  (about 7.5 minutes, 31 AMI speakers; speakers of one meeting recur across
  excerpts, so they come back later in the file).
- ptbr-joined: the eight Portuguese clips, one speaker each (LapsBM and ufpalign
  clips; SOURCE.md says one speaker per file, and the clips are taken to be eight
  different people).
- one-voice: the stretches where the AMI debug speaker heard longest speaks
  alone, end to end (far-field, two excerpts of one meeting): a longer
  single-speaker case than the visible clips, which are 2 to 11 s.
- one-voice-music: the same with synthetic background music (a chord changing
  every 4 s, 12 dB under the voice) and noise (20 dB under).
- crowded: at least 15 minutes and 15 speakers: every diarization case of the
  set plus jfk, then the AMI excerpts again in reverse order and 3 dB quieter
  (the only way to reach 15 minutes from this data: the second half repeats
  audio of the first, so its speakers do come back, with identical voices).

Per-speaker reference texts (for cpWER) exist where the data has them: the
mixture (mixture.spk.tsv), the sample (its STM), jfk, and the Portuguese clips.
The AMI debug excerpts have none, so cpWER is reported for ptbr-joined only
among these cases; the short visible cases keep theirs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.scoring import DATA, DEBUG, diarization_cases

SAMPLE_RATE = 16000
PAUSE_SECONDS = 0.75
CROWDED_MIN_SECONDS = 15 * 60


@dataclass
class Piece:
    """One visible recording as it goes into a joined case."""

    wav: Path
    turns: list[tuple[float, float, str]]  # start, end, speaker
    texts: dict[str, str] = field(default_factory=dict)  # speaker -> reference words, where known
    gain: float = 1.0


@dataclass
class DevCase:
    name: str
    wav: Path
    rttm: Path
    seconds: float
    speakers: int
    texts: dict[str, str]  # speaker -> words in time order (empty: no cpWER reference)


def rttm_turns(rttm: Path, uri: str | None = None) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of one recording in an RTTM (uri None: every line)."""
    turns = []
    for line in rttm.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER" and uri in (None, parts[1]):
            start, duration = float(parts[3]), float(parts[4])
            turns.append((start, start + duration, parts[7]))
    return turns


def case_texts(wav: Path) -> dict[str, str]:
    """Per-speaker reference words of a visible case, keyed like its RTTM; {} if it has none."""
    if wav.name == "mixture.wav":
        rows = (line.split("\t", 1) for line in (wav.parent / "mixture.spk.tsv").read_text().splitlines())
        return {speaker: text for speaker, text in rows}
    if wav.name == "sample.wav":  # the STM names people; the RTTM numbers them in order of appearance
        return sample_texts(wav.parent)
    return {}


def sample_texts(folder: Path) -> dict[str, str]:
    names = {"Diane": "speaker90", "Sheila": "speaker91"}  # first turns: Diane at 6.68 s = speaker90 at 6.69 s
    texts: dict[str, list[str]] = {}
    for line in (folder / "sample.stm").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            texts.setdefault(names.get(parts[2], parts[2]), []).append(parts[5])
    return {speaker: " ".join(words) for speaker, words in texts.items()}


def write_rttm(path: Path, uri: str, turns: list[tuple[float, float, str]]) -> Path:
    """A reference RTTM, written by the service's own RTTM writer."""
    from diarized.formats import to_rttm

    path.write_text(to_rttm([{"start": s, "end": e, "speaker": spk} for s, e, spk in sorted(turns)], uri))
    return path


def visible_pieces() -> list[Piece]:
    """Every visible multi-speaker case (RTTM) with its texts, in the set's own order."""
    return [Piece(wav, rttm_turns(rttm, wav.stem), case_texts(wav)) for _, wav, rttm in diarization_cases()]


def single_speaker(wav: Path, speaker: str, text: str) -> Piece:
    from bench.synth import read_audio

    seconds = len(read_audio(wav)) / SAMPLE_RATE
    return Piece(wav, [(0.0, seconds, speaker)], {speaker: text})


def ptbr_pieces() -> list[Piece]:
    folder = DATA / "ptbr-falabrasil"
    return [single_speaker(wav, f"ptbr-{wav.stem}", wav.with_suffix(".txt").read_text().strip())
            for wav in sorted(folder.glob("*.wav"))]


def jfk_piece() -> Piece:
    return single_speaker(DATA / "en-jfk/jfk.flac", "jfk", (DATA / "en-jfk/jfk.txt").read_text().strip())


def ami_pieces() -> list[Piece]:
    pieces = visible_pieces()
    return [p for p in pieces if p.wav.parent == DEBUG] + [p for p in pieces if p.wav.name == "mixture.wav"]


def solo_stretches(turns: list[tuple[float, float, str]], speaker: str) -> list[tuple[float, float]]:
    """The parts of `speaker`'s turns where no other speaker is heard."""
    others = [(s, e) for s, e, spk in turns if spk != speaker]
    stretches = []
    for start, end, spk in sorted(turns):
        if spk != speaker:
            continue
        cuts = sorted((max(s, start), min(e, end)) for s, e in others if s < end and e > start)
        for cut_start, cut_end in cuts:
            if cut_start > start:
                stretches.append((start, cut_start))
            start = max(start, cut_end)
        if end > start:
            stretches.append((start, end))
    return stretches


def one_voice(out: Path) -> DevCase:
    """The AMI debug speaker heard longest, alone: every solo stretch over half a second, joined."""
    from bench.synth import read_audio, write_container

    pieces = [p for p in visible_pieces() if p.wav.parent == DEBUG]
    seconds: dict[str, float] = {}
    for piece in pieces:
        for start, end, spk in piece.turns:
            seconds[spk] = seconds.get(spk, 0.0) + end - start
    speaker = max(seconds, key=seconds.get)
    audio, turns, offset = [], [], 0.0
    for piece in pieces:
        samples = read_audio(piece.wav)
        for start, end in solo_stretches(piece.turns, speaker):
            if end - start >= 0.5:
                audio.append(samples[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)])
                turns.append((offset, offset + len(audio[-1]) / SAMPLE_RATE, speaker))
                offset = turns[-1][1]
    out.mkdir(parents=True, exist_ok=True)
    wav = write_container(out / "one-voice.wav", np.concatenate(audio))
    return DevCase("one-voice", wav, write_rttm(out / "one-voice.rttm", "one-voice", turns), offset, 1, {})


def noisy_one_voice(out: Path, seed: int = 7) -> DevCase:
    """one-voice with music and noise under it: a chord that changes every 4 s (-12 dB) and noise (-20 dB).

    Background music is what a reader's video often has; a second "speaker" made of it
    is the failure a user saw. The music is synthetic (sine tones of a major chord with a
    slow tremolo), the noise bench/synth.py's pinkish_noise, as in bench/room.py.
    """
    from bench.synth import at_level, pinkish_noise, read_audio, write_container

    base = one_voice(out)
    speech = read_audio(base.wav)
    rng = np.random.default_rng(seed)
    t = np.arange(len(speech)) / SAMPLE_RATE
    roots = rng.choice([196.0, 220.0, 247.0, 262.0, 294.0], size=int(t[-1] // 4) + 1)
    root = roots[(t // 4).astype(int)]
    music = sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.26, 1.5)) * (0.75 + 0.25 * np.sin(t))
    level = np.sqrt(np.mean(speech ** 2))
    mixed = speech + at_level(music, level, -12) + at_level(pinkish_noise(rng, len(t)), level, -20)
    wav = write_container(out / "one-voice-music.wav", (mixed / max(1.0, np.abs(mixed).max() / 0.9)).astype(np.float32))
    rttm = write_rttm(out / "one-voice-music.rttm", "one-voice-music", rttm_turns(base.rttm))
    return DevCase("one-voice-music", wav, rttm, base.seconds, 1, {})


def join(name: str, pieces: list[Piece], out: Path) -> DevCase:
    """Concatenate with pauses; write NAME.wav, NAME.rttm and the per-speaker texts."""
    from bench.synth import read_audio, write_container

    audio, turns, texts, offset = [], [], {}, 0.0
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), np.float32)
    for piece in pieces:
        samples = read_audio(piece.wav) * piece.gain
        turns += [(start + offset, end + offset, speaker) for start, end, speaker in piece.turns]
        for speaker, text in piece.texts.items():
            texts[speaker] = f"{texts.get(speaker, '')} {text}".strip()
        audio += [samples, pause]
        offset += (len(samples) + len(pause)) / SAMPLE_RATE
    out.mkdir(parents=True, exist_ok=True)
    wav = write_container(out / f"{name}.wav", np.concatenate(audio))
    rttm = write_rttm(out / f"{name}.rttm", name, turns)
    speakers = {spk for _, _, spk in turns}
    # a cpWER reference needs every speaker's words: partial texts would count as deletions
    complete = texts if set(texts) == speakers else {}
    return DevCase(name, wav, rttm, offset, len(speakers), complete)


def build(out: Path) -> list[DevCase]:
    """The development cases, written into `out` afresh at every call (a few seconds of work)."""
    ami = ami_pieces()
    again = [Piece(p.wav, p.turns, p.texts, gain=10 ** (-3 / 20)) for p in reversed(ami)]
    others = [p for p in visible_pieces() if p not in ami]
    crowded = ami + others + [jfk_piece()] + again
    cases = [join("ami-joined", ami, out), join("ptbr-joined", ptbr_pieces(), out),
             join("crowded", crowded, out), one_voice(out), noisy_one_voice(out)]
    assert cases[2].seconds >= CROWDED_MIN_SECONDS and cases[2].speakers >= 15, cases[2]
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    for case in build(ap.parse_args().out):
        print(f"{case.name}: {case.seconds / 60:.1f} min, {case.speakers} speaker{'s' * (case.speakers != 1)}, "
              f"cpWER reference: {'yes' if case.texts else 'no'} -> {case.wav}")


if __name__ == "__main__":
    main()
