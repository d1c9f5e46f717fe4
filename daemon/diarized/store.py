"""The job store: SQLite in WAL mode, the job state machine, and an events timeline.

Only this module writes SQL. Every transition is one BEGIN IMMEDIATE
transaction, so the supervisor, its workers and `diarizectl` (separate
processes) never see a half-made change. States:

    incoming -> queued -> running -> succeeded | failed | cancelled
    incoming -> duplicate   (same content as a live or finished job)

`incoming` is a job recorded but whose file is not yet moved out of the inbox
(record first, then move: a crash in between is finished at the next start).
A crash or timeout returns a running job to queued with one attempt spent,
until max_attempts; a graceful stop returns it without spending one.
"""

from __future__ import annotations

import enum
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

SCHEMA_VERSION = 1
LIVE_STATES = ("incoming", "queued", "running")
DEDUPE_STATES = ("incoming", "queued", "running", "succeeded")
FINAL_STATES = ("succeeded", "failed", "cancelled", "duplicate")


class Priority(enum.IntEnum):
    """The seed's JobPriority; lower runs first."""

    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, text: str) -> "Priority":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"priority must be high, normal or low, not {text!r}") from None


class NotFound(KeyError):
    """No job with that id (or id prefix)."""


class InvalidTransition(RuntimeError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


@dataclass(frozen=True)
class Job:
    id: str
    source_name: str
    sha256: str
    size: int
    priority: int
    state: str
    attempts: int
    max_attempts: int
    stage: str | None
    progress: float
    eta_seconds: float | None
    duration: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    not_before: float
    worker_pid: int | None
    heartbeat_at: float | None
    progress_at: float | None
    peak_rss_mb: float | None
    error: str | None
    error_type: str | None
    hint: str | None
    inbox_path: str | None
    source_path: str | None
    output_dir: str | None
    duplicate_of: str | None
    cancel_requested: int
    processing_seconds: float | None

    @property
    def short_id(self) -> str:
        return self.id[-6:]

    @property
    def priority_name(self) -> str:
        return Priority(self.priority).name.lower()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"priority_name": self.priority_name}


JOB_COLUMNS = {f.name: f.type for f in fields(Job)}
_SQL_TYPES = {"str": str, "int": int, "float": float}


def _column_type(annotation: str) -> type:
    return _SQL_TYPES[annotation.split(" ")[0].split("|")[0].strip()]


@dataclass(frozen=True)
class Event:
    job_id: str
    at: float
    kind: str
    detail: str


