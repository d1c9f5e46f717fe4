"""A simulated meeting per half: one-voice material of that half's speakers, mixed into one room.

    .venv/bin/python -m bench.room OUT_DIR

Joined clips change channel at every clip boundary, so their speakers are easier
to tell apart than voices that share a room and a microphone. Here every voice
goes through the same room and the same noise:

- Material: the four AMI speakers of the half (bench/halves.py) with the most
  speech heard alone (their solo stretches of at least 1 s, devset.solo_stretches),
  and the half's single-speaker clips (Portuguese clips, jfk) as one-sentence speakers.
- Turns: the main speakers take turns in a seeded random order (never the same
  one twice in a row), each turn one of their solo stretches, used in order and
  from the start again when they run out. A new turn starts 0.2-0.8 s after the
  last one ends, or, two times in five, 0.5-1.5 s before it ends (overlap, about
  5-15 % of the speech). After every tenth turn one of the one-sentence speakers
  says their clip. About MINUTES long.
- Room: the sum is convolved with one synthetic impulse response (a direct path
  and exponentially decaying noise, RT60 0.4 s) and pink-ish noise is added at
  20 dB below the speech. The reference is the turns as placed.

What it cannot show: the main speakers' material repeats once it runs out
(identical audio returns, as in the crowded case), the AMI stretches already
carry their own far-field room under the simulated one, and turn-taking is
random rather than conversational (no replies, no backchannels). The material is
thin: the main speakers have 4-38 s of solo speech each, so the shorter ones repeat
many times in 4 minutes, which makes them easier to cluster than a real meeting.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench import devset, halves
from bench.scoring import DATA
from bench.synth import at_level, pinkish_noise

SAMPLE_RATE = 16000
MINUTES = 4.0
RT60 = 0.4
SNR_DB = 20.0
OVERLAP_CHANCE = 0.4


def main_speakers(half: str, count: int = 4) -> dict[str, list[tuple[Path, float, float]]]:
    """The half's AMI speakers with most solo speech: speaker -> [(wav, start, end)] stretches."""
    stretches: dict[str, list[tuple[Path, float, float]]] = {}
    for case, wav, rttm, case_half in halves.real_cases():
        if case_half != half or not case.startswith("ami-debug/"):
            continue
        turns = devset.rttm_turns(rttm, wav.stem)
        for speaker in {spk for _, _, spk in turns}:
            stretches.setdefault(speaker, []).extend(
                (wav, s, e) for s, e in devset.solo_stretches(turns, speaker) if e - s >= 1.0)
    total = {spk: sum(e - s for _, s, e in found) for spk, found in stretches.items()}
    return {spk: stretches[spk] for spk in sorted(total, key=lambda k: -total[k])[:count]}


def one_sentence_speakers(half: str) -> list[tuple[Path, str]]:
    names = halves.SINGLE_TUNING if half == halves.TUNING else halves.SINGLE_CHECKING
    clips = [(DATA / "ptbr-falabrasil" / f"{n}.wav", f"ptbr-{n}") for n in names if n != "jfk"]
    return clips + ([(DATA / "en-jfk/jfk.flac", "jfk")] if "jfk" in names else [])


def room(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One room for everyone: a synthetic impulse response and the same noise."""
    length = int(RT60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    response = rng.standard_normal(length) * np.exp(-6.9 * t / RT60) * 0.3
    response[0] = 1.0
    wet = np.convolve(samples, response / np.linalg.norm(response))[: len(samples)]
    speech_rms = np.sqrt(np.mean(wet[np.abs(wet) > 1e-4] ** 2))
    mixed = wet + at_level(pinkish_noise(rng, len(wet)), speech_rms, -SNR_DB)
    return (mixed / max(1.0, np.abs(mixed).max() / 0.9)).astype(np.float32)


def meeting(half: str, out: Path, seed: int = 23) -> devset.DevCase:
    """Write room-<half>.wav/.rttm (module docstring) and return it as a development case."""
    from bench.synth import read_audio, write_container

    rng = np.random.default_rng(seed)
    speakers, audio_of = main_speakers(half), {}
    singles = one_sentence_speakers(half)
    used = {spk: 0 for spk in speakers}
    placed: list[tuple[float, np.ndarray, str]] = []
    now, last, turn = 0.0, None, 0
    while now < MINUTES * 60:
        if turn and turn % 10 == 0 and turn // 10 <= len(singles):
            wav, speaker = singles[turn // 10 - 1]
            clip = read_audio(wav)
        else:
            speaker = rng.choice([s for s in speakers if s != last])
            wav, start, end = speakers[speaker][used[speaker] % len(speakers[speaker])]
            used[speaker] += 1
            whole = audio_of.setdefault(wav, read_audio(wav))
            clip = whole[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
        overlap = placed and rng.random() < OVERLAP_CHANCE
        begin = max(0.0, now - rng.uniform(0.5, 1.5)) if overlap else now + rng.uniform(0.2, 0.8)
        placed.append((begin, clip, speaker))
        now, last, turn = begin + len(clip) / SAMPLE_RATE, speaker, turn + 1
    mix = np.zeros(int((now + 1.0) * SAMPLE_RATE), np.float32)
    turns = []
    for begin, clip, speaker in placed:
        first = int(begin * SAMPLE_RATE)
        mix[first:first + len(clip)] += clip
        turns.append((begin, begin + len(clip) / SAMPLE_RATE, speaker))
    name = f"room-{half}"
    out.mkdir(parents=True, exist_ok=True)
    wav = write_container(out / f"{name}.wav", room(mix, rng))
    rttm = devset.write_rttm(out / f"{name}.rttm", name, turns)
    return devset.DevCase(name, wav, rttm, len(mix) / SAMPLE_RATE, len({t[2] for t in turns}), {})


def overlap_share(turns: list[tuple[float, float, str]]) -> float:
    """Share of speech time during which two or more speak."""
    edges = sorted([(s, 1) for s, _, _ in turns] + [(e, -1) for _, e, _ in turns])
    speech = overlapped = 0.0
    active, previous = 0, 0.0
    for time, step in edges:
        if active >= 1:
            speech += time - previous
        if active >= 2:
            overlapped += time - previous
        active, previous = active + step, time
    return overlapped / speech if speech else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    out = ap.parse_args().out
    for half in (halves.TUNING, halves.CHECKING):
        case = meeting(half, out)
        turns = devset.rttm_turns(case.rttm)
        print(f"{case.name}: {case.seconds / 60:.1f} min, {case.speakers} speakers, "
              f"overlap {overlap_share(turns):.0%} -> {case.wav}")


if __name__ == "__main__":
    main()
