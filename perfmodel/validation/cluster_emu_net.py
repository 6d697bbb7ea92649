"""An emulated cluster on this machine (torch-free): Linux network namespaces joined through a switch.

Layout for N nodes: one namespace per node (`<prefix>-n<i>`, interface `eth0`, address 10.213.<net>.<i+1>/24)
and one switch namespace (`<prefix>-sw`, a bridge `br0` with one veth port per node). Each node link is shaped
in both directions (node egress on eth0, switch egress on the node's port): `tbf` for the rate, a `netem` child
for the one-way delay. A message between two nodes therefore crosses two links (2 x delay, the slower rate).

Nothing outside the suite's own namespaces is touched: the veth pairs are created directly inside them, every
address is on those veths, and deleting the namespaces removes everything. `EmulatedCluster` tears down on
exit, on an exception, on SIGINT/SIGTERM and at interpreter exit (atexit); teardown is idempotent.
Needs root and iproute2 (`ip`, `tc`); `unavailable_reason()` says in one line why not.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import threading
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..errors import PerfModelError

PREFIX = "pmemu"  # every namespace this module creates starts with it
SUBNET = "10.213"
IFACE = "eth0"  # the node's interface inside its namespace
TBF_LATENCY_MS = 400  # tbf queue bound (time a packet may wait for tokens)
# tbf bucket: one GSO segment (64 KiB), so a large skb is never dropped; no more, so that a message larger than
# that goes at the link's rate as on a real wire (a rate x 1 ms bucket let 2 Gbit/s links pass 250 KB at once,
# and the all-reduce fit then read 280 MB/s off a 250 MB/s link)
BURST_BYTES = 64 * 1024


class EmuLinkSpec(BaseModel):
    """One node's link to the switch: rate (bits/s) and one-way delay (s), in each direction."""

    model_config = ConfigDict(frozen=True)
    rate_bps: float = Field(gt=0, le=1e12)
    delay_s: float = Field(default=0.0, ge=0, le=1.0)


class ClusterSpec(BaseModel):
    """N nodes, each with its own link to one switch."""

    model_config = ConfigDict(frozen=True)
    links: tuple[EmuLinkSpec, ...] = Field(min_length=1, max_length=16)
    net: int = Field(default=0, ge=0, le=255, description="third octet of the 10.213.x.0/24 subnet")

    @property
    def nodes(self) -> int:
        return len(self.links)

    def address(self, node: int) -> str:
        return f"{SUBNET}.{self.net}.{node + 1}"

    def to_dict(self) -> dict:
        return {"nodes": self.nodes, "links": [{"rate_bps": lk.rate_bps, "delay_s": lk.delay_s} for lk in self.links],
                "switch": "linux bridge in its own namespace", "shaping": "tbf rate (+ netem delay when asked), both directions", "tbf_burst_bytes": BURST_BYTES}


