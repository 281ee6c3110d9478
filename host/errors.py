"""One exception class per failure kind, each carrying its Connect code.

Every layer (plugins, store, service, server) raises these, so the server
maps an exception to a Connect error without knowing where it came from.
Messages are for operators and clients: never put secrets in them.
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base class. `code` is the Connect/gRPC code name."""

    code = "unknown"
    # The manager whose backend (plugin) worded `message`, set by the key service as the error
    # passes; such text may name internal URLs or accounts, so the server shows clients only
    # the code (client_message) and puts the text in its log.
    source: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def client_message(self, request_id: str) -> str:
        """What a client of the server may read: the message, or for a backend's error where it is."""
        if self.source is None:
            return self.message
        return f"key manager {self.source!r} failed ({self.code}); details are in the server log (request id {request_id})"


class InvalidArgument(PlatformError):
    code = "invalid_argument"


class NotFound(PlatformError):
    code = "not_found"
    PREFIX = "resource not found"  # OpenTDF's words for every not_found (its db.ErrNotFound)

    def __init__(self, message: str = PREFIX, *, worded: bool = False):
        """`worded`: the message is the exact text to show (the CLI's as otdfctl's, a KAS result's)."""
        super().__init__(message)
        self.worded = worded

    @property
    def public_text(self) -> str:
        """The message as clients read it: OpenTDF's words first (the message itself stays as
        raised, for logs and for plugins, whose errors cross the ABI unchanged)."""
        if self.worded or self.message.startswith(self.PREFIX):
            return self.message
        return f"{self.PREFIX}: {self.message}"

    def client_message(self, request_id: str) -> str:
        return self.public_text if self.source is None else super().client_message(request_id)


class AlreadyExists(PlatformError):
    code = "already_exists"


class FailedPrecondition(PlatformError):
    code = "failed_precondition"


class PermissionDenied(PlatformError):
    code = "permission_denied"


class Unauthenticated(PlatformError):
    code = "unauthenticated"


class Unavailable(PlatformError):
    """The backend cannot take the call now. `retry_after` (seconds), when set, is sent to the
    client as a Retry-After header."""

    code = "unavailable"

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(PlatformError):
    code = "deadline_exceeded"


class Unimplemented(PlatformError):
    code = "unimplemented"


class Internal(PlatformError):
    code = "internal"


class CryptoError(PlatformError):
    """Ciphertext failed to authenticate or decrypt (tampered, wrong key).

    Reported to clients as `invalid_argument`/`permission_denied` by callers
    that know which; on its own it maps to Connect's `data_loss`-free choice
    `invalid_argument`.
    """

    code = "invalid_argument"


class PluginLoadError(PlatformError):
    """A plugin file could not be loaded; the message names file and reason."""

    code = "failed_precondition"


class PluginError(Internal):
    """A plugin broke the ABI contract (bad status, NULL output, bad UTF-8)."""
