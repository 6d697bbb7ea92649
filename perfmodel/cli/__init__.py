"""The `perfmodel` command line: a thin typer layer over the API.

Each module in this package registers its commands on `app`; heavy imports happen inside commands.
The app's group (`GuardedGroup`) checks every option by `checks.POLICY` and turns user errors (bad options,
any PerfModelError) into one line `error: ...` on stderr (a JSON object with `--json`) and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import typer.core
from typer._click import exceptions as click_exc

from ..errors import PerfModelError
from . import checks
from .app import app


class GuardedGroup(typer.core.TyperGroup):
    """The app's click group: option checks on every command, and the one error format."""

    def get_command(self, ctx: Any, cmd_name: str):
        cmd = super().get_command(ctx, cmd_name)
        return checks.apply_policy(cmd) if cmd is not None else None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except PerfModelError as e:
            checks.report_error(str(e), json_mode="--json" in argv, exc=e)
            sys.exit(checks.USER_ERROR)
        except click_exc.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click_exc.BadParameter as e:
            opt = _option_name(e)
            msg = e.format_message() if isinstance(e, click_exc.MissingParameter) or not opt else f"{opt}: {e.message}"
            checks.report_error(msg, json_mode="--json" in argv, exc=e, option=opt)
            sys.exit(checks.USER_ERROR)
        except click_exc.UsageError as e:
            tip = f" (see `perfmodel {e.ctx.info_name if e.ctx and e.ctx.parent else ''} --help`)".replace("  ", " ")
            checks.report_error(e.format_message() + tip, json_mode="--json" in argv, exc=e)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except click_exc.ClickException as e:
            checks.report_error(e.format_message(), json_mode="--json" in argv, exc=e)
            sys.exit(e.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _option_name(e: Any) -> str | None:
    """The long name of the option a BadParameter is about ('--devices'), or None."""
    opts = list(getattr(e.param, "opts", None) or [])
    longs = [o for o in opts if o.startswith("--")]
    if longs or opts:
        return (longs or opts)[0]
    hint = e.param_hint
    return " / ".join(hint) if isinstance(hint, (list, tuple)) else hint


app.info.cls = GuardedGroup

from . import core_cmds  # noqa: E402,F401  (registers predict, show, networks, hardware)
from . import validate_cmds  # noqa: E402,F401  (registers validate)
from . import planning_cmds  # noqa: E402,F401  (registers sweep, fit, compare, serve, report)
from . import plan_cmds  # noqa: E402,F401  (registers plan)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["GuardedGroup", "app", "main"]
