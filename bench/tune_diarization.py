"""Grid-search the diarization knobs on every case in ../shared/data.

    .venv/bin/python -m bench.tune_diarization --steps 0.1,0.2,0.5

Segmentation and embeddings are computed once per (file, step) through
pyannote's own training cache; only clustering is re-run per setting. Prints
mean DER (collar 0 and 0.25) and how many files got the speaker count right.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.scoring import der, diarization_cases, load_reference
from diarized.config import Settings
from diarized.models import resolve_diarization
from diarized.pipeline import diarize, media
from diarized.pipeline.runner import diarize_options


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="0.1,0.2,0.5")
    ap.add_argument("--thresholds", default="0.4,0.5,0.55,0.6,0.7,0.8")
    ap.add_argument("--min-cluster-sizes", default="1,2,4,8,12")
    args = ap.parse_args()
    weights = resolve_diarization()
    tmp = Path(tempfile.mkdtemp())
    files = []
    for name, wav, rttm in diarization_cases():
        dec = media.decode(wav, tmp / (name.replace("/", "_") + ".f32"))
        files.append((name, media.open_audio(dec.raw_path), load_reference(rttm, wav.stem)))
    for step in map(float, args.steps.split(",")):
        options = replace(diarize_options(Settings(cpu_threads=2)),
                          segmentation_step=step, min_speaker_duration=0)
        pipeline = diarize.build_pipeline(weights, options)
        pipeline.training = True  # pyannote caches segmentations + embeddings in `file`
        cached = [(n, {"waveform": __import__("torch").from_numpy(a).unsqueeze(0),
                       "sample_rate": 16000, "uri": n}, ref) for n, a, ref in files]
        grid = itertools.product(map(float, args.thresholds.split(",")),
                                 map(int, args.min_cluster_sizes.split(",")))
        for threshold, mcs in grid:
            pipeline.instantiate({"segmentation": {"min_duration_off": 0.0},
                                  "clustering": {"method": "centroid", "threshold": threshold,
                                                 "min_cluster_size": mcs}})
            scores = []
            for name, file, ref in cached:
                out = pipeline(file, max_speakers=8)
                turns = [{"speaker": l, "start": s.start, "end": s.end}
                         for s, _, l in out.speaker_diarization.itertracks(yield_label=True)]
                scores.append(der(ref, turns))
            print(f"step={step} thr={threshold} mcs={mcs} "
                  f"DER0={statistics.mean(s.der for s in scores):.3f} "
                  f"DER25={statistics.mean(s.der_collar for s in scores):.3f} "
                  f"count_ok={sum(s.speakers == s.ref_speakers for s in scores)}/{len(scores)} "
                  f"abs_count_err={sum(abs(s.speakers - s.ref_speakers) for s in scores)}",
                  flush=True)


if __name__ == "__main__":
    main()
