"""Run every stage for one recording, with a checkpoint after each step.

Checkpoints live in the work folder the caller gives (the daemon's job dir, or
a temporary folder for `diarizectl transcribe`): the decoded audio, the unit
plan, one file per transcribed unit, the diarization turns. A run that finds
them skips that work, so a job killed half-way resumes and ends with the same
outputs as an uninterrupted run (the models are deterministic on CPU).
"""

from __future__ import annotations

import cProfile
import json
import resource
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from diarized.allocator import CoreShare, HeapTrimmer
from diarized.config import Settings
from diarized.models import ModelError, resolve_diarization, resolve_whisper
from diarized import formats
from diarized.pipeline import chunking, media, merge
from diarized.files import write_json
from diarized.pipeline.transcribe import AsrOptions, results_document

# Share of the wall time each stage takes on CPU (measured on base, 2 threads);
# used to turn per-stage progress into one job fraction.
WEIGHTS = {"decode": 0.03, "transcribe": 0.55, "diarize": 0.39, "write": 0.03}
STAGES = tuple(WEIGHTS)
# Samples read before this far behind a stage's progress are let go of (media.release): a
# window (10 s) and the shared pass's margin (10 s) behind, with room to spare.
RELEASE_LAG = 30 * 16000
# An English-only model's output is flagged when the multilingual check hears another language
# this surely (pt clips: 0.9+; English: "en" anyway).
ENGLISH_ONLY_CONFIDENCE = 0.5


class Interrupted(Exception):
    """The caller asked us to stop; every finished step is checkpointed."""


@dataclass
class Hooks:
    """How a run reports to its caller (a progress bar, or the job store)."""

    progress: Callable[[str, float, float], None] = lambda stage, stage_frac, job_frac: None
    event: Callable[[str, str], None] = lambda kind, detail: None
    should_stop: Callable[[], bool] = lambda: False
    decoded: Callable[[float], None] = lambda seconds: None  # the audio's real duration


@dataclass
class RunResult:
    out_dir: Path
    document: dict
    outputs: dict[str, Path]
    units_total: int
    units_resumed: int
    warnings: list[str] = field(default_factory=list)


def job_fraction(stage: str, fraction: float) -> float:
    done = sum(WEIGHTS[s] for s in STAGES[: STAGES.index(stage)])
    return min(1.0, done + WEIGHTS[stage] * max(0.0, min(1.0, fraction)))


def asr_options(settings: Settings) -> AsrOptions:
    model_path = resolve_whisper(settings.model, settings.models_cache, settings.models_dir,
                                 settings.allow_downloads)
    return AsrOptions(
        model_path=model_path, model_name=settings.model, language=settings.language,
        compute_type=settings.compute_type, beam_size=settings.beam_size,
        batch_size=settings.batch_size, word_timestamps=settings.word_timestamps,
        initial_prompt=settings.initial_prompt, hotwords=settings.hotwords,
        cpu_threads=settings.threads,
    )


def diarize_options(settings: Settings):
    """DiarizeOptions from Settings: built here so pipeline/diarize.py needs no config."""
    from diarized.pipeline.diarize import DiarizeOptions

    return DiarizeOptions(
        num_speakers=settings.num_speakers, min_speakers=settings.min_speakers,
        max_speakers=settings.max_speakers, min_speaker_duration=settings.min_speaker_duration,
        segmentation_step=settings.segmentation_step, threshold=settings.clustering_threshold,
        min_cluster_size=settings.min_cluster_size,
        embedding_batch_size=settings.embedding_batch_size,
        exclude_overlap=settings.embedding_exclude_overlap,
        cpu_threads=settings.threads, clustering=settings.diarization_clustering,
        embedding_pass=settings.embedding_pass, short_speaker_seconds=settings.short_speaker_seconds,
        speaker_margin=settings.speaker_margin, one_voice_distance=settings.one_voice_distance,
        precision=settings.diarization_precision,
    )


