"""The job logic in SQL that SQLite and PostgreSQL both run (SQLStore).

A backend (sqlite.py, postgres.py) supplies connections, placeholders and the row
locks its isolation needs; every transition is written here once.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diarized.store.model import (DEDUPE_STATES, FINAL_STATES, LIVE_STATES, DaemonStatus, Delivery, DeliveryState, Event,
                                  InvalidTransition, Job, JobOptions, JobQuery, LeaseLost, NotFound,
                                  Notification, PendingWork, Priority, Sample, SORTS, SpeakerHints, State,
                                  Timing, _node_up, _shown, _wait, boot_id, new_job_id)

if TYPE_CHECKING:
    from diarized.summary import Summary

MAX_DEATH_BACKOFF = 3600.0  # the longest a job waits after daemon deaths in a row
# No wait the service sets (retry backoff, death backoff, webhook retry and lease) is longer
# than this; one further ahead was written before the wall clock stepped back.
MAX_WAIT_SECONDS = 3600.0 + 600.0


class SQLStore:
    """Every JobStore method, in SQL that SQLite and PostgreSQL both run.

    A backend supplies the connection handling: `transaction()` (one atomic unit,
    StoreUnavailable when it cannot be written), `reading()`, `_x()` (execute, with
    its placeholder style) and the row lock its isolation needs: SQLite's BEGIN
    IMMEDIATE already serialises writers, PostgreSQL locks the rows it changes
    (FOR UPDATE) and takes an advisory lock per content hash for dedupe.
    """

    FOR_UPDATE = ""
    NODES = "SELECT * FROM nodes ORDER BY node"  # PostgreSQL: the inbox flag from its role's lease
    SKIP_LOCKED = ""  # PostgreSQL: rows another transaction holds are skipped, not waited for

    def _x(self, conn, sql: str, params: list | tuple = ()):
        return conn.execute(sql, params)

    def _lock_content(self, conn, sha256: str) -> None:
        """Serialise record_incoming calls for one content (SQLite: the write lock does it)."""

    def _wake(self, conn) -> None:
        """Tell every node the queue changed (PostgreSQL: NOTIFY, delivered at commit); see changes()."""

    def changes(self) -> bool:
        return True  # SQLite: no notifications; a local file is cheap to read every tick

    NOW = None  # PostgreSQL: the server's now() as SQL, so a read needs no round trip for the time

    def _now(self, now: float | None) -> tuple[str, list]:
        """`now` (tests), else the store's clock, as SQL and its parameters for one read."""
        if now is None and self.NOW:
            return self.NOW, []
        return "?", [time.time() if now is None else now]

    def _clock(self, conn) -> float:
        """The store's time, which every lease and wait is written and compared in.

        SQLite: this machine's clock, the only one that reads the file. PostgreSQL: the
        server's now(), so a node whose clock is minutes off neither takes over the jobs
        of others early nor keeps its own past their time.
        """
        return time.time()

    def _row(self, conn, sql: str, params: list) -> Job | None:
        cur = self._x(conn, sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return Job(**dict(zip([d[0] for d in cur.description], row)))

    def _records(self, conn, sql: str, params: list, kind: type = Job) -> list:
        """Rows as `kind` dataclasses, by column name (Job, Delivery)."""
        cur = self._x(conn, sql, params)
        names = [d[0] for d in cur.description]
        return [kind(**dict(zip(names, row))) for row in cur.fetchall()]

    def _rows(self, sql: str, params: list) -> list[Job]:
        with self.reading() as conn:
            return self._records(conn, sql, params)

    def _fetch(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        with self.reading() as conn:
            return self._x(conn, sql, params).fetchall()

    def _update(self, conn, job_id: str, **values: Any) -> None:
        values["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        self._x(conn, f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), job_id])

    def _event(self, conn, job_id: str, kind: str, detail: str = "",
               data: dict | None = None) -> None:
        self._x(conn, "INSERT INTO events (job_id, at, kind, detail, data) VALUES (?, ?, ?, ?, ?)",
                     [job_id, time.time(), kind, detail, json.dumps(data) if data else None])

    def _notify(self, conn, job_id: str, event: State) -> None:
        """The transactional outbox: the webhook sender finds this row iff the transition committed."""
        self._x(conn, "INSERT INTO notifications (job_id, event, at) VALUES (?, ?, ?)",
                [job_id, str(event), time.time()])

    def _require(self, conn, job_id: str, generation: int | None = None) -> Job:
        """The job's row, locked for this transaction; LeaseLost if `generation` no longer runs it."""
        job = self._row(conn, "SELECT * FROM jobs WHERE id = ?" + self.FOR_UPDATE, [job_id])
        if job is None:
            raise NotFound(job_id)
        if generation is not None and not job.runs_under(generation):
            raise LeaseLost(f"job {job_id}: lease generation {generation} is over (the job is {job.state}, "
                            f"generation {job.lease_generation} on node {job.node})")
        return job

    # -- reads ------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        found = self._rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        if found:
            return found[0]
        ids = [r[0] for r in self._fetch("SELECT id FROM jobs WHERE id LIKE ? OR id LIKE ?",
                                         [f"%{job_id}", f"{job_id}%"])]
        if len(ids) != 1:
            raise NotFound(job_id)
        return self._rows("SELECT * FROM jobs WHERE id = ?", [ids[0]])[0]

    def resolve(self, job_id: str) -> Job:
        job = self.get(job_id)
        while job.state == State.DUPLICATE and job.duplicate_of:
            found = self._rows("SELECT * FROM jobs WHERE id = ?", [job.duplicate_of])
            if not found:
                return job  # its original was deleted: the duplicate stands alone, without outputs
            job = found[0]
        return job

    def jobs(self, states: tuple[str, ...] | None = None, limit: int | None = None,
             offset: int = 0) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            params += [str(s) for s in states]
        sql += " ORDER BY created_at DESC, id DESC"
        if limit or offset:  # no LIMIT ALL in SQLite, no LIMIT -1 in PostgreSQL: a number both take
            sql += f" LIMIT {int(limit) if limit else 2**62} OFFSET {int(offset)}"
        return self._rows(sql, params)

    def events(self, job_id: str) -> list[Event]:
        rows = self._fetch("SELECT job_id, at, kind, detail, data FROM events WHERE job_id = ? ORDER BY id",
                           [job_id])
        return [Event(j, at, kind, detail, json.loads(data) if data else {})
                for j, at, kind, detail, data in rows]

    def counts(self) -> dict[str, int]:
        return dict(self._fetch("SELECT state, COUNT(*) FROM jobs GROUP BY state"))

    def timings(self) -> list[Timing]:
        rows = self._fetch("SELECT model, processing_seconds, duration, started_at - created_at FROM jobs "
                           "WHERE state = 'succeeded' AND processing_seconds IS NOT NULL")
        return [Timing(*row) for row in rows]

    def pending_work(self) -> PendingWork:
        jobs, size, seconds = self._fetch(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(duration), 0) FROM jobs "
            "WHERE state IN (?, ?, ?)", [str(s) for s in LIVE_STATES])[0]
        return PendingWork(int(jobs), int(size), float(seconds))

    def claimable(self, now: float | None = None, limit: int | None = None) -> list[Job]:
        clock, params = self._now(now)
        # due by the store's clock, or by the monotonic one of this boot (a wait set before the
        # wall clock stepped back ends on time; a step forward merely ends it early)
        return self._rows(f"SELECT * FROM jobs WHERE state = 'queued' AND (not_before <= {clock} OR "
                          "(wait_boot = ? AND wait_mono <= ?)) ORDER BY priority, created_at, id"
                          + (f" LIMIT {int(limit)}" if limit else ""), [*params, boot_id(), time.monotonic()])

    def queue(self, limit: int) -> list[Job]:
        incoming = self._rows("SELECT * FROM jobs WHERE state = 'incoming' ORDER BY priority, created_at, id "
                              f"LIMIT {int(limit)}", [])
        queued = self._rows("SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority, created_at, id "
                            f"LIMIT {int(limit)}", [])
        return sorted(incoming + queued, key=lambda j: (j.priority, j.created_at, j.id))[:limit]

    def cancel_requests(self) -> list[Job]:
        return self._rows("SELECT * FROM jobs WHERE cancel_requested = 1 AND state = 'queued'", [])

    def expired_leases(self, now: float | None = None) -> list[Job]:
        clock, params = self._now(now)
        return self._rows(f"SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at < {clock} "
                          "ORDER BY started_at", params)

    def worker_threads(self, job_id: str) -> list[int]:
        return [e.data["threads"] for e in self.events(job_id) if e.kind == "worker_started"]

    def nodes(self, stale_seconds: float = 15.0) -> list[DaemonStatus]:
        with self.reading() as conn:
            cur = self._x(conn, self.NODES)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
        return [DaemonStatus(up=_node_up(r, stale_seconds), **{**_shown(r), "inbox": bool(r["inbox"])})
                for r in rows]

    def daemon(self, stale_seconds: float = 15.0) -> DaemonStatus:
        nodes = self.nodes(stale_seconds)
        live = [n for n in nodes if n.up]
        if len(nodes) <= 1 or len(live) <= 1:
            return (live or nodes or [DaemonStatus(up=False)])[0]
        return DaemonStatus(
            up=True, node=",".join(n.node for n in live), host=None, inbox=True, pid=None,
            state="running",
            started_at=min(n.started_at for n in live), heartbeat_at=max(n.heartbeat_at for n in live),
            workers_busy=sum(n.workers_busy for n in live), workers_total=sum(n.workers_total for n in live),
            memory_used_gb=sum(n.memory_used_gb for n in live),
            memory_budget_gb=sum(n.memory_budget_gb for n in live), queued=live[0].queued)

    # -- intake -----------------------------------------------------------------
    def record_incoming(self, source_name: str, sha256: str, size: int, priority: Priority,
                        max_attempts: int, inbox_path: Path, jobs_dir: Path,
                        speakers: SpeakerHints = SpeakerHints(), options: JobOptions = JobOptions()) -> Job:
        now = time.time()
        with self.transaction() as conn:
            job_id = self._free_job_id(conn, now)
            self._lock_content(conn, sha256)
            first = self._row(conn, f"SELECT * FROM jobs WHERE sha256 = ? AND expired_at IS NULL AND state IN "
                                    f"({','.join('?' * len(DEDUPE_STATES))}) ORDER BY created_at LIMIT 1",
                              [sha256, *DEDUPE_STATES])
            source = Path(jobs_dir) / job_id / ("source" + Path(source_name).suffix.lower())
            self._x(conn, 
                "INSERT INTO jobs (id, source_name, sha256, size, priority, state, attempts, "
                "max_attempts, progress, created_at, updated_at, not_before, inbox_path, "
                "source_path, duplicate_of, cancel_requested, num_speakers, min_speakers, max_speakers, options) "
                "VALUES (?,?,?,?,?,?,0,?,0,?,?,0,?,?,?,0,?,?,?,?)",
                [job_id, source_name, sha256, size, int(priority),
                 State.DUPLICATE if first else State.INCOMING, max_attempts, now, now, str(inbox_path),
                 None if first else str(source), first.id if first else None,
                 speakers.num, speakers.min, speakers.max, options.to_json()])
            self._index_name(conn, job_id, source_name)
            if first:
                self._event(conn, job_id, "duplicate", f"same content as job {first.id} ({first.source_name})")
                self._notify(conn, job_id, State.DUPLICATE)
            else:
                hints = ", ".join(f"{k} {v}" for k, v in speakers.given().items())
                hints += "".join(f", {k} {v!r}" if isinstance(v, str) else f", {k} {','.join(v)}"
                                 for k, v in options.given().items())
                self._event(conn, job_id, "recorded", f"{source_name}, {size} bytes, priority "
                                                      f"{Priority(priority).name.lower()}"
                                                      + (f", {hints}" if hints else ""))
            return self._require(conn, job_id)

    def _free_job_id(self, conn, now: float) -> str:
        """A new id not yet taken: a flood of files in one second would otherwise meet one of the
        16.7 million random tails twice (2,000 files a second: a collision every few seconds)."""
        while True:
            job_id = new_job_id(now)
            if self._x(conn, "SELECT 1 FROM jobs WHERE id = ?", [job_id]).fetchone() is None:
                return job_id

    def mark_queued(self, job_id: str, duration: float | None = None) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state != State.INCOMING:
                raise InvalidTransition(f"job {job_id} is {job.state}, not incoming")
            self._update(conn, job_id, state=State.QUEUED, duration=duration, inbox_path=None)
            self._wake(conn)
            self._event(conn, job_id, "queued", f"{duration:.1f} s of audio" if duration else "")
            return self._require(conn, job_id)

    def mark_duplicate_settled(self, job_id: str, where: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, inbox_path=None, source_path=where, finished_at=time.time())
            self._event(conn, job_id, "settled", f"original moved to {where}")

    # -- the supervisor side ---------------------------------------------------------
    def claim(self, job_id: str, node: str | None = None, lease_seconds: float = 120.0) -> Job | None:
        with self.transaction() as conn:
            now = self._clock(conn)
            # SKIP LOCKED: a row another node is claiming right now is skipped, not waited for
            job = self._row(conn, "SELECT * FROM jobs WHERE id = ? AND state = 'queued'" + self.SKIP_LOCKED,
                            [job_id])
            if job is None:
                return None
            self._update(conn, job_id, state=State.RUNNING, attempts=job.attempts + 1, stage="starting",
                         progress=0.0, eta_seconds=None, started_at=now, heartbeat_at=now,
                         progress_at=now, worker_pid=None, error=None, error_type=None, hint=None,
                         node=node, lease_generation=job.lease_generation + 1,
                         lease_expires_at=now + lease_seconds)
            self._event(conn, job_id, "claimed", f"attempt {job.attempts + 1}/{job.max_attempts}" + (f" on node {node}" if node else ""),
                        {"node": node, "generation": job.lease_generation + 1})
            return self._require(conn, job_id)

    def set_worker(self, job_id: str, pid: int, threads: int, model: str | None = None) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, worker_pid=pid, heartbeat_at=time.time(), model=model)
            self._event(conn, job_id, "worker_started", f"pid {pid}, {threads} threads",
                        {"pid": pid, "threads": threads, "model": model})

    def requeue(self, job_id: str, reason: str, spend_attempt: bool, backoff: float = 0.0,
                generation: int | None = None) -> Job:
        now = time.time()
        with self.transaction() as conn:
            job = self._require(conn, job_id, generation)
            if job.state != State.RUNNING:
                return job
            attempts = job.attempts if spend_attempt else max(0, job.attempts - 1)
            if spend_attempt and attempts >= job.max_attempts:
                self._update(conn, job_id, state=State.FAILED, finished_at=now, worker_pid=None,
                             error=job.error or reason, error_type=job.error_type or "Crash")
                self._event(conn, job_id, "failed", f"{reason}; no attempts left")
                self._notify(conn, job_id, State.FAILED)
            else:
                self._update(conn, job_id, state=State.QUEUED, attempts=attempts, worker_pid=None,
                             stage=None, supervisor_deaths=0, **_wait(backoff, self._clock(conn)))
                self._wake(conn)
                self._event(conn, job_id, "requeued", reason + (
                    f"; retry in {backoff:.0f} s" if backoff else "") + (
                    "" if spend_attempt else "; attempt not counted"))
            return self._require(conn, job_id)

    def requeue_after_daemon_death(self, job_id: str, reason: str, generation: int | None = None,
                                   backoff_base: float = 30.0) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id, generation)
            if job.state != State.RUNNING:
                return job
            deaths = job.supervisor_deaths + 1
            wait = 0.0 if deaths < 2 else min(MAX_DEATH_BACKOFF, backoff_base * 2 ** min(deaths - 2, 20))
            self._update(conn, job_id, state=State.QUEUED, attempts=max(0, job.attempts - 1),
                         worker_pid=None, stage=None, supervisor_deaths=deaths, **_wait(wait, self._clock(conn)))
            self._wake(conn)
            self._event(conn, job_id, "requeued", f"{reason}; attempt not counted (daemon death {deaths} in a "
                                                  "row" + (f"; waits {wait:.0f} s)" if wait else ")"))
            return self._require(conn, job_id)

    def fail(self, job_id: str, error_type: str, error: str, hint: str, generation: int | None = None) -> Job:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, state=State.FAILED, finished_at=time.time(), worker_pid=None,
                         error=error, error_type=error_type, hint=hint)
            self._event(conn, job_id, "failed", f"{error_type}: {error}")
            self._notify(conn, job_id, State.FAILED)
            return self._require(conn, job_id)

    def set_output_dir(self, job_id: str, output_dir: str, generation: int | None = None) -> None:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, output_dir=output_dir)

    def mark_succeeded(self, job_id: str, output_dir: str, source_path: str | None,
                       generation: int | None = None) -> Job:
        with self.transaction() as conn:
            now = self._clock(conn)  # started_at is on the store's clock too
            job = self._require(conn, job_id, generation)
            processing = now - job.started_at if job.started_at else None
            self._update(conn, job_id, state=State.SUCCEEDED, finished_at=now, output_dir=output_dir,
                         source_path=source_path, progress=1.0, stage="done", eta_seconds=0,
                         worker_pid=None, processing_seconds=processing, supervisor_deaths=0)
            self._event(conn, job_id, "succeeded", f"published to {output_dir}")
            self._notify(conn, job_id, State.SUCCEEDED)
            return self._require(conn, job_id)

    def mark_cancelled(self, job_id: str, where: str | None, generation: int | None = None) -> Job:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, state=State.CANCELLED, finished_at=time.time(), worker_pid=None,
                         source_path=where, error="cancelled by the operator", error_type="Cancelled")
            self._event(conn, job_id, "cancelled", f"original in {where}" if where else "")
            self._notify(conn, job_id, State.CANCELLED)
            return self._require(conn, job_id)

    def set_source(self, job_id: str, source_path: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, source_path=source_path)

    def record_rss(self, job_id: str, rss_mb: float) -> None:
        with self.transaction() as conn:
            self._x(conn, "UPDATE jobs SET peak_rss_mb = ? WHERE id = ? AND COALESCE(peak_rss_mb, 0) < ?",
                    [rss_mb, job_id, rss_mb])

    def record_sample(self, job_id: str, pid: int, rss_mb: float, cpu_percent: float,
                      keep_seconds: float = 3600.0, peak_mb: float | None = None) -> None:
        now = time.time()
        peak = max(rss_mb, peak_mb or 0.0)
        with self.transaction() as conn:
            self._x(conn, "INSERT INTO samples (job_id, pid, at, rss_mb, cpu_percent) VALUES (?, ?, ?, ?, ?)",
                    [job_id, pid, now, rss_mb, cpu_percent])
            self._x(conn, "UPDATE jobs SET peak_rss_mb = ? WHERE id = ? AND COALESCE(peak_rss_mb, 0) < ?",
                    [peak, job_id, peak])
            self._x(conn, "DELETE FROM samples WHERE at < ?", [now - keep_seconds])

    def samples(self, since: float) -> list[Sample]:
        rows = self._fetch("SELECT job_id, pid, at, rss_mb, cpu_percent FROM samples WHERE at >= ? "
                           "ORDER BY at, id", [since])
        return [Sample(*row) for row in rows]

    def set_daemon(self, node: str, **values: Any) -> None:
        if "inbox" in values:
            values["inbox"] = int(values["inbox"])
        cols, marks = ", ".join(values), ",".join("?" * len(values))
        updates = ", ".join(f"{k} = excluded.{k}" for k in values)
        with self.transaction() as conn:  # an upsert both SQLite and PostgreSQL speak
            self._x(conn, f"INSERT INTO nodes (node, {cols}) VALUES (?, {marks}) "
                          f"ON CONFLICT (node) DO UPDATE SET {updates}", [node, *values.values()])

    # -- the worker side ------------------------------------------------------------------
    def progress(self, job_id: str, stage: str, progress: float, eta: float | None,
                 generation: int | None = None) -> None:
        now = time.time()
        fence, params = ("", []) if generation is None else (" AND lease_generation = ?", [generation])
        with self.transaction() as conn:
            self._x(conn, "UPDATE jobs SET stage = ?, progress = ?, eta_seconds = ?, heartbeat_at = ?, "
                         "progress_at = ?, updated_at = ? WHERE id = ? AND state = 'running'" + fence,
                         [stage, progress, eta, now, now, now, job_id, *params])

    def heartbeat(self, job_id: str, generation: int, lease_seconds: float) -> bool:
        with self.transaction() as conn:
            now = self._clock(conn)
            cur = self._x(conn, "UPDATE jobs SET heartbeat_at = ?, lease_expires_at = ? WHERE id = ? "
                                "AND state = 'running' AND lease_generation = ?",
                          [now, now + lease_seconds, job_id, generation])
            return cur.rowcount == 1

    def event(self, job_id: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        with self.transaction() as conn:
            self._event(conn, job_id, kind, detail, data)

    def record_error(self, job_id: str, error_type: str, error: str, hint: str) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, error=error, error_type=error_type, hint=hint)
            self._event(conn, job_id, "error", f"{error_type}: {error}")

    def set_duration(self, job_id: str, duration: float) -> None:
        with self.transaction() as conn:
            self._update(conn, job_id, duration=duration)

    # -- the operator side ------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in LIVE_STATES:
                raise InvalidTransition(f"job {job.id} is already {job.state}")
            self._update(conn, job_id, cancel_requested=1)
            self._wake(conn)
            self._event(conn, job_id, "cancel_requested", "")
            return self._require(conn, job_id)

    def request_retry(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in (State.FAILED, State.CANCELLED):
                raise InvalidTransition(f"job {job.id} is {job.state}; only failed or cancelled jobs can be retried")
            if job.expired_at is not None:
                raise InvalidTransition(f"job {job.id}: its files were removed after retention_days; "
                                        "drop the recording into the inbox again")
            if not job.source_path or not os.path.lexists(job.source_path):
                raise InvalidTransition(f"job {job.id}: the original is no longer at {job.source_path}")
            if not stat.S_ISREG(os.lstat(job.source_path).st_mode):
                raise InvalidTransition(f"job {job.id}: {job.source_path} is not a plain file (a link or "
                                        "a pipe put in its place); drop the recording into the inbox again")
            self._update(conn, job_id, state=State.QUEUED, attempts=0, cancel_requested=0, **_wait(None),
                         error=None, error_type=None, hint=None, finished_at=None, stage=None, progress=0.0,
                         supervisor_deaths=0)
            self._wake(conn)
            self._event(conn, job_id, "retry", "requested by the operator")
            return self._require(conn, job_id)

    def set_priority(self, job_id: str, priority: Priority) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state not in LIVE_STATES:
                raise InvalidTransition(f"job {job.id} is already {job.state}")
            self._update(conn, job_id, priority=int(priority))
            self._wake(conn)
            self._event(conn, job_id, "priority", priority.name.lower())
            return self._require(conn, job_id)

    def delete(self, job_id: str) -> Job:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.state in (State.RUNNING, State.INCOMING):
                raise InvalidTransition(f"job {job.id} is {job.state}; cancel it first "
                                        f"(diarizectl cancel {job.short_id}), then delete it")
            for table in ("events", "notifications", "deliveries", "samples", "job_text", "jobs"):
                self._x(conn, f'DELETE FROM "{table}" WHERE "{"id" if table == "jobs" else "job_id"}" = ?',
                        [job.id])
            self._tally(conn, f"deleted_{job.state}")
            return job

    def _tally(self, conn, name: str) -> None:
        self._x(conn, 'INSERT INTO tallies (name, count) VALUES (?, 1) '
                      'ON CONFLICT (name) DO UPDATE SET count = tallies.count + 1', [name])

    def tallies(self) -> dict[str, int]:
        return dict(self._fetch("SELECT name, count FROM tallies"))

    # -- search (JobQuery) ----------------------------------------------------------------------
    MATCH = "job_text MATCH ?"  # PostgreSQL: a tsquery over the generated document

    def search(self, query: JobQuery) -> list[Job]:
        sql, params = self.search_sql(query)
        return self._rows(sql, params)

    def search_sql(self, query: JobQuery) -> tuple[str, list]:
        """The one statement a search runs (EXPLAIN it to see its plan)."""
        words = re.findall(r"\w+", query.text)
        head, where, params = "SELECT jobs.* FROM jobs", [], []
        if words:
            head, where, params = self._text_source(self._match(words))
        if query.states:
            where.append(f"jobs.state IN ({','.join('?' * len(query.states))})")
            params += [str(s) for s in query.states]
        for column, value in (("language", query.language), ("model", query.model)):
            if value:
                where.append(f"jobs.{column} = ?")
                params.append(value)
        if query.speaker:
            where.append("LOWER(jobs.speakers_found) LIKE ? ESCAPE '!'")
            params.append("%" + re.sub(r"([!%_])", r"!\1", query.speaker.lower()) + "%")
        if query.since is not None:
            where.append("jobs.created_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("jobs.created_at < ?")
            params.append(query.until)
        sql = head + (f" WHERE {' AND '.join(where)}" if where else "")
        order = self.TEXT_ORDER.get(query.sort, SORTS[query.sort]) if words else SORTS[query.sort]
        sql += f" ORDER BY {order} LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
        return sql, params

    def _text_source(self, match: str) -> tuple[str, list[str], list]:
        """(SELECT … FROM …, WHERE conditions, their parameters) for jobs matching the words."""
        return "SELECT jobs.* FROM jobs JOIN job_text ON job_text.job_id = jobs.id", [self.MATCH], [match]

    # A text index row is written with its job, so its rowid follows the jobs' creation order: FTS5
    # hands matches over newest first by itself and the LIMIT stops it early. Sorting every match of a
    # common word by created_at instead took 290 ms with 100,000 jobs (bench/search_scale.py).
    TEXT_ORDER = {"newest": "job_text.rowid DESC", "oldest": "job_text.rowid ASC"}

    def _match(self, words: list[str]) -> str:
        """FTS5: each word a quoted phrase, all of them required (no operator a user typed runs)."""
        return " ".join(f'"{w}"' for w in words)

    def _index_name(self, conn, job_id: str, name: str) -> None:
        self._x(conn, "INSERT INTO job_text (job_id, name, speakers, body) VALUES (?, ?, '', '')", [job_id, name])

    def _index_text(self, conn, job_id: str, speakers: str, body: str) -> None:
        self._x(conn, "UPDATE job_text SET speakers = ?, body = ? WHERE job_id = ?", [speakers, body, job_id])

    def record_summary(self, job_id: str, summary: "Summary", generation: int | None = None) -> None:
        with self.transaction() as conn:
            self._require(conn, job_id, generation)
            self._update(conn, job_id, language=summary.language,
                         language_probability=summary.language_probability, word_count=summary.word_count,
                         speakers_found=summary.speakers_json())
            self._index_text(conn, job_id, " ".join(s.name for s in summary.speakers), summary.text)

    def expiring(self, before: float, limit: int) -> list[Job]:
        return self._rows(f"SELECT * FROM jobs WHERE expired_at IS NULL AND finished_at < ? AND state IN "
                          f"({','.join('?' * len(FINAL_STATES))}) ORDER BY finished_at LIMIT ?",
                          [before, *FINAL_STATES, limit])

    def mark_expired(self, job_id: str, detail: str) -> bool:
        with self.transaction() as conn:
            job = self._require(conn, job_id)
            if job.expired_at is not None:
                return False
            self._update(conn, job_id, expired_at=time.time(), output_dir=None, source_path=None)
            self._event(conn, job_id, "expired", detail)
            self._tally(conn, "expired")
            return True

    # -- webhooks ---------------------------------------------------------------------------
    def pending_notifications(self, limit: int = 100) -> list[Notification]:
        rows = self._fetch("SELECT id, job_id, event, at FROM notifications WHERE dispatched_at IS NULL "
                           f"ORDER BY id LIMIT {int(limit)}")
        return [Notification(*row) for row in rows]

    def add_deliveries(self, notification_id: int, deliveries: list[tuple[str, str, str]],
                       expires_at: float) -> None:
        now = time.time()
        with self.transaction() as conn:
            row = self._x(conn, "SELECT job_id, event, dispatched_at FROM notifications WHERE id = ?"
                          + self.FOR_UPDATE, [notification_id]).fetchone()
            if row is None or row[2] is not None:
                return  # another sender dispatched it first
            for delivery_id, url, payload in deliveries:
                self._x(conn, "INSERT INTO deliveries (id, job_id, event, url, state, attempts, created_at, "
                              "expires_at, next_at, payload) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?) "
                              "ON CONFLICT (id) DO NOTHING",
                        [delivery_id, row[0], row[1], url, now, expires_at, now, payload])
            self._x(conn, "UPDATE notifications SET dispatched_at = ? WHERE id = ?", [now, notification_id])

    def claim_deliveries(self, lease_seconds: float, limit: int = 20, now: float | None = None,
                         url: str | None = None, other_than: tuple[str, ...] = ()) -> list[Delivery]:
        now = time.time() if now is None else now
        where, params = "state = 'pending' AND (next_at <= ? OR next_at > ?)", [now, now + MAX_WAIT_SECONDS]
        if url is not None:
            where, params = where + " AND url = ?", params + [url]
        if other_than:
            where, params = where + f" AND url NOT IN ({','.join('?' * len(other_than))})", params + list(other_than)
        with self.transaction() as conn:
            due = self._records(conn, f"SELECT * FROM deliveries WHERE {where} "
                                      f"ORDER BY next_at LIMIT {int(limit)}" + self.SKIP_LOCKED, params, Delivery)
            for delivery in due:
                self._x(conn, "UPDATE deliveries SET next_at = ? WHERE id = ?", [now + lease_seconds, delivery.id])
            return due

    def finish_attempt(self, delivery_id: str, status: int | None, error: str | None,
                       retry_at: float | None) -> Delivery:
        now = time.time()
        state = DeliveryState.DELIVERED if error is None else \
            DeliveryState.PENDING if retry_at is not None else DeliveryState.FAILED
        with self.transaction() as conn:
            self._x(conn, "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_at = ?, "
                          "last_status = ?, last_error = ?, next_at = ? WHERE id = ?",
                    [str(state), now, status, error, retry_at if retry_at is not None else now, delivery_id])
        return self.get_delivery(delivery_id)

    def deliveries(self, job_id: str | None = None, limit: int | None = 100) -> list[Delivery]:
        sql, params = "SELECT * FROM deliveries", []
        if job_id is not None:
            sql, params = sql + " WHERE job_id = ?", [job_id]
        sql += " ORDER BY created_at DESC, id" + (f" LIMIT {int(limit)}" if limit else "")
        with self.reading() as conn:
            return self._records(conn, sql, params, Delivery)

    def get_delivery(self, delivery_id: str) -> Delivery:
        with self.reading() as conn:
            found = self._records(conn, "SELECT * FROM deliveries WHERE id = ? OR id LIKE ? LIMIT 2",
                                  [delivery_id, f"{delivery_id}%"], Delivery)
        exact = [d for d in found if d.id == delivery_id]
        if exact or len(found) == 1:
            return (exact or found)[0]
        raise NotFound(delivery_id)

    def retry_delivery(self, delivery_id: str, expires_at: float) -> Delivery:
        delivery = self.get_delivery(delivery_id)
        with self.transaction() as conn:
            self._x(conn, "UPDATE deliveries SET state = 'pending', next_at = ?, expires_at = ? WHERE id = ?",
                    [time.time(), expires_at, delivery.id])
        return self.get_delivery(delivery.id)

    def delivery_counts(self) -> dict[str, int]:
        return dict(self._fetch("SELECT state, COUNT(*) FROM deliveries GROUP BY state"))

    def state_root(self) -> str | None:
        found = self._fetch("SELECT value FROM meta WHERE key = 'state_root'")
        return found[0][0] if found else None

    def bind_root(self, root_id: str) -> str:
        with self.transaction() as conn:
            self._x(conn, "INSERT INTO meta (key, value) VALUES ('state_root', ?) ON CONFLICT (key) DO NOTHING",
                    [root_id])
            return self._x(conn, "SELECT value FROM meta WHERE key = 'state_root'").fetchone()[0]

    def stats(self) -> dict[str, Any]:
        count = "SUM(CASE WHEN state = '{}' THEN 1 ELSE 0 END)".format
        total, ok, failed, cancelled, dups, avg_s, rtf, peak, audio = self._fetch(
            f"SELECT COUNT(*), {count('succeeded')}, {count('failed')}, {count('cancelled')}, "
            f"{count('duplicate')}, AVG(CASE WHEN state = 'succeeded' THEN processing_seconds END), "
            "AVG(CASE WHEN state = 'succeeded' AND duration > 0 THEN processing_seconds / duration END), "
            "MAX(peak_rss_mb), SUM(CASE WHEN state = 'succeeded' THEN duration END) FROM jobs")[0]
        finished = (ok or 0) + (failed or 0)
        return {
            "jobs_total": total or 0, "succeeded": ok or 0, "failed": failed or 0,
            "cancelled": cancelled or 0, "duplicates": dups or 0,
            "success_rate": (ok or 0) / finished if finished else None,
            "average_processing_seconds": avg_s, "average_real_time_factor": rtf,
            "peak_memory_mb": peak, "audio_hours_processed": (audio or 0) / 3600,
        }


