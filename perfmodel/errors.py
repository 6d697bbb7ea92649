"""Error types that carry where the problem is (file, layer, field) and what was expected."""

from __future__ import annotations


class PerfModelError(Exception):
    """A user-facing error: one paragraph naming the file, the layer or field, and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, where: str | None = None):
        self.file = file
        self.where = where
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.file:
            parts.append(f"in {self.file}")
        if self.where:
            parts.append(f"at {self.where}")
        prefix = (" ".join(parts) + ": ") if parts else ""
        return prefix + self.detail

    def with_file(self, file: str) -> "PerfModelError":
        """Return a copy of this error that also names the file."""
        if self.file:
            return self
        return type(self)(self.detail, file=file, where=self.where)


class NetworkError(PerfModelError):
    """A network description is malformed or inconsistent."""


class ShapeError(NetworkError):
    """Shapes of a layer's inputs do not fit the layer."""


class HardwareError(PerfModelError):
    """A hardware profile is malformed or inconsistent."""


class NotFoundError(PerfModelError):
    """A built-in name (network, hardware) is unknown."""


class InputError(PerfModelError):
    """A nonsensical argument (batch 0, unknown dtype, ...)."""


def format_pydantic_error(exc, *, file: str | None = None, prefix: str = "") -> str:
    """Turn a pydantic ValidationError into short lines naming each field and what was expected."""
    lines = []
    for err in exc.errors()[:8]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("function-after",))
        msg = err.get("msg", "invalid value")
        inp = err.get("input")
        shown = repr(inp)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
        lines.append(f"field '{field}': {msg} (got {shown})")
    more = len(exc.errors()) - 8
    if more > 0:
        lines.append(f"... and {more} more problem(s)")
    return "; ".join(lines)
