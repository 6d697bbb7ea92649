"""calibrate settles glibc's allocator before timing (torch.calibrate.benches.settle_allocator): checked by page
faults in a fresh process (the state a `perfmodel calibrate` run starts from), never by wall-clock time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from perfmodel.calibration.kernels import FRESH_BYTES  # noqa: E402
from perfmodel.torch.calibrate.benches import SETTLE_BYTES, settle_allocator  # noqa: E402

# A step that holds four 3 MiB tensors at once, in a fresh process: glibc's mmap threshold rises to ~3 MiB at the first
# free, the trim threshold to ~6 MiB, and the 12 MiB heap excursion is trimmed and faulted again every step (3,072
# pages of 4 KiB). Settled (threshold just under 32 MiB, trim just under 64 MiB) the heap keeps the pages.
PROBE = """
import json, resource, sys, torch
from perfmodel.torch.calibrate.benches import settle_allocator
settled = settle_allocator("cpu") if sys.argv[1] == "settle" else 0
def step():
    xs = [torch.ones(3 * 2**20 // 4) for _ in range(4)]
    del xs
faults = []
for _ in range(8):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"settled": settled, "faults": faults}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settle_buffer_is_one_mapped_chunk_just_under_glibcs_largest_mmap_threshold():
    # 32 MiB - 8 KiB: with glibc's 16-byte header and torch's 64-byte alignment the mapped chunk is 32 MiB - 4 KiB,
    # within glibc's DEFAULT_MMAP_THRESHOLD_MAX (32 MiB on 64-bit), so its free raises the threshold
    assert SETTLE_BYTES == 33_554_432 - 8_192
    assert FRESH_BYTES - SETTLE_BYTES == 8_192
    assert settle_allocator("cuda") == 0  # no host allocator to settle for a GPU run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_settled_process_keeps_its_heap_pages_across_steps_a_fresh_one_refaults_them():
    cold, settled = _probe("cold"), _probe("settle")
    assert settled["settled"] == SETTLE_BYTES
    # the fresh process faults the 12 MiB excursion again in its second step (hand count: 4 x 3 MiB / 4 KiB =
    # 3,072 pages; later steps may or may not heal, depending on where the heap lands); the settled one keeps the
    # pages from its second step on (but for one 3 MiB buffer the heap may still grow by) and from the fourth on
    assert cold["faults"][1] > 2_000, cold
    assert settled["faults"][1] < 1_000 and sum(settled["faults"][3:]) == 0, settled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="anonymous mappings")
def test_fresh_stream_sample_of_32_mib_faults_its_whole_output_on_every_call():
    import resource

    from perfmodel.torch.calibrate.benches import _stream

    n = FRESH_BYTES // 4
    fn, flops, nbytes, kernels = _stream(n, "relu")("cpu", torch.float32)
    assert (flops, nbytes, kernels) == (n, 8.0 * n, 1)
    fn()
    faults = []
    for _ in range(3):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    pages = FRESH_BYTES // 4096  # 8,192 pages of 4 KiB, whatever the heap holds free
    assert all(pages <= f <= pages + 64 for f in faults), faults


def test_smaller_stream_sample_output_comes_from_the_allocator():
    from perfmodel.torch.calibrate.benches import _stream

    n = 2**20
    fn, flops, nbytes, kernels = _stream(n, "add")("cpu", torch.float32)
    assert (flops, nbytes, kernels) == (n, 12.0 * n, 1)
    out = fn()
    assert isinstance(out, torch.Tensor) and out.shape == (n,)



def test_blocked_copies_pad_channels_to_whole_16_channel_blocks():
    from hypothesis import given, strategies as st

    from perfmodel.ops.conv import blocked_pad

    assert blocked_pad(24, 1, True) == 32 / 24  # ONEDNN_VERBOSE: 256x24x32x32 src reordered to aBcd16b 'p'
    assert blocked_pad(8, 1, False) == 2.0  # an 8-channel result in one 16-channel block
    assert blocked_pad(8, 1, True) == 1.0  # 8 input channels: read as NCHW by the direct kernel
    assert blocked_pad(24, 24, True) == 32 / 24  # depthwise: aBcd16b over all channels
    assert blocked_pad(48, 4, False) == 1.0  # grouped: blocks within a group
    assert blocked_pad(64, 1, True) == 1.0

    @given(st.integers(1, 4096), st.booleans())
    def whole_blocks(c, is_input):
        pad = blocked_pad(c, 1, is_input)
        held = c * pad  # channels the blocked copy holds
        assert pad >= 1.0 and held < c + 16
        assert (is_input and c < 16 and pad == 1.0) or (abs(held - round(held)) < 1e-9 and round(held) % 16 == 0)

    whole_blocks()


def test_a_calibration_conv_sample_counts_its_padded_blocked_buffers_as_fresh():
    from perfmodel.calibration.fit import Sample
    from perfmodel.calibration.kernels import written_bytes

    # n256 c24 32x32 1x1 -> 8: the padded input copy is 256*32*1024*4 = 33.5 MB >= 32 MiB (the NCHW input, 25.2 MB,
    # is not); the 8 -> 16-channel blocked result 16.8 MB is not
    s = Sample("conv", 1, 1.0, 1.0, 1.0, 1, "fp32", "conv n256 c24 32x32 k8 1x1 fwd")
    assert written_bytes(s) == 256 * 32 * 1024 * 4
