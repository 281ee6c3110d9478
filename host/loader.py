"""Load key-manager plugins (.so) and wrap their managers in Python.

`load_plugin(path)` dlopens a plugin, calls `km_plugin_init`, validates
everything it returns and yields one `ManagerFactory` per manager name.
`PluginManager` is the FFI-backed `KeyManager`: it converts buffers, maps
status codes to exceptions, always frees plugin memory, serializes calls
into managers that are not thread-safe and passes deadlines.

Every load failure is a `PluginLoadError` whose one-line message starts
with the file path and says what is wrong.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from host import errors
from host.abi import ABI_MAJOR, ABI_MINOR, KM_OK, MAX_ERROR_LEN, MAX_OUTPUT_LEN, STATUS_ERRORS, ffi
from host.abi import status_error as _status_error
from host.managers.base import CallContext, Capability, ManagerFactory

log = logging.getLogger("host.plugin")

MAX_NAME_LEN = 255
MAX_FACTORIES = 64
# MAX_OUTPUT_LEN (keymanager.h): a PEM or a DEK is far smaller; a larger out_len is a plugin bug
# or memory corruption, so the host refuses it before touching the buffer.
_ZEROS = bytes(MAX_OUTPUT_LEN)  # wipe source: outputs are zeroed before the plugin's free sees them
_RTLD_NOW = getattr(os, "RTLD_NOW", 2)
_FACTORY_V1_0_SIZE = ffi.offsetof("km_factory", "create_ex")  # 1.0 factories end before the 1.1 field

_CAP_FUNCS = {
    Capability.WRAP: "wrap",
    Capability.UNWRAP: "unwrap",
    Capability.PUBLIC_KEY: "get_public_key",
    Capability.PROBE: "probe",
    Capability.KEM: "unwrap",
}


@dataclass
class LoadedPlugin:
    """A dlopened plugin. Keeps the library and host struct alive."""

    path: str
    name: str
    version: str
    abi_version: str
    factories: list[ManagerFactory]
    _keepalive: list = field(default_factory=list, repr=False)


def _fail(path: str, reason: str) -> errors.PluginLoadError:
    return errors.PluginLoadError(f"{path}: {reason}")


def _c_string(ptr, path: str, what: str, *, allow_empty: bool = False) -> str:
    if ptr == ffi.NULL:
        raise _fail(path, f"{what} is NULL")
    raw = ffi.string(ptr, MAX_NAME_LEN + 1)
    if len(raw) > MAX_NAME_LEN:
        raise _fail(path, f"{what} is longer than {MAX_NAME_LEN} bytes")
    if not raw and not allow_empty:
        raise _fail(path, f"{what} is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(path, f"{what} is not valid UTF-8") from None


# ---- host logging callback ---------------------------------------------------
# One callback for all plugins; log_ctx is a handle to the plugin's _PluginLog.

class _PluginLog:
    """Where one plugin's km_host.log lines go: its logger, tagged with its name."""

    __slots__ = ("logger", "plugin")

    def __init__(self, logger: logging.Logger, plugin: str):
        self.logger = logger
        self.plugin = plugin  # the file name until the descriptor names the plugin


_LEVELS = frozenset((logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR))


@ffi.callback("km_log_fn")
def _log_from_plugin(log_ctx, level, request_id, message):
    try:
        target = ffi.from_handle(log_ctx)
        level = int(level) if level in _LEVELS else logging.INFO
        if not target.logger.isEnabledFor(level):
            return
        text = ffi.string(message, 4096).decode("utf-8", "replace") if message != ffi.NULL else ""
        fields = {"plugin": target.plugin}
        if request_id != ffi.NULL:
            fields["request_id"] = ffi.string(request_id, 128).decode("utf-8", "replace")
        target.logger.log(level, "%s", text, extra={"fields": fields})
    except Exception:  # a log call must never raise into C
        pass


def _read_elf_magic(path: str) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a plugin file") from None
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror}") from None
    if magic != b"\x7fELF":
        raise _fail(path, "not a shared library (no ELF header); build the plugin with -shared")


# One LoadedPlugin per library file and process: dlopen returns the same
# handle for a file loaded twice, and km_host must stay valid while the
# library is loaded, so km_plugin_init runs once per file.
_loaded: dict[str, LoadedPlugin] = {}
_loaded_lock = threading.Lock()
_host_structs: list = []


