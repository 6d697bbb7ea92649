"""The typer app and the entry point that turns user errors into one-paragraph messages."""

from __future__ import annotations

import sys

import typer

from ..errors import PerfModelError

app = typer.Typer(
    name="perfmodel",
    help="Predict training step time, its breakdown and memory for a network on given hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"perfmodel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Predict training step time, its breakdown and memory for a network on given hardware."""


def fail(message: str, code: int = 2) -> None:
    """Print an error paragraph to stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except PerfModelError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)

from . import import_cmd  # noqa: E402,F401  (registers import; IMPORT, issue 12)
