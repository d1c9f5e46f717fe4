"""Speaker decisions side by side, chosen on the tuning half, reported on the checking half.

The choice: the best tuning-half candidate (no extra speaker on a one-voice clip, then
mean DER, then counts) among those that keep the speakers the long synthetic cases
(ami-joined, crowded) found before: their short clusters include real speakers heard
for one sentence, which a too-eager merge loses.

    .venv/bin/python -m bench.speaker_decision [--cache FILE] [--out bench/results/speaker-decision.json]

Runs diarized's diarization once per case with the decision switched off (every
cluster kept, nothing dropped) and keeps pyannote's clusters and their centroids
(cached in --cache, so a second run only re-decides). Then every candidate rule
(pipeline/speakers.py) decides the speakers of every case, and one table shows,
per half of bench/halves.py (tuning, checking) and for the synthetic joined
cases: mean DER at collars 0 and 0.25 over the multi-speaker cases, how many
cases got their speaker count exactly, how many found more than the reference
plus one, and how many single-speaker clips came out as one speaker.

Candidates: what shipped before (clusters under 1 s dropped), absolute floors
(a cluster under N s always merged into its nearest), relative floors (under a
share of the file's speech), the margin rule (short clusters merged unless their
centroid is far from every other) over a grid, overlap-only (short clusters
whose speech is mostly overlapped dropped: the others cover their time), and the one-voice rule on top.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench import devset, halves, room
from bench.scoring import DATA, der, load_reference

LONG = ("ami-joined", "crowded")  # the long synthetic cases must not lose speakers (issue 23, item 5)
SINGLES = [DATA / "en-jfk/jfk.flac", *sorted((DATA / "ptbr-falabrasil").glob("*.wav"))]


def cases(work: Path) -> list[tuple[str, Path, object, str]]:
    """(name, wav, reference annotation or None for a one-voice clip, half)."""
    found = [(name, wav, load_reference(rttm, wav.stem), half) for name, wav, rttm, half in halves.real_cases()]
    rooms = [room.meeting(half, work / "rooms") for half in (halves.TUNING, halves.CHECKING)]
    for case in halves.meeting_cases(work / "meetings") + rooms + devset.build(work / "devset"):
        found.append((case.name, case.wav, load_reference(case.rttm), halves.half_of(case.name)))
    return found + [(f"single/{w.stem}", w, None, halves.half_of(w.stem)) for w in SINGLES]


def raw_outputs(cache: Path) -> list[dict]:
    """Per case: clusters as pyannote left them (annotation, centroids) and the reference."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    from diarized.config import Settings
    from diarized.models import resolve_diarization
    from diarized.pipeline import diarize, media
    from diarized.pipeline.runner import diarize_options

    options = replace(diarize_options(Settings(cpu_threads=2)), min_speaker_duration=0.0)
    pipeline = diarize.build_pipeline(resolve_diarization(), options)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, wav, ref, half in cases(Path(tmp)):
            import torch

            audio = media.open_audio(media.decode(wav, Path(tmp) / "a.f32").raw_path)
            file = {"waveform": torch.from_numpy(np.asarray(audio)).unsqueeze(0), "sample_rate": 16000}
            output = pipeline(file, **diarize.speaker_hints(options))
            rows.append({"case": name, "half": half, "reference": ref, "annotation": output.speaker_diarization,
                         "centroids": output.speaker_embeddings})
            print(f"{name}: {len(output.speaker_diarization.labels())} clusters", flush=True)
    cache.write_bytes(pickle.dumps(rows))
    return rows


def overlapped_share(annotation, label) -> float:
    """Share of a label's speech during which someone else speaks too."""
    own = annotation.label_timeline(label).support()
    others = annotation.subset([x for x in annotation.labels() if x != label]).get_timeline().support()
    total = own.duration()
    return own.crop(others, mode="intersection").duration() / total if total else 0.0


def decide(row: dict, candidate: dict):
    from diarized.pipeline.speakers import SpeakerRule, decide, drop_short

    annotation, centroids = row["annotation"], row["centroids"]
    kind = candidate["kind"]
    if kind == "before":
        return drop_short(annotation, 1.0, 0)
    speech = annotation.get_timeline().support().duration()
    if kind == "overlap":  # a short cluster heard mostly under someone else is dropped: they cover its time
        mostly = [x for x in annotation.labels() if annotation.label_duration(x) < candidate["short"]
                  and overlapped_share(annotation, x) > 0.5]
        keep = annotation.subset([x for x in annotation.labels() if x not in mostly] or annotation.labels())
        return drop_short(keep, 1.0, 0)
    short = candidate.get("short", 0.0)
    if "share" in candidate:
        short = candidate["share"] * speech
    rule = SpeakerRule(short_seconds=short, margin=candidate.get("margin", 0.0),
                       one_voice=candidate.get("one_voice", 0.0), min_seconds=1.0)
    return decide(annotation, centroids, rule)


