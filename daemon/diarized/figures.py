"""The service's figures, read from the store once: `diarizectl stats` prints them, /metrics exports them.

One place computes them so the terminal and Prometheus never disagree. Outcome
totals are the store's rows plus the tallies of deleted ones, so those counters
only grow, across API restarts and deletions too; the timing histograms are
over the jobs the store still holds (a DELETE shrinks them, as a reset would).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from diarized.store import DaemonStatus, JobStore, State, Timing

OUTCOMES = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.DUPLICATE)
STALE_SECONDS = 15.0


@dataclass(frozen=True)
class Figures:
    states: dict[str, int]  # jobs in each state now
    timings: list[Timing]  # one per succeeded job
    worker_rss_mb: dict[str, float]  # running job id -> its worker's peak RSS so far
    daemon: DaemonStatus
    deliveries: dict[str, int] = field(default_factory=dict)  # webhook deliveries by state
    tallies: dict[str, int] = field(default_factory=dict)  # deleted_<outcome>, expired (store.tallies)
    nodes: list[DaemonStatus] = field(default_factory=list)  # each node's last heartbeat

    @property
    def outcomes(self) -> dict[str, int]:
        """Jobs that ended, by outcome, deleted ones included."""
        return {str(s): self.states.get(s, 0) + self.deleted.get(str(s), 0) for s in OUTCOMES}

    @property
    def deleted(self) -> dict[str, int]:
        return {str(s): self.tallies.get(f"deleted_{s}", 0) for s in (*OUTCOMES, State.QUEUED)}

    def by_model(self) -> dict[str, list[Timing]]:
        groups: dict[str, list[Timing]] = {}
        for t in self.timings:
            groups.setdefault(t.model or "unknown", []).append(t)
        return groups

    def queue_waits(self) -> list[float]:
        return [t.queue_wait for t in self.timings if t.queue_wait is not None and t.queue_wait >= 0]


def gather(store: JobStore) -> Figures:
    running = store.jobs(states=(State.RUNNING,))
    return Figures(states=store.counts(), timings=store.timings(),
                   worker_rss_mb={j.id: j.peak_rss_mb or 0.0 for j in running},
                   daemon=store.daemon(STALE_SECONDS), deliveries=store.delivery_counts(),
                   tallies=store.tallies(), nodes=store.nodes(STALE_SECONDS))


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least `share` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]

