"""`diarizectl models`: which models this machine can use, where they are, how big."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from diarized.cli.common import settings_from
from diarized.models import list_models


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List available models (bundled, local folder, cache)."""
    settings = settings_from(ctx)
    rows = list_models(settings.models_cache, settings.models_dir)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table("name", "kind", "ok", "size", "licence", "where", expand=False)
    for r in rows:
        table.add_row(r.name, r.kind, "yes" if r.available else "[red]no[/]",
                      f"{r.size_bytes / 2**20:.0f} MB" if r.size_bytes else "-", r.licence, r.where)
    Console().print(table)
