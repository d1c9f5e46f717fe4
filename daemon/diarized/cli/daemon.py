"""`diarized run`: the daemon in the foreground (systemd runs exactly this)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from diarized import logs
from diarized.cli import CliExit
from diarized.config import ConfigError, Settings, check_folders, default_config_file, load_settings


def serve(settings: Settings, config: Path | None, worker_command=None) -> None:
    """Run the supervisor until SIGTERM, publishing where its state root is meanwhile.

    `worker_command` replaces the real worker (tests run the real daemon with fake workers).
    """
    from diarized import runtime, systemd
    from diarized.supervisor import AlreadyRunning, Notifier, Supervisor

    journald = settings.log_format == "auto" and systemd.under_journald()
    logs.setup(settings.log_format, settings.log_file,
               extra_handlers=[systemd.JournalHandler()] if journald else None)
    notifier = systemd.systemd_notifier() if os.environ.get("NOTIFY_SOCKET") else Notifier()
    supervisor = Supervisor(settings, open_checked_store(settings), notifier)
    if worker_command is not None:
        supervisor.worker_command = worker_command
    published = None
    try:
        supervisor.prepare()
        published = runtime.publish(settings.state_dir, config)
        notifier.paused = lambda reason: runtime.publish(settings.state_dir, config, paused=reason)
        supervisor.run_forever()
    except AlreadyRunning as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(CliExit.ERROR)
    finally:
        runtime.remove(published)


def open_checked_store(settings: Settings):
    """The job store, or a refusal that says what is wrong and how out (never a silent reset)."""
    from diarized.store import SchemaError, StoreUnavailable, open_store

    try:
        return open_store(settings.store_location)
    except (SchemaError, StoreUnavailable) as exc:
        click.echo(f"error: the job store cannot be used: {exc}\n"
                   f"  `diarizectl --state-dir {settings.state_dir} doctor` checks it. To recover: stop "
                   f"every diarized on this state root, restore {settings.db_path} from a backup, or move "
                   "it aside to start with an empty queue (outbox/, done/ and failed/ keep every file; "
                   "jobs still queued in state/jobs/ must then be dropped into the inbox again).",
                   err=True)
        sys.exit(CliExit.ERROR)


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

    settings, _ = load(config, state_dir)
    logs.setup(settings.log_format, settings.log_file)
    try:
        serve_api(settings, listen)
    except (Refused, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(CliExit.ERROR)


def main() -> None:
    cli(prog_name="diarized")


if __name__ == "__main__":
    main()
