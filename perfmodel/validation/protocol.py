"""The validation-suite protocol: every suite is a plug-in that turns cases into predicted-vs-measured rows.

A suite (`Suite`) has `name`, `help`, `measured` (True when it times this machine), `case_names()`
(optionally `case_aliases()`), `run(options) -> report` and `text(report)` (lines and TextTables the CLI
renders). Its report (`SuiteReport`, any frozen object) has `suite`, `comparisons()` (its Rows),
`to_dict()`, `markdown()` and `readme_section()`, and optionally `html(markdown)` (a whole page; else the
writer builds one from the rows). perfmodel.validation.writer writes every suite's report folder,
perfmodel.validation.metrics summarises errors, perfmodel.validation.registry lists the suites. Adding a
suite = one new module + one registry line (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Optional, Protocol, Sequence, Union, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from .metrics import signed_error_pct


class Row(BaseModel):
    """One case of a suite: the model's time against the measured (or published) time."""

    model_config = ConfigDict(frozen=True)

    case: str
    predicted_s: float
    measured_s: float  # measured median step time, or the published time
    group: str = ""  # a family to summarise and colour by (network kind, device class, ...)
    spread_s: Optional[tuple[float, float]] = None  # p10, p90 of the measured step times, when measured
    fitted: bool = False  # used to fit something: reported, but not held-out evidence

    @property
    def error_pct(self) -> float:
        """Signed error, 100 * (predicted - measured) / measured."""
        return signed_error_pct(self.predicted_s, self.measured_s)


class TextTable(NamedTuple):
    """A table of a terminal summary; the CLI renders it (align: 'l'/'r' per column)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    align: str = ""


Text = Sequence[Union[str, TextTable]]  # a terminal summary: lines and tables, rendered by the CLI


class RunOptions(BaseModel):
    """Everything `perfmodel validate` passes to a suite (each suite uses what applies to it)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    report_dir: Optional[Path] = None  # write the report folder here
    data: Optional[Path] = None  # input data: a published table (dlbench-2016)
    store: Optional[Path] = None  # measured suites: JSONL file the measurements are appended to
    commit: bool = False  # measured suites: also update tracked files of the checkout (e.g. a fitted link profile)
    replay: Optional[Path] = None  # measured suites: compare with the measurements stored in this file
    device: Optional[str] = None  # cpu or cuda
    profile: Any = None  # hardware profile name, path or Device (default: this machine's calibrated one)
    cases: tuple[str, ...] = ()  # only these cases (name, network or kind)
    steps: Optional[int] = Field(None, ge=1)
    warmup: Optional[int] = Field(None, ge=0)
    rounds: Optional[int] = Field(None, ge=1)
    wait: bool = True  # measured suites: wait for an idle machine and repeat a disturbed measurement
    seed: Optional[int] = None  # suites that draw their cases (cpu-random)
    progress: Any = None  # a text stream for progress lines (None: silent)

    def say(self, msg: str, end: str = "\n") -> None:
        """Write one progress line (nothing when progress is None)."""
        if self.progress is not None:
            self.progress.write(msg + end)
            self.progress.flush()


@runtime_checkable
class SuiteReport(Protocol):
    """What a suite's run returns."""

    suite: str

    def comparisons(self) -> tuple[Row, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...

    def markdown(self) -> str: ...

    def readme_section(self) -> str: ...


@runtime_checkable
class Suite(Protocol):
    """A registered validation suite."""

    name: str
    help: str
    measured: bool

    def case_names(self) -> tuple[str, ...]: ...

    def run(self, options: RunOptions) -> SuiteReport: ...

    def text(self, report: Any) -> Text: ...
