"""Collective-communication libraries ("backends": gloo, NCCL) as data: how each runs each collective.

A backend profile (hardware_profiles/backends/<name>.yaml, `kind: backend`) says, per collective, which algorithm
the library runs (the name of a formula registered in perfmodel/parallel/collectives.py, e.g. gloo's
reduce-scatter is a full all-reduce: "via-all-reduce") and the local copies it makes around the transfer
(`staging`: bytes read and written per byte of the full message, whether they are the rank's 1/p share, and
whether the written buffer is newly allocated). `progress` says where the data movement and the reduction run:
"host-thread" (gloo: a worker thread of the process, on the cores that compute) or "device-kernels" (NCCL: kernels
on the accelerator). `default_for` lists the device types whose collectives the library runs unless told
otherwise (torch.distributed's default backend is "cpu:gloo,cuda:nccl"); `backend_for(device_type)` picks the one
profile that claims a type, so a CPU cluster gets gloo and a GPU cluster NCCL from data, not from code (a type no profile claims: the plain
formulas).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from .loader import list_hardware, register_kind

COLLECTIVE_NAMES = ("all-reduce", "reduce-scatter", "all-gather", "broadcast", "all-to-all", "p2p")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class StagingPass(_Frozen):
    """One local copy a backend makes around a collective, in bytes per byte of the full message n."""

    what: str
    read: float = Field(ge=0, le=16, allow_inf_nan=False)
    written: float = Field(ge=0, le=16, allow_inf_nan=False)
    share: Literal["full", "rank"] = "full"  # "rank": the bytes are the rank's 1/p share of n
    allocated: bool = False  # written into a buffer of the full message size n allocated for the call (on a CPU:
    # fresh or cold pages, DeviceTraits.fresh_buffer_* / cold_buffer_*)


class CollectiveImpl(_Frozen):
    """How a backend runs one collective: a registered algorithm and its local copies."""

    algorithm: str
    staging: tuple[StagingPass, ...] = ()
    source: str


class Backend(_Frozen):
    """A collective-communication library (see the module docstring)."""

    kind: Literal["backend"] = "backend"
    name: str
    source: str
    notes: str = ""
    default_for: tuple[Literal["cpu", "gpu", "accelerator"], ...] = ()
    progress: Literal["host-thread", "device-kernels"]
    collectives: dict[Literal["all-reduce", "reduce-scatter", "all-gather", "broadcast", "all-to-all", "p2p"],
                      CollectiveImpl]

    @property
    def competes_with_compute(self) -> bool:
        """Whether the library moves and reduces data on the cores that compute (a host thread): with every core
        busy its transfers take turns with compute instead of running beside it."""
        return self.progress == "host-thread"

    def impl(self, collective: str) -> CollectiveImpl:
        """How this backend runs `collective`; InputError naming the profile when it has no entry."""
        if collective not in self.collectives:
            raise InputError(f"backend '{self.name}': field 'collectives' has no '{collective}' entry; it has "
                             f"{', '.join(self.collectives)}")
        return self.collectives[collective]


register_kind("backend", Backend)


@lru_cache(maxsize=1)
def _backends() -> tuple[Backend, ...]:
    return tuple(b for b in list_hardware("backend") if isinstance(b, Backend))


def backend_for(device_type: str) -> Backend | None:
    """The built-in backend whose `default_for` lists `device_type`; None when none does (the collectives are then
    priced by the plain formulas); InputError when several do."""
    found = [b for b in _backends() if device_type in b.default_for]
    if len(found) > 1:
        raise InputError(f"device type '{device_type}': backend profiles {', '.join(b.name for b in found)} all "
                         "list it in 'default_for'; exactly one may")
    return found[0] if found else None
