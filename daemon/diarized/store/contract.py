"""The JobStore contract: what every backend guarantees, method by method.

The way huey's BaseStorage documents its backends: tests/store/test_contract.py checks each
point against a real SQLite file and a real PostgreSQL server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from diarized.store.model import (DaemonStatus, Delivery, Event, Job, JobOptions, JobQuery, Notification,
                                  PendingWork, Priority, Sample, SpeakerHints, Timing)

if TYPE_CHECKING:
    from diarized.summary import Summary


class JobStore(Protocol):
    """What every job store guarantees; the supervisor, workers and CLI rely on nothing else.

    Every method that changes a job is atomic: other processes see all of it or
    none of it. Methods that take a job id raise NotFound for an unknown id,
    except where a lost race is part of the contract (then it says what comes back).
    A change that cannot be written (full disk, read-only file, database unreachable)
    raises StoreUnavailable and changes nothing.
    """

    # -- intake (intake.py) ---------------------------------------------------
    def record_incoming(self, source_name: str, sha256: str, size: int, priority: Priority,
                        max_attempts: int, inbox_path: Path, jobs_dir: Path,
                        speakers: SpeakerHints = SpeakerHints(), options: JobOptions = JobOptions()) -> Job:
        """Record a complete file before it is moved, deduplicating by content in the same step.

        The speaker hints and options are stored with the job and used by its worker.

        Returns a new `incoming` job whose source_path is jobs_dir/<id>/source<ext>, or a
        new `duplicate` job (duplicate_of = the oldest incoming, queued, running or
        succeeded job with that sha256). Two callers racing with the same content get
        one `incoming` and one `duplicate`, never two `incoming`.
        """

    def mark_queued(self, job_id: str, duration: float | None = None) -> Job:
        """incoming -> queued once the file is in the job folder; InvalidTransition otherwise."""

    def mark_duplicate_settled(self, job_id: str, where: str) -> None:
        """A duplicate's original has been moved (to done/); clears its inbox_path."""

    # -- reads -----------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """By full id, or by a unique prefix or suffix (the short id in `status`)."""

    def resolve(self, job_id: str) -> Job:
        """The job, or for a duplicate the job it duplicates (whose outputs it shares)."""

    def jobs(self, states: tuple[str, ...] | None = None, limit: int | None = None,
             offset: int = 0) -> list[Job]:
        """Newest first, optionally only in the given states; `offset` skips that many (pages)."""

    def events(self, job_id: str) -> list[Event]:
        """The job's timeline in the order the events were written."""

    def counts(self) -> dict[str, int]:
        """Jobs per state (states with no job are absent)."""

    def stats(self) -> dict[str, Any]:
        """The seed's orchestrator metrics over the whole history."""

    def timings(self) -> list[Timing]:
        """Model, processing time, audio length and queue wait of every succeeded job (metrics)."""

    def pending_work(self) -> PendingWork:
        """Size and known audio duration of every incoming, queued or running job."""

    def queue(self, limit: int) -> list[Job]:
        """The first `limit` incoming and queued jobs in claim order (priority, then age): what
        `status` shows; an indexed read however long the queue (counts() has the total)."""

    def cancel_requests(self) -> list[Job]:
        """Queued jobs an operator asked to cancel (an indexed read: few rows, whatever the queue)."""

    def claimable(self, now: float | None = None, limit: int | None = None) -> list[Job]:
        """Queued jobs whose backoff has passed, in claim order: priority, then age, then id;
        the first `limit` of them (the supervisor asks for as many as it has free slots).

        A backoff has passed when the wall clock says so, or this machine's monotonic clock
        (same boot): a step of the wall clock back does not make a job wait longer.
        """

    def expired_leases(self, now: float | None = None) -> list[Job]:
        """Running jobs whose lease ended (no heartbeat renewed it), on any node."""

    def worker_threads(self, job_id: str) -> list[int]:
        """The threads each attempt's worker was given, in attempt order."""

    # -- the supervisor (lifecycle.py) -----------------------------------------------
    # Fencing: every transition of a running job takes the lease generation its caller
    # holds. If the job is no longer running under that generation (another node took it
    # over after the lease expired), the call raises LeaseLost and changes nothing; None
    # skips the check (operators, intake, a job that is not running).
    def claim(self, job_id: str, node: str | None = None, lease_seconds: float = 120.0) -> Job | None:
        """queued -> running, spending one attempt and starting `node`'s lease (generation + 1).

        node None: a store served by one node (recovery takes such jobs as its own).

        Returns None (and changes nothing) when the job is not queued any more: of
        several processes claiming one job, exactly one gets it.
        """

    def set_worker(self, job_id: str, pid: int, threads: int, model: str | None = None) -> None:
        """Record the running job's worker process (its lease holder), its thread share and model."""

    def requeue(self, job_id: str, reason: str, spend_attempt: bool, backoff: float = 0.0,
                generation: int | None = None) -> Job:
        """running -> queued, not claimable for `backoff` seconds.

        spend_attempt=False gives the attempt back (the job was stopped, not at fault).
        spend_attempt=True keeps it; when attempts reach max_attempts the job becomes
        failed instead ("no attempts left"). A job that is not running is returned as it is.
        """

    def requeue_after_daemon_death(self, job_id: str, reason: str, generation: int | None = None,
                                   backoff_base: float = 30.0) -> Job:
        """running -> queued without spending an attempt: the daemon (or its node) died, not the job.

        A daemon's death is no evidence against the file (the supervisor opens no media; a
        file is blamed only by its own worker's failures, which spend attempts). Consecutive
        deaths are counted: from the second on, the job waits backoff_base x 2^(deaths-2)
        seconds (at most an hour) before it can be claimed again, so a node that keeps
        restarting does not re-claim the same job in a loop. Any other end of a run resets the
        count. A job that is not running is returned as it is.
        """

    def fail(self, job_id: str, error_type: str, error: str, hint: str, generation: int | None = None) -> Job:
        """Any live state -> failed with the reason and what to do; the worker lease ends."""

    def set_output_dir(self, job_id: str, output_dir: str, generation: int | None = None) -> None:
        """The outbox folder chosen for a job, recorded before the rename that publishes it.

        Fenced: the last check before a node publishes; a node that lost the lease never renames.
        """

    def mark_succeeded(self, job_id: str, output_dir: str, source_path: str | None,
                       generation: int | None = None) -> Job:
        """-> succeeded with progress 1 and the processing time; the worker lease ends."""

    def mark_cancelled(self, job_id: str, where: str | None, generation: int | None = None) -> Job:
        """-> cancelled; `where` is the original's new place (failed/)."""

    def set_source(self, job_id: str, source_path: str) -> None:
        """Where the original is now (after a move to failed/)."""

    def record_rss(self, job_id: str, rss_mb: float) -> None:
        """Raise the job's peak RSS to rss_mb if it is higher; never lowers it."""

    def record_sample(self, job_id: str, pid: int, rss_mb: float, cpu_percent: float,
                      keep_seconds: float = 3600.0, peak_mb: float | None = None) -> None:
        """A worker's memory and CPU now; also raises the job's peak RSS to peak_mb (the highest
        reading between samples; default rss_mb). Samples older than keep_seconds are dropped in
        the same step, so the table stays small."""

    def samples(self, since: float) -> list[Sample]:
        """Samples taken since `since`, oldest first."""

    def set_daemon(self, node: str, **values: Any) -> None:
        """A supervisor's heartbeat row, one per node: host, pid, state, workers, memory, queue, inbox."""

    def nodes(self, stale_seconds: float) -> list[DaemonStatus]:
        """Every node's last heartbeat row, by name; up only if running, recent and (same host) alive."""

    def daemon(self, stale_seconds: float) -> DaemonStatus:
        """The service as a whole: the one node's row, or the live nodes summed (up if any is)."""

    # -- workers ---------------------------------------------------------------------------
    def progress(self, job_id: str, stage: str, progress: float, eta: float | None,
                 generation: int | None = None) -> None:
        """Stage, fraction and ETA of a running job. Ignored if not running (under `generation`)."""

    def heartbeat(self, job_id: str, generation: int, lease_seconds: float) -> bool:
        """Renew the lease for lease_seconds; False if the job is not running under `generation`
        any more (taken over, cancelled, finished): the worker then stops."""

    def event(self, job_id: str, kind: str, detail: str = "", data: dict | None = None) -> None:
        """Append to the job's timeline."""

    def record_error(self, job_id: str, error_type: str, error: str, hint: str) -> None:
        """The worker says why it is about to exit; the supervisor decides what follows."""

    def set_duration(self, job_id: str, duration: float) -> None:
        """The decoded audio duration (admission and ETA use it from then on)."""

    # -- operators ---------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> Job:
        """Flag a live job; the supervisor cancels it. InvalidTransition once it is final."""

    def request_retry(self, job_id: str) -> Job:
        """failed or cancelled -> queued with attempts reset, if the original still exists."""

    def set_priority(self, job_id: str, priority: Priority) -> Job:
        """Change a live job's priority; InvalidTransition once it is final."""

    def delete(self, job_id: str) -> Job:
        """Remove the job's rows (job, events, notifications, deliveries, samples); returns the job as
        it was, whose files the caller then removes (retention.py). InvalidTransition while it runs
        (or is being recorded): cancel it first."""

    def expiring(self, before: float, limit: int) -> list[Job]:
        """Finished jobs that ended before `before` and still have their files, oldest first."""

    def mark_expired(self, job_id: str, detail: str) -> bool:
        """Its files are gone: the paths are cleared (a later job may reuse the names), the row stays
        with an `expired` event. False if it already was."""

    def record_summary(self, job_id: str, summary: "Summary", generation: int | None = None) -> None:
        """What came out (summary.py): at success, and again after a rename of its speakers."""

    def search(self, query: JobQuery) -> list[Job]:
        """One page of the jobs `query` finds, in its order; the limit is the database's (a store of
        100,000 jobs is never read whole). Ask for limit + 1 to know whether a next page exists."""

    def tallies(self) -> dict[str, int]:
        """Counts that outlive their rows: deleted_<outcome> per deleted job, expired per expiry."""

    # -- webhooks (api/webhooks.py) ----------------------------------------------------------
    def pending_notifications(self, limit: int = 100) -> list[Notification]:
        """Final transitions not yet turned into deliveries, oldest first.

        Every transition to succeeded, failed or cancelled writes one in its own transaction,
        so a notification exists exactly when the state change does.
        """

    def add_deliveries(self, notification_id: int, deliveries: list[tuple[str, str, str]],
                       expires_at: float) -> None:
        """(id, url, payload) rows for a notification, and the notification marked dispatched: atomic."""

    def claim_deliveries(self, lease_seconds: float, limit: int = 20, now: float | None = None,
                         url: str | None = None, other_than: tuple[str, ...] = ()) -> list[Delivery]:
        """Pending deliveries that are due, leased for lease_seconds (not due again meanwhile).

        `url`: only that endpoint's (each endpoint is sent to on its own, so a slow one
        delays no other); `other_than`: only those of endpoints not in that list.
        Of several senders, each due delivery goes to one; a sender that dies mid-send
        leaves it due again when the lease ends (at least once).
        """

    def finish_attempt(self, delivery_id: str, status: int | None, error: str | None,
                       retry_at: float | None) -> Delivery:
        """Record an attempt: delivered when error is None, else pending until retry_at, else failed."""

    def deliveries(self, job_id: str | None = None, limit: int | None = 100) -> list[Delivery]:
        """Newest first, of one job or of all."""

    def get_delivery(self, delivery_id: str) -> Delivery:
        """By id or a unique prefix; NotFound otherwise."""

    def retry_delivery(self, delivery_id: str, expires_at: float) -> Delivery:
        """Pending again, due now, retried until expires_at (an operator's `webhooks retry`)."""

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per state."""

    # -- maintenance ---------------------------------------------------------------------------
    def claim_node(self, node: str) -> bool:
        """Make this process node `node`'s one supervisor while it lives; False if another holds it.

        Recovery at start requeues the running jobs of its own node, so two supervisors under
        one node name would take each other's work. SQLite: one node per store (the state
        folder's lock says so); PostgreSQL: an advisory lock per node name.
        """

    def hold_inbox(self, node: str) -> bool:
        """Whether this node is the one that scans the inbox now; take the role if it is free.

        Called every tick, it renews the role. PostgreSQL: a lease on the server's clock that
        any node takes once it has run out (a holder that died, was paused or cut off), and
        that close() gives back at once. SQLite: always True, one node per store.
        """

    def changes(self) -> bool:
        """Whether the queue may have changed since the last call: a job queued, requeued, retried,
        re-prioritised or asked to cancel, by any process or node. Never blocks, never a round trip.

        The supervisor reads the queue when this says so, and every few seconds besides (waits
        that end by time notify nobody). PostgreSQL: LISTEN on the node's own session (True
        after that session was lost: notifications may have been missed). SQLite: always True.
        """

    def state_root(self) -> str | None:
        """The id of the state root this store serves (state_root.py), None before a node recorded one."""

    def bind_root(self, root_id: str) -> str:
        """Record `root_id` as the store's state root unless one is recorded; return the recorded one.

        Atomic: of nodes starting together on a fresh store, the first to commit wins and the
        others get its id back (and refuse to start if theirs differs).
        """

    def integrity_check(self) -> str:
        """'ok', or what the database engine found wrong."""

    def close(self) -> None:
        """Release the connection."""


# -- SQLite ---------------------------------------------------------------------------------
