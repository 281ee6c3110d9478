"""`platform serve`: the platform as a server (Connect APIs, KAS endpoints, health, metrics).

    platform [--key-manager-plugin PATH ...] [--db URL] serve [--host 127.0.0.1] [--port 8080] [--workers N]

Credentials come from the environment (see host.server.auth). The database,
plugins and root key are checked once before listening, so configuration
errors are one line and the exit status is 1; then each worker process builds
its own Platform.

On granian the app is served through RSGI (host.server.rsgi adapts it to the
same ASGI callable uvicorn runs); PLATFORM_GRANIAN_INTERFACE=asgi selects
granian's ASGI interface instead. The event loop is uvloop when installed.

Staying up: a worker that dies (a plugin crash, the OOM killer) is replaced, and
said so in the JSON log (granian's lines, as JSON) and in /metrics
(`platform_worker_starts_total` counts every worker start, so starts beyond
--workers are respawns). Should granian itself give up (it does when a respawned
worker dies again within seconds), the server is started again after a pause.
A port another process listens on is a start-up error, not a shared port.
Connection limits: host.server.limits.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import sys
import tempfile
import time

import click

from host.cli import main

DEFAULT_SERVER = "granian"


def _event_loop() -> str:
    """"uvloop" when it is importable (less CPU per request on the loop), else "asyncio"."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (each loads the plugins and opens its own database pool).")
@click.option("--server", "server_impl", type=click.Choice(["granian", "uvicorn"]), default=DEFAULT_SERVER,
              show_default=True, envvar="PLATFORM_ASGI_SERVER", help="ASGI server implementation.")
@click.pass_obj
def serve(platform, host, port, workers, server_impl):
    """Serve the Connect APIs (policy + KAS), /healthz, /readyz and /metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Aggregate /metrics across workers, and across a dead worker and its replacement
        # (prometheus_client multiprocess mode). prometheus_client picks its storage when it is
        # imported and granian forks its workers from this process, so when the CLI's imports
        # already brought it in, start this command again with the directory set.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="platform-metrics-")
        if "prometheus_client" in sys.modules:
            os.execv(sys.executable, [sys.executable, "-m", "host.cli", *sys.argv[1:]])
    from host.server import app as server_app
    from host.server import logs
    from host.server.limits import ServerLimits

    logs.configure(platform.settings.verbosity)
    limits = ServerLimits.from_env(os.environ)
    _check_port_free(host, port)
    _raise_open_files_limit(limits.max_connections * workers + 256)
    os.environ[server_app.SETTINGS_ENV] = server_app.settings_to_env(platform.settings)

    # Preflight in this process: credentials, database, plugins, root key. Errors are PlatformError
    # (one line, exit 1) before any port is bound.
    preflight = server_app.build_app(platform)
    preflight.warm_up()
    platform.close()

    loop = _event_loop()
    target = "host.server.app:app_from_env"
    if server_impl == "granian":
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops

        # RSGI: less of granian's per-request glue than ASGI; the app serves both (host.server.rsgi).
        interface = Interfaces.ASGI if os.environ.get("PLATFORM_GRANIAN_INTERFACE") == "asgi" else Interfaces.RSGI
        logs.info("listening", url=f"http://{host}:{port}", workers=workers, server=server_impl, loop=loop,
                  interface=interface.value)

        from granian.http import HTTP1Settings

        while True:
            server = Granian(
                target, address=host, port=port, interface=interface, workers=workers, factory=True,
                log_access=False, log_level="info", log_dictconfig=_granian_json_logs(), backlog=1024,
                http=HTTPModes.http1, loop=Loops(loop), respawn_failed_workers=True, respawn_interval=1.0,
                backpressure=limits.max_connections,
                http1_settings=HTTP1Settings(header_read_timeout=limits.header_timeout_ms, keep_alive=True))
            try:
                server.serve()
            except SystemExit:  # granian's exit after a worker crash loop (or a failed start)
                if getattr(server, "interrupt_signal", True):
                    raise
            if getattr(server, "interrupt_signal", True):  # stopped by a signal: we are done
                return
            logs.warning("server stopped without a signal (worker crash loop); starting it again",
                         pause_seconds=CRASH_LOOP_PAUSE_S)
            time.sleep(CRASH_LOOP_PAUSE_S)
    else:
        import uvicorn

        logs.info("listening", url=f"http://{host}:{port}", workers=workers, server=server_impl, loop=loop,
                  interface="asgi")

        uvicorn.run(target, factory=True, host=host, port=port, workers=workers, lifespan="on",
                    log_level="warning", access_log=False, server_header=False, loop=loop,
                    timeout_keep_alive=max(1, limits.header_timeout_ms // 1000),
                    limit_concurrency=limits.max_connections * workers)


CRASH_LOOP_PAUSE_S = 0.5


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on. granian binds with SO_REUSEPORT, so a second
    server would otherwise start silently beside the first and take a share of its requests;
    a plain bind (no SO_REUSEPORT) fails whenever any socket listens there."""
    from host.errors import FailedPrecondition as error

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are no conflict
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise error(f"port {port} on {host} is already in use (is another platform serve running?)") from None
            raise error(f"cannot listen on {host}:{port}: {e.strerror}") from None


def _raise_open_files_limit(wanted: int) -> None:
    """Every connection is a file descriptor: lift the soft limit towards what the connection
    limit needs (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _granian_json_logs() -> dict:
    """granian's own lines (worker exits, respawns) as JSON lines in the server's log."""
    return {
        "formatters": {"json": {"()": "host.server.logs.JsonFormatter"}},
        "handlers": {"console": {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
