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


class FrameReader:
    """Frames from the child's end of the socket, parsed out of one receive buffer.

    One recv_into usually brings a whole reply (header and body: one syscall a
    frame, where reading the header and then the body took two); what a recv
    brings beyond the frame (a log line ahead of a reply, say) stays for the
    next one. Only one thread reads at a time (the Child's reader role).
    """

    SIZE = 64 * 1024  # grown for a larger frame

    def __init__(self, sock: socket.socket, max_data: int):
        self._sock, self._max_data = sock, max_data
        self._buf = bytearray(self.SIZE)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # unread bytes are _buf[_start:_end]

    def next(self) -> Frame:
        """The next frame, waiting for it; EOFError when the child closed its end."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            self._fill(0)

    def ready(self) -> list[Frame]:
        """The frames that have arrived, without waiting; EOFError when the child closed its end."""
        try:
            self._fill(socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        frames = []
        while (frame := self._parse()) is not None:
            frames.append(frame)
        return frames

    def _fill(self, flags: int) -> None:
        if self._end == len(self._buf):
            self._make_room(self._end - self._start + 1)
        n = self._sock.recv_into(self._view[self._end:], 0, flags)
        if n == 0:
            raise EOFError
        self._end += n

    def _make_room(self, frame_size: int) -> None:
        """Move the unread bytes to the front, in a larger buffer when the frame needs it."""
        unread = self._buf[self._start:self._end]
        if frame_size > len(self._buf):
            self._buf = bytearray(frame_size)
            self._view = memoryview(self._buf)
        self._buf[:len(unread)] = unread
        self._start, self._end = 0, len(unread)

    def _parse(self) -> Frame | None:
        start, have = self._start, self._end - self._start
        if have < HEADER.size:
            if have == 0:
                self._start = self._end = 0
            return None
        magic, call_id, handle, _timeout, op, status, rid_len, key_len, data_len = HEADER.unpack_from(
            self._buf, start)
        if magic != MAGIC or rid_len > MAX_TEXT or key_len != 0 or data_len > self._max_data:
            raise ProtocolError(f"bad frame header (magic {magic:#x}, {data_len} data bytes)")
        size = HEADER.size + rid_len + data_len
        if have < size:
            if start + size > len(self._buf):
                self._make_room(size)
            return None
        body = start + HEADER.size
        rid = self._buf[body:body + rid_len].decode("utf-8", "replace") if rid_len else ""
        data = bytes(self._view[body + rid_len:start + size])
        self._start = start + size
        return Frame(call_id, handle, op, status, rid, data)
