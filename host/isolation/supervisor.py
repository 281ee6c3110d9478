"""Keep one km-plugin-host child running per plugin file and route calls to it.

A `Child` is one process: calls are multiplexed over its socket by call id,
one reader thread answers them and forwards the plugin's log lines. When
the child dies, sends garbage or sits on a call past its deadline, it is
killed and every call in flight fails with `unavailable`. The `Supervisor`
starts the next child on demand (re-verifying the file's pin), with
exponential backoff while children keep dying before answering anything.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import subprocess
import threading
import time

from host import errors, pinning
from host.isolation import protocol as p
from host.loader import _threshold as log_threshold  # km_host.log_level, as the in-process host sets it

log = logging.getLogger("host.isolation")

STARTUP_LIMIT_S = 30.0      # km_plugin_init may start Python and import an SDK
NO_DEADLINE_LIMIT_S = 30.0  # calls without a deadline still get one in the child
GRACE_S = 0.2               # time past the deadline a plugin gets to answer it
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 5.0
MAX_OUTPUT = 1 << 20        # no PEM, DEK or wrapped key comes near this
MEMORY_ENV, DEFAULT_MEMORY_MB = "PLATFORM_ISOLATED_MEMORY_MB", 2048
WORKERS = 4


_CLOSED = "closed by the host"


class _Call:
    __slots__ = ("done", "frame")

    def __init__(self):
        self.done = threading.Lock()
        self.done.acquire()
        self.frame: p.Frame | None = None  # None when the child died first


class Child:
    def __init__(self, spec: pinning.PluginSpec, runner: str, generation: int, logger: logging.Logger, on_exit):
        self.generation = generation
        self.alive = True
        self.answered = False  # an OK call: the child is not crash-looping
        self._spec, self._logger, self._on_exit = spec, logger, on_exit
        self._pending: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._exit_lock = threading.Lock()
        self._reason = ""
        try:
            fd = os.open(spec.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise errors.PluginLoadError(f"{spec.path}: cannot open: {e.strerror}") from None
        parent, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pinning.verify(spec, fd)  # the runner dlopens this very fd, not the path again
            memory_mb = os.environ.get(MEMORY_ENV) or str(DEFAULT_MEMORY_MB)
            self._proc = subprocess.Popen(
                [runner, str(theirs.fileno()), memory_mb, str(MAX_OUTPUT), str(WORKERS), str(log_threshold(logger)),
                 f"/proc/self/fd/{fd}"],
                pass_fds=(theirs.fileno(), fd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True)
        except OSError as e:  # the runner could not be started
            parent.close()
            raise errors.PluginLoadError(f"{spec.path}: cannot start {runner}: {e.strerror}") from None
        except BaseException:
            parent.close()
            raise
        finally:
            os.close(fd)
            theirs.close()
        self._sock = parent
        try:
            self.hello = self._handshake()
        except BaseException:
            self._kill_now()
            raise
        threading.Thread(target=self._read_loop, name=f"km-isolated-{os.path.basename(spec.path)}",
                         daemon=True).start()

    # ---- start-up -------------------------------------------------------------
    def _handshake(self) -> list[str]:
        self._sock.settimeout(STARTUP_LIMIT_S)
        try:
            for _ in range(100_000):  # log lines from km_plugin_init, then HELLO
                frame = p.read_frame(self._sock, MAX_OUTPUT)
                if frame.op == p.OP_LOG:
                    self._log(frame)
                    continue
                if frame.op != p.OP_HELLO:
                    raise p.ProtocolError(f"expected HELLO, got op {frame.op}")
                if frame.status != 0:
                    raise errors.PluginLoadError(f"{self._spec.path}: {_text(frame.data)}")
                return frame.data.decode("utf-8", "replace").split("\0")[:-1]
            raise p.ProtocolError("no HELLO")
        except (EOFError, OSError, p.ProtocolError) as e:
            raise errors.PluginLoadError(
                f"{self._spec.path}: the isolated plugin process failed to start ({self._exit_text(e)})") from None
        finally:
            self._sock.settimeout(None)

    # ---- calls ----------------------------------------------------------------
    def call(self, op: int, handle: int, timeout_ms: int, request_id: str, key_id: str,
             data: bytes) -> p.Frame:
        """The child's reply; Unavailable when the child died or overran the deadline."""
        call = _Call()
        call_id = next(self._ids) & 0xFFFFFFFF or next(self._ids)
        self._pending[call_id] = call
        try:
            # The threshold travels with every call: logging levels change without notice.
            frame = p.request(call_id, op, handle, timeout_ms, request_id, key_id, data,
                              log_threshold(self._logger))
            with self._send_lock:
                if not self.alive:
                    raise errors.Unavailable(self._unavailable())
                self._sock.sendall(frame)
        except OSError:
            self._pending.pop(call_id, None)
            self.kill("its socket failed")
            raise errors.Unavailable(self._unavailable()) from None
        except BaseException:
            self._pending.pop(call_id, None)
            raise
        if not call.done.acquire(timeout=timeout_ms / 1000 + GRACE_S):
            self.kill(f"a call overran its {timeout_ms} ms deadline (request {request_id})")
            call.done.acquire(timeout=5)  # the reader fails every pending call once the child is reaped
        if call.frame is None:
            raise errors.Unavailable(self._unavailable())
        return call.frame

    def _unavailable(self) -> str:
        return f"plugin {os.path.basename(self._spec.path)} (isolated): {self._reason or 'process exited'}; restarting"

    # ---- the reader thread --------------------------------------------------------
    def _read_loop(self) -> None:
        reason = None
        try:
            while True:
                frame = p.read_frame(self._sock, MAX_OUTPUT + 4096)
                if frame.op == p.OP_LOG:
                    self._log(frame)
                    continue
                call = self._pending.pop(frame.call_id, None)
                if call is None:
                    raise p.ProtocolError(f"a reply to unknown call {frame.call_id}")
                if frame.status == 0 and frame.op != p.OP_CREATE:
                    self.answered = True
                call.frame = frame
                call.done.release()
        except (EOFError, OSError) as e:
            reason = self._exit_text(e)
        except p.ProtocolError as e:
            reason = f"sent garbage: {e}"
        except Exception as e:  # never let the reader die silently
            reason = f"reader failed: {type(e).__name__}"
        self.kill(reason)
        self._reap()

    def _log(self, frame: p.Frame) -> None:
        level = frame.status if frame.status in (10, 20, 30, 40) else logging.INFO
        self._logger.log(level, "%s", _text(frame.data, 4096),
                         extra={"request_id": frame.request_id} if frame.request_id else None)

    # ---- the end ------------------------------------------------------------------
    def kill(self, reason: str) -> None:
        """Kill the child (once) and fail what is in flight; the reader reaps it."""
        with self._exit_lock:
            if not self.alive:
                return
            self.alive = False
            self._reason = reason
        try:
            self._proc.send_signal(signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
        except OSError:
            pass
        log.log(logging.INFO if reason == _CLOSED else logging.WARNING,
                "isolated plugin %s: %s; killed", self._spec.path, reason)
        self._on_exit(self)

    def _reap(self) -> None:
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._sock.close()
        for call_id in list(self._pending):
            call = self._pending.pop(call_id, None)
            if call is not None:
                call.done.release()

    def _kill_now(self) -> None:
        self.alive = False
        self._proc.kill()
        self._proc.wait(timeout=5)
        self._sock.close()

    def _exit_text(self, e: BaseException) -> str:
        try:
            rc = self._proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return f"{type(e).__name__} on its socket"
        if rc < 0:
            try:
                return f"process died of {signal.Signals(-rc).name}"
            except ValueError:
                return f"process died of signal {-rc}"
        return f"process exited with status {rc}"

    def close(self) -> None:
        self.kill(_CLOSED)


def _text(data: bytes, limit: int = 1024) -> str:
    try:
        return data[:limit].decode("utf-8")
    except UnicodeDecodeError:
        return "(the plugin's error message was not valid UTF-8)"


class Supervisor:
    """The current child of one plugin file, restarted on demand with backoff."""

    def __init__(self, spec: pinning.PluginSpec, runner: str | os.PathLike):
        self.spec = spec
        self.runner = str(runner)  # host.isolation.runner.path()
        self.logger = logging.getLogger(f"host.plugin.{os.path.basename(spec.path)}")
        self._lock = threading.Lock()
        self._child: Child | None = None
        self._generation = 0
        self._failures = 0
        self._next_start = 0.0
        self._closed = False

    @property
    def current(self) -> Child | None:
        return self._child

    def start(self) -> Child:
        """The first child; its load errors are the plugin's (PluginLoadError)."""
        with self._lock:
            return self._spawn()

    def child(self, deadline: float) -> Child:
        """A live child, started if needed; Unavailable when it cannot be had by `deadline`."""
        c = self._child
        if c is not None and c.alive:
            return c
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise errors.Unavailable(f"plugin {self.spec.path} (isolated) is restarting")
        try:
            c = self._child
            if c is not None and c.alive:
                return c
            if self._closed:
                raise errors.Unavailable(f"plugin {self.spec.path} (isolated) is closed")
            wait = self._next_start - time.monotonic()
            if wait > deadline - time.monotonic():
                raise errors.Unavailable(f"plugin {self.spec.path} (isolated) is restarting "
                                         f"(next attempt in {wait:.2f}s)")
            if wait > 0:
                time.sleep(wait)
            try:
                return self._spawn()
            except errors.PluginLoadError as e:
                self._failed()
                log.error("restarting isolated plugin failed: %s", e.message)
                raise errors.Unavailable(e.message) from None
        finally:
            self._lock.release()

    def _spawn(self) -> Child:
        self._generation += 1
        self._child = Child(self.spec, self.runner, self._generation, self.logger, self._exited)
        return self._child

    def _exited(self, child: Child) -> None:
        if child.answered:
            self._failures = 0  # it worked for a while: restart at once
            self._next_start = 0.0
        else:
            self._failed()

    def _failed(self) -> None:
        self._failures += 1
        self._next_start = time.monotonic() + min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._failures - 1))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._child is not None:
                self._child.close()
