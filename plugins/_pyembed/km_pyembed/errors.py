"""Exceptions a plugin's manager raises; each carries its KM_* status code.

Their messages reach operators and clients verbatim: never put secrets,
tokens or key material in them. Any other exception becomes KM_ERR_INTERNAL
with a generic message (its type is logged through the host's log).
"""

from __future__ import annotations

# Status codes of include/keymanager.h.
KM_OK = 0
KM_ERR_INVALID_ARGUMENT = 1
KM_ERR_NOT_FOUND = 2
KM_ERR_PERMISSION_DENIED = 3
KM_ERR_UNAVAILABLE = 4
KM_ERR_DEADLINE_EXCEEDED = 5
KM_ERR_UNIMPLEMENTED = 6
KM_ERR_INTERNAL = 7
KM_ERR_CRYPTO = 8
KM_ERR_FAILED_PRECONDITION = 9  # 1.1; adapter.c gives a 1.0 host KM_ERR_INVALID_ARGUMENT instead


class ManagerError(Exception):
    """Base class; `status` is the KM_ERR_* code reported to the host."""

    status = KM_ERR_INTERNAL


class InvalidArgument(ManagerError):
    status = KM_ERR_INVALID_ARGUMENT


class NotFound(ManagerError):
    status = KM_ERR_NOT_FOUND


class PermissionDenied(ManagerError):
    status = KM_ERR_PERMISSION_DENIED


class Unavailable(ManagerError):
    status = KM_ERR_UNAVAILABLE


class DeadlineExceeded(ManagerError):
    status = KM_ERR_DEADLINE_EXCEEDED


class Unimplemented(ManagerError):
    status = KM_ERR_UNIMPLEMENTED


class Internal(ManagerError):
    status = KM_ERR_INTERNAL


class CryptoError(ManagerError):
    status = KM_ERR_CRYPTO


class FailedPrecondition(ManagerError):
    """The key exists but cannot do this operation (e.g. wrap with an RSA key)."""

    status = KM_ERR_FAILED_PRECONDITION


# host.errors classes (when a plugin reuses the host package) map by `code`.
HOST_CODES = {
    "invalid_argument": KM_ERR_INVALID_ARGUMENT,
    "not_found": KM_ERR_NOT_FOUND,
    "permission_denied": KM_ERR_PERMISSION_DENIED,
    "unauthenticated": KM_ERR_PERMISSION_DENIED,
    "unavailable": KM_ERR_UNAVAILABLE,
    "deadline_exceeded": KM_ERR_DEADLINE_EXCEEDED,
    "unimplemented": KM_ERR_UNIMPLEMENTED,
    "internal": KM_ERR_INTERNAL,
    "failed_precondition": KM_ERR_FAILED_PRECONDITION,
    "already_exists": KM_ERR_INVALID_ARGUMENT,
}

STATUS_NAMES = {
    KM_OK: "ok",
    KM_ERR_INVALID_ARGUMENT: "invalid_argument",
    KM_ERR_NOT_FOUND: "not_found",
    KM_ERR_PERMISSION_DENIED: "permission_denied",
    KM_ERR_UNAVAILABLE: "unavailable",
    KM_ERR_DEADLINE_EXCEEDED: "deadline_exceeded",
    KM_ERR_UNIMPLEMENTED: "unimplemented",
    KM_ERR_INTERNAL: "internal",
    KM_ERR_CRYPTO: "crypto",
    KM_ERR_FAILED_PRECONDITION: "failed_precondition",
}

MAX_MESSAGE = 512  # UTF-8 bytes; KM_MAX_ERROR_LEN (1024) is the ABI's bound


def one_line(text: str) -> str:
    """Messages cross the ABI as one bounded line of UTF-8 without NULs."""
    text = " ".join(str(text).replace("\x00", " ").split())
    raw = text.encode("utf-8", "replace")  # lone surrogates become "?"
    if len(raw) <= MAX_MESSAGE:
        return raw.decode("utf-8")
    return raw[: MAX_MESSAGE - 3].decode("utf-8", "ignore") + "..."


def status_of(exc: BaseException) -> tuple[int, str | None]:
    """(KM status, message) for an exception; message None = not a known kind."""
    if isinstance(exc, ManagerError):
        return exc.status, one_line(str(exc) or type(exc).__name__)
    for cls in type(exc).__mro__:
        if cls.__module__ == "host.errors":
            # host.errors.CryptoError reports code "invalid_argument"; keep it a crypto failure
            if type(exc).__name__ == "CryptoError" or cls.__name__ == "CryptoError":
                return KM_ERR_CRYPTO, one_line(str(exc))
            code = getattr(exc, "code", None)
            if isinstance(code, str) and code in HOST_CODES:
                return HOST_CODES[code], one_line(str(exc))
            break
    if isinstance(exc, NotImplementedError):
        return KM_ERR_UNIMPLEMENTED, "operation not supported by this manager"
    return KM_ERR_INTERNAL, None
