"""`diarized run`: the daemon in the foreground (systemd runs exactly this)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from diarized import logs
from diarized.cli import EXIT_ERROR
from diarized.config import ConfigError, Settings, default_config_file, load_settings


def check_folders(settings: Settings) -> None:
    """Fail at start, with the folder named, rather than on the first file."""
    for folder in (settings.state_dir, settings.inbox, settings.outbox, settings.done,
                   settings.failed, settings.jobs_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{folder} is not writable by this user (uid {os.getuid()})")


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
    from diarized import systemd
    from diarized.store import Store
    from diarized.supervisor import AlreadyRunning, Notifier, Supervisor

    try:
        settings = load_settings(config or default_config_file(),
                                 {"state_dir": state_dir.resolve() if state_dir else None})
        check_folders(settings)
    except ConfigError as exc:
        click.echo(f"error: configuration: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    journald = settings.log_format == "auto" and systemd.under_journald()
    logs.setup(settings.log_format, settings.log_file,
               extra_handlers=[systemd.JournalHandler()] if journald else None)
    notifier = systemd.systemd_notifier() if os.environ.get("NOTIFY_SOCKET") else Notifier()
    supervisor = Supervisor(settings, Store(settings.db_path), notifier)
    try:
        supervisor.run_forever()
    except AlreadyRunning as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)


def main() -> None:
    cli(prog_name="diarized")


if __name__ == "__main__":
    main()