def _threshold(logger: logging.Logger) -> int:
    """km_host.log_level: plugins skip DEBUG lines (formatted per call, the costly ones) unless
    the logger records them; INFO and above always reach the host, whose logger filters them,
    since Python logging levels can change without notice (a handler, a test's caplog)."""
    return min(logger.getEffectiveLevel(), logging.INFO)


def sync_log_levels() -> None:
    """Tell every loaded plugin (km_host.log_level) whether DEBUG is recorded now;
    call after changing logging levels (logs.configure does)."""
    for host, log_handle in _host_structs:
        host.log_level = _threshold(ffi.from_handle(log_handle).logger)


def load_plugin(path: str) -> LoadedPlugin:
    """dlopen `path`, call km_plugin_init and validate the descriptor (once per file)."""
    _read_elf_magic(path)
    key = os.path.realpath(path)
    with _loaded_lock:
        plugin = _loaded.get(key)
        if plugin is None:
            plugin = _load(path)
            _loaded[key] = plugin
        return plugin


def _load(path: str) -> LoadedPlugin:
    display = path
    try:
        lib = ffi.dlopen(os.path.abspath(path), _RTLD_NOW)
    except OSError as e:
        reason = str(e).split(": ", 1)[-1] if ": " in str(e) else str(e)
        raise _fail(display, f"cannot be loaded: {reason.strip()}") from None
    try:
        init = lib.km_plugin_init
    except AttributeError:
        raise _fail(display, "not a key-manager plugin: it does not export km_plugin_init") from None

    plugin_log = _PluginLog(logging.getLogger(f"host.plugin.{os.path.basename(path)}"), os.path.basename(path))
    log_handle = ffi.new_handle(plugin_log)
    host = ffi.new("km_host *", {
        "struct_size": ffi.sizeof("km_host"),
        "abi_major": ABI_MAJOR,
        "abi_minor": ABI_MINOR,
        "log": _log_from_plugin,
        "log_ctx": log_handle,
        "log_level": _threshold(plugin_log.logger),
    })
    _host_structs.append((host, log_handle))  # valid until unload, i.e. for the process, even if refused
    desc = init(host)
    if desc == ffi.NULL:
        raise _fail(display, "km_plugin_init returned NULL (the plugin refused to load; see its log output)")
    if desc.abi_major != ABI_MAJOR:
        raise _fail(display, f"built for key-manager ABI {desc.abi_major}.{desc.abi_minor}; "
                             f"this host supports ABI {ABI_MAJOR}.x (rebuild the plugin against this keymanager.h)")
    if desc.struct_size < ffi.sizeof("km_plugin"):
        raise _fail(display, f"km_plugin.struct_size is {desc.struct_size}, smaller than ABI "
                             f"{ABI_MAJOR}.0's {ffi.sizeof('km_plugin')} bytes")
    name = _c_string(desc.plugin_name, display, "plugin_name")
    version = _c_string(desc.plugin_version, display, "plugin_version", allow_empty=True)
    plugin_log.plugin = name
    if desc.free == ffi.NULL:
        raise _fail(display, "km_plugin.free is NULL (the host needs it to release plugin buffers)")
    if desc.factories == ffi.NULL or not 1 <= desc.factory_count <= MAX_FACTORIES:
        raise _fail(display, f"must offer 1..{MAX_FACTORIES} factories (factories pointer "
                             f"{'NULL' if desc.factories == ffi.NULL else 'set'}, count {desc.factory_count})")
    abi_version = f"{desc.abi_major}.{desc.abi_minor}"
    keepalive = [lib, host, log_handle]
    factories: list[ManagerFactory] = []
    seen: set[str] = set()
    for i in range(desc.factory_count):
        f = desc.factories[i]
        where = f"factory #{i}"
        if f == ffi.NULL:
            raise _fail(display, f"{where} is NULL")
        if f.struct_size < _FACTORY_V1_0_SIZE:
            raise _fail(display, f"{where}: struct_size {f.struct_size} is smaller than ABI 1.0's")
        mname = _c_string(f.manager_name, display, f"{where} manager_name")
        where = f"manager {mname!r}"
        if mname in seen:
            raise _fail(display, f"{where} is registered twice by this plugin")
        seen.add(mname)
        if f.create == ffi.NULL:
            raise _fail(display, f"{where}: create is NULL")
        ops = f.ops
        if ops == ffi.NULL:
            raise _fail(display, f"{where}: ops table is NULL")
        if ops.struct_size < ffi.sizeof("km_manager_ops"):
            raise _fail(display, f"{where}: ops struct_size {ops.struct_size} is smaller than ABI 1.0's")
        if ops.destroy == ffi.NULL:
            raise _fail(display, f"{where}: ops.destroy is NULL")
        caps = Capability(f.capabilities & sum(Capability))  # unknown future bits ignored
        for cap, fn in _CAP_FUNCS.items():
            if cap in caps and getattr(ops, fn) == ffi.NULL:
                raise _fail(display, f"{where}: capability {cap.name} is set but ops.{fn} is NULL")
        factories.append(ManagerFactory(
            name=mname, capabilities=caps, create=_creator(desc, f, mname, caps, display, keepalive),
            source=os.path.abspath(path), plugin_name=name, plugin_version=version, abi_version=abi_version,
        ))
    return LoadedPlugin(path=os.path.abspath(path), name=name, version=version, abi_version=abi_version,
                        factories=factories, _keepalive=keepalive)


