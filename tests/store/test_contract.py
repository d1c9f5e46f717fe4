"""The JobStore contract, point by point, on every backend; then SQLite's own schema story.

The conformance tests take a store location from the `location` fixture and
open it with `open_store`, in this process and in child processes. A new
backend joins by adding its location factory to BACKENDS; the tests stay as
they are.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from diarized.store import (MIGRATIONS, SCHEMA_VERSION, InvalidTransition, JobStore, LeaseLost, NotFound,
                            Priority, SchemaError, SQLiteStore, State, open_store)


def _sqlite_location(request, tmp_path: Path) -> str:
    return str(tmp_path / "state" / "diarized.db")


def _postgres_location(request, tmp_path: Path) -> str:
    """A fresh database on the session's real PostgreSQL server."""
    return request.getfixturevalue("postgres_server").new_database()


BACKENDS = {"sqlite": _sqlite_location, "postgresql": _postgres_location}


@pytest.fixture(params=sorted(BACKENDS))
def location(request, tmp_path) -> str:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(location) -> JobStore:
    s = open_store(location)
    yield s
    s.close()


def _incoming(store: JobStore, tmp_path: Path, name="a.wav", sha="x", priority=Priority.NORMAL):
    return store.record_incoming(name, sha, 10, priority, 3, tmp_path / name, tmp_path / "jobs")


def _queued(store: JobStore, tmp_path: Path, name="a.wav", sha="x", priority=Priority.NORMAL):
    return store.mark_queued(_incoming(store, tmp_path, name, sha, priority).id, 12.0)


# -- intake ----------------------------------------------------------------------------------
def test_record_incoming_names_the_job_folder_and_queues_once(store, tmp_path):
    job = _incoming(store, tmp_path, "Talk.MP4")
    assert job.state == State.INCOMING and job.attempts == 0 and job.priority_name == "normal"
    assert job.source_path == str(tmp_path / "jobs" / job.id / "source.mp4")
    queued = store.mark_queued(job.id, None)
    assert queued.state == State.QUEUED and queued.inbox_path is None and queued.duration is None
    with pytest.raises(InvalidTransition):
        store.mark_queued(job.id)


def test_duplicates_point_at_the_first_live_or_done_job(store, tmp_path):
    first = _queued(store, tmp_path, "a.wav", "same")
    dup = _incoming(store, tmp_path, "b.wav", "same")
    assert dup.state == State.DUPLICATE and dup.duplicate_of == first.id and dup.source_path is None
    store.mark_duplicate_settled(dup.id, "/done/b.wav")
    assert store.get(dup.id).source_path == "/done/b.wav" and store.get(dup.id).inbox_path is None
    store.claim(first.id)
    store.fail(first.id, "BadMedia", "broken", "re-export")
    again = _incoming(store, tmp_path, "c.wav", "same")
    assert again.state == State.INCOMING  # a failed job does not block a fresh copy


def test_delete_expire_and_tallies_that_outlive_the_rows(store, tmp_path):
    done = store.claim(_queued(store, tmp_path, "a.wav", "one").id)
    store.mark_succeeded(done.id, str(tmp_path / "outbox/a"), str(tmp_path / "done/a.wav"))
    dup = _incoming(store, tmp_path, "b.wav", "one")
    assert store.resolve(dup.id).id == done.id
    assert [j.id for j in store.expiring(time.time() + 1, 10)] == [done.id]  # the duplicate is unsettled
    assert store.mark_expired(done.id, "retention_days 1: removed 2 item(s)") is True
    assert store.mark_expired(done.id, "again") is False
    expired = store.get(done.id)
    assert expired.expired_at and expired.output_dir is None and expired.source_path is None
    assert store.expiring(time.time() + 1, 10) == []
    assert _incoming(store, tmp_path, "c.wav", "one").state == State.INCOMING  # its files are gone: a new job
    running = store.claim(_queued(store, tmp_path, "d.wav", "two").id)
    with pytest.raises(InvalidTransition, match="cancel it first"):
        store.delete(running.id)
    assert store.delete(done.id).id == done.id
    with pytest.raises(NotFound):
        store.get(done.id)
    assert store.events(done.id) == [] and store.resolve(dup.id).id == dup.id
    assert store.tallies() == {"expired": 1, "deleted_succeeded": 1}


