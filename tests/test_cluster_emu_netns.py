"""perfmodel.validation.cluster_emu_net: the emulated cluster's plan stays inside its own namespaces, and setup + teardown leave
nothing behind (namespaces and links listed before and after), also when the body raises or a signal arrives."""

import os
import signal
import subprocess
import sys
import time

import pytest

from perfmodel.validation import cluster_emu_net as netemu
from perfmodel.validation.cluster_emu_net import ClusterSpec, EmuLinkSpec, EmulatedCluster

SPEC = ClusterSpec(links=(EmuLinkSpec(rate_bps=100e6), EmuLinkSpec(rate_bps=200e6)))
REASON = netemu.unavailable_reason()
needs_root = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def test_every_command_acts_inside_the_suites_own_namespaces():
    cmds = netemu.setup_commands(SPEC, "pmemutest")
    assert cmds
    for c in cmds:
        if c[:3] == ["ip", "netns", "add"] or c[:3] == ["ip", "netns", "exec"]:
            assert c[3].startswith("pmemutest-"), c
        elif c[:2] == ["ip", "-n"]:
            assert c[2].startswith("pmemutest-"), c
        else:  # the veth pair is created with both ends already inside our namespaces
            assert c[:3] == ["ip", "link", "add"] and c.count("netns") == 2, c
            assert all(c[i + 1].startswith("pmemutest-") for i, w in enumerate(c) if w == "netns"), c


def test_links_are_shaped_both_ways_at_their_rate():
    cmds = netemu.setup_commands(SPEC, "p")
    tbf = [c for c in cmds if "tbf" in c]
    assert len(tbf) == 4  # node egress + switch egress, per node
    rates = sorted(c[c.index("rate") + 1] for c in tbf)
    assert rates == ["100000000bit", "100000000bit", "200000000bit", "200000000bit"]
    assert not any("netem" in c for c in cmds)  # no delay asked: no netem qdisc


def test_address_plan():
    assert SPEC.address(0) == "10.213.0.1" and SPEC.address(1) == "10.213.0.2"
    assert netemu.namespaces(SPEC, "p") == ("p-sw", "p-n0", "p-n1")


def _state(prefix):
    """Namespaces (other than concurrent test runs' own pmemu* ones) and this namespace's links."""
    ns = {n for n in netemu.list_netns() if not n.startswith(netemu.PREFIX) or n.startswith(prefix)}
    return ns, netemu.list_links()


@needs_root
def test_setup_and_teardown_leave_nothing():
    prefix = f"pmemut{os.getpid()}"
    before = _state(prefix)
    with EmulatedCluster(SPEC, prefix=prefix) as cl:
        assert set(cl.ns) <= netemu.list_netns()
        r = subprocess.run([*cl.exec_prefix(0), "ip", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
        assert SPEC.address(0) in r.stdout
    assert _state(prefix) == before


@needs_root
def test_teardown_when_the_body_raises():
    prefix = f"pmemur{os.getpid()}"
    before = _state(prefix)
    with pytest.raises(RuntimeError):
        with EmulatedCluster(SPEC, prefix=prefix):
            raise RuntimeError("boom")
    assert _state(prefix) == before


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_teardown_on_a_signal(sig):
    prefix = f"pmemus{int(sig)}x{os.getpid()}"
    before = _state(prefix)
    code = ("import time; from perfmodel.validation.cluster_emu_net import *; "
            "c = EmulatedCluster(ClusterSpec(links=(EmuLinkSpec(rate_bps=1e8),) * 2), prefix='%s'" % prefix + "); "
            "c.__enter__(); print('up', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "up"
    assert f"{prefix}-sw" in netemu.list_netns()
    p.send_signal(sig)
    p.wait(timeout=30)
    time.sleep(0.2)
    assert _state(prefix) == before


def test_unavailable_reason_is_one_line():
    r = netemu.unavailable_reason()
    assert r is None or "\n" not in r