class Runner:
    def __init__(self, settings: Settings, hooks: Hooks | None = None, profile_dir: Path | None = None):
        self.settings = settings
        self.hooks = hooks or Hooks()
        self.timings: dict[str, float] = {}
        self.profile_dir = profile_dir  # one cProfile file per stage, to find the slow one
        self.trim_heap = HeapTrimmer()  # progress comes every batch: a steady place to trim
        self.share = CoreShare(settings.threads)  # never more threads than free cores (allocator.py)
        self.torch_threads: int | None = None  # what torch runs with once diarization set it
        self.audio = None  # the memory-mapped audio while diarization reads it (media.release)
        self.reported: dict[str, float] = {}  # highest fraction reported per stage, and "job"

    @contextmanager
    def _profiled(self, stage: str) -> Iterator[None]:
        if self.profile_dir is None:
            yield
            return
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(str(self.profile_dir / f"{stage}.prof"))

    # -- helpers ---------------------------------------------------------
    def _report(self, stage: str, fraction: float) -> None:
        """Progress only ever moves forward: a step that reports from 0 again (pyannote's hooks
        restart per step) must not send the job from 97 % back to 64 %."""
        self.trim_heap()
        self._share_cores()
        high = self.reported.get(stage, 0.0)
        fraction = max(high, fraction)
        self.reported[stage] = fraction
        done = max(self.reported.get("job", 0.0), job_fraction(stage, fraction))
        self.reported["job"] = done
        self.hooks.progress(stage, fraction, done)

    def _share_cores(self) -> None:
        """Between batches: as many torch threads as cores are free now (allocator.CoreShare)."""
        threads = self.share.threads()
        if self.torch_threads is not None and threads != self.torch_threads:
            import torch  # loaded by then: torch_threads is set once diarization has built its pipeline

            torch.set_num_threads(threads)
            self.torch_threads = threads
            self._threads_event(threads)

    def _threads_event(self, threads: int) -> None:
        busy = self.share.cores - threads
        self.hooks.event("threads", f"{threads} compute thread{'s' * (threads != 1)}: {busy} of "
                                    f"{self.share.cores} cores busy elsewhere" if threads < self.share.most
                         else f"{threads} compute threads again")

    def _checkpoint(self, kind: str, detail: str) -> None:
        self.hooks.event(kind, detail)
        if self.hooks.should_stop():
            raise Interrupted(f"stopped after {kind}")

    def _timed(self, stage: str, started: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.monotonic() - started, 3)

    def _diarize_progress(self, step: str, fraction: float) -> None:
        # segmentation is about a third of diarization time with the shared embedding pass
        share = 0.35 * fraction if step == "segmentation" else 0.35 + 0.65 * fraction
        self._report("diarize", share)
        if self.audio is not None and step in ("segmentation", "embeddings"):  # both read the audio in order
            media.release(self.audio, int(fraction * len(self.audio)) - RELEASE_LAG)

    # -- stages ----------------------------------------------------------
    def decode(self, source: Path, work: Path) -> tuple:
        raw, meta_path = work / "audio.f32", work / "decode.json"
        self._report("decode", 0.0)
        size = source.stat().st_size
        if meta_path.exists() and json.loads(meta_path.read_text()).get("source_size") != size:
            # checkpoints of some other recording (a reused --work-dir): never mix them in
            for item in work.iterdir():
                shutil.rmtree(item) if item.is_dir() else item.unlink()
            self.hooks.event("reset", "work folder held another file's checkpoints; starting over")
        if raw.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            self.hooks.event("resume", "decoded audio found; not decoding again")
        else:
            started = time.monotonic()
            info = media.probe(source)
            decoded = media.decode(source, raw)
            meta = {"duration": decoded.duration, "warnings": decoded.warnings, "source_size": size,
                    "container": info.container, "codec": info.codec,
                    "header_duration": info.duration}
            write_json(meta_path, meta)
            self._timed("decode", started)
            self._checkpoint("decoded", f"{decoded.duration:.1f} s of audio")
        self.hooks.decoded(meta["duration"])
        self._report("decode", 1.0)
        return media.open_audio(raw), meta

    def plan(self, audio, work: Path, duration: float) -> list[chunking.Unit]:
        chunks = work / "chunks"
        if (chunks / "chunks_metadata.json").exists():
            return chunking.read_metadata(chunks)
        units = chunking.plan_units(audio, self.settings.unit_seconds)
        chunking.write_metadata(units, chunks, duration)
        if self.settings.keep_chunks:
            chunking.write_chunk_wavs(audio, units, chunks)
        return units

    def transcribe(self, audio, work: Path, units: list[chunking.Unit], duration: float):
        from diarized.pipeline.transcribe import Transcriber

        unit_dir, lang_path = work / "units", work / "language.json"
        unit_dir.mkdir(exist_ok=True)
        paths = [unit_dir / f"unit_{u.index:04d}.json" for u in units]
        resumed = sum(p.exists() for p in paths)
        options = asr_options(self.settings)
        transcriber = None
        if resumed < len(units) or not lang_path.exists():
            options = replace(options, cpu_threads=self.share.settle())  # CTranslate2 fixes them at load
            transcriber = Transcriber(options)
        started = time.monotonic()
        if lang_path.exists():
            lang = json.loads(lang_path.read_text())
        else:
            code, prob = transcriber.detect_language(audio)
            lang = {"language": code, "probability": prob}
            if not transcriber.multilingual:
                lang["warning"] = self._english_only_check(audio, options)
            write_json(lang_path, lang)
            self.hooks.event("language", f"{code} (p={prob:.2f})")
        results = []
        for unit, path in zip(units, paths):
            if path.exists():
                results.append(json.loads(path.read_text()))
                self.hooks.event("unit_skipped", f"unit {unit.index} already transcribed")
                continue
            transcriber = self._transcriber_for_free_cores(transcriber)
            report = lambda t, u=unit: self._report(  # noqa: E731
                "transcribe", min(1.0, (u.start + t) / duration))
            segments = transcriber.transcribe_unit(audio, unit, lang["language"], report)
            media.release(audio, int(unit.end * media.SAMPLE_RATE))
            write_json(path, segments)
            results.append(segments)
            self._timed("transcribe", started)
            started = time.monotonic()
            self._checkpoint("unit_done", f"unit {unit.index + 1}/{len(units)} "
                                          f"({unit.start:.0f}-{unit.end:.0f} s)")
        self._timed("transcribe", started)
        del transcriber  # free the ASR model before diarization loads its own
        document = results_document(lang["language"], lang["probability"], options.model_name, results)
        if lang.get("warning"):
            document["warning"] = lang["warning"]
        return document, resumed

    def _english_only_check(self, audio, options) -> str | None:
        """An English-only model writes fluent English for any speech: ask a multilingual one what it hears.

        The bundled multilingual base model votes on the first speech (Transcriber.detect_language);
        anything but English, heard with some confidence, is a warning in the outputs and the
        job's events. No multilingual model offline: no check, and the event says so.
        """
        from diarized.pipeline.transcribe import Transcriber

        try:
            path = resolve_whisper("base", self.settings.models_cache, self.settings.models_dir, False)
        except ModelError as exc:  # a missing model only skips a check
            self.hooks.event("language_check", f"skipped: no multilingual model offline ({exc})")
            return None
        checker = Transcriber(replace(options, model_path=path, model_name="base", language="auto"))
        code, prob = checker.detect_language(audio)
        del checker
        if code == "en" or prob < ENGLISH_ONLY_CONFIDENCE:
            return None
        warning = (f"the English-only model {options.model_name} was given speech that sounds like "
                   f"{code} (p={prob:.2f}): its transcript is likely an English paraphrase, not what "
                   f"was said; use a multilingual model (model = \"base\") or set language")
        return warning  # run() puts it in the outputs' warnings; the worker makes each an event

    def _transcriber_for_free_cores(self, transcriber):
        """At a unit boundary: the model again with fewer (or more) threads if the free cores changed."""
        from diarized.pipeline.transcribe import Transcriber

        threads = self.share.threads()
        if threads == transcriber.options.cpu_threads:
            return transcriber
        self._threads_event(threads)
        options = replace(transcriber.options, cpu_threads=threads)
        del transcriber
        return Transcriber(options)

    def diarize(self, audio, work: Path) -> list[dict]:
        path = work / "diarization_results.json"
        if path.exists():
            self.hooks.event("resume", "diarization found; not diarizing again")
            return json.loads(path.read_text())["turns"]
        from diarized.pipeline.diarize import build_pipeline, diarize
        from diarized.pipeline.precision import bound_primitive_cache, network_precision

        started = time.monotonic()
        options = diarize_options(self.settings)  # "auto" made concrete once: built with it, said in the event
        options = replace(options, cpu_threads=self.share.settle(), precision=network_precision(options.precision))
        bound_primitive_cache(options.cpu_threads)
        pipeline = build_pipeline(resolve_diarization(), options)
        self.torch_threads = options.cpu_threads  # from here on, resized between batches
        self.audio = audio
        try:
            turns = diarize(pipeline, audio, options, self._diarize_progress)
        finally:
            self.audio = None
        media.release(audio, len(audio))
        write_json(path, {"turns": turns})
        self._timed("diarize", started)
        self._checkpoint("diarized", f"{len({t['speaker'] for t in turns})} speakers, "
                                     f"{len(turns)} turns ({options.precision} networks)")
        return turns

    def cap_warnings(self, turns: list[dict]) -> list[str]:
        """A count that reached max_speakers may have been cut by it: say so, never silently."""
        found, cap = len({t["speaker"] for t in turns}), self.settings.max_speakers
        if cap and found >= cap:
            return [f"{found} speakers found, the max_speakers ceiling: there may be more; "
                    "raise max_speakers (or set it to 0, no limit) and run it again"]
        return []

    # -- the whole run -----------------------------------------------------
    def run(self, source: Path, work: Path, out_dir: Path, display_name: str | None = None) -> RunResult:
        source, work, out_dir = Path(source), Path(work), Path(out_dir)
        work.mkdir(parents=True, exist_ok=True)
        with self._profiled("decode"):
            audio, meta = self.decode(source, work)
            duration = meta["duration"]
            units = self.plan(audio, work, duration)
        with self._profiled("transcribe"):
            whisper_doc, resumed = self.transcribe(audio, work, units, duration)
        with self._profiled("diarize"):
            turns = self.diarize(audio, work)
        meta["warnings"] += self.cap_warnings(turns)  # the worker turns each into a job event
        if whisper_doc.get("warning"):
            meta["warnings"].append(whisper_doc["warning"])
        started = time.monotonic()
        self._report("write", 0.0)
        segments, turns, speakers = merge.merge(whisper_doc["segments"], turns)
        document = {
            "file_path": display_name or source.name,
            "total_duration": round(duration, 3),
            "speakers": speakers,
            "segments": segments,
            "language": whisper_doc["language"],
            "language_probability": whisper_doc["language_probability"],
            "models": {"whisper": self.settings.model, "segmentation": "pyannote/segmentation-3.0",
                       "embedding": "3D-Speaker CAM++ (campplus_cn_en_common)"},
            "timings": self.timings,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "warnings": meta["warnings"],
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "whisper_results.json", whisper_doc)
        write_json(out_dir / "diarization_results.json", {"speakers": speakers, "turns": turns})
        (out_dir / "chunks").mkdir(exist_ok=True)
        for item in (work / "chunks").iterdir():
            shutil.copy2(item, out_dir / "chunks" / item.name)
        self._timed("merge", started)
        started = time.monotonic()
        uri = Path(display_name or source.name).stem
        rest = tuple(f for f in self.settings.formats if f != "json")
        outputs = formats.write_outputs(out_dir, document, turns, rest, uri)
        self._timed("write", started)  # the JSON, written last, carries every stage's time
        if "json" in self.settings.formats:
            outputs |= formats.write_outputs(out_dir, document, turns, ("json",), uri)
        self._report("write", 1.0)
        return RunResult(out_dir, document, outputs, len(units), resumed, meta["warnings"])
