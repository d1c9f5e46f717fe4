"""Shared fixtures: the real data in ../shared/data and real models, loaded once per session."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.scoring import DATA
from diarized.config import Settings, load_settings


@pytest.fixture(scope="session")
def data() -> Path:
    if not (DATA / "README.md").is_file():
        pytest.fail(f"test data not found at {DATA}; set DIARIZED_DATA to ../shared/data")
    return DATA


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models-cache")


@pytest.fixture
def make_settings(tmp_path, models_cache):
    """Settings as an operator's TOML would give them, rooted in a temp folder."""
    def make(**overrides) -> Settings:
        values = {"state_dir": tmp_path / "var", "cache_dir": models_cache, **overrides}
        return load_settings(None, values, env={})
    return make


@pytest.fixture(scope="session")
def base_model(models_cache) -> Path:
    from diarized.models import resolve_whisper

    return resolve_whisper("base", models_cache)


@pytest.fixture(scope="session")
def diarization_pipeline():
    from diarized.models import resolve_diarization
    from diarized.pipeline.diarize import build_pipeline
    from diarized.pipeline.runner import diarize_options

    options = diarize_options(Settings(cpu_threads=2))
    return build_pipeline(resolve_diarization(), options), options


@pytest.fixture(scope="session")
def unprivileged():
    """(uid, gid) of `nobody`, able to run this venv's Python: permissions are real for it.

    Root ignores file modes, so permission tests run the daemon as nobody. The venv's
    interpreter may live under a folder only root can enter (pyenv under /root): such
    folders get the search bit (o+x, not read) for the session and lose it afterwards.
    """
    import pwd

    if os.getuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    user = pwd.getpwnam("nobody")
    opened = []
    for folder in Path(os.path.realpath(sys.executable)).parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            opened.append((folder, mode))
    yield user.pw_uid, user.pw_gid
    for folder, mode in opened:
        folder.chmod(mode)


@pytest.fixture
def public_tmp(unprivileged):
    """A temporary folder owned by the unprivileged user (pytest's own are root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="diarized-test-", dir="/tmp"))
    os.chown(folder, *unprivileged)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_daemon(tmp_path, models_cache):
    """Start `diarized run` processes on tmp_path/var; any still running at the end is killed."""
    from tests.harness import Daemon

    created = []

    def make(fake_workers: bool = False, **settings):
        d = Daemon(tmp_path / "var", models_cache, fake_workers=fake_workers, **settings)
        created.append(d)
        return d.start()
    yield make
    for d in created:
        if d.proc and d.proc.poll() is None:
            d.kill9()


@pytest.fixture(scope="session")
def postgres_server(unprivileged):
    """A real PostgreSQL server for the session (tests/support/postgres.py); stopped at the end."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer(*unprivileged).start()
    yield server
    server.stop()


@pytest.fixture
def make_api(tmp_path):
    """Start `diarized api` processes on tmp_path/var; any still running at the end is killed."""
    from tests.harness import ApiServer

    created = []

    def make(tokens=(), listen=None, start=True, **settings):
        api = ApiServer(tmp_path / "var", list(tokens), listen, **settings)
        created.append(api)
        return api.start() if start else api
    yield make
    for api in created:
        if api.proc and api.proc.poll() is None:
            api.kill9()


@pytest.fixture(scope="session")
def sample_run(data, models_cache, tmp_path_factory):
    """One real run of the whole pipeline on pyannote's 30-s two-speaker sample, shared by tests."""
    import json

    from diarized.pipeline.runner import Hooks, Runner

    root = tmp_path_factory.mktemp("sample-run")
    settings = load_settings(None, {"state_dir": root / "var", "cache_dir": models_cache}, env={})
    events: list[tuple[str, str]] = []
    runner = Runner(settings, Hooks(event=lambda kind, detail: events.append((kind, detail))))
    result = runner.run(data / "pyannote-sample/sample.wav", root / "work", root / "out")
    return {"result": result, "events": events, "root": root, "settings": settings,
            "document": json.loads((root / "out/final_transcription.json").read_text())}


@pytest.fixture(scope="session")
def sample_out(sample_run) -> Path:
    return sample_run["root"] / "out"


CLOCKSTEP_SOURCE = Path(__file__).parent / "support" / "clockstep.c"


@pytest.fixture(scope="session")
def clockstep(tmp_path_factory) -> Path:
    """tests/support/clockstep.c built: LD_PRELOAD it with CLOCKSTEP_FILE to shift a process tree's wall clock."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("a C compiler (cc) is needed to build tests/support/clockstep.c (make system-deps)")
    library = tmp_path_factory.mktemp("clockstep") / "clockstep.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(CLOCKSTEP_SOURCE), "-ldl"], check=True)
    return library
