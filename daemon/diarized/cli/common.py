"""What every diarizectl command shares: loading settings and failing clearly."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from diarized.cli import CliExit
from diarized.config import ConfigError, Settings, default_config_file, load_settings

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = CliExit.ERROR) -> NoReturn:
    """One line on stderr, then exit: what went wrong and what to do."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    sys.exit(code)


def locate(config: Path | None, state_dir: Path | None) -> tuple[Path | None, Path | None]:
    """Flags, else $DIARIZED_CONFIG / $DIARIZED_STATE_DIR, else the running daemon's, else defaults.

    A daemon started by `make run` on ./var publishes its state root (runtime.py),
    so `diarizectl status` finds it from any folder without a flag.
    """
    if config or state_dir or os.environ.get("DIARIZED_CONFIG") or os.environ.get("DIARIZED_STATE_DIR"):
        return config or default_config_file(), state_dir
    from diarized import runtime

    found = runtime.find()
    if found is not None:
        return (Path(found.config) if found.config else None), Path(found.state_dir)
    return default_config_file(), None


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    obj = ctx.obj or {}
    config, state_dir = locate(obj.get("config"), obj.get("state_dir"))
    if state_dir:
        overrides["state_dir"] = state_dir
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        fail(f"configuration: {exc}")
