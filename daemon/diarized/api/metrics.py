"""/metrics: the figures (figures.py) as Prometheus metric families, gathered at each scrape.

A collector reads the store when Prometheus asks, instead of counting events
in this process: the daemon, not the API, does the work, and the numbers must
survive restarts of either. Buckets suit CPU transcription: minutes to hours
of processing, real-time factors around 0.1 to 1.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from diarized import figures
from diarized.store import JobStore, State

PROCESSING_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
WAIT_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


def histogram(name: str, doc: str, label: str, groups: dict[str, list[float]],
              buckets: tuple[float, ...]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    for key, values in groups.items():
        cumulative = [(str(b), sum(1 for v in values if v <= b)) for b in buckets]
        cumulative.append(("+Inf", len(values)))
        family.add_metric([key] if label else [], cumulative, sum(values))
    return family


class StoreCollector:
    def __init__(self, store: Callable[[], JobStore]):
        self.store = store

    def collect(self) -> Iterable[Metric]:
        f = figures.gather(self.store())
        jobs = GaugeMetricFamily("diarized_jobs", "Jobs in each state now", labels=["state"])
        for state in State:
            jobs.add_metric([str(state)], f.states.get(state, 0))
        yield jobs
        total = CounterMetricFamily("diarized_jobs", "Jobs that ended, by outcome", labels=["outcome"])
        for outcome, count in f.outcomes.items():
            total.add_metric([outcome], count)
        yield total
        deleted = CounterMetricFamily("diarized_jobs_deleted", "Jobs deleted (DELETE /jobs, diarizectl delete), "
                                      "by the state they were in", labels=["state"])
        for state, count in f.deleted.items():
            deleted.add_metric([state], count)
        yield deleted
        yield CounterMetricFamily("diarized_jobs_expired", "Finished jobs whose files retention_days removed",
                                  value=f.tallies.get("expired", 0))
        models = f.by_model()
        yield histogram("diarized_processing_seconds", "Wall time of succeeded jobs", "model",
                        {m: [t.processing_seconds for t in ts] for m, ts in models.items()}, PROCESSING_BUCKETS)
        yield histogram("diarized_real_time_factor", "Processing time / audio length of succeeded jobs", "model",
                        {m: [t.real_time_factor for t in ts if t.real_time_factor is not None]
                         for m, ts in models.items()}, RTF_BUCKETS)
        yield histogram("diarized_queue_wait_seconds", "From recording to the start of the last attempt",
                        "", {"": f.queue_waits()}, WAIT_BUCKETS)
        rss = GaugeMetricFamily("diarized_worker_rss_bytes", "Peak RSS so far of each running job's worker",
                                labels=["job_id"])
        for job_id, mb in f.worker_rss_mb.items():
            rss.add_metric([job_id], mb * 2**20)
        yield rss
        yield GaugeMetricFamily("diarized_memory_used_bytes", "Memory the workers use now (the daemon's view)",
                                value=f.daemon.memory_used_gb * 2**30)
        yield GaugeMetricFamily("diarized_memory_budget_bytes", "max_memory_gb of the running daemon",
                                value=f.daemon.memory_budget_gb * 2**30)
        yield GaugeMetricFamily("diarized_workers_busy", "Worker processes running", value=f.daemon.workers_busy)
        yield GaugeMetricFamily("diarized_workers_max", "max_workers", value=f.daemon.workers_total)
        yield GaugeMetricFamily("diarized_daemon_up", "1 if the daemon's heartbeat is fresh", value=int(f.daemon.up))
        per_node = {"up": ("1 if the node's heartbeat is fresh", lambda n: int(n.up)),
                    "workers_busy": ("Worker processes running on the node", lambda n: n.workers_busy),
                    "workers_max": ("max_workers of the node", lambda n: n.workers_total),
                    "memory_used_bytes": ("Memory the node's workers use now", lambda n: n.memory_used_gb * 2**30),
                    "inbox": ("1 on the node that scans the inbox", lambda n: int(n.inbox))}
        for name, (doc, value) in per_node.items():
            family = GaugeMetricFamily(f"diarized_node_{name}", doc, labels=["node"])
            for node in f.nodes:
                family.add_metric([node.node or "-"], value(node))
            yield family
        deliveries = GaugeMetricFamily("diarized_webhook_deliveries", "Webhook deliveries by outcome",
                                       labels=["outcome"])
        for state in ("pending", "delivered", "failed"):
            deliveries.add_metric([state], f.deliveries.get(state, 0))
        yield deliveries


def registry(store: Callable[[], JobStore]) -> CollectorRegistry:
    """A registry of this app's own (no process-global default registry)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store))
    return reg
