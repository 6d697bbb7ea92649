"""The `perfmodel` command line: a thin typer layer over the API.

Each module in this package registers its commands on `app`; heavy imports happen inside commands.
"""

from .app import app, main
from . import core_cmds  # noqa: F401  (registers predict, show, networks, hardware)
from . import validate_cmds  # noqa: F401  (registers validate)
from . import planning_cmds  # noqa: F401  (registers sweep, fit, compare, serve, report)
from . import plan_cmds  # noqa: F401  (registers plan)

__all__ = ["app", "main"]
