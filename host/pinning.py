"""Plugin files the operator meant: `PATH#sha256=HEX` pins and a writable-file guard.

A plugin runs with the platform's rights, so whoever can replace the file
(or rename another into its directory) owns the KAS. Files and directories
that are group- or world-writable are refused unless
PLATFORM_ALLOW_WRITABLE_PLUGINS=1; sticky directories (/tmp) are accepted,
since others cannot replace entries they do not own.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

from host import errors

ALLOW_WRITABLE_ENV = "PLATFORM_ALLOW_WRITABLE_PLUGINS"
ISOLATED_PREFIX = "isolated:"
_PIN = "#sha256="


@dataclass(frozen=True)
class PluginSpec:
    """One --key-manager-plugin value: [isolated:]PATH[#sha256=HEX]."""

    path: str
    isolated: bool = False
    sha256: str | None = None

    @classmethod
    def parse(cls, text: str) -> "PluginSpec":
        isolated = text.startswith(ISOLATED_PREFIX)
        rest = text[len(ISOLATED_PREFIX):] if isolated else text
        path, sep, digest = rest.partition(_PIN)
        if sep:
            digest = digest.lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise errors.PluginLoadError(f"{path}: #sha256= must be followed by 64 hex digits")
        if not path:
            raise errors.PluginLoadError(f"{text!r}: no plugin path")
        return cls(path, isolated, digest if sep else None)


def digest_of_fd(fd: int) -> str:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    os.lseek(fd, 0, os.SEEK_SET)
    return h.hexdigest()


def file_digest(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return digest_of_fd(fd)
    finally:
        os.close(fd)


def check_writable(path: str) -> None:
    """Refuse a plugin file, or a directory above it, that others may write."""
    if os.environ.get(ALLOW_WRITABLE_ENV) == "1":
        return
    real = os.path.realpath(path)
    here = real
    while True:
        try:
            st = os.stat(here)
        except OSError:
            return  # a missing file is the loader's error to report
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_dir:
            what = "file" if here == real else f"directory {here}"
            raise errors.PluginLoadError(
                f"{path}: the plugin {what} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o}); "
                f"remove the write bits or set {ALLOW_WRITABLE_ENV}=1")
        parent = os.path.dirname(here)
        if parent == here:
            return
        here = parent


def verify(spec: PluginSpec, fd: int | None = None) -> str:
    """Check permissions and the pinned digest (of the open fd when given); the digest."""
    check_writable(spec.path)
    if fd is None:
        try:
            actual = file_digest(spec.path)
        except FileNotFoundError:
            raise errors.PluginLoadError(f"{spec.path}: no such file") from None
        except OSError as e:
            raise errors.PluginLoadError(f"{spec.path}: cannot read: {e.strerror}") from None
    else:
        actual = digest_of_fd(fd)
    if spec.sha256 is not None and actual != spec.sha256:
        raise errors.PluginLoadError(
            f"{spec.path}: sha256 is {actual}, but the pin requires {spec.sha256}; refusing to load")
    return actual
