"""A `--db` / PLATFORM_DB_URL naming a SQLite file, checked before anything opens it.

SQLAlchemy's `sqlite:///data/x.db` (three slashes) is the path `data/x.db` relative to
wherever the command runs, and the store creates a missing file: a typo or another
working directory silently gives a new, empty database. So a relative path is warned
about (naming the absolute one), and a missing directory is an error, never created.
The default (`.platform/platform.db`, made by `make run` and `platform db upgrade`) is exempt.
"""

from __future__ import annotations

import os

from host.errors import InvalidArgument


def check(url_text: str) -> str | None:
    """The warning to print for an explicit database URL, or None; InvalidArgument when its directory is missing."""
    from host.store.db import is_sqlite_file, parse_url

    url = parse_url(url_text)
    if not is_sqlite_file(url) or url.database.startswith("file:"):
        return None
    path = os.path.abspath(url.database)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise InvalidArgument(f"database directory {directory} does not exist (from {url_text!r}); "
                              f"create it first, or fix the URL (an absolute path has four slashes: sqlite:////...)")
    if not os.path.isabs(url.database):
        return (f"warning: database path {url.database!r} is relative to the current directory: {path} "
                f"(use sqlite:///{path} to name it from anywhere)")
    return None
