"""The built-in `opentdf.io/basic` manager: the platform's root key as KEK.

It serves `local` (config-root-key) keys: their private keys are stored in
the database wrapped by the root key. Used as the fallback for a provider
config whose manager no loaded plugin registers, it refuses every call with
an error that names the missing manager and the flag that would load it.
"""

from __future__ import annotations

from host import errors
from host.managers.base import CallContext, Capability, ManagerFactory
from host.rootkey import RootKey

BASIC_MANAGER = "opentdf.io/basic"


class BasicManager:
    # Its error messages are the host's own words (no backend text): clients may see them.
    host_authored_errors = True

    def __init__(self, root_key: RootKey | None, missing_manager: str | None = None):
        self._root_key = root_key
        self._missing = missing_manager

    def __repr__(self) -> str:
        return f"BasicManager(missing_manager={self._missing!r})"

    def _key(self) -> RootKey:
        if self._missing is not None:
            raise errors.FailedPrecondition(
                f"no key manager named {self._missing!r} is loaded, so the default {BASIC_MANAGER} manager "
                f"handled this key and it only serves local (root-key) keys; start the platform with "
                f"--key-manager-plugin=<path to the plugin that registers {self._missing!r}> "
                f"(e.g. build/plugins/{self._missing}-manager.so)")
        if self._root_key is None:
            raise errors.FailedPrecondition(
                "no root key is configured: set PLATFORM_ROOT_KEY (64 hex chars) or --root-key-file")
        return self._root_key

    def wrap(self, key_id: str, plain: bytes, ctx: CallContext | None = None) -> bytes:
        return self._key().encrypt(plain)

    def unwrap(self, key_id: str, wrapped: bytes, ctx: CallContext | None = None) -> bytes:
        return self._key().decrypt(wrapped)

    def public_key(self, key_id: str, ctx: CallContext | None = None) -> str:
        self._key()
        raise errors.Unimplemented(f"{BASIC_MANAGER} holds no public keys of its own")

    def probe(self, ctx: CallContext | None = None) -> None:
        key = self._key()
        if key.decrypt(key.encrypt(b"probe")) != b"probe":
            raise errors.Internal("root key round trip failed")

    def close(self) -> None:
        pass


def basic_factory(root_key: RootKey | None) -> ManagerFactory:
    return ManagerFactory(
        name=BASIC_MANAGER,
        capabilities=Capability.THREAD_SAFE | Capability.WRAP | Capability.UNWRAP | Capability.PROBE,
        create=lambda config: BasicManager(root_key),
        plugin_name="built-in", plugin_version="", abi_version="",
    )