def load_plugins(paths) -> list[LoadedPlugin]:
    """Load several plugins; a path given twice or a manager name offered by
    two files is an error naming both."""
    loaded: list[LoadedPlugin] = []
    seen_paths: dict[str, str] = {}
    owners: dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen_paths:
            raise _fail(path, f"given twice (also as {seen_paths[real]})")
        seen_paths[real] = path
        plugin = load_plugin(path)
        for f in plugin.factories:
            if f.name in owners:
                raise errors.PluginLoadError(
                    f"{path}: manager {f.name!r} is already registered by {owners[f.name]}")
            owners[f.name] = path
        loaded.append(plugin)
    return loaded


# A create without a caller's deadline (the registry building a manager on first use) still
# gets one from a 1.1 plugin's create_ex: an HSM login that hangs must not hold its config forever.
CREATE_TIMEOUT_S = 30.0


def _creator(desc, factory, manager_name, caps, path, keepalive):
    has_ex = (factory.struct_size >= ffi.offsetof("km_factory", "create_ex") + ffi.sizeof("void *")
              and factory.create_ex != ffi.NULL)

    def create(config: bytes, ctx: CallContext | None = None) -> "PluginManager":
        if isinstance(config, str):
            config = config.encode("utf-8")
        out = ffi.new("km_manager **")  # zeroed: *mgr and *error are NULL before the call
        err = ffi.new("char **")
        cfg = ffi.from_buffer("char[]", config) if config else b""
        if has_ex:
            ctx = ctx or CallContext.with_timeout(CREATE_TIMEOUT_S)
            c = ffi.new("km_call_ctx *", {"struct_size": ffi.sizeof("km_call_ctx"),
                                          "timeout_ms": ctx.remaining_ms()})
            rid = ffi.new("char[]", ctx.request_id.encode("utf-8", "replace")[:64])
            c.request_id = rid
            status = factory.create_ex(c, cfg, len(config), out, err)
        else:
            status = factory.create(cfg, len(config), out, err)
        message = _take_error(desc, err)
        if status == KM_OK and out[0] != ffi.NULL and ctx is not None and ctx.expired():
            factory.ops.destroy(out[0])  # OK past the deadline is not allowed (keymanager.h rule 5)
            status = _KM_DEADLINE
        if status != KM_OK:
            raise _status_error(status, manager_name, "create", message)
        if out[0] == ffi.NULL:
            raise errors.PluginError(f"plugin {path}: manager {manager_name!r} create returned OK without a manager")
        return PluginManager(desc, factory.ops, out[0], manager_name, caps, keepalive)

    return create


def _take_error(desc, err) -> str | None:
    """Read and free a plugin error string; None when unset. Longer than MAX_ERROR_LEN is
    truncated, invalid UTF-8 replaced (keymanager.h rule 3)."""
    ptr = err[0]
    if ptr == ffi.NULL:
        return None
    try:
        raw = ffi.string(ptr, MAX_ERROR_LEN)
    finally:
        desc.free(ptr)
        err[0] = ffi.NULL
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        return f"{text} (the plugin's error message was not valid UTF-8)"


