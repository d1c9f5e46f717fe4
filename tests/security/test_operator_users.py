"""Operators who are not the service's user: root with sudo, and a user outside its group.

The daemon runs as an unprivileged user (`nobody`), as under systemd; the commands run
as root or as another uid, as an operator at a shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from diarized.store import open_store
from tests.harness import script, wait_until

OTHER_UID = 4242  # a user that is neither the service nor in its group


def diarizectl(root: Path, *args: str, user: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIARIZED_CONFIG": "", "XDG_RUNTIME_DIR": str(root.parent / "run")}
    return subprocess.run([sys.executable, "-m", "diarized.cli.ctl", "--state-dir", str(root), *args],
                          env=env, capture_output=True, text=True, timeout=60, user=user, group=user,
                          extra_groups=[] if user is not None else None)


def test_sudo_submit_writes_as_the_services_user(daemon, unprivileged, tmp_path):
    """Before: root's submit made state/jobs/<id>/ as root; the job failed, its original was stranded,
    and every later start of the daemon exited in repair (PermissionError)."""
    source = tmp_path / "root-only.wav"  # a file the service itself may not read: root submits it
    source.write_bytes(script("root's"))
    source.chmod(0o600)
    done = diarizectl(daemon.root, "submit", str(source))
    assert done.returncode == 0, done.stderr
    assert "writing as the service's user" in done.stderr
    job = daemon.wait_all_final(1, timeout=30)[0]
    assert job.state == "succeeded", (job.error, daemon.log.read_text()[-2000:])
    uid = unprivileged[0]
    for path in (daemon.root / "state/uploads", Path(job.output_dir), Path(job.source_path)):
        assert path.stat().st_uid == uid, f"{path} belongs to uid {path.stat().st_uid}"
    daemon.stop()
    daemon.start()  # and the next start is a start
    assert daemon.proc.poll() is None


def test_a_job_folder_the_service_cannot_clean_does_not_stop_the_start(daemon, data):
    """What the old root submit left: a failed job whose original sits in a root-owned work folder."""
    store = open_store(daemon.store_location)
    (daemon.inbox / "first.wav").write_bytes(script("first"))
    first = daemon.wait_all_final(1, timeout=30)[0]
    daemon.stop()
    job = store.record_incoming("stranded.wav", "f" * 64, 10, 2, 3, daemon.inbox / "stranded.wav",
                                daemon.root / "state/jobs")
    source = Path(job.source_path)
    source.parent.mkdir()  # made by root, 0755: the service can neither move nor delete in it
    source.write_bytes(script("stranded"))
    store.mark_queued(job.id)
    store.claim(job.id)
    store.fail(job.id, "PermissionError", "the worker could not write its folder", "see worker.log")
    daemon.start()
    wait_until(lambda: "cannot be cleaned up" in daemon.log.read_text(), 30, "the repair to report the job")
    (daemon.inbox / "after.wav").write_bytes(script("after"))
    jobs = daemon.wait_all_final(3, timeout=30)
    assert {j.source_name: j.state for j in jobs} == {"first.wav": "succeeded", "stranded.wav": "failed",
                                                      "after.wav": "succeeded"}
    assert first.id
    events = [e.detail for e in daemon.store.events(job.id) if e.kind == "stuck"]
    assert events and "chown -R" in events[0] and "diarizectl retry" in events[0]
    assert source.exists()  # nothing lost: it waits for the operator


def test_a_change_by_a_user_who_may_not_write_says_so_without_a_traceback(daemon):
    (daemon.inbox / "talk.wav").write_text(json.dumps({"runs": [{"exit": 1}], "name": "talk"}))
    job = daemon.wait_all_final(1, timeout=60)[0]
    assert job.state == "failed"
    hidden = diarizectl(daemon.root, "retry", job.short_id, user=OTHER_UID)  # may not even read
    assert hidden.returncode == 1 and "Traceback" not in hidden.stderr and "may not read" in hidden.stderr
    for folder in (daemon.root.parent, daemon.root, daemon.root / "state"):
        folder.chmod(0o755)
    for name in ("diarized.db", "diarized.db-wal", "diarized.db-shm"):
        if (daemon.root / "state" / name).exists():
            (daemon.root / "state" / name).chmod(0o644)
    assert diarizectl(daemon.root, "show", job.short_id, user=OTHER_UID).returncode == 0  # reading is fine
    for args in (("retry", job.short_id), ("priority", job.short_id, "high")):
        answer = diarizectl(daemon.root, *args, user=OTHER_UID)
        assert answer.returncode == 1 and "Traceback" not in answer.stderr, answer.stderr
    answer = diarizectl(daemon.root, "retry", job.short_id, user=OTHER_UID)
    assert "cannot change jobs" in answer.stderr and "nobody" in answer.stderr, answer.stderr
    assert daemon.store.get(job.id).state == "failed"
