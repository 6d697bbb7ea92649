"""Run a registered suite by name: check the options against it, run it, write its report folder.

    from perfmodel.validation.protocol import RunOptions
    from perfmodel.validation.runner import run_suite_by_name
    report = run_suite_by_name("dlbench-2016", RunOptions(report_dir=Path("out")))
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .protocol import RunOptions
from .registry import load_suite
from .writer import write_report


def check_cases(suite: Any, cases: tuple[str, ...]) -> None:
    """InputError naming the known cases when a requested case is not one of the suite's.

    A suite whose `case_names()` is empty draws its cases at run time and checks `cases` itself. Names,
    and the suite's `case_aliases()` (e.g. network or kind) when it has them, are accepted.
    """
    names = tuple(suite.case_names())
    if not cases or not names:
        return
    known = set(names) | set(getattr(suite, "case_aliases", lambda: ())())
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise InputError(f"suite '{suite.name}' has no case {', '.join(repr(c) for c in unknown)}; "
                         f"known cases: {', '.join(names)}")


def run_suite_by_name(name: str, options: RunOptions) -> Any:
    """The suite's report; its folder is written when options.report_dir is set."""
    suite = load_suite(name)
    check_cases(suite, options.cases)
    report = suite.run(options)
    if options.report_dir is not None:
        write_report(report, options.report_dir)
    return report
