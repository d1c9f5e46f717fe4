"""Words on the right side of a turn change: cpWER word by word vs by sentence fragment.

    .venv/bin/python -m bench.word_sides [--model base]

Every case with per-speaker reference texts (the sample, the AMI mixture, jfk,
the Portuguese clips and ptbr-joined; bench/accuracy.py dev_cases) goes once
through the service's own pipeline; then its words and turns are merged twice:
each word by the turn that overlaps it most (what merge.py did before), and with
merge.settle_fragments (a fragment two speakers share goes to the one who covers
most of it). Prints cpWER of both per case, with the case's half (bench/halves.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench import halves
from bench.accuracy import dev_cases, speaker_texts
from bench.scoring import cpwer


def segments(whisper_segments: list[dict], turns: list[dict], settle: bool) -> list[dict]:
    from diarized.pipeline import merge

    words = merge.words_from_segments(whisper_segments)
    merge.assign_speakers(words, turns)
    if settle:
        merge.settle_fragments(words, turns)
    return merge.build_segments(words)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base")
    args = ap.parse_args()
    from diarized.config import Settings
    from diarized.pipeline.runner import Runner

    cache = Path(tempfile.gettempdir()) / "diarized-bench-models"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(model=args.model, cpu_threads=2, cache_dir=cache)
        for case in dev_cases(work / "devset"):
            if not case.texts:
                continue
            out = work / case.name / "out"
            Runner(settings).run(case.wav, work / case.name / "work", out)
            whisper = json.loads((out / "whisper_results.json").read_text())["segments"]
            turns = json.loads((out / "diarization_results.json").read_text())["turns"]
            row = {"case": case.name, "half": halves.half_of(case.name)}
            for name, settle in (("word_by_word", False), ("fragments", True)):
                row[name] = cpwer(case.texts, speaker_texts(segments(whisper, turns, settle)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| case | half | cpWER word by word | cpWER by fragment |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['half']} | {r['word_by_word']:.1%} | {r['fragments']:.1%} |")


if __name__ == "__main__":
    main()
