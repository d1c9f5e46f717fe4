"""The job state machine on a real SQLite file, including concurrent claims from processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from diarized.store import SCHEMA_VERSION, InvalidTransition, NotFound, Priority, Store


def _queued(store: Store, tmp_path: Path, name: str = "a.wav", sha: str = "x", priority=Priority.NORMAL):
    job = store.record_incoming(name, sha, 10, priority, 3, tmp_path / name, tmp_path / "jobs")
    return store.mark_queued(job.id, 12.0)


def test_schema_is_versioned_and_wal(tmp_path):
    store = Store(tmp_path / "d.db")
    conn = sqlite3.connect(tmp_path / "d.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    store.close()
    with pytest.raises(RuntimeError, match="newer than this diarized"):
        Store(tmp_path / "d.db")


def test_lifecycle_and_attempts(tmp_path):
    store = Store(tmp_path / "d.db")
    job = _queued(store, tmp_path)
    assert job.state == "queued" and job.inbox_path is None
    job = store.claim(job.id)
    assert (job.state, job.attempts) == ("running", 1)
    assert store.claim(job.id) is None  # already taken
    job = store.requeue(job.id, "stopped", spend_attempt=False)
    assert (job.state, job.attempts) == ("queued", 0)
    for attempt in (1, 2, 3):
        store.claim(job.id)
        job = store.requeue(job.id, "crash", spend_attempt=True)
    assert job.state == "failed" and "no attempts left" in store.events(job.id)[-1].detail
    kinds = [e.kind for e in store.events(job.id)]
    assert kinds[:3] == ["recorded", "queued", "claimed"]


def test_claim_order_is_priority_then_age(tmp_path):
    store = Store(tmp_path / "d.db")
    low = _queued(store, tmp_path, "low.wav", "1", Priority.LOW)
    normal = _queued(store, tmp_path, "n.wav", "2")
    high = _queued(store, tmp_path, "h.wav", "3", Priority.HIGH)
    assert [j.id for j in store.claimable()] == [high.id, normal.id, low.id]


def test_duplicates_point_at_the_first_live_or_done_job(tmp_path):
    store = Store(tmp_path / "d.db")
    first = _queued(store, tmp_path, "a.wav", "same")
    dup = store.record_incoming("b.wav", "same", 10, Priority.NORMAL, 3, tmp_path / "b.wav", tmp_path / "jobs")
    assert dup.state == "duplicate" and dup.duplicate_of == first.id
    store.claim(first.id)
    store.fail(first.id, "BadMedia", "broken", "re-export")
    again = store.record_incoming("c.wav", "same", 10, Priority.NORMAL, 3, tmp_path / "c.wav", tmp_path / "jobs")
    assert again.state == "incoming"  # a failed job does not block a fresh copy


def test_operator_transitions(tmp_path):
    store = Store(tmp_path / "d.db")
    job = _queued(store, tmp_path)
    assert store.set_priority(job.id, Priority.HIGH).priority_name == "high"
    assert store.get(job.short_id).id == job.id  # the short id in `status` resolves
    assert store.request_cancel(job.id).cancel_requested == 1
    store.mark_cancelled(job.id, str(tmp_path / "a.wav"))
    with pytest.raises(InvalidTransition):
        store.request_cancel(job.id)
    with pytest.raises(InvalidTransition, match="no longer at"):
        store.request_retry(job.id)
    (tmp_path / "a.wav").write_bytes(b"x")
    assert store.request_retry(job.id).state == "queued"
    with pytest.raises(NotFound):
        store.get("nope")


def _claim_all(path: str, ids: list[str], out) -> None:
    store = Store(Path(path))
    out.put([i for i in ids if store.claim(i) is not None])


def test_concurrent_claims_from_processes_never_double_claim(tmp_path):
    store = Store(tmp_path / "d.db")
    ids = [_queued(store, tmp_path, f"{i}.wav", str(i)).id for i in range(40)]
    out = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_claim_all, args=(str(tmp_path / "d.db"), ids, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    flat = [i for chunk in claimed for i in chunk]
    assert sorted(flat) == sorted(ids)  # each claimed once, by exactly one process


def test_stats_follow_the_seed(tmp_path):
    store = Store(tmp_path / "d.db")
    job = store.claim(_queued(store, tmp_path).id)
    store.mark_succeeded(job.id, str(tmp_path / "out"), None)
    store.claim(_queued(store, tmp_path, "b.wav", "y").id)
    store.fail(store.jobs(states=("running",))[0].id, "BadMedia", "x", "y")
    stats = store.stats()
    assert stats["jobs_total"] == 2 and stats["succeeded"] == 1 and stats["failed"] == 1
    assert stats["success_rate"] == 0.5 and stats["average_real_time_factor"] is not None
