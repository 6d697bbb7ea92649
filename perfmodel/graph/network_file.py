"""The hand-written network description and its expansion into a flat list of validated op specs.

A file has `name`, optional `description`/`source`, optional `training` (facts of the published training run:
`global_batch`), optional `blocks` (templates with parameters) and
`layers`. An entry of `layers` is either an op (`op: conv2d, name: ..., ...`) or a block use
(`block: bottleneck, name: layer1, repeat: 3, args: {width: 64}`). Inside a block, a string value
"$param" is replaced by the argument; `$input` names the block's input; layer names are local and
become `<use>.<i>.<layer>` (or `<use>.<layer>` when repeat is 1). Repeats chain: instance i+1 reads
instance i's last layer.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

from ..errors import NetworkError, format_pydantic_error
from .spec import OP_CLASSES, OpSpec

_OP_ADAPTER: TypeAdapter = TypeAdapter(OpSpec)
_MAX_EXPANDED_LAYERS = 200_000


class BlockDef(BaseModel):
    """A reusable group of layers with named parameters (value None = required)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict)
    layers: list[dict[str, Any]] = Field(min_length=1)


class TrainingFacts(BaseModel):
    """How the network was trained, where its source states it (`training:` in the file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    global_batch: StrictInt | None = Field(default=None, gt=0, le=10**9, description=(
        "samples per optimizer step in the published training run (plan search's default global batch)"))


class NetworkFile(BaseModel):
    """The network description as written in a YAML/JSON file."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    source: str = ""
    training: TrainingFacts = Field(default_factory=TrainingFacts)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    layers: list[dict[str, Any]] = Field(min_length=1)


def _substitute(value: Any, args: dict[str, Any], where: str) -> Any:
    if isinstance(value, str) and value.startswith("$") and value != "$input":
        key = value[1:]
        if key not in args:
            raise NetworkError(f"'{value}' names no parameter of this block (parameters: {sorted(args)})", where=where)
        return args[key]
    if isinstance(value, list):
        return [_substitute(v, args, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, args, where) for k, v in value.items()}
    return value


