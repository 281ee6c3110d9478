"""HTTP emulators of external key services (Vault transit, Azure Key Vault).

Each one follows the service's documented HTTP API on a loopback port, so
the code under test talks to it through its ordinary SDK and cannot tell.
"""

import threading


class LoopbackEmulator:
    """Start/stop (and `with`) shared by the emulators: `self._server` (a socketserver) served on
    a daemon thread; `self._running` (an Event) set on stop so that held requests finish."""

    thread_name = "emulator"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running.set()
        self._server.shutdown()
        self._server.server_close()
        self.after_stop()

    def after_stop(self) -> None:
        """Release what the emulator made besides its socket (files); nothing by default."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
