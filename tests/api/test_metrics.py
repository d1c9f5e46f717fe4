"""/metrics on a real API process, checked against `diarizectl stats` on the same store."""

from __future__ import annotations

import json

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from diarized.api.auth import new_token
from diarized.cli.ctl import cli
from diarized.worker import WorkerExit
from tests.harness import wait_until

TOKEN, ENTRY = new_token("prometheus", "read")
SUBMIT, SUBMIT_ENTRY = new_token("up", "submit")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_agree_with_diarizectl_stats(make_daemon, make_api):
    daemon = make_daemon(fake_workers=True)
    api = make_api([ENTRY, SUBMIT_ENTRY])
    with api.client(SUBMIT) as client:
        for name, content in (("a.wav", b"a"), ("b.wav", b"b"),
                              ("c.mp4", json.dumps({"runs": [{"exit": WorkerExit.BAD_INPUT}]}).encode())):
            assert client.post("/jobs", files={"file": (name, content)}).status_code == 202
    wait_until(lambda: len([j for j in daemon.jobs() if j.state in ("succeeded", "failed")]) == 3, 60, "3 jobs")
    with api.client() as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with api.client(TOKEN) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    got = samples(answer.text)
    assert got[("diarized_jobs", (("state", "succeeded"),))] == 2
    assert got[("diarized_jobs_total", (("outcome", "failed"),))] == 1
    assert got[("diarized_processing_seconds_count", (("model", "tiny.en"),))] == 2
    assert got[("diarized_processing_seconds_bucket", (("le", "+Inf"), ("model", "tiny.en")))] == 2
    assert got[("diarized_queue_wait_seconds_count", ())] == 2
    assert got[("diarized_daemon_up", ())] == 1 and got[("diarized_workers_max", ())] == 2
    assert got[("diarized_memory_budget_bytes", ())] > 0
    stats = json.loads(CliRunner().invoke(cli, ["--state-dir", str(daemon.root), "stats", "--json"],
                                          env={"DIARIZED_CONFIG": ""}).stdout)
    assert stats["jobs_by_state"] == {"succeeded": 2, "failed": 1}
    assert stats["by_model"]["tiny.en"]["jobs"] == 2
    assert got[("diarized_processing_seconds_sum", (("model", "tiny.en"),))] == \
        sum(t.processing_seconds for t in daemon.store.timings())
