"""The Python side of the adapter: extern "Python" callbacks for adapter.c.

bind() is called by each plugin's embedding init code with that plugin's
cffi ffi/lib and its declaration. It imports the manager class, then serves
create/call/destroy: copying inputs out of C memory, turning results into
host-owned buffers and exceptions into KM_* codes plus a one-line message.
Unknown exceptions become KM_ERR_INTERNAL with a generic message; only
their type and source location are logged (never the message, which may
echo a secret).
"""

from __future__ import annotations

import importlib
import itertools
import json
import threading
import traceback

import km_pyembed
from km_pyembed import errors

OP_WRAP, OP_UNWRAP, OP_PUBLIC_KEY, OP_PROBE = 1, 2, 3, 4
OP_NAMES = {OP_WRAP: "wrap", OP_UNWRAP: "unwrap", OP_PUBLIC_KEY: "public_key", OP_PROBE: "probe"}
REQUIRED_METHODS = {"wrap": "wrap", "unwrap": "unwrap", "public_key": "public_key", "probe": "probe"}

# Plugins bound in this interpreter, by manager name (kept alive with their ffi).
_plugins: dict[str, "PluginRuntime"] = {}


def _where(exc: BaseException) -> str:
    """'file.py:123 in func' of the innermost frame: safe to log, helps debugging."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}"


class _Instance:
    __slots__ = ("manager", "lock")

    def __init__(self, manager, thread_safe: bool):
        self.manager = manager
        # The host serializes calls into non-thread-safe managers; the lock
        # makes that hold even for a host that forgets.
        self.lock = None if thread_safe else threading.Lock()


class PluginRuntime:
    def __init__(self, ffi, lib, spec: dict):
        self.ffi, self.lib, self.spec = ffi, lib, spec
        self.name = spec["manager"]
        self.thread_safe = bool(spec["thread_safe"])
        self.cls = None
        self.load_error: str | None = None
        self.instances: dict[int, _Instance] = {}
        self._ids = itertools.count(1)

    # -- logging -------------------------------------------------------------
    def host_log(self, level: int, request_id: str | None, message: str) -> None:
        if not self.lib.km_pyembed_has_log() or level < self.lib.km_pyembed_log_level():
            return  # below the host's threshold: no formatting, no call into the host
        rid = request_id.encode("utf-8", "replace") if request_id else self.ffi.NULL
        self.lib.km_pyembed_log(level, rid, errors.one_line(f"{self.name}: {message}").encode("utf-8", "replace"))

    def _enter(self, request_id: str | None):
        call = km_pyembed._call
        saved = (getattr(call, "sink", None), getattr(call, "request_id", None))
        call.sink, call.request_id = self.host_log, request_id
        return saved

    @staticmethod
    def _leave(saved) -> None:
        km_pyembed._call.sink, km_pyembed._call.request_id = saved

    # -- results ---------------------------------------------------------------
    def _fail(self, error_ptr, exc: BaseException, what: str, request_id: str | None) -> int:
        status, message = errors.status_of(exc)
        if message is None:
            self.host_log(km_pyembed.ERROR, request_id,
                          f"{what} failed: unexpected {type(exc).__name__} at {_where(exc)}")
            message = f"internal error in {self.name} manager ({what}); see the host log"
        else:
            self.host_log(km_pyembed.DEBUG, request_id, f"{what}: {errors.STATUS_NAMES[status]}")
        self._set_error(error_ptr, message)
        return status

    def _set_error(self, error_ptr, message: str) -> None:
        if error_ptr != self.ffi.NULL:
            self.lib.km_pyembed_set_error(error_ptr, errors.one_line(message).encode("utf-8", "replace"))

    # -- load ----------------------------------------------------------------
    def load_class(self) -> None:
        module_name, _, class_name = self.spec["class"].partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError as exc:  # names a module, never a secret
            self.load_error = f"cannot import {self.spec['class']}: {type(exc).__name__}: {exc}"
            return
        except Exception as exc:
            self.load_error = f"cannot import {self.spec['class']}: {type(exc).__name__} at {_where(exc)}"
            return
        missing = [m for cap, m in REQUIRED_METHODS.items()
                   if cap in self.spec["capabilities"] and not callable(getattr(cls, m, None))]
        if missing:
            self.load_error = f"{self.spec['class']} lacks declared methods {missing}"
            return
        self.cls = cls

    # -- callbacks -------------------------------------------------------------
    def ready(self) -> int:
        if self.load_error:
            self.host_log(km_pyembed.ERROR, None, f"plugin refused to load: {self.load_error}")
            return 1
        return 0

    def create(self, config_ptr, config_len: int, handle_ptr, error_ptr) -> int:
        saved = self._enter(None)
        try:
            raw = bytes(self.ffi.buffer(config_ptr, config_len)) if config_len else b""
            if not raw.strip():
                raise errors.InvalidArgument("config is empty (expected a JSON object)")
            try:
                config = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise errors.InvalidArgument("config is not valid UTF-8") from None
            except json.JSONDecodeError as exc:  # position only, never the content
                raise errors.InvalidArgument(
                    f"config is not valid JSON (line {exc.lineno} column {exc.colno})") from None
            except RecursionError:  # e.g. 1 MB of "[[[": bad input, not a plugin failure
                raise errors.InvalidArgument("config is nested too deeply") from None
            if not isinstance(config, dict):
                raise errors.InvalidArgument("config must be a JSON object")
            manager = self.cls(config)
            handle = next(self._ids)
            self.instances[handle] = _Instance(manager, self.thread_safe)
            handle_ptr[0] = handle
            return errors.KM_OK
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a status
            return self._fail(error_ptr, exc, "create", None)
        finally:
            self._leave(saved)

    def call(self, handle, op, timeout_ms, request_id_ptr, key_id_ptr, in_ptr, in_len,
             out_ptr, out_len_ptr, error_ptr) -> int:
        request_id = (self.ffi.string(request_id_ptr).decode("utf-8", "replace")
                      if request_id_ptr != self.ffi.NULL else None)
        what = OP_NAMES.get(op, "call")
        saved = self._enter(request_id)
        try:
            instance = self.instances.get(handle)
            if instance is None:
                raise errors.InvalidArgument("unknown or destroyed manager")
            try:
                key_id = self.ffi.string(key_id_ptr).decode("utf-8")
            except UnicodeDecodeError:
                raise errors.InvalidArgument("key id is not valid UTF-8") from None
            data = bytes(self.ffi.buffer(in_ptr, in_len)) if in_len else b""
            timeout = timeout_ms / 1000.0 if timeout_ms else None
            if instance.lock is not None:
                with instance.lock:
                    result = self._dispatch(instance.manager, op, key_id, data, timeout)
            else:
                result = self._dispatch(instance.manager, op, key_id, data, timeout)
            if op == OP_PROBE:
                return errors.KM_OK
            if self.lib.km_pyembed_set_bytes(out_ptr, out_len_ptr, result, len(result)) != 0:
                raise MemoryError("output allocation failed")
            return errors.KM_OK
        except BaseException as exc:  # noqa: BLE001
            return self._fail(error_ptr, exc, what, request_id)
        finally:
            self._leave(saved)

    @staticmethod
    def _dispatch(manager, op: int, key_id: str, data: bytes, timeout: float | None) -> bytes:
        if op == OP_WRAP:
            result = manager.wrap(key_id, data, timeout)
        elif op == OP_UNWRAP:
            result = manager.unwrap(key_id, data, timeout)
        elif op == OP_PUBLIC_KEY:
            result = manager.public_key(key_id, timeout)
            if isinstance(result, str):
                result = result.encode("utf-8")
        elif op == OP_PROBE:
            manager.probe(timeout)
            return b""
        else:
            raise errors.Unimplemented(f"unknown operation {op}")
        if not isinstance(result, (bytes, bytearray, memoryview)):
            raise errors.Internal(f"manager returned {type(result).__name__}, expected bytes")
        return bytes(result)

    def destroy(self, handle) -> None:
        instance = self.instances.pop(handle, None)
        if instance is None:
            return
        saved = self._enter(None)
        try:
            instance.manager.close()
        except BaseException as exc:  # noqa: BLE001 - destroy cannot report; log the type
            self.host_log(km_pyembed.WARN, None,
                          f"close failed: {type(exc).__name__} at {_where(exc)}")
        finally:
            self._leave(saved)


def bind(ffi, lib, spec: dict) -> PluginRuntime:
    """Register this plugin's extern "Python" callbacks on its own ffi."""
    rt = PluginRuntime(ffi, lib, spec)
    rt.load_class()
    _plugins[rt.name] = rt

    # error=... is what cffi returns if a callback itself raises: never KM_OK.
    @ffi.def_extern(error=1)
    def km_py_ready():
        return rt.ready()

    @ffi.def_extern(error=errors.KM_ERR_INTERNAL)
    def km_py_create(config, config_len, handle, error):
        return rt.create(config, config_len, handle, error)

    @ffi.def_extern(error=errors.KM_ERR_INTERNAL)
    def km_py_call(handle, op, timeout_ms, request_id, key_id, in_, in_len, out, out_len, error):
        return rt.call(handle, op, timeout_ms, request_id, key_id, in_, in_len, out, out_len, error)

    @ffi.def_extern()
    def km_py_destroy(handle):
        rt.destroy(handle)

    return rt