def test_search_finds_words_in_names_speakers_and_transcripts_with_filters_and_pages(store, tmp_path):
    """The one contract both backends keep (FTS5 on SQLite, tsvector on PostgreSQL)."""
    from diarized.store import JobQuery
    from diarized.summary import SpeakerTime, Summary

    def finished(name: str, sha: str, text: str, speakers: list[str], language: str, at: float):
        job = store.claim(_queued(store, tmp_path, name, sha).id)
        store.set_worker(job.id, 1, 1, "base" if language == "pt" else "tiny.en")
        store.record_summary(job.id, Summary(language, 0.9, len(text.split()),
                                             [SpeakerTime(f"SPEAKER_0{i}", n, 10.0) for i, n in enumerate(speakers)],
                                             text), job.lease_generation)
        store.mark_succeeded(job.id, str(tmp_path / "outbox" / name), None, job.lease_generation)
        with store.transaction() as conn:  # a known creation time, for the date filter and the order
            store._x(conn, "UPDATE jobs SET created_at = ? WHERE id = ?", [at, job.id])
        return job.id

    board = finished("board-meeting-2024.mp4", "a", "The budget for the new library was approved",
                     ["Ana Souza", "SPEAKER_01"], "en", 1000.0)
    aula = finished("aula de física.wav", "b", "Hoje vamos falar sobre energia e trabalho", ["Bruno"], "pt", 2000.0)
    interview = finished("interview.flac", "c", "We talked about the library and the budget", ["Carla"], "en",
                         3000.0)
    waiting = _queued(store, tmp_path, "budget-notes.mp3", "d").id

    def found(**query) -> list[str]:
        return [j.id for j in store.search(JobQuery(**query))]

    assert found(text="budget") == [waiting, interview, board]  # names and transcripts, newest first
    assert found(text="library budget", sort="oldest") == [board, interview]  # every word must be there
    assert found(text="BOARD meeting") == [board] and found(text="energia") == [aula]
    assert found(text="budget", states=("queued",)) == [waiting]
    assert found(text="Souza") == [board] and found(speaker="ana s") == [board]
    assert found(language="pt") == [aula] and found(model="tiny.en") == [interview, board]
    assert found(since=1500.0, until=3000.0) == [aula]
    assert found(text="nothing-like-this") == [] and found(text="'\" OR 1=1 --") == []
    assert found(speaker="100%_") == []
    assert found(limit=2) == [waiting, interview] and found(limit=2, offset=2) == [aula, board]
    store.delete(board)
    assert found(text="library") == [interview]


# -- reads -------------------------------------------------------------------------------------
def test_get_by_full_or_short_id_and_not_found(store, tmp_path):
    job = _queued(store, tmp_path)
    assert store.get(job.id).id == job.id and store.get(job.short_id).id == job.id
    with pytest.raises(NotFound):
        store.get("nope")


def test_claim_order_is_priority_then_age_and_backoff_is_honoured(store, tmp_path):
    low = _queued(store, tmp_path, "low.wav", "1", Priority.LOW)
    normal = _queued(store, tmp_path, "n.wav", "2")
    high = _queued(store, tmp_path, "h.wav", "3", Priority.HIGH)
    assert [j.id for j in store.claimable()] == [high.id, normal.id, low.id]
    store.claim(high.id)
    store.requeue(high.id, "crash", spend_attempt=True, backoff=60)
    assert [j.id for j in store.claimable()] == [normal.id, low.id]
    assert [j.id for j in store.claimable(now=time.time() + 61)] == [high.id, normal.id, low.id]


