"""The Python API: `Client` talks to a daemon through its job store; `Orchestrator` is the seed's.

There is no RPC: the store is the one source of truth that the daemon, the
CLI, the HTTP API and this module share. A Client submits through the same
intake path as the inbox (the job id comes back at once) and reads jobs,
events and outputs from the store; a daemon on the same state root picks
the job up at its next tick. `Orchestrator` keeps the seed's method names and
dict results for scripts and notebooks, running a daemon process for as long
as its `with` block lasts.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import psutil

from diarized.config import ConfigError, Settings, default_config_file, load_settings
from diarized.intake import Intake
from diarized.outbox import published_files
from diarized.store import (FINAL_STATES, DaemonStatus, Event, Job, JobOptions, JobStore, Priority, SpeakerHints,
                            State, open_store)

log = logging.getLogger("diarized.client")
STALE_SECONDS = 15.0  # a daemon silent this long is down (three missed heartbeats and then some)


class JobFailed(RuntimeError):
    """wait() ended on a failed or cancelled job; `job` carries its error and hint."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.id} ({job.source_name}) {job.state}: {job.error or ''}"
                         + (f" — {job.hint}" if job.hint else ""))
        self.job = job


@dataclass(frozen=True)
class Stats:
    """Totals over the store's whole history (`diarizectl stats`)."""

    jobs_total: int
    succeeded: int
    failed: int
    cancelled: int
    duplicates: int
    success_rate: float | None
    average_processing_seconds: float | None
    average_real_time_factor: float | None
    peak_memory_mb: float | None
    audio_hours_processed: float


@dataclass(frozen=True)
class SystemStatus:
    daemon: DaemonStatus
    counts: dict[str, int]
    stats: Stats
    memory_used_gb: float  # the machine's, not only the workers' (daemon.memory_used_gb)
    memory_total_gb: float
    cpu_percent: float


def locate(config: Path | None = None, state_dir: Path | None = None) -> tuple[Path | None, Path | None]:
    """Arguments, else $DIARIZED_CONFIG / $DIARIZED_STATE_DIR, else the running daemon's, else defaults.

    A daemon started by `make run` on ./var publishes its state root (runtime.py),
    so a client (or `diarizectl status`) finds it from any folder without a flag.
    """
    if config or state_dir or os.environ.get("DIARIZED_CONFIG") or os.environ.get("DIARIZED_STATE_DIR"):
        return config or default_config_file(), state_dir
    from diarized import runtime

    found = runtime.find_all()
    if len(found) > 1:
        raise SeveralDaemons(found)
    if found:
        return (Path(found[0].config) if found[0].config else None), Path(found[0].state_dir)
    return default_config_file(), None


class SeveralDaemons(ConfigError):
    """More than one daemon runs here and nothing says which: reading either would be a guess."""

    def __init__(self, found):
        roots = ", ".join(f"{info.state_dir} (pid {info.pid})" for info in found)
        super().__init__(f"{len(found)} daemons are running on this machine: {roots}; "
                         "say which with --state-dir (or --config, or DIARIZED_STATE_DIR)")


class Client:
    """A daemon's jobs, through its store: submit, read, wait, cancel, retry."""

    def __init__(self, state_dir: str | Path | None = None, config: str | Path | None = None,
                 settings: Settings | None = None, store: JobStore | None = None):
        if settings is None:
            config_file, found = locate(Path(config) if config else None, Path(state_dir) if state_dir else None)
            settings = load_settings(config_file, {"state_dir": found})
        self.settings = settings
        self.store = store or open_store(settings.store_location)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------
    def submit(self, source: str | Path | BinaryIO, priority: Priority | str = Priority.NORMAL,
               speakers: SpeakerHints = SpeakerHints(), name: str | None = None,
               options: JobOptions = JobOptions()) -> Job:
        """Copy the file in and record it: a queued job (or a duplicate of an earlier one).

        `options` (language, model, formats, initial_prompt, hotwords) are checked now:
        options.OptionError names what is wrong before anything is recorded."""
        if isinstance(priority, str):
            priority = Priority.parse(priority)
        return Intake(self.settings, self.store).submit(source, name, priority, speakers, options)

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list(self, states: Iterable[State | str] | None = None, limit: int | None = 50,
             offset: int = 0) -> list[Job]:
        """Newest first; `offset` pages through older ones."""
        return self.store.jobs(states=tuple(states) if states else None, limit=limit, offset=offset)

    def resolve(self, job_id: str) -> Job:
        """The job, or for a duplicate the job it duplicates (whose outputs it shares)."""
        return self.store.resolve(job_id)

    def events(self, job_id: str) -> list[Event]:
        return self.store.events(self.get(job_id).id)

    def outputs(self, job_id: str) -> dict[str, Path]:
        """A succeeded job's published files by name (final_transcription.json, transcription.srt, ...);
        a duplicate's are its original's (by reference: the same files, never copied)."""
        job = self.resolve(job_id)
        return published_files(job.output_dir) if job.state == State.SUCCEEDED else {}

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> Job:
        """Block until the job succeeds (returned) or fails or is cancelled (JobFailed).

        A duplicate waits for the job it duplicates, whose outputs it shares.
        Raises TimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.resolve(job_id)
        while True:
            if job.state == State.SUCCEEDED:
                return job
            if job.state in FINAL_STATES:
                raise JobFailed(job)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job.id} is still {job.state} ({job.stage or '-'}, "
                                   f"{job.progress:.0%}) after {timeout:.0f} s")
            time.sleep(poll)
            job = self.get(job.id)

    def cancel(self, job_id: str) -> Job:
        return self.store.request_cancel(self.get(job_id).id)

    def retry(self, job_id: str) -> Job:
        return self.store.request_retry(self.get(job_id).id)

    def delete(self, job_id: str) -> Job:
        """Remove a job that is not running, with its outputs, original and records (no undo);
        returns it as it was. InvalidTransition while it runs: cancel it first."""
        from diarized import retention

        return retention.delete(self.settings, self.store, job_id)[0]

    def set_priority(self, job_id: str, priority: Priority | str) -> Job:
        level = Priority.parse(priority) if isinstance(priority, str) else priority
        return self.store.set_priority(self.get(job_id).id, level)

    # -- the whole service ------------------------------------------------------------
    def stats(self) -> Stats:
        return Stats(**self.store.stats())

    def system_status(self) -> SystemStatus:
        memory = psutil.virtual_memory()
        return SystemStatus(self.store.daemon(STALE_SECONDS), self.store.counts(), self.stats(),
                            (memory.total - memory.available) / 2**30, memory.total / 2**30,
                            psutil.cpu_percent(interval=None))


# -- the seed's API ---------------------------------------------------------------------
SEED_KEYS = {"max_concurrent_jobs": "max_workers", "whisper_model": "model"}


class Orchestrator:
    """The seed's DiarizationOrchestrator: a daemon on `state_dir` for the length of a `with` block.

    Settings are config keys (model="tiny.en", max_workers=2; the seed's
    max_concurrent_jobs and whisper_model are accepted too). If a daemon already
    serves the state root it is used and left running. Results are the seed's
    dicts; completion callbacks get the finished Job (job.job_id, job.status,
    job.completed_at as in the seed).
    """

    def __init__(self, state_dir: str | Path = "var", config: str | Path | None = None, **settings: Any):
        overrides = {SEED_KEYS.get(k, k): v for k, v in settings.items()}
        self.config = Path(config) if config else None
        self.settings = load_settings(self.config, overrides | {"state_dir": Path(state_dir).resolve()})
        self.overrides = overrides
        self.client: Client | None = None
        self.daemon: subprocess.Popen | None = None
        self.callbacks: list[Callable[[Job], Any]] = []
        self.output_dirs: dict[str, Path] = {}
        self._delivered: set[str] = set()
        self._deliver_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- lifetime ----------------------------------------------------------------------
    def __enter__(self) -> "Orchestrator":
        self.started_at = time.time()
        self.settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.client = Client(settings=self.settings)
        if not self.client.store.daemon(STALE_SECONDS).up:
            self._start_daemon()
        psutil.cpu_percent(interval=None)  # the seed's cpu.percent then measures since start
        self._watcher = threading.Thread(target=self._watch, name="orchestrator-callbacks", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(5)
        if self.daemon is not None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(self.settings.stop_timeout_seconds + 30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.client:
            self.client.close()

    def _start_daemon(self) -> None:
        env = {**os.environ, **{f"DIARIZED_{k.upper()}": _env_value(v) for k, v in self.overrides.items()}}
        command = [sys.executable, "-m", "diarized.cli.daemon", "run", "--state-dir", str(self.settings.state_dir)]
        if self.config:
            command += ["--config", str(self.config)]
        log_path = self.settings.db_path.parent / "orchestrator-daemon.log"
        with log_path.open("ab") as out:
            self.daemon = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not self.client.store.daemon(STALE_SECONDS).up:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the diarized daemon did not start (exit {self.daemon.poll()}); "
                                   f"its log: {log_path}")
            time.sleep(0.2)

    # -- the seed's methods --------------------------------------------------------------
    def process_file(self, path: str | Path, output_dir: str | Path | None = None,
                     priority: Priority = Priority.NORMAL) -> str:
        """Queue a file; returns its job id. With output_dir, the outputs are copied there too."""
        job = self._client.submit(path, priority)
        if output_dir is not None:
            self.output_dirs[job.id] = Path(output_dir)
        return job.id

    def submit_job(self, path: str | Path, output_dir: str | Path | None = None,
                   priority: Priority = Priority.NORMAL) -> str:
        return self.process_file(path, output_dir, priority)

    def get_job_status(self, job_id: str) -> dict[str, Any]:
        """The seed's status dict; a duplicate reports the job it duplicates (and says so)."""
        job = self._client.get(job_id)
        followed = self._client.resolve(job.id)
        self._deliver(job, self._client.store)
        return followed.to_dict() | {"job_id": job.id, "status": followed.status,
                                     "duplicate_of": job.duplicate_of,
                                     "output_dir": str(self.output_dirs.get(followed.id) or followed.output_dir or "")}

    def get_system_status(self) -> dict[str, Any]:
        return seed_system_status(self._client.system_status(), self.settings.max_memory_gb)

    def add_job_completion_callback(self, callback: Callable[[Job], Any]) -> None:
        """Called with each job that ends (succeeded, failed, cancelled, duplicate) while this runs."""
        self.callbacks.append(callback)

    # -- plumbing ----------------------------------------------------------------------
    @property
    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("use the Orchestrator in a `with` block: it starts and stops the daemon")
        return self.client

    def _watch(self) -> None:
        store = open_store(self.settings.store_location)  # this thread's own connection
        try:
            while not self._stop.wait(0.5):
                for job in store.jobs(states=FINAL_STATES, limit=200):
                    if (job.finished_at or 0) >= self.started_at:
                        self._deliver(job, store)
        finally:
            store.close()

    def _deliver(self, job: Job, store: JobStore) -> None:
        """Once per job, once it has ended: copy its outputs where process_file was asked to, then
        the callbacks. A duplicate ends with its original, whose outputs it is given."""
        owner = store.resolve(job.id)
        if owner.state not in FINAL_STATES:
            return  # not ended, or a duplicate of a job still running: delivered when that ends
        with self._deliver_lock:
            if job.id in self._delivered:
                return
            self._delivered.add(job.id)
            target = self.output_dirs.get(job.id)
            if target is not None and owner.state == State.SUCCEEDED and owner.output_dir:
                shutil.copytree(owner.output_dir, target, dirs_exist_ok=True)
            if (job.finished_at or 0) < self.started_at:
                return  # ended before this orchestrator: no callback
            for callback in self.callbacks:
                try:
                    callback(job)
                except Exception:
                    log.exception("completion callback %r failed for job %s", callback, job.id)