def _log_fields(manager: str, ctx: CallContext | None) -> dict:
    fields = {"manager": manager}
    if ctx is not None:
        fields["request_id"] = ctx.request_id
    return {"fields": fields}


def _late(ctx: CallContext | None) -> bool:
    """A result after the deadline counts as deadline exceeded, even KM_OK (keymanager.h rule 5)."""
    return ctx is not None and ctx.deadline is not None and _monotonic() > ctx.deadline


_NULL = ffi.NULL
_memmove = ffi.memmove
_monotonic = time.monotonic
_KM_DEADLINE = next(code for code, cls in STATUS_ERRORS.items() if cls is errors.DeadlineExceeded)


class _Scratch(threading.local):
    """Per-thread out-parameters, allocated once: the unwrap path is hot.

    `no_deadline` is a call context that is never modified (timeout 0, no
    request id), handed to plugins for calls without a CallContext; `ctx`
    is filled per call when there is one.
    """

    def __init__(self):
        self.out = ffi.new("uint8_t **")
        self.out_len = ffi.new("size_t *")
        self.err = ffi.new("char **")
        self.ctx = ffi.new("km_call_ctx *", {"struct_size": ffi.sizeof("km_call_ctx")})
        self.no_deadline = ffi.new("km_call_ctx *", {"struct_size": ffi.sizeof("km_call_ctx")})
        self.data_call = (self.out, self.out_len, self.err, self.no_deadline)