def new_job_id(now: float) -> str:
    """Sortable by creation time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


def _migrate_v1(db: sqlite_utils.Database) -> None:
    db["jobs"].create({name: _column_type(t) for name, t in JOB_COLUMNS.items()}, pk="id")
    db["jobs"].create_index(["state", "priority", "created_at"])
    db["jobs"].create_index(["sha256"])
    db["events"].create({"id": int, "job_id": str, "at": float, "kind": str, "detail": str}, pk="id")
    db["events"].create_index(["job_id", "at"])
    db["daemon"].create({"id": int, "pid": int, "started_at": float, "heartbeat_at": float,
                         "workers_busy": int, "workers_total": int, "memory_used_gb": float,
                         "memory_budget_gb": float, "queued": int, "state": str}, pk="id")


MIGRATIONS = {1: _migrate_v1}  # version -> function bringing the schema from version-1


class Store:
    """One connection per process; cheap to open."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()

    def close(self) -> None:
        self.db.conn.close()

    # -- plumbing -----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}, newer than this "
                                   f"diarized ({SCHEMA_VERSION}); upgrade diarized")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](self.db)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def _row(self, conn: sqlite3.Connection, sql: str, params: list) -> Job | None:
        cur = conn.execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return Job(**dict(zip([d[0] for d in cur.description], row)))

    def _update(self, conn: sqlite3.Connection, job_id: str, **values: Any) -> None:
        values["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), job_id])

    def _event(self, conn: sqlite3.Connection, job_id: str, kind: str, detail: str = "") -> None:
        conn.execute("INSERT INTO events (job_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                     [job_id, time.time(), kind, detail])

    def _require(self, conn: sqlite3.Connection, job_id: str) -> Job:
        job = self._row(conn, "SELECT * FROM jobs WHERE id = ?", [job_id])
        if job is None:
            raise NotFound(job_id)
        return job

    # -- reads ------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """By full id, or by a unique suffix/prefix (the short id in `status`)."""
        conn = self.db.conn
        job = self._row(conn, "SELECT * FROM jobs WHERE id = ?", [job_id])
        if job is not None:
            return job
        cur = conn.execute("SELECT id FROM jobs WHERE id LIKE ? OR id LIKE ?", [f"%{job_id}", f"{job_id}%"])
        ids = [r[0] for r in cur.fetchall()]
        if len(ids) != 1:
            raise NotFound(job_id)
        return self._require(conn, ids[0])

    def jobs(self, states: tuple[str, ...] | None = None, limit: int | None = None) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            params += list(states)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        cur = self.db.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [Job(**dict(zip(names, row))) for row in cur.fetchall()]

    def events(self, job_id: str) -> list[Event]:
        cur = self.db.conn.execute(
            "SELECT job_id, at, kind, detail FROM events WHERE job_id = ? ORDER BY at, id", [job_id])
        return [Event(*row) for row in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        cur = self.db.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return dict(cur.fetchall())

    def daemon(self) -> dict[str, Any] | None:
        cur = self.db.conn.execute("SELECT * FROM daemon WHERE id = 1")
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    # -- the inbox side -----------------------------------------------------------
    def record_incoming(self, source_name: str, sha256: str, size: int, priority: Priority,
                        max_attempts: int, inbox_path: Path, jobs_dir: Path) -> Job:
        """Record a complete inbox file before it is moved; dedupe by content.

        Returns the new job: state `incoming`, or `duplicate` (duplicate_of set)
        when the same content is already queued, running or done.
        """
        now = time.time()
        job_id = new_job_id(now)
        with self.transaction() as conn:
            first = self._row(conn, f"SELECT * FROM jobs WHERE sha256 = ? AND state IN "
                                    f"({','.join('?' * len(DEDUPE_STATES))}) ORDER BY created_at LIMIT 1",
                              [sha256, *DEDUPE_STATES])
            source = jobs_dir / job_id / ("source" + Path(source_name).suffix.lower())
            conn.execute(
                "INSERT INTO jobs (id, source_name, sha256, size, priority, state, attempts, "
                "max_attempts, progress, created_at, updated_at, not_before, inbox_path, "
                "source_path, duplicate_of, cancel_requested) VALUES (?,?,?,?,?,?,0,?,0,?,?,0,?,?,?,0)",
                [job_id, source_name, sha256, size, int(priority),
                 "duplicate" if first else "incoming", max_attempts, now, now, str(inbox_path),
                 None if first else str(source), first.id if first else None])
            if first:
                self._event(conn, job_id, "duplicate", f"same content as job {first.id} ({first.source_name})")
            else:
                self._event(conn, job_id, "recorded", f"{source_name}, {size} bytes, priority "
                                                      f"{Priority(priority).name.lower()}")
            return self._require(conn, job_id)

    def mark_queued(self, job_id: str, duration: float | None) -> Job:
        """The file is in the job dir: the job may now be claimed."""
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state != "incoming":
                raise InvalidTransition(f"job {job_id} is {job.state}, not incoming")
            self._update(conn, job_id, state="queued", duration=duration, inbox_path=None)
            self._event(conn, job_id, "queued", f"{duration:.1f} s of audio" if duration else "")
            return self._require(conn, job_id)

    def mark_duplicate_settled(self, job_id: str, where: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, inbox_path=None, source_path=where, finished_at=time.time())
            self._event(conn, job_id, "settled", f"original moved to {where}")

    # -- the supervisor side ---------------------------------------------------------
    def claimable(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        cur = self.db.conn.execute(
            "SELECT * FROM jobs WHERE state = 'queued' AND not_before <= ? "
            "ORDER BY priority, created_at, id", [now])
        names = [d[0] for d in cur.description]
        return [Job(**dict(zip(names, row))) for row in cur.fetchall()]

    def claim(self, job_id: str) -> Job | None:
        """queued -> running, spending one attempt; None if someone else got it."""
        now = time.time()
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state != "queued":
                return None
            self._update(conn, job_id, state="running", attempts=job.attempts + 1, stage="starting",
                         progress=0.0, eta_seconds=None, started_at=now, heartbeat_at=now,
                         progress_at=now, worker_pid=None, error=None, error_type=None, hint=None)
            self._event(conn, job_id, "claimed", f"attempt {job.attempts + 1}/{job.max_attempts}")
            return self._require(conn, job_id)

    def set_worker(self, job_id: str, pid: int, threads: int) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, worker_pid=pid, heartbeat_at=time.time())
            self._event(conn, job_id, "worker_started", f"pid {pid}, {threads} threads")

    def worker_threads(self, job_id: str) -> list[int]:
        """Threads each attempt's worker was given, read back from set_worker's events."""
        return [int(e.detail.split(", ")[1].split()[0]) for e in self.events(job_id)
                if e.kind == "worker_started"]

    def requeue(self, job_id: str, reason: str, spend_attempt: bool, backoff: float = 0.0) -> Job:
        """running -> queued (or failed when attempts are used up and one is spent)."""
        now = time.time()
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state != "running":
                return job
            attempts = job.attempts if spend_attempt else max(0, job.attempts - 1)
            if spend_attempt and attempts >= job.max_attempts:
                self._update(conn, job_id, state="failed", finished_at=now, worker_pid=None,
                             error=job.error or reason, error_type=job.error_type or "Crash")
                self._event(conn, job_id, "failed", f"{reason}; no attempts left")
            else:
                self._update(conn, job_id, state="queued", attempts=attempts, worker_pid=None,
                             stage=None, not_before=now + backoff)
                self._event(conn, job_id, "requeued", reason + (
                    f"; retry in {backoff:.0f} s" if backoff else "") + (
                    "" if spend_attempt else "; attempt not counted"))
            return self._require(conn, job_id)

    def fail(self, job_id: str, error_type: str, error: str, hint: str) -> Job:
        with self.transaction() as conn:
            self._update(conn, job_id, state="failed", finished_at=time.time(), worker_pid=None,
                         error=error, error_type=error_type, hint=hint)
            self._event(conn, job_id, "failed", f"{error_type}: {error}")
            return self._require(conn, job_id)

    def set_output_dir(self, job_id: str, output_dir: str) -> None:
        """Chosen before the rename, so a crash right after it can be recognised."""
        with self.transaction() as conn:
            self._update(conn, job_id, output_dir=output_dir)

    def mark_succeeded(self, job_id: str, output_dir: str, source_path: str | None) -> Job:
        now = time.time()
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            processing = now - job.started_at if job.started_at else None
            self._update(conn, job_id, state="succeeded", finished_at=now, output_dir=output_dir,
                         source_path=source_path, progress=1.0, stage="done", eta_seconds=0,
                         worker_pid=None, processing_seconds=processing)
            self._event(conn, job_id, "succeeded", f"published to {output_dir}")
            return self._require(conn, job_id)

    def mark_cancelled(self, job_id: str, where: str | None) -> Job:
        with self.transaction() as conn:
            self._update(conn, job_id, state="cancelled", finished_at=time.time(), worker_pid=None,
                         source_path=where, error="cancelled by the operator", error_type="Cancelled")
            self._event(conn, job_id, "cancelled", f"original in {where}" if where else "")
            return self._require(conn, job_id)

    def set_source(self, job_id: str, source_path: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, source_path=source_path)

    def record_rss(self, job_id: str, rss_mb: float) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET peak_rss_mb = MAX(COALESCE(peak_rss_mb, 0), ?) WHERE id = ?",
                         [rss_mb, job_id])

    def set_daemon(self, **values: Any) -> None:
        with self.transaction() as conn:
            cols = ", ".join(values)
            conn.execute(f"INSERT OR REPLACE INTO daemon (id, {cols}) VALUES (1, {','.join('?' * len(values))})",
                         list(values.values()))

    # -- the worker side ------------------------------------------------------------------
    def progress(self, job_id: str, stage: str, progress: float, eta: float | None) -> None:
        now = time.time()
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET stage = ?, progress = ?, eta_seconds = ?, heartbeat_at = ?, "
                         "progress_at = ?, updated_at = ? WHERE id = ? AND state = 'running'",
                         [stage, progress, eta, now, now, now, job_id])

    def heartbeat(self, job_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND state = 'running'",
                         [time.time(), job_id])

    def event(self, job_id: str, kind: str, detail: str = "") -> None:
        with self.transaction() as conn:
            self._event(conn, job_id, kind, detail)

    def record_error(self, job_id: str, error_type: str, error: str, hint: str) -> None:
        """The worker says why it is about to exit; the supervisor decides what follows."""
        with self.transaction() as conn:
            self._update(conn, job_id, error=error, error_type=error_type, hint=hint)
            self._event(conn, job_id, "error", f"{error_type}: {error}")

    def set_duration(self, job_id: str, duration: float) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, duration=duration)

    # -- the operator side ------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> Job:
        """Queued jobs are cancelled by the supervisor at its next tick; running ones are stopped."""
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in LIVE_STATES:
                raise InvalidTransition(f"job {job.id} is already {job.state}")
            self._update(conn, job_id, cancel_requested=1)
            self._event(conn, job_id, "cancel_requested", "")
            return self._require(conn, job_id)

    def request_retry(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in ("failed", "cancelled"):
                raise InvalidTransition(f"job {job.id} is {job.state}; only failed or cancelled jobs can be retried")
            if not job.source_path or not Path(job.source_path).exists():
                raise InvalidTransition(f"job {job.id}: the original is no longer at {job.source_path}")
            self._update(conn, job_id, state="queued", attempts=0, cancel_requested=0, not_before=0,
                         error=None, error_type=None, hint=None, finished_at=None, stage=None, progress=0.0)
            self._event(conn, job_id, "retry", "requested by the operator")
            return self._require(conn, job_id)

    def set_priority(self, job_id: str, priority: Priority) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in LIVE_STATES:
                raise InvalidTransition(f"job {job.id} is already {job.state}")
            self._update(conn, job_id, priority=int(priority))
            self._event(conn, job_id, "priority", priority.name.lower())
            return self._require(conn, job_id)

    def stats(self) -> dict[str, Any]:
        """The seed's orchestrator metrics, from the whole history."""
        cur = self.db.conn.execute(
            "SELECT COUNT(*), SUM(state = 'succeeded'), SUM(state = 'failed'), SUM(state = 'cancelled'), "
            "SUM(state = 'duplicate'), AVG(CASE WHEN state = 'succeeded' THEN processing_seconds END), "
            "AVG(CASE WHEN state = 'succeeded' AND duration > 0 THEN processing_seconds / duration END), "
            "MAX(peak_rss_mb), SUM(CASE WHEN state = 'succeeded' THEN duration END) FROM jobs")
        total, ok, failed, cancelled, dups, avg_s, rtf, peak, audio = cur.fetchone()
        finished = (ok or 0) + (failed or 0)
        return {
            "jobs_total": total or 0, "succeeded": ok or 0, "failed": failed or 0,
            "cancelled": cancelled or 0, "duplicates": dups or 0,
            "success_rate": (ok or 0) / finished if finished else None,
            "average_processing_seconds": avg_s, "average_real_time_factor": rtf,
            "peak_memory_mb": peak, "audio_hours_processed": (audio or 0) / 3600,
        }
