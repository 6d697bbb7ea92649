"""Writes the hand-made bad-input corpus (tests/data/bad/*) and expect.json; run from the repository root."""
import json, re
from pathlib import Path
D = Path("tests/data/bad")
GOOD = """name: t
layers:
  - {op: input, name: x, shape: [3, 8, 8]}
  - {op: conv2d, name: c1, out_channels: 4, kernel: 3}
  - {op: flatten, name: f}
  - {op: dense, name: fc, units: 10}
  - {op: softmax_cross_entropy, name: loss}
"""
DEV = """kind: device
name: bad
type: gpu
source: hand-made bad profile (tests/data/bad)
peak_flops: {fp32: 10 TFLOPS}
memory_bandwidth: 900 GB/s
memory: 16 GB
host_link: pcie3-x16
"""
BOMB = "bomb_a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"bomb_{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
expect = {}
def put(name, data, needles=(), kind="network"):
    (D / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    expect[name] = {"as": kind, "needles": list(needles)}
swap = lambda a, b: GOOD.replace(a, b)
put("net_binary.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), ["binary"])
put("net_latin1.yaml", swap("name: t", "name: caf\xe9").encode("latin-1"), ["UTF-8", "line 1"])
put("net_utf16.yaml", GOOD.encode("utf-16"), ["UTF-16"])
put("net_utf32.json", json.dumps({"name": "t"}).encode("utf-32"), ["UTF-32"])
put("net_op_list.yaml", swap("op: flatten", "op: [flatten]"), ["'op'", "known ops", "flatten"])
put("net_op_dict.yaml", swap("op: flatten", "op: {kind: flatten}"), ["'op'", "known ops"])
put("net_block_list.yaml", GOOD + "  - {block: [b], name: u}\n", ["'block'"])
put("net_huge_int_units.yaml", swap("units: 10", "units: 1" + "0" * 400), ["units", "too large"])
put("net_huge_int_flops.json", '{"name": "t", "layers": [{"op": "input", "name": "x", "shape": [4]}, '
    '{"op": "custom", "name": "c", "output_shape": [4], "forward_flops_per_sample": 1' + "0" * 400 + '}]}',
    ["forward_flops_per_sample"])
put("net_units_too_large.yaml", swap("units: 10", "units: 100000000000000000000"), ["units"])
put("net_deep.json", '{"name": "t", "layers": ' + "[" * 5000 + "]" * 5000 + "}", ["nested"])
put("net_deep.yaml", "name: t\nlayers: " + "[" * 5000 + "]" * 5000 + "\n", ["nested"])
put("net_alias_bomb.yaml", BOMB + GOOD + "description: *i\n", ["alias"])
put("net_alias_bomb_block.yaml", BOMB + GOOD.replace("layers:\n", "blocks:\n  b: {params: {p: *i}, layers: [{op: relu, name: r}]}\nlayers:\n", 1), ["alias"])
put("net_alias_bomb_layer.yaml", BOMB + swap("units: 10", "units: 10, note: *i"), ["alias"])
put("net_many_aliases.yaml", "v: &v 1\nlist: [" + ", ".join(["*v"] * 1500) + "]\n" + GOOD, ["aliases"])
put("net_only_input.yaml", "name: t\nlayers:\n  - {op: input, name: x, shape: [3]}\n", ["only input layers"])
custom = "{op: custom, name: f, output_shape: [144], FIELD}"
put("net_inf_flops.yaml", swap("{op: flatten, name: f}", custom.replace("FIELD", "forward_flops_per_sample: .inf")), ["forward_flops_per_sample", "finite"])
put("net_inf_bytes.yaml", swap("{op: flatten, name: f}", custom.replace("FIELD", "bytes_per_sample: .inf")), ["bytes_per_sample", "finite"])
put("net_nan_flops.json", '{"name": "t", "layers": [{"op": "input", "name": "x", "shape": [4]}, '
    '{"op": "custom", "name": "c", "output_shape": [4], "forward_flops_per_sample": NaN}]}', ["NaN"])
put("net_flops_too_large.yaml", swap("{op: flatten, name: f}", custom.replace("FIELD", "forward_flops_per_sample: 1.0e+300")), ["forward_flops_per_sample"])
put("net_bool_units.yaml", swap("units: 10", "units: true"), ["units", "integer"])
put("net_string_kernel.yaml", swap("kernel: 3", "kernel: '3'"), ["kernel", "integer"])
pool = swap("{op: flatten, name: f}", "{op: maxpool2d, name: p, kernel: 2, FIELD}\n  - {op: flatten, name: f}")
put("net_pool_negative_stride.yaml", pool.replace("FIELD", "stride: -1"), ["stride", "positive"])
put("net_pool_negative_padding.yaml", pool.replace("FIELD", "padding: -1"), ["padding"])
put("net_zero_units.yaml", swap("units: 10", "units: 0"), ["units"])
put("net_negative_shape.yaml", swap("shape: [3, 8, 8]", "shape: [3, -8, 8]"), ["shape"])
put("net_float_eps_nan.yaml", swap("{op: flatten, name: f}", "{op: batchnorm, name: bn, eps: .nan}\n  - {op: flatten, name: f}"), ["eps"])
put("net_warp_drive.json", '{"name": "t", "layers": [{"op": "warp_drive", "name": "w"}]}', ["warp_drive", "known ops"])
put("net_warp_drive.yaml", swap("op: flatten", "op: warp_drive"), ["warp_drive", "known ops"])
put("net_typo_op.yaml", swap("op: flatten", "op: flaten"), ["flaten", "did you mean flatten"])
put("net_python_tag.yaml", "name: !!python/object/apply:os.system ['echo pwned']\nlayers: []\n", ["python"])
put("net_empty.yaml", "", ["mapping"])
put("net_top_list.yaml", "- a\n- b\n", ["mapping"])
put("net_scalar.json", "42", ["mapping"])
put("net_syntax.yaml", "name: t\nlayers:\n  - {op: input, name: x, shape: [3, 8\n", ["YAML syntax error", "line"])
put("net_syntax.json", '{"name": "t", "layers": [}', ["JSON syntax error", "line 1"])
put("net_cycle.yaml", "name: t\nlayers:\n  - {op: input, name: x, shape: [4]}\n  - {op: dense, name: a, units: 4, inputs: [x]}\n"
    "  - {op: add, name: b, inputs: [a, c]}\n  - {op: relu, name: c, inputs: [b]}\n", ["cycle"])
put("net_duplicate_names.yaml", swap("name: fc", "name: c1"), ["duplicate"])
put("net_dangling_input.yaml", swap("{op: flatten, name: f}", "{op: flatten, name: f, inputs: [nowhere]}"), ["nowhere"])
put("net_name_dict.yaml", swap("name: fc", "name: {a: 1}"), ["name"])
put("net_inputs_int.yaml", swap("{op: flatten, name: f}", "{op: flatten, name: f, inputs: 7}"), ["inputs"])
put("net_repeat_huge.yaml", GOOD.replace("layers:\n", "blocks:\n  b: {layers: [{op: relu, name: r}]}\nlayers:\n", 1)
    + "  - {block: b, name: u, repeat: 1000000000}\n", ["repeat"])
# hardware
swaph = lambda a, b: DEV.replace(a, b)
put("hw_binary.yaml", b"\x7fELF\x02\x01\x01\x00" + bytes(200), ["binary"], "hardware")
put("hw_utf16.yaml", DEV.encode("utf-16"), ["UTF-16"], "hardware")
put("hw_alias_bomb.yaml", BOMB + DEV + "notes: *i\n", ["alias"], "hardware")
put("hw_huge_int.yaml", swaph("900 GB/s", "1" + "0" * 400), ["memory_bandwidth"], "hardware")
put("hw_inf_bandwidth.yaml", swaph("900 GB/s", ".inf"), ["memory_bandwidth", "finite"], "hardware")
put("hw_bandwidth_1e999.yaml", swaph("900 GB/s", "1e999 GB/s"), ["memory_bandwidth", "finite"], "hardware")
put("hw_tiny_peak.yaml", swaph("10 TFLOPS", "1.0e-300"), ["peak_flops"], "hardware")
put("hw_zero_memory.yaml", swaph("memory: 16 GB", "memory: 0"), ["memory"], "hardware")
put("hw_negative_bandwidth.yaml", swaph("900 GB/s", "-900 GB/s"), ["memory_bandwidth"], "hardware")
put("hw_bool_memory.yaml", swaph("memory: 16 GB", "memory: true"), ["memory"], "hardware")
put("hw_host_link_missing.yaml", swaph("pcie3-x16", "pcie9-x99"), ["host_link", "pcie9-x99"], "hardware")
put("hw_host_link_is_device.yaml", swaph("pcie3-x16", "v100-sxm2"), ["host_link", "v100-sxm2"], "hardware")
put("hw_kind_toaster.yaml", swaph("kind: device", "kind: toaster"), ["kind", "toaster"], "hardware")
put("hw_kind_list.yaml", swaph("kind: device", "kind: [device]"), ["kind"], "hardware")
put("hw_price_nan.yaml", DEV + "price_per_hour: .nan\n", ["price_per_hour"], "hardware")
put("hw_deep.json", '{"kind": "device", "notes": ' + "[" * 5000 + "]" * 5000 + "}", ["nested"], "hardware")
node = Path("hardware_profiles/nodes/k80-server.yaml").read_text()
node = re.sub(r"(?m)^devices: \d+", "devices: 1000000000", node)
node = re.sub(r"(?ms)^pcie_groups:.*?(?=^\w)", "", node)
put("hw_node_1e9_devices.yaml", node, ["devices"], "hardware")
(D / "expect.json").write_text(json.dumps(expect, indent=1, sort_keys=True) + "\n")
print(len(expect))