def candidates() -> list[dict]:
    found = [{"name": "before: clusters under 1 s dropped", "kind": "before"}]
    found += [{"name": f"floor {s:g} s", "kind": "rule", "short": s, "margin": np.inf} for s in (3, 5, 10, 20)]
    found += [{"name": f"floor {p:.0%} of speech", "kind": "rule", "share": p, "margin": np.inf}
              for p in (0.01, 0.02, 0.05)]
    found += [{"name": f"overlap-only under {s:g} s", "kind": "overlap", "short": s} for s in (10, 30)]
    found += [{"name": f"margin {m:g} under {s:g} s", "kind": "rule", "short": s, "margin": m}
              for s in (5, 10, 20, 40) for m in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    found += [{"name": f"margin {m:g} under {s:g} s", "kind": "rule", "short": s, "margin": m}
              for s in (3, 5, 7) for m in (0.35, 0.4, 0.45) if (s, m) != (5, 0.4)]
    found += [{"name": "one voice 0.3 + margin 0.4 under 5 s", "kind": "rule", "short": 5, "margin": 0.4,
               "one_voice": 0.3}]
    found += [{"name": f"one voice {v:g} + margin {m:g} under {s:g} s", "kind": "rule", "short": s, "margin": m,
               "one_voice": v} for s in (10, 20) for m in (0.5, 0.6, 0.7) for v in (0.3, 0.4, 0.5)]
    return found


def score(rows: list[dict], candidate: dict) -> dict[str, dict]:
    """Per half: mean DER (c0, c0.25) over multi-speaker cases, speaker counts, one-voice clips."""
    per_half: dict[str, dict] = {}
    for row in rows:
        kept = decide(row, candidate)
        turns = [{"speaker": str(label), "start": s.start, "end": s.end}
                 for s, _, label in kept.itertracks(yield_label=True)]
        cell = per_half.setdefault(row["half"], {"der": [], "collar": [], "exact": 0, "over": 0, "multi": 0,
                                                 "single": 0, "single_one": 0})
        found = len(kept.labels())
        if row["reference"] is None:
            cell["single"] += 1
            cell["single_one"] += found == 1
            continue
        d, ref = der(row["reference"], turns), len(row["reference"].labels())
        cell["der"].append(d.der)
        cell["collar"].append(d.der_collar)
        cell["multi"] += 1
        cell["exact"] += found == ref
        cell["over"] += found > ref + 1
        if ref == 1:  # one-voice (synthetic) counts as a single-speaker case too
            cell["single"] += 1
            cell["single_one"] += found == 1
    return {half: {"der": statistics.mean(c["der"]) if c["der"] else 0.0,
                   "der_collar": statistics.mean(c["collar"]) if c["collar"] else 0.0,
                   "exact": c["exact"], "over": c["over"], "multi": c["multi"],
                   "single_one": c["single_one"], "single": c["single"]} for half, c in per_half.items()}


def cell(s: dict) -> str:
    return (f"{s['der']:.1%} / {s['der_collar']:.1%}, exact {s['exact']}/{s['multi']}, over {s['over']}, "
            f"one voice {s['single_one']}/{s['single']}")


def keeps_long_counts(rows: list[dict], candidate: dict, before: dict) -> bool:
    """The constraint on any candidate: the long synthetic cases keep the speakers they had."""
    return all(len(decide(r, candidate).labels()) >= before[r["case"]] for r in rows if r["case"] in before)


def tuning_key(s: dict) -> tuple:
    """How the tuning half ranks a candidate: no extra speaker on one voice, then DER, then counts."""
    t = s[halves.TUNING]
    return (t["single"] - t["single_one"], round(t["der"], 3), t["over"], -t["exact"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "diarized-speaker-decision.pkl")
    ap.add_argument("--out", type=Path, default=Path("bench/results/speaker-decision.json"))
    args = ap.parse_args()
    rows = raw_outputs(args.cache)
    results = [(c, score(rows, c)) for c in candidates()]
    lines = ["| candidate | " + " | ".join(halves.HALVES) + " |", "|---|---|---|---|"]
    for c, s in sorted(results, key=lambda r: tuning_key(r[1])):
        lines.append(f"| {c['name']} | " + " | ".join(cell(s[h]) if h in s else "-" for h in halves.HALVES) + " |")
    print("\n".join(lines))
    long_cases = [r for r in rows if r["case"] in LONG]
    before = {r["case"]: len(decide(r, candidates()[0]).labels()) for r in long_cases}
    best = min(results, key=lambda r: tuning_key(r[1]))
    kept = min((r for r in results if keeps_long_counts(long_cases, r[0], before)), key=lambda r: tuning_key(r[1]))
    print(f"\nbest on the tuning half: {best[0]['name']}; best that keeps the speakers of "
          f"{' and '.join(LONG)} ({before}): {kept[0]['name']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([{"candidate": {k: (v if v != np.inf else "inf") for k, v in c.items()},
                                     "halves": s} for c, s in results], indent=2))


if __name__ == "__main__":
    main()
