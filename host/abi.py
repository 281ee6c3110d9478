"""cffi view of include/keymanager.h (ABI mode).

The cdef is read from the header itself, between the KM_ABI_BEGIN and
KM_ABI_END markers, so the header stays the one source of truth.
"""

from __future__ import annotations

import os
from pathlib import Path

import cffi

from host import errors

_BEGIN, _END = "/* KM_ABI_BEGIN */", "/* KM_ABI_END */"


# The header ships inside the package (in a checkout, host/include/keymanager.h is a
# symlink to include/keymanager.h), so an installed host and plugin authors outside
# the repository read the same file: `platform abi --include-dir`.
INCLUDE_DIR = Path(__file__).resolve().parent / "include"


def header_path() -> Path:
    override = os.environ.get("KM_HEADER")
    if override:
        return Path(override)
    return INCLUDE_DIR / "keymanager.h"


def _abi_declarations(text: str) -> str:
    try:
        return text.split(_BEGIN, 1)[1].split(_END, 1)[0]
    except IndexError:
        raise RuntimeError(f"{header_path()}: KM_ABI_BEGIN/KM_ABI_END markers not found") from None


ffi = cffi.FFI()
ffi.cdef(_abi_declarations(header_path().read_text(encoding="utf-8")))
_consts = ffi.dlopen(None)  # gives access to the #define integer constants

ABI_MAJOR: int = _consts.KM_ABI_VERSION_MAJOR
ABI_MINOR: int = _consts.KM_ABI_VERSION_MINOR

KM_OK = _consts.KM_OK
MAX_OUTPUT_LEN: int = _consts.KM_MAX_OUTPUT_LEN  # the host refuses a larger out_len, unread
MAX_ERROR_LEN: int = _consts.KM_MAX_ERROR_LEN    # longer *error messages are truncated

# KM_ERR_* -> host exception class (and so its Connect code): the one mapping on the Python side.
STATUS_ERRORS: dict[int, type[errors.PlatformError]] = {
    _consts.KM_ERR_INVALID_ARGUMENT: errors.InvalidArgument,
    _consts.KM_ERR_NOT_FOUND: errors.NotFound,
    _consts.KM_ERR_PERMISSION_DENIED: errors.PermissionDenied,
    _consts.KM_ERR_UNAVAILABLE: errors.Unavailable,
    _consts.KM_ERR_DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    _consts.KM_ERR_UNIMPLEMENTED: errors.Unimplemented,
    _consts.KM_ERR_INTERNAL: errors.Internal,
    _consts.KM_ERR_CRYPTO: errors.CryptoError,
    _consts.KM_ERR_FAILED_PRECONDITION: errors.FailedPrecondition,  # 1.1
}



def status_error(status: int, manager: str, op: str, message: str | None) -> errors.PlatformError:
    """The exception for a plugin's failing status, in-process or isolated alike."""
    cls = STATUS_ERRORS.get(status)
    if cls is None:
        return errors.PluginError(f"manager {manager!r} {op}: returned status {status}, "
                                  f"which is not a KM_* status code (plugin bug)")
    return cls(f"{manager} {op}: {message or cls.code.replace('_', ' ')}")


STATUS_NAMES: dict[int, str] = {
    KM_OK: "ok",
    **{code: cls.__name__ for code, cls in STATUS_ERRORS.items()},
}
STATUS_NAMES[_consts.KM_ERR_CRYPTO] = "crypto_failure"
for _code, _cls in STATUS_ERRORS.items():
    if _cls is not errors.CryptoError:
        STATUS_NAMES[_code] = _cls.code
