"""Where km-plugin-host, the child that runs an `isolated:` plugin, comes from.

In order:

1. `PLATFORM_ISOLATED_RUNNER=/path/km-plugin-host`: one the operator built or packaged;
2. a checkout's `build/km-plugin-host` (`make plugins`), when it is newer than its sources;
3. otherwise it is built on first use from the C sources the package ships
   (`runner_src/`, `keymanager.h`) with the system C compiler (`$CC`, default `cc`)
   into `$XDG_CACHE_HOME/kas-keymanager-host/` (default `~/.cache/...`), named by a
   digest of sources, compiler and flags: an upgrade builds a new one, never runs a stale one.

The wheel stays pure Python (one wheel for every platform); the price is a C
compiler on the first isolated load, or `platform plugins runner` run once at
image build time (it prints the path, building it if needed).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import subprocess
from pathlib import Path

from host import errors, pinning
from host.abi import INCLUDE_DIR

ENV = "PLATFORM_ISOLATED_RUNNER"
SOURCE_DIR = Path(__file__).resolve().parent / "runner_src"  # in a checkout: links into runner/
SOURCE = SOURCE_DIR / "km_plugin_host.c"
PROTOCOL_H = SOURCE_DIR / "protocol.h"
# runner/runner.mk's hardening, without its warnings and debug info
FLAGS = ("-O2", "-std=c11", "-fPIC", "-Wl,-z,now", "-Wl,-z,relro")
LIBS = ("-ldl", "-lpthread")
BUILD_TIMEOUT_S = 120
_CHECKOUT = Path(__file__).resolve().parents[2]
_CHECKOUT_RUNNER = _CHECKOUT / "build" / "km-plugin-host"


def _sources() -> tuple[Path, ...]:
    return SOURCE, PROTOCOL_H, INCLUDE_DIR / "keymanager.h"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or "cc")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kas-keymanager-host"


def cached_path() -> Path:
    h = hashlib.sha256(repr((_compiler(), FLAGS, LIBS)).encode())
    for src in _sources():
        h.update(src.read_bytes())
    return cache_dir() / f"km-plugin-host-{h.hexdigest()[:16]}"


def _checkout_runner() -> Path | None:
    """build/km-plugin-host of a checkout, unless make has not rebuilt it since a source changed."""
    if not (_CHECKOUT / "runner" / "runner.mk").is_file() or not _CHECKOUT_RUNNER.is_file():
        return None
    built = _CHECKOUT_RUNNER.stat().st_mtime
    return _CHECKOUT_RUNNER if all(src.stat().st_mtime <= built for src in _sources()) else None


def find() -> Path | None:
    """The runner to use if one exists already (nothing is built)."""
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    checkout = _checkout_runner()
    if checkout:
        return checkout
    cached = cached_path()
    return cached if cached.is_file() else None


def path() -> Path:
    """The runner to start, building it into the cache first if needed."""
    found = find()
    if found is not None:
        if not os.access(found, os.X_OK) or not found.is_file():
            raise errors.PluginLoadError(f"{ENV}={found}: not an executable file")
        pinning.check_writable(str(found))  # it runs plugins with the server's rights
        return found
    return build()


def build() -> Path:
    target = cached_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # serve --workers N: one compiles, the others wait for it
        if not target.is_file():
            _compile(target)
    pinning.check_writable(str(target))
    return target


def _compile(target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cc = _compiler()
    cmd = [*cc, *FLAGS, f"-I{INCLUDE_DIR}", f"-I{SOURCE_DIR}", "-o", str(tmp), str(SOURCE), *LIBS]
    prebuilt = f"set {ENV} to a prebuilt km-plugin-host"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise errors.PluginLoadError(f"isolated plugins need km-plugin-host, built on first use with "
                                     f"{cc[0]!r}, which is not installed: install a C compiler (Debian: apt-get install gcc) "
                                     f"or {prebuilt}") from None
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise errors.PluginLoadError(f"building km-plugin-host with {cc[0]} took over {BUILD_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        detail = " | ".join(proc.stderr.strip().splitlines()[:3])
        raise errors.PluginLoadError(f"building km-plugin-host with {cc[0]} failed ({detail}); {prebuilt}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
