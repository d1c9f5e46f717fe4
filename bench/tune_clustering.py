"""Clustering candidates on the development set, side by side, with one embedding pass per file.

    .venv/bin/python -m bench.tune_clustering [--out bench/results/clustering.json]
        [--thresholds 0.7,0.75,0.8] [--sizes 2,4,8,12] [--grid-only [--recluster]]

Segmentations and embeddings are computed once per file with the shipped
settings (pyannote caches them in the file dict when the pipeline is in
training mode); then each candidate re-clusters and is scored like the
service (rare speakers dropped). Cases: every visible diarization case, the
joined development cases (bench/devset.py) and every single-speaker clip.
Candidates: agglomerative as shipped, its threshold and min_cluster_size on a
grid and min_cluster_size scaled with the file's length, spectral clustering
with an eigengap count at several pruning shares, and the shipped clustering
followed by a pass over its centroids (bench/recluster.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import devset
from bench.recluster import ReclusteredAgglomerative
from bench.scoring import DATA, der, diarization_cases, load_reference
from diarized.config import Settings
from diarized.models import resolve_diarization
from diarized.pipeline import diarize, media
from diarized.pipeline.clustering import SpectralClustering
from diarized.pipeline.runner import diarize_options

SINGLE = [DATA / "en-jfk/jfk.flac", *sorted((DATA / "ptbr-falabrasil").glob("*.wav"))]


def cases(work: Path) -> list[tuple[str, Path, object, int]]:
    """(name, wav, reference annotation or None, reference speaker count)."""
    found = [(name, wav, load_reference(rttm, wav.stem)) for name, wav, rttm in diarization_cases()]
    found += [(c.name, c.wav, load_reference(c.rttm)) for c in devset.build(work / "devset")]
    found = [(n, w, ref, len(ref.labels())) for n, w, ref in found]
    return found + [(f"single/{w.stem}", w, None, 1) for w in SINGLE]


def candidates(thresholds: list[float], sizes: list[int], others: bool, recluster: bool = False) -> list[tuple[str, dict]]:
    shipped = Settings()
    base = {"method": "agglomerative", "threshold": shipped.clustering_threshold,
            "min_cluster_size": shipped.min_cluster_size}
    found = [("agglomerative (shipped)", base)]
    found += [(f"agglomerative thr {t} mcs {m}", {**base, "threshold": t, "min_cluster_size": m})
              for t in thresholds for m in sizes if (t, m) != (base["threshold"], base["min_cluster_size"])]
    if others:
        found += [(f"agglomerative mcs {per} per minute", {**base, "mcs_per_minute": per})
                  for per in (0.5, 1.0, 2.0)]
        found += [(f"spectral prune {p}", {"method": "spectral", "prune": p}) for p in (0.01, 0.02, 0.05, 0.1)]
    if others or recluster:
        found += [(f"recluster merge {m} rounds {r}", {**base, "method": "recluster", "merge": m, "rounds": r})
                  for m in (0.0, 0.2, 0.3, 0.4, 0.5) for r in (0, 5) if (m, r) != (0.0, 0)]
    return found


def apply(pipeline, spectral, file: dict, candidate: dict, minutes: float, options):
    """One clustering run on cached embeddings; the turns as the service would keep them."""
    if candidate["method"] == "spectral":
        spectral.prune = candidate["prune"]
        pipeline.clustering = spectral
    else:
        recluster = candidate["method"] == "recluster"
        pipeline.clustering = (ReclusteredAgglomerative(candidate["merge"], candidate["rounds"]) if recluster
                               else pipeline._agglomerative)
        mcs = candidate["min_cluster_size"]
        if "mcs_per_minute" in candidate:
            mcs = max(2, round(candidate["mcs_per_minute"] * minutes))
        pipeline.clustering.instantiate({"method": "centroid", "threshold": candidate["threshold"],
                                         "min_cluster_size": mcs})
    output = pipeline(file, **diarize.speaker_hints(options))
    kept = diarize.decide_speakers(output, options)
    return [{"speaker": str(label), "start": seg.start, "end": seg.end}
            for seg, _, label in kept.itertracks(yield_label=True)]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/clustering.json"))
    ap.add_argument("--thresholds", default="0.7,0.75,0.8")
    ap.add_argument("--sizes", default="2,4,8,12", help="min_cluster_size values")
    ap.add_argument("--grid-only", action="store_true", help="no length-scaled, spectral or re-clustering candidates")
    ap.add_argument("--recluster", action="store_true", help="with --grid-only: the re-clustering candidates too")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    options = diarize_options(Settings(cpu_threads=2))
    pipeline = diarize.build_pipeline(resolve_diarization(), options)
    pipeline._agglomerative = pipeline.clustering
    spectral = SpectralClustering()
    pipeline.training = True  # segmentations and embeddings are kept in each file dict
    files = []
    for name, wav, ref, ref_count in cases(work):
        audio = media.open_audio(media.decode(wav, work / (name.replace("/", "_") + ".f32")).raw_path)
        files.append((name, {"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": 16000,
                             "uri": name}, ref, ref_count, len(audio) / 16000 / 60))
    rows = []
    grid = candidates([float(t) for t in args.thresholds.split(",")], [int(m) for m in args.sizes.split(",")],
                      not args.grid_only, args.recluster)
    for label, candidate in grid:
        started, scores = time.monotonic(), []
        for name, file, ref, ref_count, minutes in files:
            turns = apply(pipeline, spectral, file, candidate, minutes, options)
            found = len({t["speaker"] for t in turns})
            score = der(ref, turns) if ref is not None else None
            scores.append({"case": name, "speakers": found, "ref_speakers": ref_count,
                           "der": score.der if score else None, "der_collar": score.der_collar if score else None})
        rows.append({"candidate": label, "settings": candidate, "cases": scores,
                     "seconds": time.monotonic() - started})
        print(summary_line(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


def summary_line(row: dict) -> str:
    scored = [c for c in row["cases"] if c["der"] is not None]
    single = [c for c in row["cases"] if c["case"].startswith("single/") or c["case"] == "one-voice"]
    by = {c["case"]: c for c in row["cases"]}
    long = " ".join(f"{n} {by[n]['der']:.1%}/{by[n]['speakers']}of{by[n]['ref_speakers']}"
                    for n in ("ami-joined", "crowded", "ptbr-joined") if n in by)
    return (f"{row['candidate']}: DER mean {statistics.mean(c['der'] for c in scored):.1%} / "
            f"{statistics.mean(c['der_collar'] for c in scored):.1%} over {len(scored)}; "
            f"single-speaker right {sum(c['speakers'] == 1 for c in single)}/{len(single)}; {long}")


if __name__ == "__main__":
    main()
