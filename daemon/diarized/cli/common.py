"""What every diarizectl command shares: loading settings and failing clearly."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from diarized.cli import EXIT_ERROR
from diarized.config import ConfigError, Settings, default_config_file, load_settings

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """One line on stderr, then exit: what went wrong and what to do."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    config: Path | None = ctx.obj.get("config") if ctx.obj else None
    state_dir = ctx.obj.get("state_dir") if ctx.obj else None
    if state_dir:
        overrides["state_dir"] = state_dir
    try:
        return load_settings(config or default_config_file(), overrides)
    except ConfigError as exc:
        fail(f"configuration: {exc}")
