"""A worker's reports to the store (progress, events, the audio's length, its error), written in
order by a thread of their own and kept while the store is away.

Before, each report was a call on the compute thread, dropped if the store refused it: a 45-s
database outage lost every event written meanwhile, and each report made the computation wait
for the pool's timeout. Now a report is queued in a moment; the writer retries the oldest one
every second until the store takes it, and the worker drains the queue before it exits, so the
supervisor finds the events (and the error) before it settles the job. Progress is coalesced:
only the newest waiting progress report is kept.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

RETRY_SECONDS = 1.0
MAX_WAITING = 10_000  # reports kept during an outage; a worker makes a few per unit of audio


@dataclass
class Report:
    write: Callable[..., Any]
    args: tuple
    progress: bool = False


class ReportQueue:
    def __init__(self, unavailable: type[Exception], retry_seconds: float = RETRY_SECONDS):
        self.unavailable = unavailable  # the store's "not now" (StoreUnavailable): kept and retried
        self.retry_seconds = retry_seconds
        self.waiting: collections.deque[Report] = collections.deque()
        self.changed = threading.Condition()
        self.closing = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="reports", daemon=True)
        self.thread.start()

    def put(self, write: Callable[..., Any], *args, progress: bool = False) -> None:
        with self.changed:
            if progress and self.waiting and self.waiting[-1].progress:
                self.waiting[-1] = Report(write, args, True)  # only the newest progress matters
            elif len(self.waiting) >= MAX_WAITING:
                self.dropped += 1
            else:
                self.waiting.append(Report(write, args, progress))
            self.changed.notify()

    def close(self, timeout: float) -> int:
        """Write what waits, for at most `timeout` seconds; returns how many reports were not written."""
        deadline = time.monotonic() + timeout
        with self.changed:
            self.closing = True
            self.changed.notify()
            while self.waiting and time.monotonic() < deadline:
                self.changed.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            left = len(self.waiting) + self.dropped
        if left:
            print(f"{left} report(s) to the job store were not written: it was away for {timeout:.0f} s",
                  file=sys.stderr, flush=True)
        return left

    def _run(self) -> None:
        while True:
            with self.changed:
                while not self.waiting:
                    if self.closing:
                        return
                    self.changed.wait()
                report = self.waiting[0]
            if self._write(report):
                with self.changed:
                    if self.waiting and self.waiting[0] is report:
                        self.waiting.popleft()
                    self.changed.notify_all()
            else:
                time.sleep(self.retry_seconds)

    def _write(self, report: Report) -> bool:
        """True when done with it (written, or refused for good); False: the store is away, again later."""
        try:
            report.write(*report.args)
        except self.unavailable:
            return False
        except Exception as exc:  # noqa: BLE001 - a report never ends the job
            print(f"a report to the job store failed and is dropped: {exc!r}", file=sys.stderr, flush=True)
        return True
