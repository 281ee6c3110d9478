"""A `--db` / PLATFORM_DB_URL naming a SQLite file, checked before anything opens it.

SQLAlchemy's `sqlite:///data/x.db` (three slashes) is the path `data/x.db` relative to
wherever the command runs, and the store creates a missing file: a typo or another
working directory silently gives a new, empty database. So a relative path is warned
about (naming the absolute one), and so is a directory that has to be created.
The default (`.platform/platform.db`, made by `make run` and `platform db upgrade`) is exempt.
"""

from __future__ import annotations

import os


def check(url_text: str) -> list[str]:
    """The warnings to print for an explicit database URL (none for a URL that is not a SQLite file)."""
    from host.store.db import is_sqlite_file, parse_url

    url = parse_url(url_text)
    if not is_sqlite_file(url) or url.database.startswith("file:"):
        return []
    path = os.path.abspath(url.database)
    warnings = []
    if not os.path.isabs(url.database):
        warnings.append(f"warning: database path {url.database!r} is relative to the current directory: {path} "
                        f"(use sqlite:///{path} to name it from anywhere)")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        warnings.append(f"warning: database directory {directory} does not exist: creating it and a new, empty "
                        f"database (if you meant an existing one, fix --db / PLATFORM_DB_URL)")
    return warnings
