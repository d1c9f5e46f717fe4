"""A worker's reports (reports.py) across a real database outage: kept, then written in order."""

from __future__ import annotations

import time

from diarized.reports import ReportQueue
from diarized.store import Priority, StoreUnavailable, open_store


def test_reports_made_while_the_database_is_away_are_written_after_it_returns_in_order(postgres_server, tmp_path):
    """Before: each report was written on the compute thread and dropped when the store refused it."""
    store = open_store(postgres_server.new_database())
    job = store.record_incoming("talk.wav", "ab" * 32, 10, Priority.NORMAL, 3, tmp_path / "inbox/talk.wav",
                                tmp_path / "jobs")
    queue = ReportQueue(StoreUnavailable, retry_seconds=0.2)
    postgres_server.halt()
    try:
        started = time.monotonic()
        for i in range(5):
            queue.put(store.event, job.id, "unit_done", f"unit {i + 1}/5")
            for seconds in (10.0, 20.0, 30.0):  # progress-like: only the newest waiting one is kept
                queue.put(store.set_duration, job.id, seconds * (i + 1), progress=True)
        queued_in = time.monotonic() - started
        time.sleep(1.0)
        assert len(queue.waiting) == 10  # five events, five coalesced progress reports
    finally:
        postgres_server.resume()
    assert queue.close(timeout=30) == 0
    assert [e.detail for e in store.events(job.id) if e.kind == "unit_done"] == [f"unit {i}/5" for i in range(1, 6)]
    assert store.get(job.id).duration == 150.0
    print(f"\n15 reports queued in {queued_in * 1000:.1f} ms while the database was down; all written after")
    store.close()
