"""Scheduling, limits, retries, cancel and recovery in seconds: the real supervisor, a real
SQLite store and real worker processes, but fake workers (tests/support/fake_worker.py)
that follow a script in their job's file instead of loading models."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path, PurePath

import psutil
import pytest

from diarized import outbox
from diarized.intake import Intake
from diarized.nofollow import Entry
from diarized.store import Job, State, open_store
from diarized.supervisor import Supervisor, audio_seconds, estimate_peak_gb
from diarized.worker import WorkerExit
from tests.harness import Daemon, wait_until, worker_pids
from tests.support.fake_daemon import fake_worker_command

CORES = os.cpu_count() or 1


@pytest.fixture
def make_supervisor(make_settings):
    made: list[Supervisor] = []

    def make(**overrides) -> Supervisor:
        overrides = {"model": "tiny.en", "retry_backoff_seconds": 0.2, **overrides}
        settings = make_settings(**overrides)
        sup = Supervisor(settings, open_store(settings.db_path), worker_command=fake_worker_command)
        sup.prepare()
        made.append(sup)
        return sup
    yield make
    for sup in made:
        for run in sup.running.values():
            run.proc.kill()
            run.proc.wait()


def submit(sup: Supervisor, name: str, *runs: dict, size: int = 0) -> Job:
    """A file whose worker follows `runs` (one entry per start), taken through the real intake."""
    path = sup.settings.inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": list(runs) or [{"exit": 0}], "name": name}) + " " * size)
    with Entry(sup.settings.inbox, PurePath(name)) as entry:
        return Intake(sup.settings, sup.store).take(entry)


def tick_until(sup: Supervisor, predicate, timeout: float = 20, what: str = "the supervisor"):
    def step():
        sup.tick()
        return predicate()
    return wait_until(step, timeout, what, every=0.05)


def final(sup: Supervisor, job: Job) -> bool:
    return sup.store.get(job.id).state not in (State.QUEUED, State.RUNNING, State.INCOMING)


def events(sup: Supervisor, job: Job) -> list[str]:
    return [f"{e.kind}: {e.detail}" for e in sup.store.events(job.id)]


def test_success_publishes_the_outputs_and_settles_the_original(make_supervisor):
    sup = make_supervisor()
    job = submit(sup, "talk.wav", {"exit": 0, "duration": 42.0})
    tick_until(sup, lambda: final(sup, job))
    done = sup.store.get(job.id)
    assert done.state == State.SUCCEEDED and done.duration == 42.0 and done.attempts == 1
    out = sup.settings.outbox / "talk"
    assert json.loads((out / "job.json").read_text())["job_id"] == job.id
    assert (out / "final_transcription.json").exists() and done.output_dir == str(out)
    assert (sup.settings.done / "talk.wav").exists()
    assert list(sup.settings.jobs_dir.iterdir()) == []


def test_a_lone_job_gets_every_core_and_jobs_admitted_together_split_them(make_supervisor):
    sup = make_supervisor(max_workers=2)
    alone = submit(sup, "alone.wav", {"exit": 0})
    tick_until(sup, lambda: final(sup, alone))
    a, b = submit(sup, "a.wav", {"exit": 0}), submit(sup, "b.wav", {"exit": 0})
    tick_until(sup, lambda: final(sup, a) and final(sup, b))
    assert sup.store.worker_threads(alone.id) == [CORES]
    assert sup.store.worker_threads(a.id) == sup.store.worker_threads(b.id) == [max(1, CORES // 2)]


def test_never_more_than_max_workers_and_priority_first(make_supervisor):
    sup = make_supervisor(max_workers=2)
    jobs = [submit(sup, f"{i}.wav", {"exit": 0, "seconds": 0.5}) for i in range(5)]
    seen = []
    tick_until(sup, lambda: seen.append(len(sup.running)) or all(final(sup, j) for j in jobs), 30)
    assert max(seen) == 2
    assert all(sup.store.get(j.id).state == State.SUCCEEDED for j in jobs)


def test_memory_budget_holds_back_a_job_that_does_not_fit(make_supervisor):
    sup = make_supervisor(max_workers=2, max_memory_gb=3.0)  # tiny.en is estimated at 1.8 GiB
    first = submit(sup, "first.wav", {"exit": 0, "seconds": 1.5})
    second = submit(sup, "second.wav", {"exit": 0, "seconds": 0.2})
    tick_until(sup, lambda: sup.store.get(first.id).state == State.RUNNING)
    for _ in range(10):
        sup.tick()
        assert sup.store.get(second.id).state == State.QUEUED  # 1.8 + 1.8 > 3.0
        time.sleep(0.05)
    tick_until(sup, lambda: final(sup, second))
    assert sup.store.get(second.id).started_at > sup.store.get(first.id).finished_at


def test_admission_guesses_the_duration_from_the_size_until_the_worker_knows_it(make_supervisor):
    sup = make_supervisor()
    job = submit(sup, "big.wav", {"exit": 0}, size=1_600_000)
    assert job.duration is None and audio_seconds(job) == pytest.approx(job.size / 16_000)
    assert estimate_peak_gb("base", audio_seconds(job)) > estimate_peak_gb("base", 0)
    tick_until(sup, lambda: final(sup, job))
    assert audio_seconds(sup.store.get(job.id)) == 1.0  # the fake worker "decoded" 1 s


def test_bad_input_fails_at_once_with_error_json(make_supervisor):
    sup = make_supervisor()
    job = submit(sup, "notes.mp4", {"exit": WorkerExit.BAD_INPUT, "error": "notes.mp4: not media"})
    tick_until(sup, lambda: final(sup, job))
    failed = sup.store.get(job.id)
    assert failed.state == State.FAILED and failed.attempts == 1 and failed.error_type == "FakeError"
    error = json.loads((sup.settings.failed / "notes/error.json").read_text())
    assert error["message"] == "notes.mp4: not media" and error["hint"] == "the test said so"
    assert (sup.settings.failed / "notes/notes.mp4").exists()
    assert failed.source_path == str(sup.settings.failed / "notes/notes.mp4")


def test_crashes_are_retried_with_backoff_then_fail_with_the_last_error(make_supervisor):
    sup = make_supervisor(max_attempts=2)
    job = submit(sup, "flaky.wav", {"exit": WorkerExit.FAILED, "error": "boom"})
    tick_until(sup, lambda: final(sup, job))
    failed = sup.store.get(job.id)
    assert failed.state == State.FAILED and failed.attempts == 2 and failed.error == "boom"
    timeline = events(sup, job)
    assert any(e.startswith("requeued: FakeError: boom; retry in") for e in timeline)
    assert "no attempts left" in timeline[-2] or "no attempts left" in timeline[-1]
    assert (sup.settings.failed / "flaky/error.json").exists()


def test_a_retry_that_succeeds_publishes(make_supervisor):
    sup = make_supervisor(max_attempts=3)
    job = submit(sup, "second-time.wav", {"exit": WorkerExit.FAILED}, {"exit": 0})
    tick_until(sup, lambda: final(sup, job))
    done = sup.store.get(job.id)
    assert done.state == State.SUCCEEDED and done.attempts == 2 and sup.store.worker_threads(job.id) == [CORES] * 2


def test_an_interrupted_worker_is_requeued_without_spending_an_attempt(make_supervisor):
    sup = make_supervisor()
    job = submit(sup, "stopped.wav", {"exit": WorkerExit.INTERRUPTED}, {"exit": 0})
    tick_until(sup, lambda: final(sup, job))
    done = sup.store.get(job.id)
    assert done.state == State.SUCCEEDED and done.attempts == 1
    assert any("attempt not counted" in e for e in events(sup, job))


def test_a_worker_without_progress_is_killed_and_retried(make_supervisor):
    sup = make_supervisor(unit_timeout_seconds=1.0, max_attempts=2)
    job = submit(sup, "hangs.wav", {"hang": True}, {"exit": 0})
    tick_until(sup, lambda: final(sup, job), 30)
    done = sup.store.get(job.id)
    assert done.state == State.SUCCEEDED and done.attempts == 2
    assert any(e.startswith("killed: timeout: no progress") for e in events(sup, job))


def test_a_worker_that_stops_renewing_its_lease_is_killed_and_retried(make_supervisor):
    sup = make_supervisor(lease_seconds=10, unit_timeout_seconds=600, max_attempts=2)
    job = submit(sup, "silent.wav", {"hang": True}, {"exit": 0})  # a hung worker sends no heartbeat
    tick_until(sup, lambda: final(sup, job), 40)
    done = sup.store.get(job.id)
    assert done.state == State.SUCCEEDED and done.attempts == 2
    assert any(e.startswith("killed: lease expired: no heartbeat") for e in events(sup, job))


def test_a_worker_over_its_memory_share_is_killed(make_supervisor):
    sup = make_supervisor(max_workers=1, max_memory_gb=1.0, max_attempts=2)
    job = submit(sup, "greedy.wav", {"allocate_mb": 1400})
    tick_until(sup, lambda: final(sup, job), 30)
    failed = sup.store.get(job.id)
    assert failed.state == State.FAILED and failed.attempts == 2  # killed, retried, killed again
    assert failed.error.startswith("memory limit exceeded (")
    assert sum(e.startswith("killed: memory limit exceeded") for e in events(sup, job)) == 2
    assert failed.peak_rss_mb > 1024
    error = json.loads((sup.settings.failed / "greedy/error.json").read_text())
    assert error["message"].startswith("memory limit exceeded")


def test_cancel_a_running_and_a_queued_job(make_supervisor):
    sup = make_supervisor(max_workers=1)
    running = submit(sup, "long.wav", {"exit": 0, "seconds": 30})
    waiting = submit(sup, "next.wav", {"exit": 0})
    tick_until(sup, lambda: sup.store.get(running.id).worker_pid)
    pid = sup.store.get(running.id).worker_pid
    sup.store.request_cancel(running.id)
    sup.store.request_cancel(waiting.id)
    tick_until(sup, lambda: final(sup, running) and final(sup, waiting))
    assert sup.store.get(running.id).state == sup.store.get(waiting.id).state == State.CANCELLED
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for name in ("long", "next"):
        assert json.loads((sup.settings.failed / name / "error.json").read_text())["state"] == "cancelled"
        assert (sup.settings.failed / name / f"{name}.wav").exists()


def test_graceful_stop_requeues_without_spending_attempts(make_supervisor):
    sup = make_supervisor(stop_timeout_seconds=1.0)
    polite = submit(sup, "polite.wav", {"exit": 0, "seconds": 30})
    stubborn = submit(sup, "stubborn.wav", {"exit": 0, "seconds": 30, "ignore_term": True})
    tick_until(sup, lambda: all(sup.store.get(j.id).progress > 0 for j in (polite, stubborn)))
    started = time.monotonic()
    sup.shutdown()
    assert time.monotonic() - started < 5
    for job in (polite, stubborn):
        job = sup.store.get(job.id)
        assert (job.state, job.attempts) == (State.QUEUED, 0)
    assert "stopped at a checkpoint" in " ".join(events(sup, polite))
    assert "killed after 1 s" in " ".join(events(sup, stubborn))


def test_recovery_kills_a_leftover_worker_and_requeues_its_job(make_supervisor):
    first = make_supervisor()
    job = submit(first, "orphan.wav", {"exit": 0, "seconds": 30}, {"exit": 0})
    tick_until(first, lambda: first.store.get(job.id).worker_pid)
    pid = first.store.get(job.id).worker_pid
    first.running.clear()  # the supervisor "died": its worker is still running
    second = Supervisor(first.settings, open_store(first.settings.db_path), worker_command=fake_worker_command)
    notes = second.recover()
    assert f"{job.id}: killed leftover worker {pid}" in notes
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               5, "the leftover worker to die")
    assert second.store.get(job.id).state == State.QUEUED and second.store.get(job.id).attempts == 0
    assert second.store.get(job.id).supervisor_deaths == 1
    tick_until(second, lambda: final(second, job))
    assert second.store.get(job.id).state == State.SUCCEEDED


def test_recovery_finishes_a_publication_cut_short(make_supervisor):
    sup = make_supervisor()
    job = submit(sup, "talk.wav", {"exit": 0})
    job = sup.store.claim(job.id)
    out = outbox.outputs_of(sup.settings, job.id, job.lease_generation)
    out.mkdir(parents=True)
    (out / "final_transcription.json").write_text("{}")
    (out / "job.json").write_text(json.dumps({"job_id": job.id}))
    target = sup.settings.outbox / "talk"
    sup.store.set_output_dir(job.id, str(target))
    os.rename(out, target)  # the crash came right after the rename
    notes = sup.recover()
    assert any("published before the crash" in n for n in notes)
    done = sup.store.get(job.id)
    assert done.state == State.SUCCEEDED and [p.name for p in sup.settings.outbox.iterdir()] == ["talk"]


# -- the real daemon process with fake workers ---------------------------------------------------
@pytest.fixture
def fake_daemon(make_daemon):
    return lambda **settings: make_daemon(fake_workers=True, **settings)


def drop_script(d: Daemon, name: str, *runs: dict) -> Path:
    path = d.inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": list(runs), "name": name}))
    return path


def test_kill_9_of_the_daemon_takes_its_workers_and_a_restart_finishes_everything(fake_daemon):
    d = fake_daemon(max_workers=3)
    for name in ("a.wav", "b.wav", "c.wav"):
        drop_script(d, name, {"exit": 0, "seconds": 20}, {"exit": 0, "seconds": 0.5})
    wait_until(lambda: len([j for j in d.jobs("running") if j.worker_pid]) == 3, 30, "three workers")
    workers = {j.worker_pid for j in d.jobs("running")}
    d.kill9()
    wait_until(lambda: not (workers & worker_pids()), 10, "the workers to die with the daemon")
    d.start()
    jobs = d.wait_all_final(3, timeout=60)
    assert sorted(j.state for j in jobs) == ["succeeded"] * 3
    assert [j.attempts for j in jobs] == [1, 1, 1]  # the daemon's death cost the jobs no attempt
    assert sorted(p.name for p in d.outbox.iterdir()) == ["a", "b", "c"]
    assert sorted(p.name for p in (d.root / "done").iterdir()) == ["a.wav", "b.wav", "c.wav"]


def test_sigterm_stops_within_the_timeout_and_loses_no_attempt(fake_daemon):
    d = fake_daemon(stop_timeout_seconds=2)
    drop_script(d, "long.wav", {"exit": 0, "seconds": 60, "ignore_term": True}, {"exit": 0})
    wait_until(lambda: [j for j in d.jobs("running") if j.progress > 0], 30, "the worker to start")
    started = time.monotonic()
    assert d.stop() == 0 and time.monotonic() - started < 2 + 5
    job = d.jobs()[0]
    assert (job.state, job.attempts) == ("queued", 0) and not worker_pids() & {job.worker_pid}
    d.start()
    assert d.wait_all_final(1, timeout=30)[0].state == "succeeded"


def test_the_daemon_publishes_its_state_root_for_diarizectl(fake_daemon, tmp_path):
    from click.testing import CliRunner

    from diarized.cli.ctl import cli

    d = fake_daemon()
    runtime_file = tmp_path / f"run/diarized/daemon-{d.proc.pid}.json"
    assert json.loads(runtime_file.read_text())["state_dir"] == str(d.root)
    env = {"XDG_RUNTIME_DIR": str(tmp_path / "run"), "DIARIZED_CONFIG": None, "DIARIZED_STATE_DIR": None}
    result = CliRunner().invoke(cli, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["daemon"]["pid"] == d.proc.pid
    assert json.loads(result.stdout)["state_root"] == str(d.root)
    assert f"state root: {d.root}" in result.stderr  # every command says which root it reads
    d.stop()
    assert not runtime_file.exists()


def test_with_two_daemons_diarizectl_refuses_to_guess_and_takes_the_state_dir_anywhere(models_cache, tmp_path):
    """`diarizectl stats` silently showed the other daemon's queue (issue 25, item 1)."""
    from click.testing import CliRunner

    from diarized.cli.ctl import cli

    run = tmp_path / "run"
    daemons = [Daemon(tmp_path / name / "var", models_cache, fake_workers=True) for name in ("a", "b")]
    try:
        for d in daemons:
            d.env["XDG_RUNTIME_DIR"] = str(run)
            d.start()
        env = {"XDG_RUNTIME_DIR": str(run), "DIARIZED_CONFIG": None, "DIARIZED_STATE_DIR": None}
        refused = CliRunner().invoke(cli, ["stats"], env=env)
        assert refused.exit_code == 2
        assert "2 daemons are running" in refused.stderr and all(str(d.root) in refused.stderr for d in daemons)
        chosen = CliRunner().invoke(cli, ["stats", "--json", "--state-dir", str(daemons[1].root)], env=env)
        assert chosen.exit_code == 0, chosen.output
        assert json.loads(chosen.stdout)["state_root"] == str(daemons[1].root)
        status = CliRunner().invoke(cli, ["status", "--json", "--state-dir", str(daemons[0].root)], env=env)
        assert json.loads(status.stdout)["daemon"]["pid"] == daemons[0].proc.pid
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def test_the_supervisor_process_never_loads_media_numeric_or_model_libraries(tmp_path, models_cache):
    """The real daemon and its real worker, on a file that is not media: every supervisor path
    up to failed/ runs, and the worker (not the supervisor) is the one that opens FFmpeg.

    Two witnesses: the supervisor's memory map (shared libraries), and Python's own import
    log (PYTHONPROFILEIMPORTTIME: every module the supervisor imports, pure Python included;
    the worker's log goes to its worker.log, not to the daemon's)."""
    d = Daemon(tmp_path / "var", models_cache, log_format="json")
    d.env["PYTHONPROFILEIMPORTTIME"] = "1"
    d.start()
    try:
        (tmp_path / "notes.mp4").write_text("not a video\n" * 100)
        d.drop(tmp_path / "notes.mp4")
        job = d.wait_all_final(1, timeout=120)[0]
        assert job.state == "failed" and job.error_type == "BadMedia"
        maps = Path(f"/proc/{d.proc.pid}/maps").read_text()
    finally:
        d.stop()
    forbidden = ("libav", "/av/", "numpy", "torch", "ctranslate2", "onnxruntime")
    mapped = sorted({line.split()[-1] for line in maps.splitlines() if any(f in line for f in forbidden)})
    assert mapped == [], f"the supervisor mapped {mapped}"
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in d.log.read_text().splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "diarized" in imported and "sqlite_utils" in imported  # the log is real
    heavy = {"av", "numpy", "torch", "ctranslate2", "faster_whisper", "pyannote", "pandas", "onnxruntime"}
    assert not heavy & imported, f"the supervisor imported {sorted(heavy & imported)}"


