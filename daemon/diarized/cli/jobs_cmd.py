"""diarizectl commands that read or change jobs. They talk to the store, never to the daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from diarized.cli import CliExit
from diarized.cli.common import fail, settings_from
from diarized.config import Settings
from diarized.files import owner_of
from diarized.store import (FINAL_STATES, DaemonStatus, InvalidTransition, Job, JobStore, NotFound, Priority,
                            SchemaError, State, StoreUnavailable, open_store)

WIDTH = 80
STALE_SECONDS = 15.0  # three missed supervisor heartbeats (every tick, ~0.5 s) and then some


def _store(ctx: click.Context) -> tuple[JobStore, Settings]:
    settings = settings_from(ctx)
    try:
        missing = settings.store_is_file and not settings.db_path.exists()
    except PermissionError:
        fail(f"you (uid {os.getuid()}) may not read the job store {settings.db_path}: it belongs to "
             f"{owner_of(settings.state_dir)}. Run this as that user (sudo -u USER diarizectl ...) or join "
             "the service's group")
    if missing:
        fail(f"no job store at {settings.db_path}; is the daemon's state_dir {settings.state_dir}? "
             "(no daemon is running here: start one with `diarized run`, or use --state-dir or --config)")
    try:
        return open_store(settings.store_location, readonly=True), settings
    except (SchemaError, StoreUnavailable) as exc:
        fail(f"the job store cannot be read: {exc} (`diarizectl doctor` says what to do)")


def _job(store: JobStore, job_id: str) -> Job:
    try:
        return store.get(job_id)
    except NotFound:
        fail(f"no job {job_id!r} (see `diarizectl list`)", CliExit.NOT_FOUND)


def _console() -> Console:
    return Console(width=WIDTH if not os.environ.get("COLUMNS") else None, highlight=False)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _paused(settings: Settings) -> str | None:
    """The pause reason a live daemon of this state root published (its store may be unwritable)."""
    from diarized import runtime

    info = runtime.serving(settings.state_dir)
    return info.paused if info is not None else None


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# -- status -------------------------------------------------------------------------
def status_header(daemon: dict) -> str:
    if daemon.get("paused"):
        return (f"daemon [bold yellow]PAUSED[/] pid {daemon['pid']}: takes no new work; it resumes by "
                f"itself once its folder can be written (free space?)\n  {daemon['paused']}")
    if not daemon.get("up"):
        return "daemon [bold red]DOWN[/]" + (f" (last seen pid {daemon['pid']})" if daemon.get("pid") else "")
    nodes = daemon.get("nodes", ())
    who = (f"{sum(n['up'] for n in nodes)} of {len(nodes)} nodes" if len(nodes) > 1 else f"pid {daemon['pid']}")
    return (f"daemon [bold green]up[/] {who} · workers {daemon['workers_busy']}/"
            f"{daemon['workers_total']} · memory {daemon['memory_used_gb']:.1f}/"
            f"{daemon['memory_budget_gb']:.0f} GiB · queued {daemon['queued']}")


def nodes_table(nodes: list[DaemonStatus], running: list[Job], now: float) -> Table:
    """One line per node sharing the store: is it up, does it hold the inbox, which jobs it runs."""
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1), collapse_padding=True)
    for name in ("node", "state", "inbox", "workers", "memory", "seen", "running"):
        table.add_column(name, justify="right" if name in ("workers", "memory", "seen") else "left",
                         overflow="fold" if name == "running" else "ellipsis")
    for n in nodes:
        state = n.state if n.up else "[bold red]DOWN[/]" if n.state in ("running", "stopping") else n.state
        table.add_row(n.node, state, "yes" if n.inbox and n.up else "-",
                      f"{n.workers_busy}/{n.workers_total}" if n.up else "-",
                      f"{n.memory_used_gb:.1f}/{n.memory_budget_gb:.0f}G" if n.up else "-",
                      duration_text(now - n.heartbeat_at) + " ago" if n.heartbeat_at else "-",
                      " ".join(j.short_id for j in running if j.node == n.node) or "-")
    return table


def jobs_table(jobs: list[Job], now: float) -> Table:
    """One line per job; at 80 columns only the file name is shortened."""
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1), collapse_padding=True)
    for name, kw in (("id", {}), ("file", {"max_width": 16, "overflow": "ellipsis", "no_wrap": True}),
                     ("pri", {}), ("state", {}), ("stage", {}), ("done", {"justify": "right"}),
                     ("elapsed", {"justify": "right"}), ("eta", {"justify": "right"}),
                     ("rss", {"justify": "right"}), ("try", {"justify": "right"})):
        table.add_column(name, **kw)
    for job in jobs:
        running = job.state == State.RUNNING
        table.add_row(
            job.short_id, job.source_name, job.priority_name, job.state, job.stage or "-",
            f"{job.progress:.0%}" if running else "-",
            duration_text(now - job.started_at) if running and job.started_at else "-",
            duration_text(job.eta_seconds) if running else "-",
            f"{job.peak_rss_mb / 1024:.1f}G" if job.peak_rss_mb else "-",
            f"{job.attempts}/{job.max_attempts}")
    return table


QUEUE_SHOWN = 20


@click.command()
@click.option("--queued", "shown", type=click.IntRange(0), default=QUEUE_SHOWN, show_default=True,
              help="How many waiting jobs to list (the rest are counted).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, shown: int, as_json: bool) -> None:
    """Daemon health, the running jobs and the first waiting ones (a long queue is counted, not listed)."""
    store, settings = _store(ctx)
    try:
        nodes = store.nodes(STALE_SECONDS)
    except StoreUnavailable as exc:
        unreadable_status(settings, exc, as_json)
    daemon = store.daemon(STALE_SECONDS).to_dict() | {"paused": _paused(settings),
                                                      "nodes": [n.to_dict() for n in nodes]}
    running = sorted(store.jobs(states=(State.RUNNING,)), key=lambda j: j.started_at or 0)
    waiting = store.queue(shown) if shown else []
    counts = store.counts()
    total = counts.get(State.INCOMING, 0) + counts.get(State.QUEUED, 0)
    if as_json:
        _emit_json({"state_root": str(settings.state_dir), "daemon": daemon,
                    "jobs": [j.to_dict() for j in running + waiting], "counts": counts, "waiting": total})
        return
    console = _console()
    console.print(status_header(daemon))
    now = time.time()
    if len(nodes) > 1:
        console.print(nodes_table(nodes, running, now))
    if running or waiting:
        console.print(jobs_table(running + waiting, now))
    if total > len(waiting):
        console.print(f"… and {total - len(waiting):,} more waiting ({total:,} in all; `diarizectl list --state "
                      "queued` pages through them)" if waiting else f"{total:,} waiting")
    elif not running and not waiting:
        console.print("no active or queued jobs")
    console.print(" · ".join(f"{counts.get(s, 0)} {s}" for s in FINAL_STATES))


def unreadable_status(settings: Settings, exc: StoreUnavailable, as_json: bool) -> None:
    """The store cannot be read (a full disk keeps even readers out): what the daemon published instead."""
    from diarized import runtime

    info = runtime.serving(settings.state_dir)
    ours = info is not None
    daemon = {"up": ours, "pid": info.pid if ours else None, "paused": info.paused if ours else None}
    if as_json:
        _emit_json({"state_root": str(settings.state_dir), "daemon": daemon, "store_error": str(exc)})
    else:
        console = _console()
        if daemon["paused"]:
            console.print(status_header(daemon))
        console.print(f"the job store cannot be read now: {exc}", soft_wrap=True)
    sys.exit(CliExit.ERROR)


@click.command("list")
@click.option("--state", "states", multiple=True,
              type=click.Choice([str(s) for s in State]))
@click.option("--search", "text", default="", help="Words in file names, speaker names and transcripts.")
@click.option("--language", help="Only jobs transcribed in this language (pt, en, ...).")
@click.option("--model", help="Only jobs run with this Whisper model.")
@click.option("--speaker", help="Only jobs with a speaker whose name contains this.")
@click.option("--sort", type=click.Choice(["newest", "oldest", "longest", "name"]), default="newest",
              show_default=True)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many (the next page).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_jobs(ctx: click.Context, states: tuple[str, ...], text: str, language: str | None, model: str | None,
              speaker: str | None, sort: str, limit: int, offset: int, as_json: bool) -> None:
    """Jobs, newest first; --search and the filters find any of them (the same search as GET /jobs?q=)."""
    from diarized.store import JobQuery

    store, _ = _store(ctx)
    jobs = store.search(JobQuery(text=text, states=states, language=language, model=model, speaker=speaker,
                                 sort=sort, limit=limit, offset=offset))
    if as_json:
        _emit_json([j.to_dict() for j in jobs])
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("id", "created", "file", "state", "audio", "took"):
        table.add_column(name, overflow="ellipsis", no_wrap=True, max_width=30 if name == "file" else None)
    for job in jobs:
        took = job.processing_seconds if job.state == State.SUCCEEDED else None
        table.add_row(job.id, time.strftime("%m-%d %H:%M", time.localtime(job.created_at)), job.source_name,
                      job.state, duration_text(job.duration), duration_text(took))
    _console().print(table)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """One job: details, the events timeline and its output files."""
    store, settings = _store(ctx)
    job = _job(store, job_id)
    events = store.events(job.id)
    outputs = sorted(str(p) for p in Path(job.output_dir).rglob("*") if p.is_file()) \
        if job.output_dir and Path(job.output_dir).is_dir() else []
    deliveries = store.deliveries(job.id)
    if as_json:
        _emit_json({"state_root": str(settings.state_dir), "job": job.to_dict(),
                    "events": [e.__dict__ for e in events], "outputs": outputs,
                    "deliveries": [delivery_dict(d) for d in deliveries]})
        return
    console = _console()
    details = Table(box=None, show_header=False, pad_edge=False)
    details.add_column(style="bold")
    details.add_column(overflow="fold")
    for key in ("id", "source_name", "state", "priority_name", "stage", "attempts", "duration",
                "processing_seconds", "peak_rss_mb", "num_speakers", "min_speakers", "max_speakers",
                "error_type", "error", "hint", "source_path", "output_dir", "duplicate_of", "model", "language",
                "word_count"):
        value = getattr(job, key) if key != "priority_name" else job.priority_name
        if value not in (None, ""):
            details.add_row(key, str(round(value, 1) if isinstance(value, float) else value))
    for key, value in (job.options or {}).items():
        details.add_row(key, ",".join(value) if isinstance(value, list) else str(value))
    if job.language_probability is not None:
        details.add_row("language_probability", f"{job.language_probability:.2f}")
    for found in job.speakers_found or []:
        name = found["name"] + (f" ({found['label']})" if found["name"] != found["label"] else "")
        details.add_row("speaker", f"{name}: {duration_text(found['seconds'])} of speech")
    console.print(details)
    timeline = Table("time", "event", "detail", box=None, pad_edge=False, header_style="bold")
    for e in events:
        timeline.add_row(time.strftime("%H:%M:%S", time.localtime(e.at)), e.kind, e.detail, end_section=False)
    console.print(timeline)
    for path in outputs:
        console.print(path)
    if deliveries:
        console.print(deliveries_table(deliveries))


def delivery_dict(d) -> dict:
    """A delivery without its payload (the body is in the receiver's hands, and long)."""
    return {k: v for k, v in d.__dict__.items() if k != "payload"}


def deliveries_table(deliveries) -> Table:
    """One line per webhook delivery; at 80 columns the receiver shows as its host, the answer shortened."""
    from urllib.parse import urlsplit

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("webhook", no_wrap=True, min_width=20)
    for name in ("event", "to", "state", "tries"):
        table.add_column(name, no_wrap=True)
    table.add_column("last answer", no_wrap=True, overflow="ellipsis")
    for d in deliveries:
        last = d.last_error or (f"HTTP {d.last_status}" if d.last_status else "-")
        table.add_row(d.id, d.event, urlsplit(d.url).netloc, d.state, str(d.attempts), last)
    return table


def _change(ctx: click.Context, job_id: str, action) -> Job:
    store, settings = _store(ctx)
    job = _job(store, job_id)
    try:
        return action(store, job)
    except InvalidTransition as exc:
        fail(str(exc))
    except StoreUnavailable as exc:
        fail(cannot_write(settings, exc))


def cannot_write(settings: Settings, exc: Exception) -> str:
    """Why a change was refused, for an operator who is not the service's user (or a full disk)."""
    where = settings.db_path if settings.store_is_file else "the job store"
    if settings.store_is_file and not os.access(settings.db_path.parent, os.W_OK):
        owner = owner_of(settings.db_path.parent)
        return (f"you (uid {os.getuid()}) cannot change jobs: {where} belongs to {owner}. Run it as that "
                "user (sudo -u USER diarizectl ...), or as a member of its group with write access")
    return f"{where} cannot be written now ({exc}); nothing was changed"


@click.command()
@click.argument("job_id")
@click.pass_context
def retry(ctx: click.Context, job_id: str) -> None:
    """Queue a failed or cancelled job again (its original is taken from failed/)."""
    job = _change(ctx, job_id, lambda store, job: store.request_retry(job.id))
    click.echo(f"{job.id} queued again")


@click.command()
@click.argument("job_id")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a queued or running job; its original goes to failed/ marked cancelled."""
    job = _change(ctx, job_id, lambda store, job: store.request_cancel(job.id))
    click.echo(f"{job.id} will be cancelled by the daemon within a second")


@click.command()
@click.argument("job_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, job_id: str, yes: bool) -> None:
    """Delete a job that is not running: its outputs, its original (in done/ or failed/), its work folder
    and its records. There is no undo; a running job must be cancelled first."""
    from diarized import retention

    store, settings = _store(ctx)
    job = _job(store, job_id)
    if not yes:
        click.confirm(f"Delete job {job.id} ({job.source_name}, {job.state}) with its outputs and original?",
                      abort=True, err=True)
    try:
        job, removed = retention.delete(settings, store, job.id)
    except InvalidTransition as exc:
        fail(str(exc))
    except StoreUnavailable as exc:
        fail(cannot_write(settings, exc))
    click.echo(f"{job.id} deleted: {removed.describe()}")


@click.command()
@click.argument("job_id")
@click.argument("level", type=click.Choice(["high", "normal", "low"]))
@click.pass_context
def priority(ctx: click.Context, job_id: str, level: str) -> None:
    """Change a waiting job's priority."""
    job = _change(ctx, job_id, lambda store, job: store.set_priority(job.id, Priority.parse(level)))
    click.echo(f"{job.id} priority {job.priority_name}")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--priority", "level", type=click.Choice(["high", "normal", "low"]), default="normal")
@click.option("--num-speakers", type=int, help="Exact number of speakers in these files.")
@click.option("--min-speakers", type=int, help="A floor on the count.")
@click.option("--max-speakers", type=int, help="A ceiling on the count; 0: no limit.")
@click.option("--language", help="auto, or a Whisper language code (pt, en, ...) for these files.")
@click.option("--model", help="A Whisper model this server offers (`diarizectl models`).")
@click.option("--formats", help="Comma-separated outputs: json,srt,vtt,txt,rttm,csv,tsv,docx.")
@click.option("--initial-prompt", help="Text the transcription starts from (names, terms, style).")
@click.option("--hotwords", help="Words to favour (names, jargon).")
@click.pass_context
def submit(ctx: click.Context, files: tuple[Path, ...], level: str, num_speakers, min_speakers,
           max_speakers, **option_values) -> None:
    """Queue files now and print their job ids (the files are copied; yours stay where they are).

    Through the same intake as the inbox: the same dedupe, size limit, speaker hints and
    options (kept in the job record, see `diarizectl show`). If you may not write the daemon's
    state folder (an operator in group diarized), the files are copied into the inbox
    instead, with hints and options in a sidecar <file>.toml, and get their ids when the daemon
    takes them.
    """
    from diarized.config import speaker_hint_problems
    from diarized.options import OptionError, parse
    from diarized.store import SpeakerHints

    problems = speaker_hint_problems(num_speakers, min_speakers, max_speakers)
    if problems:
        raise click.UsageError("; ".join(problems))
    hints = SpeakerHints(num_speakers, min_speakers, max_speakers)
    settings = settings_from(ctx)
    try:
        options = parse(option_values, settings)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None
    opened = []
    for src in files:  # with the caller's rights (root may read what the service may not)
        try:
            opened.append(src.open("rb"))
        except OSError as exc:
            fail(f"{src}: {exc.strerror}")
    owner = become_service_user(settings)
    if owner:
        click.echo(f"(writing as the service's user {owner}, who owns {settings.db_path.parent})", err=True)
    if not _may_write_state(settings):
        for src, fh in zip(files, opened):
            click.echo(f"{src} -> {_copy_into_inbox(settings, src, fh, level, hints, options)} "
                       "(the daemon will take it)")
        return
    from diarized.client import Client
    from diarized.uploads import BadName, TooLarge

    with Client(settings=settings) as client:
        for src, fh in zip(files, opened):
            try:
                with fh:
                    job = client.submit(fh, level, hints, name=src.name, options=options)
            except (TooLarge, BadName, OSError) as exc:
                fail(f"{src}: {exc}")
            note = f"duplicate of {job.duplicate_of}" if job.duplicate_of else str(job.state)
            click.echo(f"{src} -> job {job.id} ({note})" + (f": {job.error}" if job.error else ""))


def become_service_user(settings: Settings) -> str | None:
    """Root submitting into a daemon that runs as its own user writes as that user; returns its name.

    Every folder and file a submit makes (state/uploads/, state/jobs/<id>/) must be the
    service's: one made by root strands the job (its worker cannot write there) and once
    stopped every start. The state folder's owner and group are the service's.
    """
    import grp  # noqa: F401 - initgroups needs the group database
    import pwd

    state = settings.db_path.parent
    if os.geteuid() != 0 or not state.is_dir():
        return None
    st = state.stat()
    if st.st_uid == 0:
        return None
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
        os.initgroups(name, st.st_gid)
    except KeyError:
        name = f"uid {st.st_uid}"
        os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    return name


def _may_write_state(settings: Settings) -> bool:
    state = settings.db_path.parent
    store_ok = not settings.store_is_file or (settings.db_path.exists() and os.access(settings.db_path, os.W_OK))
    return store_ok and os.access(state, os.W_OK | os.X_OK)


def _copy_into_inbox(settings: Settings, src: Path, fin, level: str, hints, options) -> Path:
    """A hidden temporary name, then a rename: the inbox never sees half a file (its sidecar first)."""
    import tomlkit

    from diarized.files import write_text

    folder = settings.inbox / ("" if level == "normal" else level)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    n = 1
    while target.exists():
        target = folder / f"{src.stem}-{n}{src.suffix}"
        n += 1
    given = hints.given() | {k: list(v) if isinstance(v, tuple) else v for k, v in options.given().items()}
    if given:
        write_text(target.with_name(target.name + ".toml"), tomlkit.dumps(given))
    tmp = folder / f".{target.name}.part"
    with fin, tmp.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.rename(tmp, target)
    return target


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """The seed's metrics, and the figures /metrics exports: by model, queue wait, memory, webhooks."""
    from diarized import figures

    store, settings = _store(ctx)
    data = store.stats()
    f = figures.gather(store)
    models = {model: _timing_summary(ts) for model, ts in f.by_model().items()}
    waits = f.queue_waits()
    extra = {"jobs_by_state": f.states, "by_model": models,
             "queue_wait_seconds": {"p50": figures.percentile(waits, 0.5), "p95": figures.percentile(waits, 0.95)},
             "workers": {"busy": f.daemon.workers_busy, "max": f.daemon.workers_total,
                         "rss_mb": f.worker_rss_mb},
             "memory_gb": {"used": f.daemon.memory_used_gb, "budget": f.daemon.memory_budget_gb},
             "webhook_deliveries": f.deliveries}
    if as_json:
        _emit_json({"state_root": str(settings.state_dir)} | data | extra)
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    fmt = {"success_rate": lambda v: f"{v:.1%}", "average_processing_seconds": duration_text,
           "average_real_time_factor": lambda v: f"{v:.3f}", "peak_memory_mb": lambda v: f"{v / 1024:.2f} GiB",
           "audio_hours_processed": lambda v: f"{v:.2f} h"}
    labels = {"peak_memory_mb": "peak memory", "average_processing_seconds": "average processing time"}
    for key, value in data.items():
        table.add_row(labels.get(key, key.replace("_", " ")), "-" if value is None else fmt.get(key, str)(value))
    wait = extra["queue_wait_seconds"]
    table.add_row("queue wait p50 / p95", f"{duration_text(wait['p50'])} / {duration_text(wait['p95'])}")
    table.add_row("workers busy", f"{f.daemon.workers_busy}/{f.daemon.workers_total}")
    table.add_row("memory used / budget", f"{f.daemon.memory_used_gb:.1f}/{f.daemon.memory_budget_gb:.1f} GiB")
    table.add_row("jobs now", " · ".join(f"{n} {s}" for s, n in sorted(f.states.items())) or "-")
    table.add_row("webhook deliveries", " · ".join(f"{n} {s}" for s, n in sorted(f.deliveries.items())) or "-")
    console = _console()
    console.print(table)
    if models:
        by_model = Table("model", "jobs", "time p50", "time p95", "RTF p50", "RTF p95", box=None,
                         pad_edge=False, header_style="bold")
        for model, m in models.items():
            by_model.add_row(model, str(m["jobs"]), duration_text(m["seconds_p50"]), duration_text(m["seconds_p95"]),
                             _num(m["rtf_p50"]), _num(m["rtf_p95"]))
        console.print(by_model)


def _timing_summary(timings) -> dict:
    from diarized import figures

    seconds = [t.processing_seconds for t in timings]
    rtf = [t.real_time_factor for t in timings if t.real_time_factor is not None]
    return {"jobs": len(timings), "seconds_p50": figures.percentile(seconds, 0.5),
            "seconds_p95": figures.percentile(seconds, 0.95), "rtf_p50": figures.percentile(rtf, 0.5),
            "rtf_p95": figures.percentile(rtf, 0.95)}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@click.command()
@click.argument("job_id")
@click.pass_context
def logs(ctx: click.Context, job_id: str) -> None:
    """One job's story: journald under systemd, else its events and worker log."""
    store, settings = _store(ctx)
    job = _job(store, job_id)
    if shutil.which("journalctl") and os.environ.get("DIARIZED_JOURNAL", "auto") != "off" \
            and Path("/run/systemd/system").is_dir():
        code = subprocess.call(["journalctl", "--no-pager", "-o", "short-iso", f"JOB_ID={job.id}"])
        if code == 0:
            return
    for e in store.events(job.id):
        click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.at))} {e.kind}: {e.detail}")
    candidates = [settings.jobs_dir / job.id / "worker.log"]
    if job.source_path:
        candidates.append(Path(job.source_path).parent / "worker.log")
    for path in candidates:
        if path.is_file():
            click.echo(f"--- {path}")
            click.echo(path.read_text(errors="replace"), nl=False)
            return
    if settings.log_file and settings.log_file.is_file():
        for line in settings.log_file.read_text(errors="replace").splitlines():
            if job.id in line:
                click.echo(line)


COMMANDS = (status, list_jobs, show, retry, cancel, priority, delete, submit, stats, logs)