class PluginManager:
    """A KeyManager whose work is done by a plugin manager instance."""

    def __init__(self, desc, ops, handle, name: str, caps: Capability, keepalive):
        self._desc = desc
        self._ops = ops
        self._handle = handle
        self.name = name
        self.capabilities = caps
        self._keepalive = keepalive  # the library must outlive the manager
        self._lock = None if Capability.THREAD_SAFE in caps else threading.Lock()
        self._closed = False
        self._close_lock = threading.Lock()
        self._scratch = _Scratch()
        # Looked up once: each attribute read on a cdata struct builds a new object.
        self._free = desc.free
        self._wrap_fn = ops.wrap if Capability.WRAP in caps else None
        self._unwrap_fn = ops.unwrap if Capability.UNWRAP in caps else None

    def __repr__(self) -> str:
        return f"PluginManager({self.name!r})"

    def _require(self, cap: Capability, op: str) -> None:
        if self._closed:
            raise errors.Unavailable(f"manager {self.name!r} is closed")
        if cap not in self.capabilities:
            raise errors.Unimplemented(f"manager {self.name!r} does not support {op}")

    def _prepare(self, ctx: CallContext | None):
        s = self._scratch
        if ctx is None:
            return s, s.no_deadline, None
        if ctx.expired():
            raise errors.DeadlineExceeded(f"{self.name}: deadline passed before the call")
        c = s.ctx
        c.timeout_ms = ctx.remaining_ms()
        rid = ffi.new("char[]", ctx.request_id.encode("utf-8", "replace")[:64])
        c.request_id = rid
        return s, c, rid

    def _finish(self, status, s, op: str, ctx: CallContext | None = None) -> bytes:
        out, desc = s.out, self._desc
        ptr = out[0]
        n = s.out_len[0]
        oversized = n > MAX_OUTPUT_LEN
        try:
            message = _take_error(desc, s.err)
            if status == KM_OK and _late(ctx):
                status, message = _KM_DEADLINE, "answered after the call's deadline"
            if status != KM_OK:
                raise _status_error(status, self.name, op, message)
            if ptr == _NULL:
                raise errors.PluginError(f"manager {self.name!r} {op}: returned OK with a NULL output (plugin bug)")
            if oversized:
                log.error("manager %r %s: out_len %d exceeds the host's limit of %d bytes; output refused "
                          "(plugin bug)", self.name, op, n, MAX_OUTPUT_LEN,
                          extra=_log_fields(self.name, ctx))
                raise errors.Internal(f"{self.name} {op}: the plugin returned {n} bytes, more than the "
                                      f"{MAX_OUTPUT_LEN} the host accepts (plugin bug)")
            return ffi.buffer(ptr, n)[:]
        finally:
            if ptr != _NULL:
                if not oversized:  # an implausible length is not trusted even for the wipe
                    _memmove(ptr, _ZEROS, n)
                desc.free(ptr)
                out[0] = _NULL

    def _call_data(self, fn, op: str, key_id: str, data: bytes, ctx: CallContext | None) -> bytes:
        # The hot path of every unwrap through a plugin: few attribute reads,
        # bytes passed to C without a copy, one branch for the common result.
        if ctx is None:
            s = self._scratch
            out, out_len, err, c = s.data_call
        else:
            s, c, _rid = self._prepare(ctx)  # _rid keeps the request id alive during the call
            out, out_len, err = s.out, s.out_len, s.err
        kid = key_id.encode("utf-8")
        buf = data if type(data) is bytes else ffi.from_buffer("uint8_t[]", data)
        out[0] = _NULL
        out_len[0] = 0
        err[0] = _NULL
        lock = self._lock
        if lock is None:
            status = fn(self._handle, c, kid, buf, len(data), out, out_len, err)
        else:
            with lock:
                status = fn(self._handle, c, kid, buf, len(data), out, out_len, err)
        ptr = out[0]
        if status == KM_OK and ptr and not err[0] and (ctx is None or not _late(ctx)):
            n = out_len[0]
            if n <= MAX_OUTPUT_LEN:
                try:
                    return ffi.buffer(ptr, n)[:]
                finally:
                    _memmove(ptr, _ZEROS, n)  # unwrapped keys and DEKs never linger in freed memory
                    self._free(ptr)
                    out[0] = _NULL
        return self._finish(status, s, op, ctx)

    def wrap(self, key_id: str, plain: bytes, ctx: CallContext | None = None) -> bytes:
        fn = self._wrap_fn
        if fn is None or self._closed:
            self._require(Capability.WRAP, "wrap")
        return self._call_data(fn, "wrap", key_id, plain, ctx)

    def unwrap(self, key_id: str, wrapped: bytes, ctx: CallContext | None = None) -> bytes:
        fn = self._unwrap_fn
        if fn is None or self._closed:
            self._require(Capability.UNWRAP, "unwrap")
        return self._call_data(fn, "unwrap", key_id, wrapped, ctx)

    def public_key(self, key_id: str, ctx: CallContext | None = None) -> str:
        self._require(Capability.PUBLIC_KEY, "public key")
        s, c, _rid = self._prepare(ctx)
        s.out[0] = ffi.NULL
        s.out_len[0] = 0
        s.err[0] = ffi.NULL
        kid = key_id.encode("utf-8")
        if self._lock is None:
            status = self._ops.get_public_key(self._handle, c, kid, s.out, s.out_len, s.err)
        else:
            with self._lock:
                status = self._ops.get_public_key(self._handle, c, kid, s.out, s.out_len, s.err)
        pem = self._finish(status, s, "get_public_key", ctx)
        try:
            return pem.decode("ascii")
        except UnicodeDecodeError:
            raise errors.PluginError(f"manager {self.name!r} get_public_key: returned a non-ASCII PEM (plugin bug)") from None

    def probe(self, ctx: CallContext | None = None) -> None:
        if self._closed:
            raise errors.Unavailable(f"manager {self.name!r} is closed")
        if Capability.PROBE not in self.capabilities:
            return
        s, c, _rid = self._prepare(ctx)
        s.err[0] = ffi.NULL
        if self._lock is None:
            status = self._ops.probe(self._handle, c, s.err)
        else:
            with self._lock:
                status = self._ops.probe(self._handle, c, s.err)
        message = _take_error(self._desc, s.err)
        if status == KM_OK and _late(ctx):
            status, message = _KM_DEADLINE, "answered after the call's deadline"
        if status != KM_OK:
            raise _status_error(status, self.name, "probe", message)

    def close(self) -> None:
        """Destroy the plugin manager exactly once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._lock is None:
            self._ops.destroy(self._handle)
        else:
            with self._lock:
                self._ops.destroy(self._handle)
        self._handle = ffi.NULL

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass
