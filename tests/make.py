"""make, as the tests run it: in the repository, and one at a time.

`make test` runs the suite on several pytest-xdist processes, and some tests build
what they use (build/asan for `make sanitize`, a plugin a test found stale). Two
makes writing the same target at once leave a truncated file for both, so every
make a test runs holds one lock file for its duration.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LOCK = ROOT / "build" / ".tests-make.lock"


def make(*targets: str, timeout: float = 900, **variables: str) -> subprocess.CompletedProcess:
    """Run make in the repository (text output captured); the caller checks the return code."""
    args = ["make", "--no-print-directory", *targets, *[f"{k}={v}" for k, v in variables.items()]]
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False, timeout=timeout)


def make_or_fail(*targets: str, **variables: str) -> None:
    """make, raising with make's output if it fails."""
    result = make(*targets, **variables)
    if result.returncode != 0:
        raise AssertionError(f"make {' '.join(targets)} failed:\n{result.stdout}\n{result.stderr}")
