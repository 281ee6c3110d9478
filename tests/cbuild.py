"""Compile small C test plugins at test time (gcc is on every machine here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ROOT / "include"


def build_shared(source: Path, out: Path, defines: dict[str, str | None] | None = None,
                 libs: tuple[str, ...] = ()) -> Path:
    args = ["gcc", "-std=gnu11", "-shared", "-fPIC", "-fvisibility=hidden", "-O1", f"-I{INCLUDE}",
            str(source), "-o", str(out), "-lpthread", *[f"-l{lib}" for lib in libs]]
    for name, value in (defines or {}).items():
        args.insert(1, f"-D{name}" if value is None else f"-D{name}={value}")
    subprocess.run(args, check=True, capture_output=True, text=True)
    return out
