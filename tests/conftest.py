"""Helpers shared by every test directory (fixtures live in each directory's conftest.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# `make test` (or plain pytest) uses the PostgreSQL these machines run on 127.0.0.1:5432 when
# PLATFORM_TEST_PG_URL is unset and it answers, as .ci/run does; the summary says which.
PG_ENV = "PLATFORM_TEST_PG_URL"
LOCAL_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_pg_source = ""


def pytest_configure(config) -> None:
    global _pg_source
    if os.environ.get(PG_ENV):
        _pg_source = f"PostgreSQL tests: {PG_ENV} as set"
        return
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        _pg_source = (f"PostgreSQL tests: SKIPPED, nothing answers on 127.0.0.1:5432 and {PG_ENV} is unset "
                      f"(start PostgreSQL or set {PG_ENV})")
        return
    os.environ[PG_ENV] = LOCAL_PG_URL
    _pg_source = f"PostgreSQL tests: {LOCAL_PG_URL} (answered on 127.0.0.1:5432)"


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(_pg_source)


# Produced by OpenTDF's own wrap/unwrap code (README beside it); a copy of the team's
# shared/vectors, kept in the repository so that a clone anywhere runs the vector tests.
PQC_VECTORS = Path(__file__).resolve().parent / "fixtures" / "vectors" / "opentdf-pqc-vectors.json"