def test_daemon_deaths_are_never_blamed_on_the_file_and_do_not_loop(fake_daemon):
    """Before: three supervisor kills during a job failed it as DaemonDied, "the file is the likely cause"."""
    d = fake_daemon()
    drop_script(d, "innocent.wav", {"exit": 0, "seconds": 3})
    for death in (1, 2, 3, 4):
        wait_until(lambda: [j for j in d.jobs("running") if j.worker_pid], 30, "the worker to start")
        d.kill9()
        d.start()
    job = d.wait_all_final(1, timeout=60)[0]
    assert job.state == "succeeded" and job.attempts == 1 and job.error is None
    waits = [e.detail for e in d.store.events(job.id) if e.kind == "requeued"]
    assert len(waits) == 4 and "waits" not in waits[0]  # one death: at once; then it waits (1, 2, 4 s)
    assert all("waits" in w for w in waits[1:]), waits


def test_recovery_kills_a_worker_of_this_state_root_that_no_job_names(make_supervisor):
    import subprocess
    import sys

    sup = make_supervisor()
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "some-job",
                              "--settings", str(sup.settings_file)], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "x",
                              "--settings", "/elsewhere/worker-settings.json"], start_new_session=True)
    try:
        notes = sup.recover()
        assert any(f"killed worker {stray.pid}" in n for n in notes)
        assert stray.wait(timeout=5) == -signal.SIGKILL
        assert other.poll() is None  # another state root's worker is not ours to kill
    finally:
        for proc in (stray, other):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("when", ["before the worker read its job", "mid-run"])
