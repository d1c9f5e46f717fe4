"""`diarizectl doctor` finds real problems in a real state folder."""

from __future__ import annotations

import json

from click.testing import CliRunner

from diarized.cli.ctl import cli
from diarized.store import open_store
from diarized.supervisor import Supervisor


def doctor(root, cache):
    result = CliRunner().invoke(cli, ["--state-dir", str(root), "doctor", "--json"],
                                env={"DIARIZED_CONFIG": "", "DIARIZED_CACHE_DIR": str(cache)})
    return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)}


def test_doctor_on_a_missing_then_healthy_then_damaged_install(make_settings, models_cache):
    settings = make_settings()
    code, checks = doctor(settings.state_dir, models_cache)
    assert code == 1 and checks["folder inbox"]["level"] == "fail" and checks["folder inbox"]["fix"]
    store = open_store(settings.db_path)
    Supervisor(settings, store).prepare()
    # closed now, not whenever the garbage collector frees the Supervisor: an open connection of
    # this process would keep serving the old pages from its WAL index after the file is damaged
    store.close()
    settings.inbox.chmod(0o2770)
    code, checks = doctor(settings.state_dir, models_cache)
    assert code == 0, checks
    assert checks["whisper model"]["level"] == "ok" and checks["job store"]["level"] == "ok"
    assert checks["free disk"]["level"] == "ok"
    open_store(settings.db_path).close()
    for suffix in ("-wal", "-shm"):
        settings.db_path.with_name(settings.db_path.name + suffix).unlink(missing_ok=True)
    settings.db_path.write_bytes(b"this is not sqlite" * 100)
    code, checks = doctor(settings.state_dir, models_cache)
    assert code == 1 and checks["job store"]["level"] == "fail", json.dumps(checks["job store"]) + json.dumps(checks.get("daemon"))