def test_events_come_back_in_the_order_written(store, tmp_path):
    job = _queued(store, tmp_path)
    kinds = [f"k{i}" for i in range(30)]
    for kind in kinds:
        store.event(job.id, kind, "", {"i": kind})
    events = store.events(job.id)
    assert [e.kind for e in events] == ["recorded", "queued", *kinds]
    assert events[-1].data == {"i": "k29"} and events[0].data == {}


def test_counts_stats_and_pending_work(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    store.set_duration(job.id, 100.0)
    store.mark_succeeded(job.id, str(tmp_path / "out"), None)
    store.claim(_queued(store, tmp_path, "b.wav", "y").id)
    running = store.jobs(states=(State.RUNNING,))[0]
    store.fail(running.id, "BadMedia", "x", "y")
    _queued(store, tmp_path, "c.wav", "z")
    assert store.counts() == {"succeeded": 1, "failed": 1, "queued": 1}
    stats = store.stats()
    assert stats["jobs_total"] == 3 and stats["succeeded"] == 1 and stats["failed"] == 1
    assert stats["success_rate"] == 0.5 and stats["average_real_time_factor"] is not None
    assert stats["audio_hours_processed"] == pytest.approx(100 / 3600)
    pending = store.pending_work()
    assert (pending.jobs, pending.bytes, pending.seconds) == (1, 10, 12.0)
    assert store.integrity_check() == "ok"


# -- claims, attempts, leases --------------------------------------------------------------------
def test_claim_spends_an_attempt_and_only_one_claim_wins(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    assert (job.state, job.attempts, job.stage) == (State.RUNNING, 1, "starting")
    assert store.claim(job.id) is None


def test_requeue_with_and_without_spending_an_attempt(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    job = store.requeue(job.id, "stopped", spend_attempt=False)
    assert (job.state, job.attempts) == (State.QUEUED, 0)
    assert "attempt not counted" in store.events(job.id)[-1].detail
    for attempt in (1, 2):
        store.claim(job.id)
        job = store.requeue(job.id, "crash", spend_attempt=True)
        assert (job.state, job.attempts) == (State.QUEUED, attempt)
    store.claim(job.id)
    job = store.requeue(job.id, "crash", spend_attempt=True)
    assert job.state == State.FAILED and job.error_type == "Crash" and job.error == "crash"
    assert "no attempts left" in store.events(job.id)[-1].detail
    assert store.requeue(job.id, "late", spend_attempt=True) == job  # not running: unchanged


def test_lease_holder_threads_and_expiry(store, tmp_path):
    a = store.claim(_queued(store, tmp_path, "a.wav", "1").id, "node-a", 60)
    b = store.claim(_queued(store, tmp_path, "b.wav", "2").id, "node-b", 60)
    assert (a.node, a.lease_generation, b.node) == ("node-a", 1, "node-b")
    assert a.lease_expires_at == pytest.approx(time.time() + 60, abs=5)
    store.set_worker(a.id, 4242, 2)
    store.set_worker(b.id, 4343, 1, "tiny.en")
    assert store.get(a.id).worker_pid == 4242 and store.worker_threads(a.id) == [2]
    assert store.get(b.id).model == "tiny.en" and store.get(a.id).model is None
    assert store.expired_leases() == []
    assert {j.id for j in store.expired_leases(now=time.time() + 120)} == {a.id, b.id}
    assert store.heartbeat(a.id, 1, 600) is True  # renewed for longer: b alone expires
    assert [j.id for j in store.expired_leases(now=time.time() + 120)] == [b.id]
    store.requeue(a.id, "stopped", spend_attempt=False)
    assert store.claim(a.id, "node-b", 60).lease_generation == 2  # every claim a new generation
    store.set_worker(a.id, 4444, 1)
    assert store.worker_threads(a.id) == [2, 1]


def test_a_lost_lease_fences_every_transition_and_the_heartbeat(store, tmp_path):
    old = store.claim(_queued(store, tmp_path).id, "node-a", 60)
    taken = store.requeue_after_daemon_death(old.id, "node-a stopped renewing", old.lease_generation)
    assert taken.state == State.QUEUED
    new = store.claim(old.id, "node-b", 60)
    assert new.lease_generation == old.lease_generation + 1
    assert store.heartbeat(old.id, old.lease_generation, 60) is False  # the old worker stops
    store.progress(old.id, "diarize", 0.9, 1.0, old.lease_generation)
    assert store.get(old.id).progress != 0.9
    for transition in (lambda g: store.set_output_dir(old.id, "/outbox/a", g),
                       lambda g: store.mark_succeeded(old.id, "/outbox/a", None, g),
                       lambda g: store.requeue(old.id, "crash", True, 0, g),
                       lambda g: store.requeue_after_daemon_death(old.id, "again", g),
                       lambda g: store.fail(old.id, "Crash", "boom", "", g),
                       lambda g: store.mark_cancelled(old.id, None, g)):
        with pytest.raises(LeaseLost):
            transition(old.lease_generation)
    after = store.get(old.id)
    assert (after.state, after.node, after.output_dir) == (State.RUNNING, "node-b", None)
    assert store.heartbeat(new.id, new.lease_generation, 60) is True
    assert store.mark_succeeded(new.id, "/outbox/a", None, new.lease_generation).state == State.SUCCEEDED
    with pytest.raises(LeaseLost):  # a finished job has no lease left to hold
        store.requeue(new.id, "late", True, 0, new.lease_generation)


def test_threads_of_one_process_share_a_store_safely(store, tmp_path):
    """A worker renews its lease from a thread while its main thread reports progress."""
    job = store.claim(_queued(store, tmp_path).id, "a", 60)
    errors: list[BaseException] = []

    def hammer(write) -> None:
        try:
            for i in range(150):
                write(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=hammer, args=(w,)) for w in (
        lambda i: store.heartbeat(job.id, job.lease_generation, 60),
        lambda i: store.progress(job.id, "transcribe", i / 150, None, job.lease_generation),
        lambda i: store.get(job.id))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_progress_and_heartbeats_are_ignored_once_not_running(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    store.progress(job.id, "transcribe", 0.5, 10.0)
    assert (store.get(job.id).stage, store.get(job.id).progress) == ("transcribe", 0.5)
    store.requeue(job.id, "stopped", spend_attempt=False)
    store.progress(job.id, "diarize", 0.9, 1.0)
    assert store.get(job.id).progress != 0.9


def test_success_ends_the_lease_and_records_the_time(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    store.set_worker(job.id, 4242, 1)
    store.set_output_dir(job.id, "/outbox/a")
    store.record_rss(job.id, 900.0)
    store.record_rss(job.id, 500.0)
    done = store.mark_succeeded(job.id, "/outbox/a", "/done/a.wav")
    assert done.state == State.SUCCEEDED and done.progress == 1.0 and done.worker_pid is None
    assert done.processing_seconds >= 0 and done.peak_rss_mb == 900.0
    assert done.source_path == "/done/a.wav" and done.output_dir == "/outbox/a"


# -- operators ---------------------------------------------------------------------------------
def test_cancel_retry_and_priority(store, tmp_path):
    job = _queued(store, tmp_path)
    assert store.set_priority(job.id, Priority.HIGH).priority_name == "high"
    assert store.request_cancel(job.id).cancel_requested == 1
    cancelled = store.mark_cancelled(job.id, str(tmp_path / "a.wav"))
    assert cancelled.state == State.CANCELLED and cancelled.error_type == "Cancelled"
    with pytest.raises(InvalidTransition):
        store.request_cancel(job.id)
    with pytest.raises(InvalidTransition):
        store.set_priority(job.id, Priority.LOW)
    with pytest.raises(InvalidTransition, match="no longer at"):
        store.request_retry(job.id)
    (tmp_path / "a.wav").write_bytes(b"x")
    again = store.request_retry(job.id)
    assert (again.state, again.attempts, again.cancel_requested, again.error) == (State.QUEUED, 0, 0, None)
    with pytest.raises(InvalidTransition, match="only failed or cancelled"):
        store.request_retry(job.id)


def test_daemon_status_is_up_only_while_fresh_and_alive(store):
    assert store.daemon(15).up is False and store.nodes(15) == []
    row = dict(host=socket.gethostname(), pid=os.getpid(), started_at=time.time(), heartbeat_at=time.time(),
               workers_busy=1, workers_total=2, memory_used_gb=1.5, memory_budget_gb=20.0, queued=3,
               state="running", inbox=True)
    assert store.claim_node("a") and store.hold_inbox("a")  # the inbox flag is the role (PostgreSQL: its lease)
    store.set_daemon("a", **row)
    status = store.daemon(15)
    assert status.up and status.workers_busy == 1 and status.queued == 3 and status.node == "a" and status.inbox
    store.set_daemon("a", **{**row, "heartbeat_at": time.time() - 60})
    assert not store.daemon(15).up
    store.set_daemon("a", **{**row, "state": "stopped"})
    assert not store.daemon(15).up
    store.set_daemon("a", **{**row, "pid": 2**22 + 1})  # above pid_max: no such process
    assert not store.daemon(15).up
    store.set_daemon("a", **{**row, "pid": 2**22 + 1, "host": "elsewhere"})  # a pid on another host
    assert store.daemon(15).up  # is not checked here: its heartbeat says it lives


def test_several_nodes_are_listed_and_summed(store):
    row = dict(host=socket.gethostname(), pid=os.getpid(), started_at=time.time(), heartbeat_at=time.time(),
               workers_busy=1, workers_total=2, memory_used_gb=1.5, memory_budget_gb=20.0, queued=3,
               state="running", inbox=False)
    store.set_daemon("b", **row)
    assert store.claim_node("a") and store.hold_inbox("a")
    store.set_daemon("a", **{**row, "inbox": True, "workers_busy": 2})
    store.set_daemon("c", **{**row, "state": "stopped"})
    assert [(n.node, n.up, n.inbox) for n in store.nodes(15)] == [
        ("a", True, True), ("b", True, False), ("c", False, False)]
    whole = store.daemon(15)
    assert whole.up and (whole.workers_busy, whole.workers_total, whole.memory_budget_gb) == (3, 4, 40.0)


def _claim_all(location: str, ids: list[str], out) -> None:
    store = open_store(location)
    out.put([i for i in ids if store.claim(i) is not None])


def test_concurrent_claims_from_processes_never_double_claim(store, location, tmp_path):
    ids = [_queued(store, tmp_path, f"{i}.wav", str(i)).id for i in range(40)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(location, ids, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    flat = [i for chunk in claimed for i in chunk]
    assert sorted(flat) == sorted(ids)  # each claimed once, by exactly one process
    assert all(store.get(i).attempts == 1 for i in ids)


def test_samples_raise_the_peak_and_stay_bounded(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    store.record_sample(job.id, 4242, 900.0, 95.0)
    store.record_sample(job.id, 4242, 700.0, 180.0)
    taken = store.samples(time.time() - 60)
    assert [(s.pid, s.rss_mb, s.cpu_percent) for s in taken] == [(4242, 900.0, 95.0), (4242, 700.0, 180.0)]
    assert store.get(job.id).peak_rss_mb == 900.0
    store.record_sample(job.id, 4242, 800.0, 90.0, peak_mb=1100.0)  # a higher reading between samples
    assert store.get(job.id).peak_rss_mb == 1100.0
    time.sleep(0.05)
    store.record_sample(job.id, 4242, 650.0, 50.0, keep_seconds=0.01)  # older ones go
    assert [s.rss_mb for s in store.samples(0)] == [650.0] and store.get(job.id).peak_rss_mb == 1100.0


# -- webhooks: a transactional outbox ---------------------------------------------------------------
def test_every_final_transition_writes_one_notification(store, tmp_path):
    done = store.claim(_queued(store, tmp_path, "a.wav", "a").id)
    store.mark_succeeded(done.id, "/outbox/a", None)
    broken = store.claim(_queued(store, tmp_path, "b.wav", "b").id)
    store.fail(broken.id, "BadMedia", "broken", "re-export")
    stopped = _queued(store, tmp_path, "c.wav", "c")
    store.mark_cancelled(stopped.id, None)
    tired = store.claim(_queued(store, tmp_path, "d.wav", "d").id)
    for _ in range(3):
        store.requeue(tired.id, "crash", spend_attempt=True)
        store.claim(tired.id)
    store.requeue(tired.id, "crash", spend_attempt=True)  # the fourth: failed, no attempts left
    store.claim(_queued(store, tmp_path, "e.wav", "e").id)
    store.requeue(store.get(store.jobs()[0].id).id, "stopped", spend_attempt=False)  # not final: none
    notes = store.pending_notifications()
    assert [(n.job_id, n.event) for n in notes] == [(done.id, "succeeded"), (broken.id, "failed"),
                                                    (stopped.id, "cancelled"), (tired.id, "failed")]


def test_deliveries_are_made_once_claimed_once_and_retried_until_done(store, tmp_path):
    job = store.claim(_queued(store, tmp_path).id)
    store.mark_succeeded(job.id, "/outbox/a", None)
    note = store.pending_notifications()[0]
    later = time.time() + 86400
    store.add_deliveries(note.id, [("dlv_1", "http://a/", "{}"), ("dlv_2", "http://b/", "{}")], later)
    store.add_deliveries(note.id, [("dlv_3", "http://a/", "{}")], later)  # a second sender: nothing
    assert store.pending_notifications() == []
    assert sorted(d.id for d in store.deliveries(job.id)) == ["dlv_1", "dlv_2"]
    first = store.claim_deliveries(lease_seconds=60)
    assert sorted(d.id for d in first) == ["dlv_1", "dlv_2"] and store.claim_deliveries(60) == []
    assert sorted(d.id for d in store.claim_deliveries(60, now=time.time() + 61)) == ["dlv_1", "dlv_2"]
    retry = store.finish_attempt("dlv_1", 500, "HTTP 500", retry_at=time.time() - 1)
    assert retry.state == "pending" and retry.attempts == 1 and retry.last_status == 500
    assert [d.id for d in store.claim_deliveries(60)] == ["dlv_1"]
    assert store.finish_attempt("dlv_1", 204, None, None).state == "delivered"
    assert store.finish_attempt("dlv_2", None, "refused", None).state == "failed"
    assert store.delivery_counts() == {"delivered": 1, "failed": 1}
    again = store.retry_delivery("dlv_2", later)
    assert again.state == "pending" and again.expires_at == later
    assert store.get_delivery("dlv_2").id == "dlv_2"
    with pytest.raises(NotFound):
        store.get_delivery("dlv_")  # two match


# -- SQLite's schema -------------------------------------------------------------------------------
def test_schema_is_versioned_wal_and_a_newer_one_is_refused(tmp_path):
    SQLiteStore(tmp_path / "d.db")
    conn = sqlite3.connect(tmp_path / "d.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    with pytest.raises(SchemaError, match="newer than this diarized"):
        SQLiteStore(tmp_path / "d.db")


def _unmigrated(path: Path) -> SQLiteStore:
    """A SQLiteStore whose schema the test brings to a chosen version (the constructor goes to the latest)."""
    store = SQLiteStore.__new__(SQLiteStore)
    store.path, store._turn = path, threading.RLock()
    store.conn = sqlite3.connect(str(path), isolation_level=None)
    return store


def test_a_v1_database_migrates_forward_keeping_its_jobs(tmp_path):
    old = _unmigrated(tmp_path / "d.db")  # a store frozen at version 1, as released
    old.migrate(target=1)
    old.conn.execute("INSERT INTO jobs (id, source_name, sha256, size, priority, state, attempts, "
                     "max_attempts, progress, created_at, updated_at, not_before, cancel_requested) "
                     "VALUES ('j1', 'old.wav', 's', 1, 2, 'succeeded', 1, 3, 1, 1, 1, 0, 0)")
    old.conn.execute("INSERT INTO events (job_id, at, kind, detail) VALUES ('j1', 1, 'succeeded', 'x')")
    assert old.schema_version() == 1
    old.close()
    readonly = SQLiteStore(tmp_path / "d.db", readonly=True)  # a newer diarizectl reads it
    assert readonly.schema_version() == SCHEMA_VERSION == max(MIGRATIONS)
    job = readonly.get("j1")
    assert job.state == State.SUCCEEDED and readonly.events("j1")[0].data == {}


def test_every_migration_applies_on_a_fresh_database(tmp_path):
    for target in sorted(MIGRATIONS):
        store = _unmigrated(tmp_path / f"v{target}.db")
        store.migrate(target=target)
        assert store.schema_version() == target


def test_open_store_refuses_what_it_cannot_serve(tmp_path):
    with pytest.raises(SchemaError, match="only a SQLite file path or a postgresql:// URL"):
        open_store("mysql://localhost/diarized")


def test_daemon_deaths_never_fail_a_job_and_a_streak_makes_it_wait(store, tmp_path):
    """A daemon's death is no evidence against the file: free, never `failed`; in a row, it waits."""
    job = _queued(store, tmp_path)
    store.claim(job.id)
    job = store.requeue_after_daemon_death(job.id, "the daemon stopped", backoff_base=10)
    assert (job.state, job.attempts, job.supervisor_deaths) == (State.QUEUED, 0, 1)
    assert job.not_before <= time.time()  # one death (a reboot): it runs again at once
    for death in range(2, 9):
        store.claim(job.id)
        job = store.requeue_after_daemon_death(job.id, "the daemon stopped", backoff_base=10)
        assert (job.state, job.attempts, job.supervisor_deaths) == (State.QUEUED, 0, death)
        assert job.not_before - time.time() == pytest.approx(10 * 2 ** (death - 2), abs=2)
    assert store.claimable() == []  # a node restarting in a loop does not take it again at once
    store.claim(job.id)
    store.requeue(job.id, "crash", spend_attempt=True)  # the job's own failure: the streak ends
    assert store.get(job.id).supervisor_deaths == 0
    store.claim(job.id)
    done = store.mark_succeeded(job.id, str(tmp_path / "out"), None)
    assert store.requeue_after_daemon_death(job.id, "again") == done  # not running: unchanged


def test_speaker_hints_are_kept_with_the_job(store, tmp_path):
    from diarized.store import SpeakerHints

    job = store.record_incoming("p.wav", "h", 1, Priority.NORMAL, 3, tmp_path / "p.wav", tmp_path / "jobs",
                                SpeakerHints(num=None, min=2, max=0))
    assert job.speakers == SpeakerHints(None, 2, 0) and job.speakers.given() == {"min_speakers": 2,
                                                                                "max_speakers": 0}
    assert _incoming(store, tmp_path, "q.wav", "i").speakers.given() == {}


def _record_same(location: str, tmp: str, out) -> None:
    store = open_store(location)
    job = store.record_incoming(f"{os.getpid()}.wav", "same-content", 1, Priority.NORMAL, 3,
                                Path(tmp) / "x.wav", Path(tmp) / "jobs")
    out.put(str(job.state))


def test_the_same_content_from_racing_processes_becomes_one_job(store, location, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_record_same, args=(location, str(tmp_path), out)) for _ in range(4)]
    for p in procs:
        p.start()
    states = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    assert states == ["duplicate"] * 3 + ["incoming"]
