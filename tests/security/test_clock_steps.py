"""The wall clock stepped an hour back or a day forward under a running daemon (NTP, an operator's `date -s`).

The daemon, its workers and `diarizectl` run with tests/support/clockstep.c preloaded:
their CLOCK_REALTIME jumps by what the test writes in a file, their monotonic clock and
sleeps do not, exactly as in a real step. Durations must not notice; records may.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.harness import Daemon, script, wait_until

@pytest.fixture
def stepped(tmp_path, models_cache, clockstep):
    """A daemon (fake workers) whose wall clock the test steps with step(seconds)."""
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    d = Daemon(tmp_path / "var", models_cache, fake_workers=True, settle_seconds=2, lease_seconds=10)
    d.env.update(LD_PRELOAD=str(clockstep), CLOCKSTEP_FILE=str(offset))
    d.step = lambda seconds: offset.write_text(str(seconds))
    d.start()
    yield d
    if d.proc.poll() is None:
        d.kill9()


def status(d: Daemon) -> dict:
    """`diarizectl status --json` with the daemon's (stepped) clock."""
    env = {**d.env, "DIARIZED_STATE_DIR": str(d.root)}
    done = subprocess.run([sys.executable, "-m", "diarized.cli.ctl", "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_hour_back_holds_no_file_and_the_daemon_stays_up(stepped):
    """Before: a one-hour backward step held a settling file for an hour and showed the daemon DOWN."""
    d = stepped
    (d.inbox / "talk.wav").write_bytes(script("talk"))
    d.step(-3600)
    job = d.wait_all_final(1, timeout=30)[0]
    assert job.state == "succeeded"
    assert status(d)["daemon"]["up"] is True
    (d.inbox / "next.wav").write_bytes(script("next"))  # and the next one as promptly
    assert {j.state for j in d.wait_all_final(2, timeout=30)} == {"succeeded"}


def test_a_day_forward_kills_no_running_job_and_spends_no_attempt(stepped):
    """Before: a one-day forward step made every lease look expired: the job was killed, an attempt spent."""
    d = stepped
    (d.inbox / "long.wav").write_bytes(script("long", seconds=12))
    wait_until(lambda: [j for j in d.jobs("running") if j.progress > 0], 30, "the job to run")
    d.step(86400)
    assert status(d)["daemon"]["up"] is True
    job = d.wait_all_final(1, timeout=60)[0]
    assert job.state == "succeeded" and job.attempts == 1, [e.detail for e in d.store.events(job.id)]
    assert not [e for e in d.store.events(job.id) if e.kind == "killed"]


def test_a_backoff_set_before_a_step_back_ends_on_time(stepped):
    """A retry due in a few seconds must not wait an extra hour because the clock went back."""
    d = stepped
    (d.inbox / "flaky.wav").write_text(json.dumps({"runs": [{"exit": 1}, {"exit": 0}], "name": "flaky"}))
    wait_until(lambda: [j for j in d.jobs("queued") if j.attempts == 1], 30, "the first attempt to fail")
    d.step(-3600)
    job = d.wait_all_final(1, timeout=30)[0]
    assert job.state == "succeeded" and job.attempts == 2


@pytest.mark.parametrize("seconds", [-3600, 86400])
def test_a_hung_worker_is_still_found_after_a_step(stepped, seconds):
    """The other side: a silent worker is killed after lease_seconds of monotonic time, step or not."""
    d = stepped
    (d.inbox / "hung.wav").write_text(json.dumps({"runs": [{"hang": True}, {"exit": 0}], "name": "hung"}))
    wait_until(lambda: [j for j in d.jobs("running") if j.worker_pid], 30, "the worker to start")
    d.step(seconds)
    job = d.wait_all_final(1, timeout=60)[0]
    killed = [e.detail for e in d.store.events(job.id) if e.kind == "killed"]
    assert job.state == "succeeded" and job.attempts == 2 and killed and "no heartbeat" in killed[0], killed
    assert os.path.exists(job.output_dir)
