"""Moved to perfmodel.torch.quiet (torch/ may not import validation/); this name stays for old imports."""

from ..torch.quiet import Interference, idle_fraction, wait_for_quiet  # noqa: F401
