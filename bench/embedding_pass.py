"""The shared CAM++ pass against the per-window one, side by side on every case: DER, speakers, time, embeddings.

    python -m bench.embedding_pass [--cases visible,dev] [--out FILE]

For each diarization case of `python -m bench.accuracy` (the visible cases and the
development set's joined ones), runs diarized's diarization stage twice on the same
decoded audio, once per embedding pass (`embedding_pass = "window"`, the way pyannote
does it: the network once per 10-s window; `"shared"`: once over the audio), and
reports DER at collars 0 and 0.25, speakers found against the reference, the
stage's wall time, and how far the shared embeddings are from the per-window ones
(cosine distance per (window, speaker), on the same segmentation), next to how far a
10-ms and a 50-ms shift of the audio moves the per-window ones: the natural jitter.

The same jitter, in DER: a third run per case is the per-window pass on the audio
delayed by 10 ms (reference shifted to match). How much a 10-ms delay moves a
case's DER is how much of any difference is noise of the system, not of the change.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.scoring import der, diarization_cases, load_reference

RESULTS = Path(__file__).parent / "results"
DELAY = 160  # samples: 10 ms


def cases(which: set[str], work: Path) -> list[tuple[str, Path, Path, str | None]]:
    found = []
    if "visible" in which:
        found += [(name, wav, rttm, wav.stem) for name, wav, rttm in diarization_cases()]
    if "dev" in which:
        from bench import devset

        found += [(case.name, case.wav, case.rttm, None) for case in devset.build(work / "devset")]
    return found


def embeddings(pipeline, audio: np.ndarray, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings of every (window, speaker), which of them have any speech), on the unshifted segmentation."""
    import torch
    from pyannote.audio.utils.signal import binarize

    wave = torch.from_numpy(np.ascontiguousarray(audio)).unsqueeze(0)
    file = {"waveform": wave, "sample_rate": 16000, "uri": "case"}
    segmentations = pipeline.get_segmentations(file)
    if not pipeline._segmentation.model.specifications.powerset:
        segmentations = binarize(segmentations, onset=0.5, initial_state=False)
    if shift:
        shifted = np.concatenate([audio[shift:], np.zeros(shift, np.float32)])
        file = {"waveform": torch.from_numpy(shifted).unsqueeze(0), "sample_rate": 16000, "uri": "case"}
    active = np.nan_to_num(segmentations.data).sum(axis=1) > 0
    return pipeline.get_embeddings(file, segmentations), active


def cosine_distances(a: np.ndarray, b: np.ndarray, active: np.ndarray) -> dict[str, float]:
    x, y = a[active], b[active]
    d = 1 - (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    return {"mean": float(np.mean(d)), "median": float(np.median(d)), "p95": float(np.percentile(d, 95))}


def run_case(name: str, wav: Path, rttm: Path, uri: str | None, pipelines: dict, options: dict,
             work: Path, compare_embeddings: bool) -> dict:
    from diarized.pipeline import diarize, media

    audio = media.open_audio(media.decode(wav, work / f"{wav.stem}.f32").raw_path)
    reference = load_reference(rttm, uri)
    row: dict = {"case": name, "minutes": len(audio) / 16000 / 60}
    for mode, pipeline in pipelines.items():
        started = time.monotonic()
        result = der(reference, diarize.diarize(pipeline, audio, options[mode]))
        row[mode] = {"der": result.der, "der_collar": result.der_collar, "speakers": result.speakers,
                     "seconds": time.monotonic() - started}
        row["ref_speakers"] = result.ref_speakers
    delayed = np.concatenate([np.zeros(DELAY, np.float32), np.asarray(audio)])
    turns = [{**t, "start": t["start"] - DELAY / 16000, "end": t["end"] - DELAY / 16000}
             for t in diarize.diarize(pipelines["window"], delayed, options["window"])]
    result = der(reference, turns)
    row["window_delayed"] = {"der": result.der, "der_collar": result.der_collar, "speakers": result.speakers}
    if compare_embeddings:
        window, active = embeddings(pipelines["window"], np.asarray(audio))
        shared, _ = embeddings(pipelines["shared"], np.asarray(audio))
        row["cosine_shared"] = cosine_distances(window, shared, active)
        for shift in (160, 800):
            moved, _ = embeddings(pipelines["window"], np.asarray(audio), shift)
            row[f"cosine_shift_{shift // 16}ms"] = cosine_distances(window, moved, active)
    print(json.dumps(row), flush=True)
    return row


def summarise(rows: list[dict]) -> str:
    lines = ["| case | min | DER c0 window / shared / window +10 ms | DER c0.25 window / shared | speakers "
             "window / shared / +10 ms / ref | stage s window / shared |", "|---|---|---|---|---|---|"]
    for r in rows:
        w, s, d = r["window"], r["shared"], r["window_delayed"]
        lines.append(f"| {r['case']} | {r['minutes']:.1f} | {w['der']:.1%} / {s['der']:.1%} / {d['der']:.1%} | "
                     f"{w['der_collar']:.1%} / {s['der_collar']:.1%} | {w['speakers']} / {s['speakers']} / "
                     f"{d['speakers']} / {r['ref_speakers']} | {w['seconds']:.1f} / {s['seconds']:.1f} |")
    mean = lambda mode, key: statistics.mean(r[mode][key] for r in rows)  # noqa: E731
    lines.append(f"| mean of {len(rows)} | | {mean('window', 'der'):.1%} / {mean('shared', 'der'):.1%} / "
                 f"{mean('window_delayed', 'der'):.1%} | "
                 f"{mean('window', 'der_collar'):.1%} / {mean('shared', 'der_collar'):.1%} | | "
                 f"{sum(r['window']['seconds'] for r in rows):.0f} / {sum(r['shared']['seconds'] for r in rows):.0f} |")
    moved = lambda mode: [abs(r[mode]["der"] - r["window"]["der"]) for r in rows]  # noqa: E731
    lines.append(f"\n|DER change| per case against the per-window pass: shared pass mean {statistics.mean(moved('shared')):.2%}"
                 f", max {max(moved('shared')):.1%}; a 10-ms delay of the audio mean "
                 f"{statistics.mean(moved('window_delayed')):.2%}, max {max(moved('window_delayed')):.1%}.")
    cos = [r for r in rows if "cosine_shared" in r]
    if cos:
        lines += ["", "| case | cosine distance to per-window: shared pass | 10-ms shift | 50-ms shift |",
                  "|---|---|---|---|"]
        for r in cos:
            cells = [r[k] for k in ("cosine_shared", "cosine_shift_10ms", "cosine_shift_50ms")]
            lines.append(f"| {r['case']} | " + " | ".join(f"mean {c['mean']:.3f}, p95 {c['p95']:.3f}" for c in cells)
                         + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="visible,dev")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from diarized.config import Settings
    from diarized.models import resolve_diarization
    from diarized.pipeline import diarize
    from diarized.pipeline.runner import diarize_options

    torch.set_num_threads(2)
    base = diarize_options(Settings(cpu_threads=2))
    options = {mode: dataclasses.replace(base, embedding_pass=mode) for mode in ("window", "shared")}
    weights = resolve_diarization()
    pipelines = {mode: diarize.build_pipeline(weights, options[mode]) for mode in options}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, wav, rttm, uri in cases(set(args.cases.split(",")), work):
            rows.append(run_case(name, wav, rttm, uri, pipelines, options, work,
                                 compare_embeddings=uri is None))
    table = summarise(rows)
    print(table)
    out = args.out or RESULTS / f"embedding-pass-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
