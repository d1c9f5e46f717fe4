"""`diarized run`: the daemon in the foreground (systemd runs exactly this)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from diarized import logs
from diarized.cli import CliExit
from diarized.config import ConfigError, Settings, check_folders, default_config_file, load_settings

log = logging.getLogger("diarized.daemon")


def serve(settings: Settings, config: Path | None, worker_command=None) -> None:
    """Run the supervisor until SIGTERM, publishing where its state root is meanwhile.

    `worker_command` replaces the real worker (tests run the real daemon with fake workers).
    """
    from diarized import runtime, systemd
    from diarized.state_root import WrongStateRoot
    from diarized.supervisor import AlreadyRunning, Notifier, Supervisor

    journald = settings.log_format == "auto" and systemd.under_journald()
    logs.setup(settings.log_format, settings.log_file,
               extra_handlers=[systemd.JournalHandler()] if journald else None)
    notifier = systemd.systemd_notifier() if os.environ.get("NOTIFY_SOCKET") else Notifier()
    store = open_checked_store(settings, config, notifier)
    if store is None:
        return  # stopped while it waited for space
    supervisor = Supervisor(settings, store, notifier)
    if worker_command is not None:
        supervisor.worker_command = worker_command
    published, places = None, []
    try:
        notifier.paused = lambda reason: places.append(runtime.publish(settings.state_dir, config, paused=reason))
        supervisor.install_signal_handlers()
        if not supervisor.when_space(supervisor.prepare):  # a full disk: PAUSED until it clears
            return
        published = runtime.publish(settings.state_dir, config)
        supervisor.run_forever()
    except (AlreadyRunning, WrongStateRoot) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(CliExit.ERROR)
    finally:
        for path in {published, *places}:
            runtime.remove(path)


def open_checked_store(settings: Settings, config: Path | None = None, notifier=None):
    """The job store, or a refusal that says what is wrong and how out (never a silent reset).

    A store that cannot be opened because its disk is full (or read-only) is not damaged:
    the daemon then starts PAUSED and waits for space, as a running daemon does (None if
    it is stopped meanwhile).
    """
    from diarized.files import space_problem
    from diarized.store import SchemaError, StoreUnavailable, open_store

    try:
        return open_store(settings.store_location)
    except SchemaError as exc:
        refuse_store(settings, exc)
    except StoreUnavailable as exc:
        problem = space_problem(settings.db_path.parent) if settings.store_is_file else None
        if problem is None or notifier is None:
            refuse_store(settings, exc)
        return wait_for_space(settings, config, notifier, problem)


def refuse_store(settings: Settings, exc: Exception):
    if not settings.store_is_file:  # a server's error says what to fix; there is no file to restore
        click.echo(f"error: the job store cannot be used: {exc}\n"
                   f"  `diarizectl --state-dir {settings.state_dir} doctor` checks it again.", err=True)
        sys.exit(CliExit.ERROR)
    click.echo(f"error: the job store cannot be used: {exc}\n"
               f"  `diarizectl --state-dir {settings.state_dir} doctor` checks it. To recover: stop "
               f"every diarized on this state root, restore {settings.db_path} from a backup, or move "
               "it aside to start with an empty queue (outbox/, done/ and failed/ keep every file; "
               "jobs still queued in state/jobs/ must then be dropped into the inbox again).",
               err=True)
    sys.exit(CliExit.ERROR)


WAIT_SECONDS = 2.0


def wait_for_space(settings: Settings, config: Path | None, notifier, problem: OSError):
    """PAUSED before the store can even be opened: say why (journal, sd_notify, `diarizectl status`),
    and try again every few seconds until a probe and the store both work, or SIGTERM."""
    import fcntl
    import signal
    import time

    from diarized import runtime
    from diarized.files import describe_space, space_problem
    from diarized.store import StoreUnavailable, open_store

    lock = _hold_node_lock(settings, fcntl)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    reason = describe_space(settings.db_path.parent, problem)
    log.error("paused at start: the job store cannot be opened: %s; nothing is taken until this clears", reason)
    published = runtime.publish(settings.state_dir, config, paused=reason)
    notifier.ready()  # alive and deliberate: systemd must not time the start out
    notifier.status(f"PAUSED: {reason}")
    try:
        while not stop:
            notifier.watchdog()
            time.sleep(WAIT_SECONDS)
            if space_problem(settings.db_path.parent) is not None:
                continue
            try:
                store = open_store(settings.store_location)
            except StoreUnavailable:
                continue
            log.info("resumed: the job store's folder can be written again")
            notifier.status("starting")
            return store
        return None
    finally:
        runtime.remove(published)
        lock.close()  # the supervisor takes it again at once


def _hold_node_lock(settings: Settings, fcntl):
    """The node's folder lock while waiting: no second daemon on this root meanwhile."""
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    lock = (settings.node_dir / "daemon.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        click.echo(f"error: another diarized is running on {settings.state_dir}; stop it first", err=True)
        sys.exit(CliExit.ERROR)
    return lock


def load(config: Path | None, state_dir: Path | None) -> tuple[Settings, Path | None]:
    config = config or default_config_file()
    try:
        settings = load_settings(config, {"state_dir": state_dir.resolve() if state_dir else None})
        check_folders(settings)
    except ConfigError as exc:
        click.echo(f"error: configuration: {exc}", err=True)
        sys.exit(CliExit.ERROR)
    return settings, config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diarized")
def cli() -> None:
    """diarized: the transcription daemon."""


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config (default: $DIARIZED_CONFIG or /etc/diarized/diarized.toml).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="State root; overrides the config.")
def run(config: Path | None, state_dir: Path | None) -> None:
    """Watch the inbox and process files until SIGTERM."""
    serve(*load(config, state_dir))


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config (default: $DIARIZED_CONFIG or /etc/diarized/diarized.toml).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="State root; overrides the config.")
@click.option("--listen", help="host:port or unix:/path (default: api_listen, 127.0.0.1:8787).")
def api(config: Path | None, state_dir: Path | None, listen: str | None) -> None:
    """The HTTP API, webhook delivery and /metrics, on the daemon's job store (never loads a model)."""
    from diarized.api.server import Refused, serve as serve_api

    settings, config_file = load(config, state_dir)
    logs.setup(settings.log_format, settings.log_file)
    try:
        serve_api(settings, listen, config_file)
    except (Refused, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(CliExit.ERROR)


def main() -> None:
    cli(prog_name="diarized")


if __name__ == "__main__":
    main()
