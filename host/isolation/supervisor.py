"""Keep one km-plugin-host child running per plugin file and route calls to it.

A `Child` is one process: calls are multiplexed over its socket by call id.
There is no reader thread in the way: a caller sends its request and, if no
other caller is reading the socket, reads it itself until its own reply is
there (answering the other callers' replies and forwarding log lines on the
way); otherwise it waits to be answered by the one reading, or to be handed
the reading when that one is done. One thread wake-up per call, not two
(a reader thread woken by the reply, then the caller woken by the reader).
A monitor thread enforces the reader's deadline and, between calls, forwards
log lines and notices a child that exited.

When the child dies, sends garbage or sits on a call past its deadline, it is
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
MONITOR_TICK_S = 0.05        # how late past deadline + GRACE_S a hung reader's child is killed, at most


class _Call:
    __slots__ = ("done", "frame", "deadline", "timeout_ms", "request_id", "waiting", "lead")

    def __init__(self, timeout_ms: int, request_id: str):
        self.done = threading.Lock()  # released when answered, failed, or handed the reading
        self.done.acquire()
        self.frame: p.Frame | None = None  # None when the child died first
        self.deadline = time.monotonic() + timeout_ms / 1000 + GRACE_S  # past it, the child is killed
        self.timeout_ms, self.request_id = timeout_ms, request_id
        self.waiting = False  # waiting on `done` for a reader: may be handed the reading
        self.lead = False     # handed the reading by the previous reader

    def overran(self) -> str:
        return f"a call overran its {self.timeout_ms} ms deadline (request {self.request_id})"


def _wake(call: _Call) -> None:
    try:
        call.done.release()
    except RuntimeError:  # already released (a hand-over and a failure at once): it is awake
        pass


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
        self._state = threading.Lock()  # _reading, _gone, and who waits
        self._reading = False  # a thread holds the reader role (only it touches _frames)
        self._gone = False     # reaped: every pending call was failed
        self._stopped = threading.Event()
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
        self._frames = p.FrameReader(parent, MAX_OUTPUT + 4096)
        try:
            self.hello = self._handshake()
        except BaseException:
            self._kill_now()
            raise
        threading.Thread(target=self._monitor, name=f"km-isolated-{os.path.basename(spec.path)}",
                         daemon=True).start()

    # ---- start-up -------------------------------------------------------------
    def _handshake(self) -> list[str]:
        self._sock.settimeout(STARTUP_LIMIT_S)
        try:
            for _ in range(100_000):  # log lines from km_plugin_init, then HELLO
                frame = self._frames.next()
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
        call = _Call(timeout_ms, request_id)
        call_id = next(self._ids) & 0xFFFFFFFF or next(self._ids)
        # The threshold travels with every call: logging levels change without notice.
        frame = p.request(call_id, op, handle, timeout_ms, request_id, key_id, data, log_threshold(self._logger))
        self._pending[call_id] = call
        try:
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
        self._await(call, timeout_ms / 1000 + GRACE_S)
        if call.frame is None:
            raise errors.Unavailable(self._unavailable())
        return call.frame

    def _await(self, call: _Call, limit_s: float) -> None:
        """Until `call` is answered or failed: read the socket if no one else does, else wait."""
        with self._state:
            if self._gone:
                return
            lead = not self._reading
            self._reading = self._reading or lead
            call.waiting = not lead
        if not lead:
            if not call.done.acquire(timeout=limit_s):
                self.kill(call.overran())
                call.done.acquire(timeout=5)  # the reader fails every pending call once the child is reaped
            with self._state:  # no hand-over to this call from now on; had one come, take it
                call.waiting = False
                lead = call.lead
            if not lead:
                return  # answered, or failed
        try:
            self._read_until(call)
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give up the reader role: to a caller still waiting for its reply, if there is one."""
        with self._state:
            for waiter in list(self._pending.values()):  # a snapshot: callers add to it unlocked
                if waiter.waiting and not waiter.lead:
                    waiter.lead = True
                    _wake(waiter)
                    return
            self._reading = False

    def _unavailable(self) -> str:
        return f"plugin {os.path.basename(self._spec.path)} (isolated): {self._reason or 'process exited'}; restarting"

    # ---- reading (one thread at a time: the one holding the reader role) ----------
    def _read_until(self, call: _Call | None) -> None:
        """Dispatch frames until `call` is answered (None: those that have arrived); on EOF or
        garbage, kill the child and fail every call in flight."""
        try:
            if call is None:
                for frame in self._frames.ready():
                    self._dispatch(frame)
                return
            while call.frame is None and not self._gone:
                self._dispatch(self._frames.next(), call)
            return
        except (EOFError, OSError) as e:
            reason = self._exit_text(e)
        except p.ProtocolError as e:
            reason = f"sent garbage: {e}"
        except Exception as e:  # never let a failure here go silently
            reason = f"reader failed: {type(e).__name__}"
        self.kill(reason)
        self._reap()

    def _dispatch(self, frame: p.Frame, reader: _Call | None = None) -> None:
        if frame.op == p.OP_LOG:
            self._log(frame)
            return
        call = self._pending.pop(frame.call_id, None)
        if call is None:
            raise p.ProtocolError(f"a reply to unknown call {frame.call_id}")
        if frame.status == 0 and frame.op != p.OP_CREATE:
            self.answered = True
        call.frame = frame
        if call is not reader:
            _wake(call)

    # ---- the monitor thread ---------------------------------------------------------
    def _monitor(self) -> None:
        """Kill the child when a call overran its deadline (the reader may be blocked on the
        socket); between calls, forward log lines and notice that the child went."""
        while not self._stopped.wait(MONITOR_TICK_S):
            now = time.monotonic()
            late = next((c for c in list(self._pending.values()) if now > c.deadline), None)
            if late is not None:
                self.kill(late.overran())
                break
            if self._pending:
                continue
            with self._state:
                if self._reading:
                    continue
                self._reading = True
            try:
                self._read_until(None)
            finally:
                self._hand_over()
        with self._state:  # killed: reap, unless a reader is at it (EOF wakes it)
            if self._reading or self._gone:
                return
            self._reading = True
        self._reap()
        self._hand_over()

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
        self._stopped.set()
        log.log(logging.INFO if reason == _CLOSED else logging.WARNING,
                "isolated plugin %s: %s; killed", self._spec.path, reason)
        self._on_exit(self)

    def _reap(self) -> None:
        """Wait for the killed child and fail every call in flight (by the reader role's holder)."""
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._sock.close()
        with self._state:
            self._gone = True
            failed = list(self._pending.values())
            self._pending.clear()
        for call in failed:
            _wake(call)

    def _kill_now(self) -> None:
        self.alive = False
        self._stopped.set()
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
