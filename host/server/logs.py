"""Structured JSON logs for the server: one object per line on stderr.

Every line carries the request id when there is one. Nothing here ever logs
a token, a request body, config_json or key material: callers pass only the
fields below, and unexpected exceptions are logged by type and location
(file:line), not by message, since messages may echo input.

Each RPC writes exactly one line at info (`access`): msg "rpc" with method,
path, Connect code, duration and identity, or for a Rewrap that reached its
handler msg "rewrap" with the same fields plus the outcome (permitted/failed
objects, how the request token was verified, the error codes). That line is
the KAS audit trail, so it stays at info for successes too; it is built
without a caller lookup. On an event loop the lines of the calls that finish
in one pass of the loop are formatted and written together (one write and
flush) at the end of that pass, when the responses have been handed over:
formatting a line right after a Rewrap's crypto cost ~25 us (the code runs
cache-cold), a run of them a third of that. A line's content and timestamp
are what they were; lines logged otherwise during that pass (warnings) may
precede it. Off a loop (threads, the CLI) a line is written at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import os
import time
import traceback

import orjson

from host.loop_batch import LoopBatch

LOGGER_NAME = "platform.server"
_log = logging.getLogger(LOGGER_NAME)


class JsonFormatter(logging.Formatter):
    _second = -1
    _second_text = ""

    def line(self, created: float, level: str, logger: str, msg: str, fields: dict | None) -> str:
        second = int(created)
        if second != self._second:  # strftime once per second, not once per line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        doc = {"ts": f"{self._second_text}.{int((created - second) * 1000):03d}Z", "level": level,
               "logger": logger, "msg": msg}
        if fields:
            doc.update(fields)
        return _dumps(doc)

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record.created, record.levelname.lower(), record.name, record.getMessage(),
                         getattr(record, "fields", None))


# orjson writes the same compact JSON as json.dumps(separators=(",", ":")) for documents of
# plain str/int/bool/None values, floats written without an exponent, and lists of those,
# several times faster. Anything else (objects the stdlib formats with str(), enums, NaN,
# exponents, integers beyond 64 bits, non-ASCII or DEL the stdlib escapes) goes to the
# stdlib, so every line reads byte for byte as before.
_SCALARS = frozenset((str, int, bool, type(None)))


def _orjson_writes_as_stdlib(doc: dict) -> bool:
    for value in doc.values():  # a plain loop: no call for the scalars that make up most lines
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not (value == 0.0 or 1e-4 <= abs(value) < 1e16):
                return False
        elif kind is not list or not _SCALARS.issuperset(map(type, value)):
            return False
    return True


def _dumps(doc: dict) -> str:
    if _orjson_writes_as_stdlib(doc):
        try:
            out = orjson.dumps(doc)  # refuses keys that are not str, as well as ints beyond 64 bits
            if out.isascii() and b"\x7f" not in out:
                return out.decode("ascii")
        except orjson.JSONEncodeError:
            pass
    return json.dumps(doc, separators=(",", ":"), default=str)


# The trees that write JSON lines: the server's, and the host's (registry, loader, and every
# plugin's km_host.log lines under host.plugin.<file>, tagged with plugin and request id).
LOGGER_TREES = (LOGGER_NAME.split(".")[0], "host")


def configure(verbosity: int = 0, stream=None) -> None:
    """JSON lines on stderr for the server's loggers and the host's, once per process."""
    if any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger(LOGGER_TREES[0]).handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in LOGGER_TREES:
        tree = logging.getLogger(name)
        tree.addHandler(handler)
        tree.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
        tree.propagate = False
    from host.loader import sync_log_levels  # plugins loaded earlier skip lines below the new level
    sync_log_levels()


def new_request_id() -> str:
    """16 hex digits: a random per-process prefix and a counter. Unique, not secret (it only
    correlates a response or an error message with its log line), so no syscall per request."""
    return f"{_id_prefix}{next(_id_counter) & 0xFFFFFFFF:08x}"


def _reset_request_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = os.urandom(4).hex(), itertools.count()


_reset_request_ids()
os.register_at_fork(after_in_child=_reset_request_ids)  # worker processes never share a prefix


def info(msg: str, **fields) -> None:
    _log.info(msg, extra={"fields": fields})


def warning(msg: str, **fields) -> None:
    _log.warning(msg, extra={"fields": fields})


def access(*, request_id: str, method: str, path: str, code: str, seconds: float, identity: str | None,
           event: str = "rpc", fields: dict | None = None) -> None:
    """The one line per RPC: `event` "rpc", or what the handler named it ("rewrap") with its own `fields`."""
    if _log.disabled or not _log.isEnabledFor(logging.INFO):
        return
    doc = {"request_id": request_id, "http_method": method, "path": path, "code": code,
           "duration_ms": round(seconds * 1000, 3)}
    if identity:
        doc["identity"] = identity
    if fields:
        doc.update(fields)
    _lines.add((time.time(), event, doc))


def _write_lines(lines: list) -> None:
    """Write access lines, (time.time(), msg, fields) each, in one write and flush."""
    handler = _direct_handler()
    if handler is not None:
        # Written the way the handler would write them, without building a LogRecord (caller
        # lookup, thread and process names) on the way.
        line, terminator = handler.formatter.line, handler.terminator
        try:
            text = "".join([line(created, "info", LOGGER_NAME, event, doc) + terminator
                            for created, event, doc in lines])
            handler.acquire()
            try:
                handler.stream.write(text)
                handler.stream.flush()
            finally:
                handler.release()
            return
        except Exception:
            pass  # let logging's own path write them or report why it cannot
    for created, event, doc in lines:
        _log.handle(_log.makeRecord(LOGGER_NAME, logging.INFO, __file__, 0, event, (), None, extra={"fields": doc}))


# Access lines are written once per loop pass; flush_access() writes the queued ones now.
_lines = LoopBatch(_write_lines)
flush_access = _lines.flush


def _direct_handler() -> logging.StreamHandler | None:
    """The JSON handler `configure` installed, when an info line from the server logger reaches
    that handler and nothing else (no other handlers, no filters); else None."""
    parent = _log.parent
    if _log.handlers or _log.filters or not _log.propagate or parent is None or parent.name != "platform":
        return None
    if parent.filters or parent.propagate or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    if (type(handler) is not logging.StreamHandler or type(handler.formatter) is not JsonFormatter
            or handler.filters or handler.level > logging.INFO):
        return None
    return handler


def unexpected(exc: BaseException, **fields) -> None:
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    where = [f"{f.filename.rsplit('/', 2)[-2:][-1]}:{f.lineno}:{f.name}" for f in frames]
    _log.error("unexpected error", extra={"fields": {**fields, "error_type": type(exc).__name__, "where": where}})
