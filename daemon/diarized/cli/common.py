"""What every diarizectl command shares: loading settings and failing clearly."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
from rich.console import Console

from diarized.cli import CliExit
from diarized.client import locate
from diarized.config import ConfigError, Settings, load_settings

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = CliExit.ERROR) -> NoReturn:
    """One line on stderr, then exit: what went wrong and what to do."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    obj = ctx.obj or {}
    config, state_dir = locate(obj.get("config"), obj.get("state_dir"))
    if state_dir:
        overrides["state_dir"] = state_dir
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        fail(f"configuration: {exc}")
