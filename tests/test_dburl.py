"""`--db sqlite:///data/x.db` from a CLI: a relative path is warned about with its absolute form,
a directory that must be created is said so, not a new empty database made silently (the real console script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLATFORM = Path(sys.executable).parent / "platform"


def _run(tmp_path: Path, url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    return subprocess.run([str(PLATFORM), "--db", url, "policy", "kas-registry", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_missing_directory_is_said_to_be_created(tmp_path):
    proc = _run(tmp_path, "sqlite:///data/x.db")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: database directory {tmp_path / 'data'} does not exist: creating it" in proc.stderr
    assert (tmp_path / "data" / "x.db").is_file()


def test_a_relative_path_is_warned_about_with_its_absolute_form(tmp_path):
    (tmp_path / "data").mkdir()
    proc = _run(tmp_path, "sqlite:///data/x.db")
    assert proc.returncode == 0, proc.stderr
    assert f"use sqlite:///{tmp_path / 'data' / 'x.db'}" in proc.stderr
    quiet = _run(tmp_path, f"sqlite:///{tmp_path / 'data' / 'x.db'}")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
