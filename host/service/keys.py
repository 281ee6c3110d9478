"""KAS key lifecycle: create (all four modes), rotate, get, list, public key.

Validation follows OpenTDF's rules:
  mode        provider config   private key (wrapped)   public key
  local       forbidden         required (root key)     derived
  provider    required          required (manager.wrap) derived
  remote      required          absent (stays in KMS)   from manager or given
  public_key  forbidden         absent                  required
Better than otdfctl: provider mode without a private key generates one;
remote mode without a public key asks the manager for it.

OpenTDF's wire contract for an already wrapped private key (`wrapped_key`,
base64): we unwrap it once (root key or the provider's manager) to prove it is
a private key of the given public key, then store the caller's text as sent.
Public keys may be given as PEM or, as OpenTDF sends them, base64 of the PEM.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from host import crypto, errors
from host.managers.base import CallContext, Capability
from host.service.cache import BoundedCache

MODES = ("local", "provider", "remote", "public_key")
MODE_ALIASES = {
    "local": "local", "config_root_key": "local", "key_mode_config_root_key": "local",
    "provider": "provider", "provider_root_key": "provider", "key_mode_provider_root_key": "provider",
    "remote": "remote", "key_mode_remote": "remote",
    "public_key": "public_key", "public_key_only": "public_key", "key_mode_public_key_only": "public_key",
}
DEFAULT_ROOT_KEY_ID = "root"
PUBLIC_KEY_TTL = 2.0


def pem_text(value: str | None, field: str = "public_key_ctx.pem") -> str | None:
    """A PEM as text, from raw PEM or from base64 of the PEM text (OpenTDF's wire form)."""
    if value is None or value == "":
        return value or None
    if value.lstrip().startswith("-----BEGIN"):
        return value
    try:
        decoded = base64.b64decode("".join(value.split()), validate=True).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        decoded = ""
    if not decoded.lstrip().startswith("-----BEGIN"):
        raise errors.InvalidArgument(f"{field}: expected base64 encoded value (base64 of a PEM block, or the PEM)")
    return decoded


def pem_base64(pem: str | None) -> str:
    """OpenTDF's wire form of a PEM: base64 of its text."""
    return base64.b64encode(pem.encode("ascii")).decode("ascii") if pem else ""


def simple_key_document(key) -> dict:
    """A key as OpenTDF's SimpleKasKey in JSON (what otdfctl prints for a base key and what the
    well-known configuration publishes as `base_key`): the PEM itself, the algorithm by its CLI name."""
    return {"kas_id": key.kas_id, "kas_uri": key.kas_uri,
            "public_key": {"algorithm": key.algorithm, "kid": key.key_id, "pem": key.public_key_pem or ""}}


def _wrapped_bytes(wrapped_key: str) -> bytes:
    try:
        return base64.b64decode(wrapped_key, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidArgument("private_key_ctx.wrapped_key: expected base64 encoded value") from None


def normalize_mode(mode: str) -> str:
    m = MODE_ALIASES.get((mode or "").strip().lower().replace("-", "_"))
    if m is None:
        raise errors.InvalidArgument(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return m


class KeyLifecycle:
    def __init__(self, store, registry, unwrap_path, root_key=None):
        self._store = store
        self._registry = registry
        self._unwrap = unwrap_path
        self._root_key = root_key
        self._public_keys = BoundedCache("public_keys", 1024, ttl=PUBLIC_KEY_TTL)

    # ---- helpers -------------------------------------------------------------
    def kas(self, ref: str | None, relation: bool = False):
        """A KAS by id, uri or name; None -> the only registered KAS.

        relation: the KAS is referenced by a new key, so an unknown one is the
        caller's InvalidArgument (as OpenTDF's foreign-key violation), not NotFound."""
        if ref:
            try:
                return self._store.kas.get(ref)
            except errors.NotFound:
                if not relation:
                    raise
                raise errors.InvalidArgument(f"kas_id {ref!r} does not reference a registered KAS "
                                             f"(resource relation invalid)") from None
        servers, total = self._store.kas.list(limit=2)
        if total == 1:
            return servers[0]
        if total == 0:
            raise errors.FailedPrecondition("no KAS is registered; create one with `platform policy kas-registry create`")
        raise errors.InvalidArgument("several KAS are registered and none was named")  # no CLI flag: servers say this too

    # ---- create ---------------------------------------------------------------
    def prepare(self, kas, key_id: str, algorithm: str, mode: str, *, wrapping_key_id: str | None = None,
                wrapping_key: str | None = None, provider_config_id: str | None = None,
                public_key_pem: str | None = None, private_key_pem: str | None = None,
                wrapped_key: str | None = None, ctx: CallContext | None = None) -> dict:
        """Validate and do the cryptographic work of a key creation; returns the row fields.

        Runs before any row is written, so a manager that fails during wrap
        leaves nothing behind.
        """
        algorithm = crypto.check_algorithm(algorithm)
        mode = normalize_mode(mode)
        if not key_id or not key_id.strip():
            raise errors.InvalidArgument("key_id must not be empty")
        public_key_pem = pem_text(public_key_pem)
        config = None
        if mode in ("provider", "remote"):
            if not provider_config_id:
                raise errors.InvalidArgument(f"mode {mode} requires a provider config (--provider-config-id)")
            try:
                config = self._store.providers.get(id=provider_config_id)
            except errors.NotFound:
                raise errors.InvalidArgument(f"provider_config_id {provider_config_id} does not reference a "
                                             f"provider config (resource relation invalid)") from None
        elif provider_config_id:
            raise errors.InvalidArgument(f"mode {mode} must not have a provider config (remove --provider-config-id)")
        if mode == "remote" and algorithm in crypto.KEMS:
            factory = self._registry.factory(config.manager)
            if factory is not None and Capability.KEM not in factory.capabilities:  # None: manager_for says
                raise errors.InvalidArgument(f"manager {config.manager!r} does not decapsulate {algorithm} keys "
                                             f"(no KM_CAP_KEM): use local or provider mode for them")
        if mode in ("remote", "public_key") and (private_key_pem or wrapped_key):
            raise errors.InvalidArgument(f"mode {mode} keeps no private key here; remove the private key "
                                         f"(private_key_ctx.wrapped_key / --private-key-pem)")
        if wrapped_key and private_key_pem:
            raise errors.InvalidArgument("give the private key wrapped (wrapped_key) or in the clear, not both")
        if mode == "public_key" and not public_key_pem:
            raise errors.InvalidArgument("mode public_key requires --public-key-pem")
        if mode != "local" and wrapping_key:
            raise errors.InvalidArgument("--wrapping-key applies to local mode only")

        fields = {"algorithm": algorithm, "mode": mode, "provider_config_id": config.id if config else None}
        if mode == "public_key":
            pub = crypto.load_public_pem(public_key_pem, algorithm)
            fields.update(public_key_pem=crypto.public_pem(pub), private_key_ctx=None)
            return fields

        if mode == "remote":
            remote_id = wrapping_key_id or ""
            if public_key_pem and self._registry.factory(config.manager) is None:
                # The manager is not loaded here (the policy service and the KAS that holds the
                # plugin may be different nodes, as in OpenTDF): nothing to check the PEM against.
                # A remote key holds no secret, so this is public_key mode's trust, as OpenTDF's.
                pub = crypto.load_public_pem(public_key_pem, algorithm)
                fields.update(public_key_pem=crypto.public_pem(pub), private_key_ctx={"key_id": remote_id})
                return fields
            manager = self._registry.manager_for(config)
            from_manager = None
            try:
                from_manager = manager.public_key(remote_id, ctx)
            except errors.Unimplemented:
                if not public_key_pem:
                    raise errors.InvalidArgument(
                        f"manager {config.manager!r} cannot export public keys: pass --public-key-pem") from None
            if from_manager is not None:
                pub = crypto.load_public_pem(from_manager, algorithm, what=f"public key of {remote_id or 'the default key'} from {config.manager}")
                if public_key_pem and not crypto.same_public_key(pub, crypto.load_public_pem(public_key_pem, algorithm)):
                    raise errors.InvalidArgument("--public-key-pem does not match the public key the manager holds "
                                                 f"for {remote_id or 'its default key'}")
            else:
                pub = crypto.load_public_pem(public_key_pem, algorithm)
            fields.update(public_key_pem=crypto.public_pem(pub), private_key_ctx={"key_id": remote_id})
            return fields

        # local and provider: we hold the private key, wrapped.
        if wrapped_key:
            return {**fields, **self._adopt_wrapped(mode, config, wrapping_key_id, wrapped_key, public_key_pem,
                                                    algorithm, ctx)}
        if private_key_pem:
            private = crypto.load_private_pem(private_key_pem, algorithm)
        else:
            private = crypto.generate_private_key(algorithm)
        if public_key_pem and not crypto.same_public_key(private, crypto.load_public_pem(public_key_pem, algorithm)):
            raise errors.InvalidArgument("--public-key-pem does not match the private key")
        pem = crypto.private_pem(private)
        if mode == "local":
            if self._root_key is None:
                raise errors.FailedPrecondition(
                    "local mode needs the platform root key: set PLATFORM_ROOT_KEY or --root-key-file")
            if wrapping_key is not None:
                _check_wrapping_key_is_root(wrapping_key, self._root_key)
            wrapped = self._root_key.encrypt(pem)
            wrap_id = wrapping_key_id or DEFAULT_ROOT_KEY_ID
        else:
            manager = self._registry.manager_for(config)
            wrap_id = wrapping_key_id or ""
            wrapped = manager.wrap(wrap_id, pem, ctx)
        fields.update(public_key_pem=crypto.public_pem(private),
                      private_key_ctx={"key_id": wrap_id, "wrapped_key": base64.b64encode(wrapped).decode()})
        return fields

    def _adopt_wrapped(self, mode: str, config, wrapping_key_id: str | None, wrapped_key: str,
                       public_key_pem: str | None, algorithm: str, ctx) -> dict:
        """Check a caller-wrapped private key and keep it exactly as sent."""
        blob = _wrapped_bytes(wrapped_key)
        if mode == "local":
            if self._root_key is None:
                raise errors.FailedPrecondition(
                    "local mode needs the platform root key: set PLATFORM_ROOT_KEY or --root-key-file")
            try:
                plain = self._root_key.decrypt(blob)
            except errors.PlatformError:
                raise errors.InvalidArgument("private_key_ctx.wrapped_key was not wrapped by this platform's "
                                             "root key") from None
            wrap_id = wrapping_key_id or DEFAULT_ROOT_KEY_ID
        else:
            manager = self._registry.manager_for(config)
            wrap_id = wrapping_key_id or ""
            try:
                plain = manager.unwrap(wrap_id, blob, ctx)
            except errors.PlatformError as e:
                if e.code in ("invalid_argument", "not_found"):
                    raise errors.InvalidArgument(
                        f"private_key_ctx.wrapped_key could not be unwrapped by provider config {config.name!r} "
                        f"({config.manager}) with key {wrap_id or '(its default)'!r}") from None
                raise
        private = crypto.load_private_pem(plain, algorithm, what="the unwrapped private_key_ctx.wrapped_key")
        if public_key_pem and not crypto.same_public_key(private, crypto.load_public_pem(public_key_pem, algorithm)):
            raise errors.InvalidArgument("public_key_ctx.pem does not match the private key in "
                                         "private_key_ctx.wrapped_key")
        return {"public_key_pem": crypto.public_pem(private),
                "private_key_ctx": {"key_id": wrap_id, "wrapped_key": wrapped_key}}

    def create(self, kas: str | None, key_id: str, algorithm: str, mode: str, *, labels=None,
               legacy: bool = False, ctx: CallContext | None = None, **options):
        server = self.kas(kas, relation=True)
        fields = self.prepare(server, key_id, algorithm, mode, ctx=ctx, **options)
        key = self._store.keys.create(server.id, key_id, labels=labels, legacy=legacy, **fields)
        self._public_keys.clear()
        return key

    def rotate(self, kas: str | None, key_id: str, new_key_id: str, *, algorithm: str | None = None,
               mode: str | None = None, labels=None, ctx: CallContext | None = None, **options):
        """Create `new_key_id` and mark `key_id` rotated, atomically. Old wraps still unwrap."""
        server = self.kas(kas)
        old = self._store.keys.get_by_kid(key_id, server.id)
        if old.status != "active":
            raise errors.FailedPrecondition(f"key {key_id!r} is already rotated")
        new_mode = normalize_mode(mode or old.mode)
        if new_mode in ("provider", "remote"):
            options.setdefault("provider_config_id", old.provider_config_id)
        same_home = new_mode == old.mode and options.get("provider_config_id") == old.provider_config_id
        if options.get("wrapping_key_id") is None and old.private_key_ctx and same_home:
            # Same manager and mode: keep wrapping under the same key; a new home chooses its own default.
            options["wrapping_key_id"] = old.private_key_ctx.get("key_id") or None
        fields = self.prepare(server, new_key_id, algorithm or old.algorithm, mode or old.mode, ctx=ctx, **options)
        with self._store.transaction() as tx:
            new = tx.keys.create(server.id, new_key_id, labels=labels if labels is not None else old.labels, **fields)
            rotated = tx.keys.mark_rotated(old.id)
            base = tx.keys.base_key()
            if base is not None and base.id == old.id:  # the base key follows its rotation
                tx.keys.set_base_key(new.id)
        self._unwrap.forget()
        self._public_keys.clear()
        return new, rotated

    # ---- read -----------------------------------------------------------------
    def get(self, id: str | None = None, kas: str | None = None, key_id: str | None = None):
        if id:
            return self._store.keys.get(id)
        if not key_id:
            raise errors.InvalidArgument("give the key's id, or its key_id (and --kas when several KAS exist)")
        server_id = self._store.kas.get(kas).id if kas else None
        return self._store.keys.get_by_kid(key_id, server_id)

    def find(self, ref: str, kas: str | None = None):
        """A key by otdfctl's `--key`: its UUID, or its key id (on --kas when several KAS hold it)."""
        from host.store.validation import is_uuid

        if not ref:
            raise errors.InvalidArgument("--key must name a key (its id or key id)")
        if is_uuid(ref):
            try:
                return self.get(id=ref)
            except errors.NotFound:
                pass  # a key id may look like a UUID
        return self.get(kas=kas, key_id=ref)

    def list(self, kas: str | None = None, limit: int | None = None, offset: int = 0, algorithm: str | None = None,
             legacy: bool | None = None, sort: tuple[str, str] | None = None, search: str | None = None):
        server_id = self._store.kas.get(kas).id if kas else None
        return self._store.keys.list(kas_id=server_id, limit=limit, offset=offset, algorithm=algorithm,
                                     legacy=legacy, sort=sort, search=search)

    # ---- change -----------------------------------------------------------------
    def update_labels(self, id: str, labels: dict[str, str], extend: bool = True):
        return self._store.keys.update_labels(id, labels, extend)

    def unsafe_update(self, id: str, target_mode: str | None, provider_config_id: str | None):
        """OpenTDF's UnsafeUpdateKey: switch a key between remote and public_key mode, or move a remote
        key to another provider config; its key id, KAS and public key stay. Only remote and
        public-key-only keys can change (a local or provider key's private key is stored wrapped, so
        another mode would lose or invent it). target_mode None changes the provider config only."""
        key = self._store.keys.get(id)
        if key.mode not in ("remote", "public_key"):
            raise errors.InvalidArgument("existing key mode cannot be updated")
        if target_mode not in (None, "remote", "public_key"):
            raise errors.InvalidArgument("target key mode cannot be used for an unsafe update")
        if target_mode == "public_key":
            if provider_config_id:
                raise errors.InvalidArgument("provider_config_id must be empty for requested key mode")
        else:
            if not provider_config_id:
                raise errors.InvalidArgument("provider_config_id is required for requested key mode")
            if target_mode is None and key.mode != "remote":
                raise errors.InvalidArgument("existing key mode cannot receive provider_config_id update with "
                                             "unspecified key mode")
            try:
                self._store.providers.get(id=provider_config_id)
            except errors.NotFound:
                raise errors.NotFound("provider_config_id does not reference an existing provider config") from None
        updated = self._store.keys.unsafe_update(key.id, target_mode, provider_config_id or None)
        self._unwrap.forget()
        self._public_keys.clear()
        return updated

    def unsafe_delete(self, id: str, key_id: str, kas_uri: str):
        """Delete a key for good. key_id and kas_uri must repeat the key's, so a typo deletes nothing:
        whatever was wrapped to the key cannot be decrypted any more."""
        key = self._store.keys.get(id)
        if key.key_id != key_id:
            raise errors.InvalidArgument(f"key id mismatch: key {key.id} is not {key_id!r}")
        if key.kas_uri != kas_uri:
            raise errors.InvalidArgument(f"kas uri mismatch: key {key.id} is not on KAS {kas_uri!r}")
        deleted = self._store.keys.delete(key.id)
        self._unwrap.forget()
        self._public_keys.clear()
        return deleted

    def base_key(self):
        return self._store.keys.base_key()

    def set_base_key(self, id: str | None = None, kas: str | None = None, key_id: str | None = None):
        """(new, previous) base key; the key is named by id, or by key_id and KAS."""
        key = self.get(id=id, kas=kas, key_id=key_id)
        return self._store.keys.set_base_key(key.id)

    def public_key(self, kas: str | None = None, kid: str | None = None, algorithm: str | None = None):
        """The key a client should wrap to: by kid, or the active key of an algorithm.

        Cached briefly (every client asks before each encrypt); a rotation in
        this process clears the cache, one in another process is seen within
        PUBLIC_KEY_TTL seconds.
        """
        cache_key = (kas, kid, algorithm)
        key = self._public_keys.get(cache_key)
        if key is None:
            key = self._lookup_public_key(kas, kid, algorithm)
            self._public_keys.put(cache_key, key)
        return key

    def cached_public_key(self, kas: str | None = None, kid: str | None = None, algorithm: str | None = None):
        """What public_key answers when its cache holds it, else None (a look, no query)."""
        return self._public_keys.peek((kas, kid, algorithm))

    def _lookup_public_key(self, kas, kid, algorithm):
        if kid:
            server_id = self._store.kas.get(kas).id if kas else None
            return self._store.keys.get_by_kid(kid, server_id)
        server = self.kas(kas)
        algorithm = crypto.check_algorithm(algorithm or "rsa:2048")
        key = self._store.keys.active_for(server.id, algorithm)
        if key is None:
            raise errors.NotFound(f"KAS {server.uri} has no active {algorithm} key")
        return key


def _check_wrapping_key_is_root(wrapping_key: str, root_key) -> None:
    probe = b"wrapping-key-check"
    try:
        from host.rootkey import RootKey
        given = RootKey.from_hex(wrapping_key, "--wrapping-key")
    except errors.InvalidArgument:
        raise
    # Compare by behaviour, never by printing either key.
    blob = root_key.encrypt(probe)
    try:
        ok = hmac.compare_digest(given.decrypt(blob), probe)
    except errors.CryptoError:
        ok = False
    if not ok:
        raise errors.InvalidArgument("--wrapping-key is not this platform's root key; local keys are wrapped by the "
                                     "configured root key (PLATFORM_ROOT_KEY / --root-key-file)")
