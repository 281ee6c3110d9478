"""`platform doctor`: what is wrong with this setup, before a client finds out.

    platform [--config F] [--db URL] [--root-key-file F] [--key-manager-plugin P ...] doctor [--json]

One line per check, `ok`, `warn` or `FAIL`, each problem with its fix. It reads
the settings `platform serve` would use (same flags, environment and config
file) and changes nothing: no database file is created, no migration run, the
port is only bound for a moment to see that it is free. Exit status 1 when
any check failed (warnings do not count), else 0. Never prints a secret: the
root key and provider-config values are judged, not shown.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import asdict, dataclass

import click

from host import errors
from host.cli import main
from host.cli.output import echo_json

PROBE_TIMEOUT_S = 5.0
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


class Doctor:
    """Runs the checks in order; later ones use what earlier ones found (database, registry)."""

    def __init__(self, platform, host: str, port: int, skip_probes: bool):
        self.platform, self.host, self.port, self.skip_probes = platform, host, port, skip_probes
        self.checks: list[Check] = []
        self.root_key = None
        self.store = None
        self.registry = None
        self.plugins: list = []
        self.isolated = False

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    def run(self) -> list[Check]:
        try:
            for step in (self.root_key_check, self.database, self.plugin_files, self.runner, self.providers,
                         self.kas_identity, self.port_free, self.auth, self.key_cache):
                step()
        finally:
            if self.registry is not None:
                self.registry.close()
            if self.store is not None:
                self.store.close()
        return self.checks

    # ---- root key ---------------------------------------------------------------
    def root_key_check(self) -> None:
        from host.rootkey import load_root_key

        path = self.platform.settings.root_key_file
        source = "PLATFORM_ROOT_KEY" if os.environ.get("PLATFORM_ROOT_KEY") else path
        if source is None:
            self.add("root key", FAIL, "none configured: local-mode keys cannot be used and provider-config "
                     "secrets would be stored unencrypted",
                     "openssl rand -hex 32 > root.key && chmod 600 root.key, then --root-key-file root.key "
                     "(or root_key.file in the config file)")
            return
        try:
            self.root_key = load_root_key(path)
        except errors.PlatformError as e:  # the messages name the source and length, never the key
            if path and source == path and not os.path.exists(path):
                fix = f"openssl rand -hex 32 > {path} && chmod 600 {path} (or fix the path)"
            else:
                fix = "it must hold exactly 64 hex characters: openssl rand -hex 32"
            self.add("root key", FAIL, e.message, fix)
            return
        if source == path:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                self.add("root key", FAIL, f"{path} is readable or writable by others (mode {mode:o})",
                         f"chmod 600 {path}")
                return
        self.add("root key", OK, f"from {source}, 32 bytes")

    # ---- database ---------------------------------------------------------------
    def database(self) -> None:
        from host.store import Store, schema
        from host.store.db import Database, describe, is_sqlite_file, parse_url

        try:
            url = parse_url(self.platform.settings.effective_db_url)
        except errors.PlatformError as e:
            self.add("database", FAIL, e.message, "fix --db / PLATFORM_DB_URL / database.url")
            return
        where = describe(url)
        if is_sqlite_file(url):
            if self.platform.settings.db_url and not os.path.isabs(url.database):  # the default is relative by design
                self.add("database path", WARN, f"{url.database} is relative: it names "
                         f"{os.path.abspath(url.database)} from this directory only",
                         f"use an absolute path: sqlite:///{os.path.abspath(url.database)} (four slashes in all)")
            if not os.path.exists(url.database):
                self.add("database", FAIL, f"{where} does not exist",
                         "run `platform db upgrade` to create it, or point --db at the existing one")
                return
        try:
            db = Database.open(url)
            with db.connection() as conn:
                st = schema.status(conn)
        except errors.PlatformError as e:
            self.add("database", FAIL, f"{where}: {e.message}", "start the database or fix its URL")
            return
        if not st.up_to_date:
            db.close()
            state = "empty" if st.empty else f"at revision {st.current}"
            if st.current and st.current not in schema.known_revisions():
                self.add("database", FAIL, f"{where} is at {st.current}, newer than this platform (head {st.head})",
                         "upgrade the platform package")
            else:
                self.add("database", FAIL, f"{where} is {state}, this platform needs {st.head}",
                         "run `platform db upgrade`")
            return
        self.store = Store(db, root_key=self.root_key)
        self.add("database", OK, f"{where}, schema at head {st.head}")

    # ---- plugins ----------------------------------------------------------------
    def plugin_files(self) -> None:
        from host.pinning import PluginSpec, check_writable, file_digest
        from host.plugin_specs import load_one
        from host.registry import ManagerRegistry

        texts = self.platform.settings.plugin_paths
        if not texts:
            self.add("plugins", OK, "none configured (only the built-in opentdf.io/basic manager)")
        for text in texts:
            try:
                spec = PluginSpec.parse(text)
            except errors.PlatformError as e:
                self.add("plugin", FAIL, e.message, "write it as [isolated:]PATH[#sha256=64 hex]")
                continue
            name = f"plugin {spec.path}"
            self.isolated |= spec.isolated
            if not os.path.isfile(spec.path):
                self.add(name, FAIL, "no such file", "build it (`make plugins`) or fix the path "
                         "(--key-manager-plugin, PLATFORM_KEY_MANAGER_PLUGINS, plugins: in the config file)")
                continue
            try:
                check_writable(spec.path)
                plugin = load_one(text)
            except errors.PlatformError as e:
                self.add(name, FAIL, e.message, "rebuild the plugin, fix its mode or pin, or drop it")
                continue
            self.plugins.append(plugin)
            managers = ", ".join(f.name for f in plugin.factories)
            how = "isolated" if spec.isolated else "in-process"
            if spec.sha256:
                self.add(name, OK, f"loads ({how}, pinned): {managers}")
            else:
                digest = file_digest(spec.path)
                self.add(name, WARN, f"loads ({how}): {managers}; not pinned",
                         f"pin it: --key-manager-plugin {text}#sha256={digest}")
        try:
            self.registry = ManagerRegistry.with_builtins(self.plugins, root_key=self.root_key)
        except errors.PlatformError as e:  # two plugins registering one manager name
            self.add("plugins", FAIL, e.message, "load only one plugin per manager name")

    def runner(self) -> None:
        from host.isolation import runner

        try:
            found = runner.find()
        except errors.PlatformError as e:
            self.add("isolated runner", FAIL, e.message, f"fix {runner.ENV}")
            return
        status = FAIL if self.isolated else WARN
        if found is not None:
            if os.access(found, os.X_OK) and found.is_file():
                self.add("isolated runner", OK, f"km-plugin-host at {found}")
            else:
                self.add("isolated runner", status, f"{found} is not an executable file",
                         f"unset {runner.ENV} or point it at a built km-plugin-host")
            return
        cc = (os.environ.get("CC") or "cc").split()[0]
        if shutil.which(cc):
            self.add("isolated runner", OK, f"km-plugin-host will be built with {cc} on first isolated load "
                     f"(into {runner.cache_dir()})")
        else:
            self.add("isolated runner", status,
                     f"no km-plugin-host and no C compiler ({cc}) to build it: isolated: plugins cannot load",
                     f"install gcc, or set {runner.ENV} to a km-plugin-host built elsewhere "
                     f"(`platform plugins runner` prints its path)")

    # ---- provider configs and keys -------------------------------------------------
    def providers(self) -> None:
        if self.store is None or self.registry is None:
            self.add("provider configs", SKIP, "needs the database and the plugins")
            return
        from sqlalchemy import func, select

        from host.managers.base import CallContext
        from host.store.models import KasKeyRow, ProviderConfigRow

        with self.store.db.session() as s:
            rows = s.execute(select(ProviderConfigRow.id, ProviderConfigRow.name, ProviderConfigRow.manager,
                                    ProviderConfigRow.config_encrypted)).all()
            users = dict(s.execute(select(KasKeyRow.provider_config_id, func.count())
                                   .where(KasKeyRow.provider_config_id.is_not(None))
                                   .group_by(KasKeyRow.provider_config_id)).all())
        if not rows:
            self.add("provider configs", OK, "none")
        known = set(self.registry.names())
        for id_, name, manager, encrypted in rows:
            label = f"provider config {name!r} ({manager})"
            keys = users.get(id_, 0)
            if manager not in known:
                self.add(label, FAIL if keys else WARN,
                         f"no loaded plugin registers manager {manager!r}; {keys} key(s) use it",
                         f"load the plugin that provides {manager!r} with --key-manager-plugin PATH")
                continue
            if not encrypted:
                self.add(label, FAIL, "config_json is stored unencrypted (it may hold secrets)",
                         ("re-save it so the root key encrypts it: platform policy keymanagement provider update "
                          f"--id {id_} --config @FILE") if self.root_key is not None else
                         "configure a root key (see the root key line), then re-save it with "
                         f"`platform policy keymanagement provider update --id {id_} --config @FILE`")
                continue
            if self.skip_probes:
                self.add(label, OK, f"manager loaded; {keys} key(s); probe skipped")
                continue
            try:
                config = self.store.providers.get(id_)
                self.registry.manager_for(config).probe(CallContext.with_timeout(PROBE_TIMEOUT_S))
            except errors.PlatformError as e:
                self.add(label, FAIL, f"probe failed: {e.message} [{e.code}]",
                         "check the backend is reachable and the config's credentials and key ids")
                continue
            self.add(label, OK, f"probes within {PROBE_TIMEOUT_S:g} s; {keys} key(s)")

    def kas_identity(self) -> None:
        if self.store is None:
            self.add("KAS identity", SKIP, "needs the database")
            return
        ref = os.environ.get("PLATFORM_KAS")
        fix_set = "set PLATFORM_KAS (or kas.identity in the config file) to its id, uri or name"
        if ref:
            try:
                kas = self.store.kas.get(ref)
            except errors.PlatformError:
                self.add("KAS identity", FAIL, f"PLATFORM_KAS={ref!r} names no registered KAS",
                         f"{fix_set}; `platform policy kas-registry list` shows them")
                return
            self.add("KAS identity", OK, f"answers for {kas.name or kas.uri} ({kas.uri}), set by PLATFORM_KAS")
            return
        servers, total = self.store.kas.list(limit=10)
        if total == 0:
            self.add("KAS identity", FAIL, "no KAS is registered: the server cannot answer KAS requests",
                     "platform policy kas-registry create --uri http://HOST:PORT/kas --name NAME")
        elif total > 1:
            names = ", ".join(k.name or k.uri for k in servers) + (", ..." if total > len(servers) else "")
            self.add("KAS identity", FAIL, f"{total} KAS are registered ({names}) and PLATFORM_KAS is unset: "
                     "the server cannot tell which one it is, so KAS requests fail", fix_set)
        else:
            self.add("KAS identity", OK, f"the only registered KAS, {servers[0].name or servers[0].uri} "
                     f"({servers[0].uri})", )

    # ---- server -----------------------------------------------------------------
    def port_free(self) -> None:
        from host.cli.serve import _check_port_free

        try:
            _check_port_free(self.host, self.port)
        except errors.PlatformError as e:
            self.add("port", FAIL, e.message, "stop what listens there, or serve on another --port "
                     "(server.port in the config file)")
            return
        self.add("port", OK, f"{self.host}:{self.port} is free")

    def auth(self) -> None:
        from host.server.auth import Authenticator

        try:
            auth = Authenticator.from_env()
        except errors.PlatformError as e:
            self.add("auth", FAIL, e.message, "set all of PLATFORM_OIDC_ISSUER, PLATFORM_OIDC_AUDIENCE and "
                     "PLATFORM_OIDC_JWKS (auth.oidc in the config file), or none")
            return
        if not auth.configured:
            self.add("auth", FAIL, "no admin or client credentials: `platform serve` refuses to start",
                     "set PLATFORM_ADMIN_TOKEN_FILE / PLATFORM_CLIENT_TOKEN_FILE or OIDC (auth: in the config file)")
        else:
            what = [f"{len(auth.tokens)} static token(s)"] + (["OIDC"] if auth.oidc is not None else [])
            self.add("auth", OK, " and ".join(what))
        from host.server.limits import ServerLimits

        try:
            ServerLimits.from_env(os.environ)
        except errors.PlatformError as e:
            self.add("server limits", FAIL, e.message, "fix that variable (server: in the config file)")
        if self.host not in _LOOPBACK:
            self.add("TLS", WARN, f"serving plain HTTP on {self.host}: tokens and keys cross the network unencrypted",
                     "terminate TLS in front of it (a reverse proxy) or listen on 127.0.0.1")

    def key_cache(self) -> None:
        from host.service.unwrap import CACHE_BUDGET_ENV, cache_capacity

        try:
            capacity = cache_capacity()
        except errors.PlatformError as e:
            self.add("key cache", FAIL, e.message, f"set {CACHE_BUDGET_ENV} to a positive number of MiB")
            return
        keys = None
        if self.store is not None:
            _, keys = self.store.keys.list(limit=1)
        if keys is not None and keys > capacity:
            self.add("key cache", WARN, f"{keys} keys but room for {capacity} in the caches: lookups past it "
                     "go to the database", f"raise {CACHE_BUDGET_ENV} (about 8 KiB per key)")
        else:
            self.add("key cache", OK, f"room for {capacity} keys" + (f" ({keys} stored)" if keys is not None else ""))


def _line(c: Check) -> str:
    mark = {OK: "ok  ", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}[c.status]
    return f"{mark}  {c.name}: {c.detail}" + (f"  -> fix: {c.fix}" if c.fix else "")


@main.command("doctor")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address `platform serve` will listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Port `platform serve` will listen on.")
@click.option("--skip-probes", is_flag=True, help="Do not probe provider configs (each probe waits up to 5 s).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {ok, checks: [{name, status, detail, fix}]}.")
@click.pass_context
def doctor(ctx, host, port, skip_probes, as_json):
    """Check the setup `platform serve` would use; each problem with its fix. Exit 1 on any failure."""
    serve_defaults = (ctx.find_root().default_map or {}).get("serve", {})  # server.host/port of a config file
    if ctx.get_parameter_source("host").name == "DEFAULT":
        host = serve_defaults.get("host", host)
    if ctx.get_parameter_source("port").name == "DEFAULT":
        port = serve_defaults.get("port", port)
    checks = Doctor(ctx.obj, host, port, skip_probes).run()
    failed = any(c.status == FAIL for c in checks)
    if as_json:
        echo_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        for c in checks:
            click.echo(_line(c))
        click.echo("problems found" if failed else "no problems found")
    sys.exit(1 if failed else 0)  # `run` calls click with standalone_mode=False: ctx.exit would return 0
