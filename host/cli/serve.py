"""`platform serve`: the platform as a server (Connect APIs, KAS endpoints, health, metrics).

    platform [--key-manager-plugin PATH ...] [--db URL] serve [--host 127.0.0.1] [--port 8080] [--workers N]

Credentials come from the environment (see host.server.auth). The database,
plugins and root key are checked once before listening, so configuration
errors are one line and the exit status is 1; then each worker process builds
its own Platform.

On granian the app is served through RSGI (host.server.rsgi adapts it to the
same ASGI callable uvicorn runs); PLATFORM_GRANIAN_INTERFACE=asgi selects
granian's ASGI interface instead. The event loop is uvloop when installed.
"""

from __future__ import annotations

import os
import tempfile

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
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Aggregate /metrics across workers (prometheus_client multiprocess mode). Set before
        # prometheus_client is first imported, since it picks its storage at import time.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="platform-metrics-")
    from host.server import app as server_app
    from host.server import logs

    logs.configure(platform.settings.verbosity)
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

        Granian(target, address=host, port=port, interface=interface, workers=workers, factory=True,
                log_access=False, log_level="warning", backlog=1024, http=HTTPModes.http1,
                loop=Loops(loop)).serve()
    else:
        import uvicorn

        logs.info("listening", url=f"http://{host}:{port}", workers=workers, server=server_impl, loop=loop,
                  interface="asgi")

        uvicorn.run(target, factory=True, host=host, port=port, workers=workers, lifespan="on",
                    log_level="warning", access_log=False, server_header=False, loop=loop)
