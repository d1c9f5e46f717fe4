"""Accuracy on ../shared/data: ours vs the bare libraries, side by side.

    .venv/bin/python -m bench.accuracy [--skip-der] [--skip-wer] [--halves] [--dev]

WER: en-jfk and the eight ptbr-falabrasil clips, Whisper base. "Bare" is
faster-whisper as its README shows it (WhisperModel.transcribe(path,
beam_size=5)); "ours" is diarized's transcription stage (decode once, batched
inference with VAD, word timestamps, language vote).
DER: every real multi-speaker case, by half (bench/halves.py: a tuning half
that defaults are chosen on and a checking half they are judged on), each
meeting's excerpts joined as one case, and a simulated room meeting per half
(bench/room.py); "bare" is pyannote's SpeakerDiarization with the
same weights and its defaults (step 0.1, no overlap exclusion, batch 1,
untuned centroid threshold 0.7, min_cluster_size 12), called on the same
waveform; "ours" is diarized's diarization stage.
Development set (--dev, bench/devset.py: the joined long and crowded cases,
and every case with per-speaker texts): "ours" is the whole service pipeline
(its diarization.rttm and final_transcription.json); "bare" is pyannote as
above plus sequential faster-whisper with word timestamps, each word given to
the bare speaker it overlaps most. DER at collars 0 and 0.25, speakers found
against the reference, and cpWER where the data has per-speaker texts.
--halves prints the halves side by side (ours and bare; with --dev the joined
cases as a third, synthetic column and cpWER where there is text).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench import halves
from bench.devset import rttm_turns
from bench.scoring import DATA, der, load_reference, wer_corpus

BARE_CLUSTERING = {"method": "centroid", "threshold": 0.7, "min_cluster_size": 12}


def ptbr_cases() -> list[tuple[Path, str]]:
    folder = DATA / "ptbr-falabrasil"
    return [(wav, wav.with_suffix(".txt").read_text().strip()) for wav in sorted(folder.glob("*.wav"))]


def bare_transcript(model_path: Path, audio_file: Path, language: str | None, threads: int = 2) -> str:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_path), device="cpu", compute_type="int8", cpu_threads=threads)
    segments, _ = model.transcribe(str(audio_file), beam_size=5, language=language)
    return " ".join(s.text.strip() for s in segments)


def ours_transcript(transcriber, audio_file: Path) -> tuple[str, str, list[dict]]:
    """(text, language, segments) through diarized's decode + transcription stage."""
    from diarized.pipeline import chunking, media

    with tempfile.TemporaryDirectory() as tmp:
        raw = media.decode(audio_file, Path(tmp) / "a.f32").raw_path
        audio = media.open_audio(raw)
        language, _ = transcriber.detect_language(audio)
        segments = []
        for unit in chunking.plan_units(audio):
            segments += transcriber.transcribe_unit(audio, unit, language)
    return " ".join(s["text"] for s in segments), language, segments