def unavailable_reason() -> str | None:
    """None when namespaces can be made here; else one line saying why not."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "emulated cluster needs root (network namespaces, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"emulated cluster needs iproute2's '{tool}' on PATH"
    return None


def shaping_commands(dev: str, link: EmuLinkSpec) -> list[list[str]]:
    """tc commands (without the `ip netns exec` prefix) shaping egress of `dev` to `link`."""
    burst = BURST_BYTES
    cmds = [["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf", "rate", f"{int(link.rate_bps)}bit",
             "burst", str(burst), "latency", f"{TBF_LATENCY_MS}ms"]]
    if link.delay_s > 0:
        cmds.append(["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "netem", "delay",
                     f"{link.delay_s * 1e6:.0f}us", "limit", "100000"])
    return cmds


def setup_commands(spec: ClusterSpec, prefix: str) -> list[list[str]]:
    """Every command that builds the emulated cluster `prefix` (pure: the plan, run by EmulatedCluster)."""
    sw = f"{prefix}-sw"
    cmds = [["ip", "netns", "add", sw], ["ip", "-n", sw, "link", "add", "br0", "type", "bridge"],
            ["ip", "-n", sw, "link", "set", "br0", "up"], ["ip", "-n", sw, "link", "set", "lo", "up"]]
    for i, link in enumerate(spec.links):
        ns, port = f"{prefix}-n{i}", f"p{i}"
        cmds += [["ip", "netns", "add", ns],
                 ["ip", "link", "add", IFACE, "netns", ns, "type", "veth", "peer", "name", port, "netns", sw],
                 ["ip", "-n", sw, "link", "set", port, "master", "br0"], ["ip", "-n", sw, "link", "set", port, "up"],
                 ["ip", "-n", ns, "addr", "add", f"{spec.address(i)}/24", "dev", IFACE],
                 ["ip", "-n", ns, "link", "set", IFACE, "up"], ["ip", "-n", ns, "link", "set", "lo", "up"]]
        cmds += [["ip", "netns", "exec", ns, *c] for c in shaping_commands(IFACE, link)]
        cmds += [["ip", "netns", "exec", sw, *c] for c in shaping_commands(port, link)]
    return cmds


def namespaces(spec: ClusterSpec, prefix: str) -> tuple[str, ...]:
    """The namespaces of cluster `prefix`: the switch first, then node 0..N-1."""
    return (f"{prefix}-sw", *(f"{prefix}-n{i}" for i in range(spec.nodes)))


def list_netns() -> set[str]:
    """Names of the network namespaces on this machine."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def list_links() -> set[str]:
    """Names of the interfaces in this (the caller's) namespace."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _run(cmd: Sequence[str]) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        raise PerfModelError(f"emulated cluster: '{' '.join(cmd)}' failed: {r.stderr.strip()}")


class EmulatedCluster:
    """Context manager: builds the namespaces on enter, removes them on exit, error, signal or interpreter exit."""

    def __init__(self, spec: ClusterSpec, prefix: str | None = None):
        self.spec = spec
        self.prefix = prefix or f"{PREFIX}{os.getpid()}"
        self.ns = namespaces(spec, self.prefix)
        self._lock = threading.Lock()
        self._up = False
        self._old: dict[int, object] = {}

    def node_ns(self, node: int) -> str:
        return self.ns[1 + node]

    def exec_prefix(self, node: int) -> list[str]:
        """Prefix that runs a command inside node `node`'s namespace."""
        return ["ip", "netns", "exec", self.node_ns(node)]

    def __enter__(self) -> "EmulatedCluster":
        reason = unavailable_reason()
        if reason:
            raise PerfModelError(reason)
        clash = set(self.ns) & list_netns()
        if clash:
            raise PerfModelError(f"emulated cluster: namespaces {sorted(clash)} already exist (another run?)")
        self._install_handlers()
        self._up = True
        try:
            for cmd in setup_commands(self.spec, self.prefix):
                _run(cmd)
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def teardown(self) -> None:
        """Kill what still runs in the namespaces and delete them (idempotent)."""
        with self._lock:
            if not self._up:
                return
            self._up = False
            existing = list_netns()
            for ns in reversed(self.ns):
                if ns in existing:
                    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
                    for pid in pids:
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except (ProcessLookupError, ValueError):
                            pass
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            self._restore_handlers()

    def _install_handlers(self) -> None:
        atexit.register(self.teardown)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _restore_handlers(self) -> None:
        atexit.unregister(self.teardown)
        if threading.current_thread() is threading.main_thread():
            for sig, h in self._old.items():
                signal.signal(sig, h)
        self._old = {}

    def _on_signal(self, signum, frame) -> None:
        old = self._old.get(signum)
        self.teardown()
        if callable(old):
            old(signum, frame)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)


def run_processes(cluster: EmulatedCluster, procs: Sequence[tuple[int, Sequence[str], dict]],
                  timeout_s: float = 600.0) -> list[tuple[int, str]]:
    """Run each (node, argv, extra env) inside its node's namespace, all at once; (return code, stderr tail) each.

    On a timeout or an exception every process still running is killed before returning / raising.
    """
    running = []
    try:
        for node, argv, env in procs:
            running.append(subprocess.Popen([*cluster.exec_prefix(node), *argv], env={**os.environ, **env},
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        out = []
        for p in running:
            _, err = p.communicate(timeout=timeout_s)
            out.append((p.returncode, (err or "")[-2000:]))
        return out
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait()
