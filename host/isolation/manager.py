"""The isolated plugin as the host sees it: factories and managers with the
same Python protocol, status codes and deadlines as host.loader's, whose
calls cross a socket to the plugin's child process instead of into C.

A manager remembers its config so that, after the child was restarted, the
next call re-creates it there first: callers never see a stale handle.
"""

from __future__ import annotations

import threading
import time

from host import errors
from host.abi import KM_OK
from host.abi import status_error as _status_error
from host.loader import _KM_DEADLINE
from host.isolation import protocol as p
from host.isolation.supervisor import NO_DEADLINE_LIMIT_S, Child, Supervisor, _text
from host.managers.base import CallContext, Capability, ManagerFactory

MAX_NAME_LEN = 255


class IsolatedManager:
    """A KeyManager whose plugin manager lives in a supervised child process."""

    def __init__(self, supervisor: Supervisor, index: int, name: str, caps: Capability, config: bytes,
                 ctx: CallContext | None = None):
        self.name = name
        self.capabilities = caps
        self._sup = supervisor
        self._index = index
        self._config = config  # held to re-create the manager after a restart; never shown
        self._generation = 0
        self._handle = 0
        self._lock = threading.Lock()
        self._closed = False
        if ctx is not None and ctx.expired():
            raise errors.DeadlineExceeded(f"{name}: deadline passed before create")
        deadline = ctx.deadline if ctx is not None and ctx.deadline is not None else None
        self._attach(deadline or time.monotonic() + NO_DEADLINE_LIMIT_S, ctx.request_id if ctx else "")

    def __repr__(self) -> str:
        return f"IsolatedManager({self.name!r})"

    def _attach(self, deadline: float, rid: str) -> tuple[Child, int]:
        """The live child and this manager's handle in it, created there (create_ex gets the
        deadline) if new."""
        child = self._sup.child(deadline)
        if self._generation == child.generation:
            return child, self._handle
        with self._lock:
            if self._generation != child.generation:
                frame = child.call(p.OP_CREATE, self._index, _ms_until(deadline), rid, "", self._config)
                if frame.status != 0:
                    raise _status_error(frame.status, self.name, "create", _text(frame.data) or None)
                self._generation, self._handle = child.generation, frame.handle
            return child, self._handle

    def _call(self, op: int, op_name: str, key_id: str, data: bytes, ctx: CallContext | None) -> bytes:
        if self._closed:
            raise errors.Unavailable(f"manager {self.name!r} is closed")
        if ctx is None or ctx.deadline is None:
            deadline, rid = time.monotonic() + NO_DEADLINE_LIMIT_S, ctx.request_id if ctx else ""
        elif ctx.expired():
            raise errors.DeadlineExceeded(f"{self.name}: deadline passed before the call")
        else:
            deadline, rid = ctx.deadline, ctx.request_id
        if len(data) > p.MAX_DATA or len(key_id.encode("utf-8")) > p.MAX_TEXT:
            raise errors.InvalidArgument(f"{self.name} {op_name}: key id or input too long")
        child, handle = self._attach(deadline, rid)
        frame = child.call(op, handle, _ms_until(deadline), rid, key_id, bytes(data))
        status = frame.status
        if status == KM_OK and ctx is not None and ctx.deadline is not None and time.monotonic() > ctx.deadline:
            raise _status_error(_KM_DEADLINE, self.name, op_name, "answered after the call's deadline")  # rule 5
        if status != KM_OK:  # the data is the plugin's message (decoded only here: on OK it is a key)
            raise _status_error(status, self.name, op_name, _text(frame.data) or None)
        return frame.data

    def _require(self, cap: Capability, op: str) -> None:
        if cap not in self.capabilities:
            raise errors.Unimplemented(f"manager {self.name!r} does not support {op}")

    def wrap(self, key_id: str, plain: bytes, ctx: CallContext | None = None) -> bytes:
        self._require(Capability.WRAP, "wrap")
        return self._call(p.OP_WRAP, "wrap", key_id, plain, ctx)

    def unwrap(self, key_id: str, wrapped: bytes, ctx: CallContext | None = None) -> bytes:
        self._require(Capability.UNWRAP, "unwrap")
        return self._call(p.OP_UNWRAP, "unwrap", key_id, wrapped, ctx)

    def public_key(self, key_id: str, ctx: CallContext | None = None) -> str:
        self._require(Capability.PUBLIC_KEY, "public key")
        pem = self._call(p.OP_PUBLIC_KEY, "get_public_key", key_id, b"", ctx)
        try:
            return pem.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            raise errors.PluginError(f"manager {self.name!r} get_public_key: returned a non-ASCII PEM (plugin bug)") from None

    def probe(self, ctx: CallContext | None = None) -> None:
        if Capability.PROBE not in self.capabilities:
            if self._closed:
                raise errors.Unavailable(f"manager {self.name!r} is closed")
            return
        self._call(p.OP_PROBE, "probe", "", b"", ctx)

    def close(self) -> None:
        """Destroy the plugin manager in the child (once); a dead child took it along."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._config = b""
            child = self._sup.current
            if child is None or not child.alive or child.generation != self._generation:
                return
            try:
                child.call(p.OP_DESTROY, self._handle, 5000, "", "", b"")
            except errors.PlatformError:
                pass


def _ms_until(deadline: float) -> int:
    return max(1, int((deadline - time.monotonic()) * 1000))


def factories(supervisor: Supervisor, hello: list[str]) -> tuple[str, str, str, list[ManagerFactory]]:
    """(plugin name, version, ABI, factories) from the child's HELLO descriptor."""
    path = supervisor.spec.path
    if len(hello) < 5 or len(hello) % 2 == 0:
        raise errors.PluginLoadError(f"{path}: the isolated plugin process sent a malformed descriptor")
    name, version, abi = hello[0], hello[1], hello[2]
    if not name:
        raise errors.PluginLoadError(f"{path}: plugin_name is empty")
    result, seen = [], set()
    for index, i in enumerate(range(3, len(hello), 2)):
        caps, mname = Capability(int(hello[i]) & sum(Capability)), hello[i + 1]
        if not mname or len(mname.encode()) > MAX_NAME_LEN or "\ufffd" in mname:
            raise errors.PluginLoadError(f"{path}: factory #{index} manager_name is empty, too long or not UTF-8")
        if mname in seen:
            raise errors.PluginLoadError(f"{path}: manager {mname!r} is registered twice by this plugin")
        seen.add(mname)

        def create(config, ctx: CallContext | None = None, index=index, mname=mname, caps=caps) -> IsolatedManager:
            if isinstance(config, str):
                config = config.encode("utf-8")
            return IsolatedManager(supervisor, index, mname, caps, bytes(config), ctx)

        result.append(ManagerFactory(name=mname, capabilities=caps, create=create, source=path,
                                     plugin_name=name, plugin_version=version, abi_version=abi))
    return name, version, abi, result
