"""A protobuf message as otdfctl prints it with --json: Go's encoding/json on the generated Go struct.

otdfctl hands the generated struct (not protojson) to json.NewEncoder (two-space indent,
SetEscapeHTML(false)), so the rules are the Go struct's, driven here by the descriptor:

- keys are the proto field names (protoc-gen-go's tag `json:"name,omitempty"`), in declaration order;
- zero values are left out: "", 0, false, empty bytes, empty repeated, empty map, an unset message;
  a set message prints, `{}` when empty; a proto3 `optional` scalar is a pointer: printed when set,
  even as 0/false/"";
- enums are numbers, bytes standard base64, 64-bit integers numbers, map keys sorted;
- a oneof is an interface field without a json tag: always present, at its first member's position,
  under its Go name (`public_key` -> "PublicKey"): null when unset, else {"<MemberGoName>": value},
  the member printed even when zero (its wrapper struct field has no omitempty);
- well-known types are their Go structs too: Timestamp {"seconds", "nanos"}, wrappers {"value"}.

go_json(message) is the Python value; dumps(value) the text Go writes (without the final newline).
"""

from __future__ import annotations

import base64
import json
import math
import struct

from google.protobuf.descriptor import FieldDescriptor as FD

_INTS = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_SINT32, FD.TYPE_SINT64,
         FD.TYPE_FIXED32, FD.TYPE_FIXED64, FD.TYPE_SFIXED32, FD.TYPE_SFIXED64, FD.TYPE_ENUM}


def go_camel_case(name: str) -> str:
    """protoc-gen-go's GoCamelCase (google.golang.org/protobuf/internal/strs)."""
    out = []
    i = 0
    while i < len(name):
        c = name[i]
        if c == "." and i + 1 < len(name) and name[i + 1].islower() and name[i + 1].isascii():
            pass
        elif c == ".":
            out.append("_")
        elif c == "_" and (i == 0 or name[i - 1] == "."):
            out.append("X")
        elif c == "_" and i + 1 < len(name) and name[i + 1].isascii() and name[i + 1].islower():
            pass
        elif c.isascii() and c.isdigit():
            out.append(c)
        else:
            out.append(c.upper() if c.isascii() and c.islower() else c)
            while i + 1 < len(name) and name[i + 1].isascii() and name[i + 1].islower():
                i += 1
                out.append(name[i])
        i += 1
    return "".join(out)


def _is_repeated(field) -> bool:
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == FD.LABEL_REPEATED


def _is_map(field) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _real_oneof(field):
    """The field's oneof unless it is the synthetic one of a proto3 `optional` field."""
    oneof = field.containing_oneof
    if oneof is None:
        return None
    synthetic = getattr(oneof, "is_synthetic", None)
    if synthetic is None:
        synthetic = len(oneof.fields) == 1 and oneof.name == "_" + field.name
    return None if synthetic else oneof


class _Float(float):
    """A float that dumps as Go's strconv.FormatFloat(f, 'f' or 'e', -1, bits) in encoding/json."""

    def __new__(cls, value: float, bits: int):
        obj = super().__new__(cls, value)
        obj.bits = bits
        return obj


def _format_float(f: _Float) -> str:
    """Go: the shortest digits that read back as the same float32/float64, 'f' form for
    1e-6 <= |f| < 1e21, else 'e' form with e-07 shortened to e-7."""
    from decimal import Decimal

    v = float(f)
    if math.isnan(v) or math.isinf(v):  # Go's encoder refuses these; say what they are
        return json.dumps(str(v))
    text = repr(v)
    if f.bits == 32:
        for digits in range(1, 10):  # the shortest text that comes back as the same float32
            candidate = f"{v:.{digits}g}"
            if struct.pack("<f", float(candidate)) == struct.pack("<f", v):
                text = candidate
                break
    a = abs(v)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mant, _, exp = f"{Decimal(text):e}".partition("e")
        if "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        sign, digits = exp[0], exp[1:].lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.zfill(2)
        return f"{mant}e{sign}{digits}"
    out = format(Decimal(text), "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") and v == 0 and math.copysign(1, v) > 0 else out


def _scalar(field, value):
    t = field.type
    if t == FD.TYPE_BYTES:
        return base64.b64encode(bytes(value)).decode("ascii")
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return _Float(value, 32 if t == FD.TYPE_FLOAT else 64)
    if t in _INTS:
        return int(value)
    return value  # str, bool


def _value(field, value):
    if field.type == FD.TYPE_MESSAGE:
        return go_json(value)
    return _scalar(field, value)


def _is_zero(field, value) -> bool:
    if field.type == FD.TYPE_BYTES:
        return len(value) == 0
    return not value  # "", 0, 0.0, False


def _map_key(field, key) -> str:
    if field.type == FD.TYPE_BOOL:
        return "true" if key else "false"
    return str(key)


def go_json(message):
    """The value Go's encoding/json prints for the generated struct of `message` (None for no message)."""
    if message is None:
        return None
    out: dict = {}
    seen_oneofs = set()
    for field in message.DESCRIPTOR.fields:
        oneof = _real_oneof(field)
        if oneof is not None:
            if oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(oneof.name)
            member = message.WhichOneof(oneof.name)
            if member is None:
                out[go_camel_case(oneof.name)] = None
            else:
                mf = oneof.containing_type.fields_by_name[member]
                out[go_camel_case(oneof.name)] = {go_camel_case(member): _value(mf, getattr(message, member))}
            continue
        value = getattr(message, field.name)
        if _is_map(field):
            if len(value):
                vf = field.message_type.fields_by_name["value"]
                kf = field.message_type.fields_by_name["key"]
                items = sorted((_map_key(kf, k), v) for k, v in value.items())
                out[field.name] = {k: _value(vf, v) for k, v in items}
        elif _is_repeated(field):
            if len(value):
                out[field.name] = [_value(field, v) for v in value]
        elif field.type == FD.TYPE_MESSAGE:
            if message.HasField(field.name):
                out[field.name] = go_json(value)
        elif field.containing_oneof is not None:  # proto3 optional: a pointer, printed when set
            if message.HasField(field.name):
                out[field.name] = _scalar(field, value)
        elif not _is_zero(field, value):
            out[field.name] = _scalar(field, value)
    return out


def _encode(value, indent: str) -> str:
    step = indent + "  "
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Float):
        return _format_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(_Float(value, 64))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{step}{_string(str(k))}: {_encode(v, step)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(step + _encode(v, step) for v in value) + "\n" + indent + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _string(s: str) -> str:
    """Go's encodeState.string with escapeHTML false: \\n \\r \\t \\b \\f, other controls and
    U+2028/U+2029 as \\u00xx / \\u2028, invalid UTF-8 (lone surrogates here) as U+FFFD."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        s = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)
    return json.dumps(s, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def dumps(value) -> str:
    """The text json.Encoder (SetIndent("", "  ")) writes for `value`, without its final newline."""
    return _encode(value, "")


def echo(value, err: bool = False) -> None:
    import click

    click.echo(dumps(value), err=err)


def echo_message(message) -> None:
    """Print a message (or None: `null`) as otdfctl's ExitWithJSON does."""
    echo(go_json(message))


def status_json(status: str, message: str) -> dict:
    """otdfctl's MessageJSON: a Go map, so its keys sorted."""
    return {"message": message, "status": status}
