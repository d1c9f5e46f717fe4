"""diarizectl shows webhook deliveries and sends one again, on a real store."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from diarized.cli.ctl import cli
from diarized.store import Priority, open_store


def ctl(root, *args):
    return CliRunner().invoke(cli, ["--state-dir", str(root), *args], env={"DIARIZED_CONFIG": ""})


def test_show_list_and_retry_a_delivery(tmp_path):
    store = open_store(tmp_path / "state/diarized.db")
    job = store.record_incoming("a.wav", "x", 1, Priority.NORMAL, 3, tmp_path / "a.wav", tmp_path / "jobs")
    store.claim(store.mark_queued(job.id).id)
    store.fail(job.id, "BadMedia", "not media", "re-export it")
    note = store.pending_notifications()[0]
    store.add_deliveries(note.id, [("dlv_0123456789abcdef", "http://127.0.0.1:9/hook", "{}")], time.time() + 60)
    store.finish_attempt("dlv_0123456789abcdef", None, "ConnectError: refused", None)
    shown = ctl(tmp_path, "show", job.id)
    assert "dlv_0123456789abcdef" in shown.output and "ConnectError" in shown.output
    assert json.loads(ctl(tmp_path, "show", job.id, "--json").stdout)["deliveries"][0]["last_error"] \
        == "ConnectError: refused"
    listed = json.loads(ctl(tmp_path, "webhooks", "list", "--json").stdout)
    assert listed[0]["state"] == "failed" and "payload" not in listed[0]
    retried = ctl(tmp_path, "webhooks", "retry", "dlv_0123")
    assert retried.exit_code == 0 and "is due now" in retried.output
    assert store.get_delivery("dlv_0123456789abcdef").state == "pending"
    assert ctl(tmp_path, "webhooks", "retry", "dlv_nope").exit_code == 3