def bare_diarization_pipeline(weights, batch_size: int = 1):
    """pyannote's pipeline as its README builds it, with the only offline weights we have.

    Batch sizes change speed, not results (eval-mode batch norm), so accuracy
    tests may raise them; speed benchmarks keep pyannote's default of 1.
    """
    from pyannote.audio import Model
    from pyannote.audio.pipelines import SpeakerDiarization

    from diarized.pipeline.campplus import CamPlusPlus
    from diarized.pipeline.diarize import NoPLDA

    pipeline = SpeakerDiarization(
        segmentation=Model.from_pretrained(str(weights.segmentation)),
        embedding=CamPlusPlus(weights.embedding), plda=NoPLDA(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=batch_size, segmentation_batch_size=batch_size,
    )
    pipeline.instantiate({"segmentation": {"min_duration_off": 0.0}, "clustering": BARE_CLUSTERING})
    return pipeline


def bare_turns(pipeline, audio) -> list[dict]:
    import torch

    out = pipeline({"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": 16000})
    return [{"speaker": label, "start": seg.start, "end": seg.end}
            for seg, _, label in out.speaker_diarization.itertracks(yield_label=True)]


def der_cases(out: Path) -> list[tuple[str, Path, Path, str | None]]:
    """(name, wav, rttm, uri): every real case of both halves, each meeting as one case, the room meetings."""
    from bench import room

    cases = [(name, wav, rttm, wav.stem) for name, wav, rttm, _ in halves.real_cases()]
    made = halves.meeting_cases(out) + [room.meeting(half, out) for half in (halves.TUNING, halves.CHECKING)]
    return cases + [(c.name, c.wav, c.rttm, None) for c in made]


def der_table() -> list[dict]:
    from diarized.models import resolve_diarization
    from diarized.pipeline import diarize, media

    weights = resolve_diarization()
    from diarized.config import Settings
    from diarized.pipeline.runner import diarize_options

    options = diarize_options(Settings(cpu_threads=2))
    ours, bare = diarize.build_pipeline(weights, options), bare_diarization_pipeline(weights, 32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, wav, rttm, uri in der_cases(Path(tmp) / "meetings"):
            audio = media.open_audio(media.decode(wav, Path(tmp) / f"{wav.stem}.f32").raw_path)
            ref = load_reference(rttm, uri)
            t0 = time.monotonic()
            o = der(ref, diarize.diarize(ours, audio, options))
            t1 = time.monotonic()
            b = der(ref, bare_turns(bare, audio))
            t2 = time.monotonic()
            rows.append({"case": name, "half": halves.half_of(name), "ours_der": o.der, "ours_der_collar": o.der_collar,
                         "ours_speakers": o.speakers, "bare_der": b.der,
                         "bare_der_collar": b.der_collar, "bare_speakers": b.speakers,
                         "ref_speakers": o.ref_speakers, "ours_s": t1 - t0, "bare_s": t2 - t1})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def wer_table(model_path: Path) -> list[dict]:
    from diarized.pipeline.transcribe import AsrOptions, Transcriber

    rows = []
    cases = [("en-jfk", DATA / "en-jfk/jfk.flac", (DATA / "en-jfk/jfk.txt").read_text(), "en")]
    cases += [(f"ptbr/{w.stem}", w, ref, "pt") for w, ref in ptbr_cases()]
    auto = Transcriber(AsrOptions(model_path=model_path, language="auto"))
    for name, path, ref, lang in cases:
        forced = Transcriber(AsrOptions(model_path=model_path, language=lang))
        hyp_forced, _, _ = ours_transcript(forced, path)
        hyp_auto, detected, _ = ours_transcript(auto, path)
        rows.append({"case": name, "ref": ref, "ours_forced": hyp_forced, "ours_auto": hyp_auto,
                     "detected": detected, "bare_forced": bare_transcript(model_path, path, lang),
                     "bare_auto": bare_transcript(model_path, path, None)})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    return rows


def summarise(wers: list[dict], ders: list[dict]) -> str:
    lines = []
    if wers:
        lines += ["| case | ours (lang forced) | bare (lang forced) | ours (auto) | bare (auto) |",
                  "|---|---|---|---|---|"]
        groups = {"en-jfk": [r for r in wers if r["case"] == "en-jfk"],
                  "ptbr-falabrasil (8 clips, corpus WER)": [r for r in wers if r["case"].startswith("ptbr")]}
        for label, rows in groups.items():
            cells = [wer_corpus([(r["ref"], r[k]) for r in rows])
                     for k in ("ours_forced", "bare_forced", "ours_auto", "bare_auto")]
            lines.append(f"| {label} | " + " | ".join(f"{c:.1%}" for c in cells) + " |")
    if ders:
        lines += ["", "| case | ours DER c0 / c0.25 | bare DER c0 / c0.25 | speakers ours / bare / ref |",
                  "|---|---|---|---|"]
        for r in ders:
            lines.append(f"| {r['case']} | {r['ours_der']:.1%} / {r['ours_der_collar']:.1%} | "
                         f"{r['bare_der']:.1%} / {r['bare_der_collar']:.1%} | "
                         f"{r['ours_speakers']} / {r['bare_speakers']} / {r['ref_speakers']} |")
        mean = lambda k: statistics.mean(r[k] for r in ders)  # noqa: E731
        lines.append(f"| mean of {len(ders)} | {mean('ours_der'):.1%} / {mean('ours_der_collar'):.1%} | "
                     f"{mean('bare_der'):.1%} / {mean('bare_der_collar'):.1%} | |")
    return "\n".join(lines)


def dev_cases(out: Path) -> list:
    """The joined cases, then the visible cases with per-speaker texts, as devset.DevCase."""
    from bench import devset

    joined = devset.build(out)
    texted = [p for p in devset.visible_pieces() if p.texts] + [devset.jfk_piece()] + devset.ptbr_pieces()
    for piece in texted:
        rttm = devset.write_rttm(out / f"{piece.wav.stem}.rttm", piece.wav.stem, piece.turns)
        joined.append(devset.DevCase(piece.wav.stem, piece.wav, rttm, piece.turns[-1][1],
                                     len({t[2] for t in piece.turns}), piece.texts))
    return joined


def speaker_texts(segments: list[dict]) -> dict[str, str]:
    texts: dict[str, list[str]] = {}
    for seg in sorted(segments, key=lambda s: s["start_time"]):
        texts.setdefault(seg["speaker_id"], []).append(seg["text"])
    return {speaker: " ".join(parts) for speaker, parts in texts.items()}


def ours_full(case, model: str, work: Path) -> tuple[list[dict], dict[str, str]]:
    """The service's own pipeline on one case: its RTTM turns and per-speaker texts."""
    from diarized.config import Settings
    from diarized.pipeline.runner import Runner

    out = work / case.name / "out"
    Runner(Settings(model=model, cpu_threads=2, cache_dir=work / "models")).run(
        case.wav, work / case.name / "work", out)
    turns = [{"speaker": spk, "start": s, "end": e} for s, e, spk in rttm_turns(out / "diarization.rttm")]
    final = json.loads((out / "final_transcription.json").read_text())
    return turns, speaker_texts(final["segments"])


def bare_words(model_path: Path, wav: Path) -> list[tuple[float, float, str]]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_path), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(str(wav), beam_size=5, word_timestamps=True)
    return [(w.start, w.end, w.word) for s in segments for w in s.words]


def bare_speaker_texts(words, turns: list[dict]) -> dict[str, str]:
    """Each word to the bare turn it overlaps most (else the nearest), joined per speaker."""
    texts: dict[str, list[str]] = {}
    for start, end, word in words:
        def score(t):
            overlap = min(end, t["end"]) - max(start, t["start"])
            return overlap if overlap > 0 else -min(abs(start - t["end"]), abs(t["start"] - end))
        speaker = max(turns, key=score)["speaker"] if turns else "none"
        texts.setdefault(speaker, []).append(word.strip())
    return {speaker: " ".join(ws) for speaker, ws in texts.items()}


def dev_table(model: str, model_path: Path, work: Path) -> list[dict]:
    from bench.scoring import cpwer
    from diarized.models import resolve_diarization
    from diarized.pipeline import media

    bare = bare_diarization_pipeline(resolve_diarization(), 32)
    rows = []
    for case in dev_cases(work / "devset"):
        ref = load_reference(case.rttm)
        t0 = time.monotonic()
        turns, texts = ours_full(case, model, work)
        t1 = time.monotonic()
        audio = media.open_audio(media.decode(case.wav, work / f"{case.name}.f32").raw_path)
        bare_turn_list = bare_turns(bare, audio)
        t2 = time.monotonic()
        o, b = der(ref, turns), der(ref, bare_turn_list)
        row = {"case": case.name, "half": halves.half_of(case.name), "minutes": case.seconds / 60, "ref_speakers": case.speakers,
               "ours_der": o.der, "ours_der_collar": o.der_collar, "ours_speakers": o.speakers,
               "bare_der": b.der, "bare_der_collar": b.der_collar, "bare_speakers": b.speakers,
               "ours_s": t1 - t0, "bare_diarization_s": t2 - t1}
        if case.texts:
            row["ours_cpwer"] = cpwer(case.texts, texts)
            row["bare_cpwer"] = cpwer(case.texts, bare_speaker_texts(bare_words(model_path, case.wav),
                                                                     bare_turn_list))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summarise_dev(rows: list[dict]) -> str:
    lines = ["| case | min | DER c0 / c0.25 ours | DER c0 / c0.25 bare | speakers ours / bare / ref "
             "| cpWER ours / bare |", "|---|---|---|---|---|---|"]
    for r in rows:
        cp = f"{r['ours_cpwer']:.1%} / {r['bare_cpwer']:.1%}" if "ours_cpwer" in r else "-"
        lines.append(f"| {r['case']} | {r['minutes']:.1f} | {r['ours_der']:.1%} / {r['ours_der_collar']:.1%} | "
                     f"{r['bare_der']:.1%} / {r['bare_der_collar']:.1%} | "
                     f"{r['ours_speakers']} / {r['bare_speakers']} / {r['ref_speakers']} | {cp} |")
    return "\n".join(lines)


def half_summary(rows: list[dict], who: str) -> dict[str, str]:
    """One column of the halves table: means over a half's cases, for `who` (ours or bare)."""
    if not rows:
        return {}
    mean = lambda key: statistics.mean(r[f"{who}_{key}"] for r in rows)  # noqa: E731
    off = [r[f"{who}_speakers"] - r["ref_speakers"] for r in rows]
    cells = {"cases": str(len(rows)),
             "DER c0 / c0.25": f"{mean('der'):.1%} / {mean('der_collar'):.1%}",
             "speakers exact": f"{sum(o == 0 for o in off)} of {len(rows)}",
             "speakers > ref + 1": str(sum(o > 1 for o in off)),
             "speakers found - ref (mean)": f"{statistics.mean(off):+.2f}"}
    texted = [r for r in rows if f"{who}_cpwer" in r]
    cells["cpWER"] = (f"{statistics.mean(r[f'{who}_cpwer'] for r in texted):.1%} ({len(texted)} cases)"
                      if texted else "-")
    return cells


def merged(dev: list[dict], ders: list[dict]) -> list[dict]:
    """One row per case: the DER run's row, with cpWER from the development run where it has one."""
    by_case = {halves.ALIASES.get(r["case"], r["case"]): r for r in dev}
    rows = [{**r, **{k: v for k, v in by_case.pop(r["case"], {}).items() if k.endswith("cpwer")}} for r in ders]
    return rows + list(by_case.values())


def summarise_halves(rows: list[dict]) -> str:
    """Tuning | checking | synthetic side by side, ours then bare: choose on the first, report the second."""
    columns = [(half, who) for who in ("ours", "bare") for half in halves.HALVES]
    cells = {column: half_summary([r for r in rows if r.get("half") == column[0]], column[1]) for column in columns}
    metrics = ["cases", "DER c0 / c0.25", "speakers exact", "speakers > ref + 1", "speakers found - ref (mean)",
               "cpWER"]
    lines = ["| | " + " | ".join(f"{who} {half}" for half, who in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for metric in metrics:
        lines.append(f"| {metric} | " + " | ".join(cells[c].get(metric, "-") for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-wer", action="store_true")
    ap.add_argument("--skip-der", action="store_true")
    ap.add_argument("--dev", action="store_true", help="only the development set (long, crowded, cpWER)")
    ap.add_argument("--halves", action="store_true",
                    help="DER of both halves (bench/halves.py) side by side; with --dev the synthetic column too")
    ap.add_argument("--model", default="base")
    ap.add_argument("--out", type=Path, default=Path("bench/results/accuracy.json"))
    args = ap.parse_args()
    from diarized.models import resolve_whisper

    cache = Path(tempfile.gettempdir()) / "diarized-bench-models"
    model_path = resolve_whisper(args.model, cache)
    if args.dev or args.halves:
        rows = []
        if args.dev:  # with --halves too: the synthetic column and cpWER come from here
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                (work / "models").symlink_to(cache)
                rows = dev_table(args.model, model_path, work)
        ders = der_table() if args.halves else []
        name = "accuracy-halves.json" if args.halves else "accuracy-dev.json"
        out = args.out.with_name(name) if args.out.name == "accuracy.json" else args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"dev": rows, "der": ders}, indent=2))
        if rows:
            print(summarise_dev(rows))
        if ders:
            print(summarise(ders=ders, wers=[]))
            print(summarise_halves(merged(rows, ders)))
        return
    wers = [] if args.skip_wer else wer_table(model_path)
    ders = [] if args.skip_der else der_table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"wer": wers, "der": ders}, indent=2, ensure_ascii=False))
    print(summarise(wers, ders))


if __name__ == "__main__":
    main()
