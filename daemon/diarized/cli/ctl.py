"""diarizectl: the operator's command line. A thin layer over the library."""

from __future__ import annotations

from pathlib import Path

import click

from diarized.cli.common import root_options
from diarized.cli.doctor_cmd import doctor
from diarized.cli.jobs_cmd import COMMANDS
from diarized.cli.models_cmd import models
from diarized.cli.oneshot import transcribe
from diarized.cli.token_cmd import token
from diarized.cli.webhooks_cmd import webhooks


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config (default: $DIARIZED_CONFIG or /etc/diarized/diarized.toml).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="State root (inbox/, outbox/, state/…); overrides the config.")
@click.version_option(package_name="diarized")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, state_dir: Path | None) -> None:
    """Speaker-attributed transcripts, offline. Exit codes: 0 ok, 1 error, 2 usage, 3 not found."""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, state_dir=state_dir)


def _with_root_options(command: click.Command) -> click.Command:
    """Every command (and subcommand) also takes --config / --state-dir after its name."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_root_options(sub)
    elif not {"config", "state_dir"} & {p.name for p in command.params}:
        command.params.extend(root_options())
    return command


for command in (transcribe, models, doctor, token, webhooks, *COMMANDS):
    cli.add_command(_with_root_options(command))


def main() -> None:
    from diarized.cli.common import fail
    from diarized.store import StoreUnavailable

    try:
        cli(prog_name="diarizectl")
    except StoreUnavailable as exc:  # read or written by any command: a full disk, a locked file
        fail(f"the job store cannot be used now: {exc} (`diarizectl doctor` says what to do)")
if __name__ == "__main__":
    main()
