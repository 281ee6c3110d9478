"""The key service: the one facade the CLI and the server call.

Key lifecycle lives in host.service.keys, the hot unwrap path in
host.service.unwrap; this class wires them to one store and registry.

The Rewrap path (host.kas.rewrap) uses only the methods under "the Rewrap
path" below. Each of them takes `now`: with now=True it answers from memory
only and returns NEEDS_IO where it would query the store or call a manager,
so a caller on an event loop can do the warm work inline and move the rest
to a thread.
"""

from __future__ import annotations

from host import errors
from host.managers.base import CallContext
from host.service.keys import KeyLifecycle, normalize_mode
from host.service.unwrap import NEEDS_IO, UnwrapPath, rewrap_to_client

__all__ = ["NEEDS_IO", "KeyService", "normalize_mode", "rewrap_to_client"]


class KeyService:
    def __init__(self, store, registry, root_key=None, **cache_options):
        self.store = store
        self.registry = registry
        self.unwrap_path = UnwrapPath(store, registry, **cache_options)
        self.lifecycle = KeyLifecycle(store, registry, self.unwrap_path, root_key=root_key)
        self._root_key = root_key

    def check_startup(self) -> None:
        """Refuse to start with local-mode keys but no root key to unwrap them."""
        if self._root_key is not None:
            return
        total = sum(1 for k in self.store.keys.iterate() if k.mode == "local")
        if total:
            raise errors.FailedPrecondition(
                f"the database holds {total} local-mode key(s) but no root key is configured: set PLATFORM_ROOT_KEY "
                f"(64 hex chars) or pass --root-key-file")

    # lifecycle
    def create_key(self, kas, key_id, algorithm, mode, **options):
        return self.lifecycle.create(kas, key_id, algorithm, mode, **options)

    def rotate_key(self, kas, key_id, new_key_id, **options):
        return self.lifecycle.rotate(kas, key_id, new_key_id, **options)

    def get_key(self, id=None, kas=None, key_id=None):
        return self.lifecycle.get(id=id, kas=kas, key_id=key_id)

    def find_key(self, ref, kas=None):
        return self.lifecycle.find(ref, kas=kas)

    def list_keys(self, kas=None, limit=None, offset=0, algorithm=None, legacy=None, sort=None, search=None):
        return self.lifecycle.list(kas=kas, limit=limit, offset=offset, algorithm=algorithm, legacy=legacy, sort=sort,
                                   search=search)

    def update_key_labels(self, id, labels, extend=True):
        return self.lifecycle.update_labels(id, labels, extend)

    def unsafe_update_key(self, id, target_mode, provider_config_id):
        return self.lifecycle.unsafe_update(id, target_mode, provider_config_id)

    def unsafe_delete_key(self, id, key_id, kas_uri):
        return self.lifecycle.unsafe_delete(id, key_id, kas_uri)

    def base_key(self):
        return self.lifecycle.base_key()

    def set_base_key(self, id=None, kas=None, key_id=None):
        return self.lifecycle.set_base_key(id=id, kas=kas, key_id=key_id)

    def public_key(self, kas=None, kid=None, algorithm=None):
        return self.lifecycle.public_key(kas=kas, kid=kid, algorithm=algorithm)

    # hot path
    def unwrap(self, kid: str, wrapped: bytes, ephemeral_public_key=None, kas=None,
               ctx: CallContext | None = None) -> bytes:
        kas_id = self.unwrap_path.kas_id(kas) if kas else None
        return self.unwrap_path.unwrap(kid, wrapped, ephemeral_public_key, kas_id, ctx)

    def rewrap(self, kid: str, wrapped: bytes, client_public_key_pem, ephemeral_public_key=None, kas=None,
               ctx: CallContext | None = None) -> dict:
        dek = self.unwrap(kid, wrapped, ephemeral_public_key, kas, ctx)
        return {"kid": kid, **rewrap_to_client(dek, client_public_key_pem)}

    # the Rewrap path (host.kas.rewrap)
    def kas_id(self, ref: str | None) -> str:
        """The id of the KAS named by id, uri or name (None: the only one). I/O: a query."""
        return self.lifecycle.kas(ref).id

    def kas_key(self, kid: str, kas_id: str, *, now: bool = False):
        """The key `kid` of KAS `kas_id` (NotFound when it has none)."""
        if now:
            key = self.unwrap_path.cached_key(kid, kas_id)
            return NEEDS_IO if key is None else key
        return self.unwrap_path.key(kid, kas_id)

    def active_public_key(self, kas_id: str, algorithm: str, *, now: bool = False):
        """The KAS's active key of `algorithm` (NotFound when it has none)."""
        if now:
            key = self.lifecycle.cached_public_key(kas_id, algorithm=algorithm)
            return NEEDS_IO if key is None else key
        return self.lifecycle.public_key(kas=kas_id, algorithm=algorithm)

    def kidless_candidates(self, kas_id: str, algorithm: str, limit: int, *, exclude: str | None = None) -> list:
        """The keys an object naming no key may be wrapped to besides the active one: the KAS's
        `algorithm` keys newest first (at most `limit`), without `exclude` (a KasKey id) and the
        public_key-mode keys, which cannot unwrap. I/O: a query."""
        keys, _ = self.lifecycle.list(kas=kas_id, limit=limit, algorithm=algorithm)
        return [k for k in keys if k.id != exclude and k.mode != "public_key"]

    def unwrap_with(self, key, wrapped: bytes, ephemeral_public_key=None, ctx: CallContext | None = None,
                    *, now: bool = False):
        """The DEK wrapped to `key` (a KasKey from kas_key or active_public_key)."""
        return self.unwrap_path.unwrap_with(key, wrapped, ephemeral_public_key, ctx, now=now)

    def shared_secret(self, key, ephemeral_public_key, ctx: CallContext | None = None, *, now: bool = False):
        """ECDH of EC key `key` with a parsed ephemeral public key (NanoTDF), wherever the key lives."""
        return self.unwrap_path.shared_secret(key, ephemeral_public_key, ctx, now=now)

    def stats(self) -> dict:
        return {**self.unwrap_path.stats(), "live_managers": self.registry.live_count()}

    def close(self) -> None:
        self.unwrap_path.close()