def test_a_node_whose_lease_was_taken_over_stops_its_worker_and_publishes_nothing(make_supervisor, when):
    sup = make_supervisor()
    job = submit(sup, "talk.wav", {"exit": 0, "seconds": 30})
    mine = tick_until(sup, lambda: sup.running and sup.store.get(job.id).worker_pid and sup.store.get(job.id))
    if when == "mid-run":  # the worker checked its lease at start; its heartbeat must find it gone
        tick_until(sup, lambda: sup.store.get(job.id).progress > 0, what="the worker to report progress")
    # another node found the lease expired, requeued the job and claimed it again
    sup.store.requeue_after_daemon_death(job.id, "node elsewhere stopped renewing", mine.lease_generation)
    theirs = sup.store.claim(job.id, "elsewhere", 600)
    started = time.monotonic()
    tick_until(sup, lambda: not sup.running, timeout=20, what="the worker to notice its lost lease")
    assert time.monotonic() - started < 15  # its heartbeat (every 5 s) found the lease gone, not its script end
    after = sup.store.get(job.id)
    assert (after.state, after.node, after.lease_generation) == (State.RUNNING, "elsewhere", theirs.lease_generation)
    assert after.output_dir is None and not list(sup.settings.outbox.iterdir())
    assert any(e.startswith("lease_lost: node ") for e in events(sup, job))
    assert (sup.settings.jobs_dir / job.id / "source.wav").exists()  # the other node's run still has its file


def test_recovery_on_sqlite_takes_every_running_job_whatever_node_ran_it(make_supervisor):
    sup = make_supervisor()
    job = submit(sup, "talk.wav", {"exit": 0})
    sup.store.claim(job.id, "old-host-name", 600)  # the machine was renamed since
    sup.recover()
    assert sup.store.get(job.id).state == State.QUEUED
