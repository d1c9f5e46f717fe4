"""What every diarizectl command shares: loading settings and failing clearly."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from diarized.cli import CliExit
from diarized.client import SeveralDaemons, locate
from diarized.config import ConfigError, Settings, load_settings

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = CliExit.ERROR) -> NoReturn:
    """One line on stderr, then exit: what went wrong and what to do."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """The settings a command works on; it names the state root it reads on stderr (two daemons on
    one machine looked alike), and refuses to guess between several running daemons."""
    obj = ctx.obj or {}
    try:
        config, state_dir = locate(obj.get("config"), obj.get("state_dir"))
    except SeveralDaemons as exc:
        fail(str(exc), CliExit.USAGE)
    if state_dir:
        overrides["state_dir"] = state_dir
    try:
        settings = load_settings(config, overrides)
    except ConfigError as exc:
        fail(f"configuration: {exc}")
    err_console.print(f"[dim]state root: {settings.state_dir}[/]", soft_wrap=True)
    return settings


def remember_root_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--config / --state-dir given after the subcommand: the same as before it."""
    if value is not None:
        ctx.ensure_object(dict)[param.name] = value
    return value


def root_options() -> list[click.Option]:
    """--config and --state-dir for every subcommand (`diarizectl stats --state-dir X`)."""
    return [click.Option(["--config"], type=click.Path(dir_okay=False, path_type=Path), expose_value=False,
                         callback=remember_root_option, help="TOML config (as before the command)."),
            click.Option(["--state-dir", "state_dir"], type=click.Path(file_okay=False, path_type=Path),
                         expose_value=False, callback=remember_root_option,
                         help="State root (as before the command).")]
