"""`gapstream`: run a request locally, run workers against a deployment, submit requests, manage memory."""

from __future__ import annotations

import sys
from typing import Optional

import click

from cli.answer import answer_command
from cli.bench import bench
from cli.common import CliError, configure_logging
from cli.dlq import dlq
from cli.memory import memory
from cli.run import run, submit, worker
from cli.schemas import schemas
from infra.settings import Settings, SettingsError
from streams.local import LocalServiceError
from cli.ui import ui_command  # imports nothing of the web stack until it runs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Log progress to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """gapstream: find what an image request leaves out, fill it, generate, critique, loop."""
    settings = Settings.from_env()
    configure_logging(settings, verbose)
    ctx.obj = settings


for command in (run, worker, submit, memory, answer_command, bench, dlq, schemas, ui_command):
    cli.add_command(command)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit, never a traceback."""
    # The wiring's error types come with Faust and aiokafka: imported when a command has run, not for `--help`.
    from pydantic import ValidationError

    from streams.broker import BrokerAccessError
    from streams.client import ResultTimeout
    from streams.topology import UnknownStageError

    try:
        cli.main(args=argv, prog_name="gapstream", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("gapstream: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"gapstream: {exc.format_message()} (see gapstream --help)", err=True)
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        from streams.stages import describe_validation_error

        click.echo(f"gapstream: invalid input: {describe_validation_error(exc)}", err=True)
        sys.exit(2)
    except (CliError, SettingsError, LocalServiceError, UnknownStageError, ResultTimeout, ValueError) as exc:
        click.echo(f"gapstream: {exc}", err=True)
        sys.exit(2)
    except BrokerAccessError as exc:  # reached, but refused: the message names the setting to check
        click.echo(f"gapstream: {exc}", err=True)
        sys.exit(3)
    except (ConnectionError, OSError) as exc:
        click.echo(f"gapstream: cannot reach a service: {exc}", err=True)
        sys.exit(3)
    except KeyboardInterrupt:
        click.echo("gapstream: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, the traceback only when asked for
        if {"-v", "--verbose"} & set(argv if argv is not None else sys.argv[1:]):
            raise
        click.echo(f"gapstream: unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