def seed_system_status(status: SystemStatus, budget_gb: float) -> dict[str, Any]:
    """The seed's get_system_status() keys (Orchestrator, and GET /system of the HTTP API)."""
    stats, counts = status.stats, status.counts
    return {
        "active_jobs": counts.get(State.RUNNING, 0),
        "queued_jobs": counts.get(State.QUEUED, 0) + counts.get(State.INCOMING, 0),
        "completed_jobs": counts.get(State.SUCCEEDED, 0),
        "failed_jobs": counts.get(State.FAILED, 0),
        "daemon": status.daemon.to_dict(),
        "resource_manager": {
            "memory": {"used_gb": status.memory_used_gb, "total_gb": status.memory_total_gb,
                       "workers_gb": status.daemon.memory_used_gb,
                       "budget_gb": status.daemon.memory_budget_gb or budget_gb},
            "cpu": {"percent": status.cpu_percent, "count": os.cpu_count()},
        },
        "orchestrator_stats": {
            "total_jobs_processed": stats.succeeded + stats.failed,
            "successful_jobs": stats.succeeded,
            "failed_jobs": stats.failed,
            "average_processing_time": stats.average_processing_seconds or 0.0,
            "average_real_time_factor": stats.average_real_time_factor,
            "peak_memory_usage": (stats.peak_memory_mb or 0.0) / 1024,
        },
    }


def _env_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)