def check_op_kind(op: Any, where: str) -> str:
    """The op kind of a layer, or an error naming the problem with the known kinds (close matches first)."""
    if op is None:
        raise NetworkError("missing field 'op' (or 'block' for a block use)", where=where)
    known = ", ".join(sorted(OP_CLASSES))
    if not isinstance(op, str):
        raise NetworkError(f"field 'op': expected an op name (a string), got {_short(op)}; known ops: {known}",
                           where=where)
    if op not in OP_CLASSES:
        close = difflib.get_close_matches(op, OP_CLASSES.keys(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NetworkError(f"unknown op '{_short(op, 40)}'{hint}; known ops: {known}", where=where)
    return op


def _short(v: Any, n: int = 60) -> str:
    s = v if isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def validate_op(raw: dict[str, Any], where: str):
    """Validate one raw layer dict into its op spec, with an error naming the layer and field."""
    if not isinstance(raw, dict):
        raise NetworkError(f"expected a mapping with 'op' and 'name', got {_short(raw)}", where=where)
    check_op_kind(raw.get("op"), where)
    try:
        return _OP_ADAPTER.validate_python(raw)
    except ValidationError as e:
        raise NetworkError(format_pydantic_error(e), where=where) from None


class _Expander:
    def __init__(self, blocks: dict[str, BlockDef]):
        self.blocks = blocks
        self.out: list = []

    def expand(self, entries: list[dict[str, Any]], prefix: str, block_input: str | None,
               local: dict[str, str] | None, args: dict[str, Any], depth: int, ctx: str) -> str | None:
        """Append the expanded layers of `entries`; return the name of the last layer written."""
        if depth > 8:
            raise NetworkError("blocks nested more than 8 deep (a block that uses itself?)", where=ctx)
        prev = block_input
        for i, raw in enumerate(entries):
            where = f"{ctx}layer {i}" + (f" ('{_short(raw.get('name'), 40)}')" if isinstance(raw, dict) and raw.get("name") else "")
            if not isinstance(raw, dict):
                raise NetworkError(f"expected a mapping, got {raw!r}", where=where)
            raw = _substitute(raw, args, where) if args is not None and local is not None else raw
            if "block" in raw:
                prev = self._use(raw, prefix, prev, block_input, local, depth, where)
                if local is not None:
                    local[str(raw.get("name"))] = prev
                continue
            raw = dict(raw)
            check_op_kind(raw.get("op"), where)
            name = raw.get("name")
            if not isinstance(name, str) or not name:
                raise NetworkError("missing field 'name' (a non-empty string)", where=where)
            full = prefix + name
            raw["name"] = full
            if "inputs" in raw and raw["inputs"] is not None:
                ins = raw["inputs"]
                if isinstance(ins, str):
                    ins = [ins]
                if not isinstance(ins, list):
                    raise NetworkError(f"field 'inputs': expected a list of layer names, got {ins!r}", where=where)
                raw["inputs"] = [self._resolve(x, block_input, local, where) for x in ins]
            elif raw.get("op") != "input":
                if prev is None:
                    raise NetworkError("has no input: it is the first layer and names no 'inputs'", where=where)
                raw["inputs"] = [prev]
            if raw.get("share_params_with"):
                raw["share_params_with"] = self._resolve(raw["share_params_with"], block_input, local, where)
            spec = validate_op(raw, where)
            self.out.append(spec)
            if len(self.out) > _MAX_EXPANDED_LAYERS:
                raise NetworkError(f"expands to more than {_MAX_EXPANDED_LAYERS} layers", where=where)
            if local is not None:
                local[name] = full
            prev = full
        return prev

    def _resolve(self, ref: Any, block_input: str | None, local: dict[str, str] | None, where: str) -> str:
        if not isinstance(ref, str):
            raise NetworkError(f"expected a layer name, got {ref!r}", where=where)
        if ref == "$input":
            if block_input is None:
                raise NetworkError("'$input' used outside a block", where=where)
            return block_input
        if local is not None and ref in local:
            return local[ref]
        return ref

    def _use(self, raw: dict[str, Any], prefix: str, prev: str | None, block_input: str | None, local, depth: int,
             where: str) -> str:
        allowed = {"block", "name", "repeat", "args", "inputs"}
        extra = set(raw) - allowed
        if extra:
            raise NetworkError(f"unknown field(s) {sorted(extra)} in a block use; allowed: {sorted(allowed)}", where=where)
        bname = raw["block"]
        if not isinstance(bname, str):
            raise NetworkError(f"field 'block': expected a block name, got {_short(bname)}; defined blocks: "
                               f"{sorted(self.blocks) or 'none'}", where=where)
        if bname not in self.blocks:
            close = difflib.get_close_matches(str(bname), self.blocks.keys(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; defined blocks: {sorted(self.blocks) or 'none'}"
            raise NetworkError(f"unknown block '{bname}'{hint}", where=where)
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise NetworkError("a block use needs a 'name'", where=where)
        repeat = raw.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= _MAX_EXPANDED_LAYERS:
            raise NetworkError(f"field 'repeat': expected a positive integer up to {_MAX_EXPANDED_LAYERS}, "
                               f"got {_short(repeat)}", where=where)
        block = self.blocks[bname]
        given = raw.get("args") or {}
        if not isinstance(given, dict):
            raise NetworkError(f"field 'args': expected a mapping, got {given!r}", where=where)
        unknown = set(given) - set(block.params)
        if unknown:
            raise NetworkError(f"block '{bname}' has no parameter(s) {sorted(unknown)}; it takes {sorted(block.params)}", where=where)
        args = {**block.params, **given}
        missing = [k for k, v in args.items() if v is None]
        if missing:
            raise NetworkError(f"block '{bname}' needs argument(s) {missing}", where=where)
        inputs = raw.get("inputs")
        if inputs is not None:
            if isinstance(inputs, list) and len(inputs) == 1:
                inputs = inputs[0]
            if not isinstance(inputs, str):
                raise NetworkError(f"field 'inputs' of a block use: expected one layer name, got {inputs!r}", where=where)
            prev = self._resolve(inputs, block_input, local, where)  # '$input': the enclosing block's input
        if prev is None:
            raise NetworkError("block use has no input: it is the first entry", where=where)
        for r in range(repeat):
            inst = f"{prefix}{name}." + (f"{r}." if repeat > 1 else "")
            prev = self.expand(block.layers, inst, prev, {}, args, depth + 1, f"{where} -> block '{bname}' #{r}: ")
        return prev


def expand_network(nf: NetworkFile) -> list:
    """Expand blocks and defaults into the flat, ordered list of op specs."""
    ex = _Expander(nf.blocks)
    ex.expand(nf.layers, "", None, None, None, 0, "")
    return ex.out
