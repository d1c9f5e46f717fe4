"""`diarizectl doctor`: check an installation and say what to fix."""

from __future__ import annotations

import grp
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from rich.console import Console

from diarized.cli import CliExit
from diarized.cli.common import locate
from diarized.config import ConfigError, Settings, load_settings

MARK = {"ok": "[green]ok[/]  ", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
AUDIO_BYTES_PER_SECOND = 16000 * 4  # the decoded float32 working copy


@dataclass
class Check:
    name: str
    level: str  # ok | warn | fail
    detail: str
    fix: str = ""


def check_folders(s: Settings) -> list[Check]:
    checks = []
    for name, folder in s.folders.items():
        group_write = name == "inbox"
        if not folder.is_dir():
            checks.append(Check(f"folder {name}", "fail", f"{folder} does not exist",
                                "start the daemon once, or run systemd-tmpfiles --create"))
            continue
        st = folder.stat()
        owner = f"{_user(st.st_uid)}:{_group(st.st_gid)} {stat.filemode(st.st_mode)}"
        if not os.access(folder, os.W_OK | os.X_OK):
            checks.append(Check(f"folder {name}", "fail", f"{folder} ({owner}) is not writable by you",
                                f"run doctor as the service user, or chown {folder}"))
        elif group_write and not st.st_mode & stat.S_IWGRP:
            checks.append(Check(f"folder {name}", "warn", f"{folder} ({owner}) is not group-writable",
                                f"chmod 2770 {folder} so members of its group can drop files"))
        else:
            checks.append(Check(f"folder {name}", "ok", f"{folder} ({owner})"))
    return checks


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_models(s: Settings) -> list[Check]:
    from diarized.models import ModelError, resolve_diarization, resolve_whisper

    checks = []
    try:
        path = resolve_whisper(s.model, s.models_cache, s.models_dir, s.allow_downloads)
        checks.append(Check("whisper model", "ok", f"{s.model}: {path}"))
    except (ModelError, OSError) as exc:
        checks.append(Check("whisper model", "fail", str(exc), "see `diarizectl models`"))
    try:
        weights = resolve_diarization()
        checks.append(Check("diarization weights", "ok", f"{weights.segmentation.parent.parent}"))
    except ModelError as exc:
        checks.append(Check("diarization weights", "fail", str(exc)))
    return checks


def check_store(s: Settings) -> list[Check]:
    from diarized.store import SchemaError, StoreUnavailable, open_store

    if s.store_is_file and not s.db_path.exists():
        return [Check("job store", "warn", f"{s.db_path} does not exist yet", "start the daemon")]
    try:
        store = open_store(s.store_location, readonly=True)
        result = store.integrity_check()
        pending = store.pending_work()
    except (sqlite3.Error, SchemaError, StoreUnavailable) as exc:
        if not s.store_is_file:
            return [Check("job store", "fail", str(exc), "fix what the message names in `store` or on the "
                          "PostgreSQL server, then start the daemon")]
        return [Check("job store", "fail", str(exc), "stop the daemon, then check permissions, or restore "
                      f"{s.db_path} from a backup (or move it aside for an empty queue)")]
    checks = [Check("job store", "ok" if result == "ok" else "fail", f"integrity_check: {result}",
                    "" if result == "ok" else "stop the daemon and restore state/diarized.db from a backup")]
    need = pending.bytes + pending.seconds * AUDIO_BYTES_PER_SECOND
    free = shutil.disk_usage(s.state_dir).free
    level = "ok" if free > 2 * need + 2**30 else "fail" if free < need else "warn"
    checks.append(Check("free disk", level, f"{free / 2**30:.1f} GiB free, queued work needs about "
                        f"{need / 2**30:.1f} GiB", "" if level == "ok" else f"free space on {s.state_dir}"))
    return checks


def check_service(s: Settings) -> list[Check]:
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        state = subprocess.run(["systemctl", "is-active", "diarized"], capture_output=True, text=True).stdout.strip()
        return [Check("service", "ok" if state == "active" else "fail", f"diarized.service is {state}",
                      "" if state == "active" else "systemctl start diarized; journalctl -u diarized")]
    from diarized.cli.jobs_cmd import STALE_SECONDS
    from diarized.store import SchemaError, StoreUnavailable, open_store

    if s.store_is_file and not s.db_path.exists():
        return [Check("daemon", "warn", "not started yet (no systemd here)", "diarized run")]
    try:
        up = open_store(s.store_location, readonly=True).daemon(STALE_SECONDS).up
    except (sqlite3.Error, SchemaError, StoreUnavailable) as exc:
        return [Check("daemon", "warn", f"cannot tell: the job store is unreadable ({exc})")]
    return [Check("daemon", "ok" if up else "warn", "running" if up else "not running (no systemd here)",
                  "" if up else "diarized run --state-dir " + str(s.state_dir))]


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check config, folders, models, the job store, disk and the service."""
    config, state_dir = locate(ctx.obj.get("config"), ctx.obj.get("state_dir"))
    overrides = {"state_dir": state_dir} if state_dir else {}
    try:
        settings = load_settings(config, overrides)
        checks = [Check("config", "ok", str(config or "defaults + environment"))]
        checks += check_folders(settings) + check_models(settings) + check_store(settings) + check_service(settings)
    except ConfigError as exc:
        checks = [Check("config", "fail", str(exc), f"edit {config or 'the DIARIZED_* environment'}")]
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        console = Console(highlight=False)
        for c in checks:
            console.print(f"{MARK[c.level]} {c.name}: {c.detail}" + (f"\n      fix: {c.fix}" if c.fix else ""))
    if any(c.level == "fail" for c in checks):
        ctx.exit(CliExit.ERROR)
