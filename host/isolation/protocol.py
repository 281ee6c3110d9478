"""The frames between the host and km-plugin-host (runner/protocol.h).

The constants are read from the C header, so they are defined once; the
header layout is mirrored by HEADER (checked against KMI_HEADER_SIZE).
"""

from __future__ import annotations

import re
import socket
import struct
from typing import NamedTuple

from host.isolation.runner import PROTOCOL_H  # shipped in the package (host/isolation/runner_src/)


def _defines(text: str) -> dict[str, int]:
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^#define (KMI_\w+) (0x[0-9a-fA-F]+|\d+)\s*$", text, re.M)}


_C = _defines(PROTOCOL_H.read_text(encoding="utf-8"))
MAGIC = _C["KMI_MAGIC"]
MAX_TEXT = _C["KMI_MAX_TEXT"]
MAX_DATA = _C["KMI_MAX_DATA"]
OP_CREATE, OP_WRAP, OP_UNWRAP = _C["KMI_OP_CREATE"], _C["KMI_OP_WRAP"], _C["KMI_OP_UNWRAP"]
OP_PUBLIC_KEY, OP_PROBE, OP_DESTROY = _C["KMI_OP_PUBLIC_KEY"], _C["KMI_OP_PROBE"], _C["KMI_OP_DESTROY"]
OP_HELLO, OP_LOG = _C["KMI_OP_HELLO"], _C["KMI_OP_LOG"]

# magic, call_id, handle, timeout_ms, op, status, rid_len, key_len, data_len
HEADER = struct.Struct("=IIIIHHHHI")
if HEADER.size != _C["KMI_HEADER_SIZE"]:
    raise RuntimeError(f"{PROTOCOL_H}: header is {_C['KMI_HEADER_SIZE']} bytes, host/isolation expects {HEADER.size}")


class ProtocolError(Exception):
    """The child sent something that is not a frame of ours."""


class Frame(NamedTuple):
    call_id: int
    handle: int
    op: int
    status: int
    request_id: str
    data: bytes


def request(call_id: int, op: int, handle: int, timeout_ms: int, request_id: str, key_id: str,
            data: bytes, log_level: int = 0) -> bytes:
    """A request frame; log_level (a request's status field) is the host's log threshold."""
    rid = request_id.encode("utf-8", "replace")[:MAX_TEXT]
    kid = key_id.encode("utf-8")
    if len(kid) > MAX_TEXT:
        raise ValueError(f"key id is longer than {MAX_TEXT} bytes")
    return b"".join((HEADER.pack(MAGIC, call_id, handle, timeout_ms, op, log_level, len(rid), len(kid), len(data)),
                     rid, kid, data))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:])
        if r == 0:
            raise EOFError
        got += r
    return bytes(buf)


def read_frame(sock: socket.socket, max_data: int) -> Frame:
    """The next frame; EOFError when the child closed its end."""
    magic, call_id, handle, _timeout, op, status, rid_len, key_len, data_len = HEADER.unpack(
        _recv_exact(sock, HEADER.size))
    if magic != MAGIC or rid_len > MAX_TEXT or key_len != 0 or data_len > max_data:
        raise ProtocolError(f"bad frame header (magic {magic:#x}, {data_len} data bytes)")
    body = _recv_exact(sock, rid_len + data_len) if rid_len + data_len else b""
    return Frame(call_id, handle, op, status, body[:rid_len].decode("utf-8", "replace"), body[rid_len:])
