"""`diarizectl transcribe FILE`: the whole pipeline on one file, no daemon needed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from diarized.cli import CliExit
from diarized.cli.common import fail, settings_from
from diarized.config import ALL_FORMATS


def _progress_hooks(progress: Progress, task, duration: dict):
    """Runner hooks that drive the progress bar (the pipeline is imported only when used)."""
    from diarized.pipeline.runner import Hooks

    duration_of = lambda: duration["s"]  # noqa: E731
    def on_progress(stage: str, stage_fraction: float, job_fraction: float) -> None:
        total = duration_of()
        audio = f"{stage_fraction * total:6.0f}/{total:.0f} s audio" if total else ""
        progress.update(task, completed=job_fraction,
                        description=f"{stage:<10} {stage_fraction:4.0%} {audio}")

    def on_event(kind: str, detail: str) -> None:
        if kind in ("language", "resume", "diarized"):
            progress.console.print(f"  {kind}: {detail}")

    return Hooks(progress=on_progress, event=on_event,
                 decoded=lambda seconds: duration.update(s=seconds))


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: ./<file stem>/).")
@click.option("--model", help="Whisper model name (base, tiny.en, …) or a CTranslate2 folder.")
@click.option("--language", help="auto, or an ISO code such as pt or en.")
@click.option("--num-speakers", type=click.IntRange(1, 256), help="Exact number of speakers.")
@click.option("--min-speakers", type=click.IntRange(0, 256), help="A floor on the count.")
@click.option("--max-speakers", type=click.IntRange(0, 256), help="A ceiling on the count; 0: no limit "
              "(the default).")
@click.option("--formats", help=f"Comma-separated subset of {','.join(ALL_FORMATS)}.")
@click.option("--threads", type=click.IntRange(1, 256), help="CPU threads (default: all cores).")
@click.option("--keep-chunks", is_flag=True, default=None, help="Also write chunks/chunk_NNNN.wav.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep checkpoints here (a re-run resumes); default: a temporary folder.")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write a cProfile file per stage into this folder (decode.prof, …).")
@click.pass_context
def transcribe(ctx: click.Context, file: Path, out_dir: Path | None, model, language,
               num_speakers, min_speakers, max_speakers, formats, threads, keep_chunks,
               work_dir: Path | None, profile_dir: Path | None) -> None:
    """Transcribe FILE with speaker labels and write JSON, SRT, VTT, TXT and RTTM."""
    from diarized.allocator import exit_without_collecting, keep_freed_memory
    from diarized.models import ModelError
    from diarized.pipeline.media import MediaError
    from diarized.pipeline.runner import Runner

    if num_speakers and (min_speakers or max_speakers):
        raise click.UsageError("give --num-speakers, or --min-speakers/--max-speakers, not both")
    if not file.is_file():
        fail(f"{file}: no such file", CliExit.NOT_FOUND)
    settings = settings_from(
        ctx, model=model, language=language, num_speakers=num_speakers,
        min_speakers=min_speakers, max_speakers=max_speakers, formats=formats,
        cpu_threads=threads or 0, max_workers=1, keep_chunks=keep_chunks)
    out_dir = out_dir or Path.cwd() / file.stem
    keep_freed_memory()
    console = Console(stderr=True)
    duration = {"s": 0.0}
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as progress, \
            tempfile.TemporaryDirectory(prefix="diarized-") as tmp:
        task = progress.add_task("starting", total=1.0)
        hooks = _progress_hooks(progress, task, duration)
        runner = Runner(settings, hooks, profile_dir)
        try:
            result = runner.run(file, work_dir or Path(tmp), out_dir)
        except (MediaError, ModelError) as exc:
            progress.stop()
            fail(str(exc))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {file.name}: {warning}")
    doc = result.document
    console.print(f"{file.name}: {doc['total_duration']:.1f} s, language {doc['language']}, "
                  f"{len(doc['speakers'])} speakers, {len(doc['segments'])} segments -> {out_dir}")
    exit_without_collecting()

