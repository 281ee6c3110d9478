"""HTTP: TDF Rewrap over loopback keep-alive vs the in-process rate, both on 2 processes.

Subject:  `platform serve --workers 2` (granian) on its own SQLite file with
          one local-mode RSA-2048 and one P-256 KAS key; wrk (one thread,
          bench/rewrap.lua) replays one pre-signed Rewrap request over
          keep-alive connections, in the Connect proto codec as the SDK's
          Connect client sends it. Every response is checked for its permits.
          Requests (CASES), built here (the SDK here cannot write ec-wrapped):
            rsa      one "wrapped" object, RSA-2048 client key
            ec       one "ec-wrapped" object (ephemeral PEM), P-256 client key
            nano     one NanoTDF header (GMAC binding, kid "e1" as otdf SDKs write), P-256 client key
            bulk10   10 "wrapped" objects in one request, RSA-2048 client key
            bulk100  100 of them
Baseline: 2 processes doing what one object needs cryptographically, in a
          loop. RSA: KeyService.rewrap (OAEP decrypt + OAEP encrypt, the client PEM
          parsed each time). EC, the crypto the server does per request and nothing
          else (ec_rewrap_crypto, nano_rewrap_crypto): the KAS side (ec-wrapped:
          ephemeral PEM parse, ECDH, HKDF, AES-GCM open, policy-binding HMAC; NanoTDF:
          compressed-point decode, ECDH, HKDF, GMAC check), then a fresh session key,
          ECDH + HKDF + AES-GCM seal to the client key and the session key's PEM. The
          client key is parsed once, as the server's client-key cache does.
Floor:    bench/asgi_floor.py on granian's RSGI interface with the server's settings,
          doing the same RSA (KeyService.rewrap) or EC crypto (ec_rewrap_crypto) per
          request and nothing else: what HTTP alone costs beyond the crypto.
Peer:     bench/go/peer.go (bench/peer.py): Go's raw RSA-2048 decrypt and P-256
          ECDH per core, in the same rounds: a Go KAS's per-core ceiling.
Rounds rotate every step; each figure is the median of per-round ratios.
The server pays on top: HTTP, Connect, auth, the request token, the key access
objects' checks, logging, metrics.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.env import ROOT, BenchSetupError
from bench.results import Figure
from bench.timing import Budget

TARGET = 0.5
EC_EXTRA_CPU_MS = 0.25  # server CPU per EC Rewrap beyond the in-process crypto, at most
BULK_TARGET = 0.8
BULK = (10, 100)
WORKERS = 2
# Concurrency: the smallest at which the rate stops growing here. At 8 connections (4 per
# worker) a worker's loop often runs dry between requests and pays a sleep and a wake-up per
# request (~0.04 ms of CPU, kernel and GIL hand-offs, in granian and the loop, not in the
# platform's code); 16, 32 and 64 give the same CPU per request (docs/performance.md).
CONNECTIONS = 16
LUA = Path(__file__).with_name("rewrap.lua")
WRK_TIMEOUT_S = 30
KID = "http-rsa"
EC_KID = "http-ec"
LOCATOR = "127.0.0.1/kas"
GO_SECONDS = 1.0
_RESULT = re.compile(r"RESULT (.*)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_db(workdir: Path, root_key_hex: str) -> tuple[str, dict]:
    """A database of its own: one KAS, a local RSA-2048 and a local P-256 key.
    -> (db url, {"rsa": public key PEM, "ec": public key PEM})."""
    from host.app import Platform, Settings

    db = f"sqlite:///{workdir / 'http.db'}"
    os.environ["PLATFORM_ROOT_KEY"] = root_key_hex
    p = Platform(Settings(db_url=db, state_dir=str(workdir)))
    try:
        p.store.kas.create("http://127.0.0.1/kas", "kas-http")
        rsa_key = p.keys.create_key(None, KID, "rsa:2048", "local")
        ec_key = p.keys.create_key(None, EC_KID, "ec:secp256r1", "local")
        return db, {"rsa": rsa_key.public_key_pem, "ec": ec_key.public_key_pem}
    finally:
        p.close()


def _binding(dek: bytes, policy_b64: str) -> str:
    return base64.b64encode(hmac.new(dek, policy_b64.encode(), hashlib.sha256).hexdigest().encode()).decode()


POLICY_B64 = base64.b64encode(json.dumps({"uuid": "bench", "body": {}}).encode()).decode()


def _wrapped_kao(kas_pems: dict, kind: str) -> tuple[dict, bytes, bytes | None]:
    """A standard-TDF key access object for a fresh DEK: (object, wrapped DEK, ephemeral PEM or None)."""
    from host import crypto

    dek = os.urandom(32)
    if kind == "rsa":
        wrapped, eph = crypto.rsa_wrap(crypto.load_public_pem(kas_pems["rsa"], "rsa:2048"), dek), None
        kao = {"type": "wrapped", "kid": KID}
    else:
        wrapped, eph_pem = crypto.ec_wrap(crypto.load_public_pem(kas_pems["ec"], "ec:secp256r1"), dek)
        eph = eph_pem.encode()
        kao = {"type": "ec-wrapped", "kid": EC_KID, "ephemeralPublicKey": eph_pem}
    kao.update({"protocol": "kas", "url": f"http://{LOCATOR}", "wrappedKey": base64.b64encode(wrapped).decode(),
                "policyBinding": {"alg": "HS256", "hash": _binding(dek, POLICY_B64)}})
    return kao, wrapped, eph


def _nano_kao(kas_pems: dict) -> tuple[dict, tuple]:
    """A NanoTDF header as the specification defines it (P-256, GMAC binding), kid "e1":
    (object, (compressed ephemeral point, policy, binding) for the in-process baseline)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from host import crypto
    from host.kas import nanotdf

    ephemeral = ec.generate_private_key(ec.SECP256R1())
    kas_pub = crypto.load_public_pem(kas_pems["ec"], "ec:secp256r1")
    dek = HKDF(hashes.SHA256(), 32, nanotdf.NANO_SALT, None).derive(ephemeral.exchange(ec.ECDH(), kas_pub))
    policy = json.dumps({"uuid": "bench", "body": {"dataAttributes": None, "dissem": []}}).encode()
    digest = hashlib.sha256(policy).digest()
    bound = AESGCM(dek).encrypt(b"\xff" * 12, b"", digest)[:8]  # GMAC: the tag over no plaintext
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    header = (b"L1L" + bytes([0x10, len(LOCATOR)]) + LOCATOR.encode() + b"e1" + bytes([0x00, 0x05, 0x01])
              + len(policy).to_bytes(2, "big") + policy + bound + point)
    kao = {"type": "remote", "protocol": "kas", "url": f"http://{LOCATOR}", "header": base64.b64encode(header).decode()}
    return kao, (point, policy, bound)


def ec_rewrap_crypto(keys, kid: str, wrapped: bytes, ephemeral_pem: bytes, client_key) -> dict:
    """The crypto of one ec-wrapped Rewrap to an EC client, as the server does it per request:
    the unwrap (ephemeral PEM parse, ECDH, HKDF, AES-GCM open), the policy binding's HMAC, a
    fresh session key, ECDH + HKDF + AES-GCM seal to the (parsed) client key, the session PEM."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from host import crypto

    dek = keys.unwrap(kid, wrapped, ephemeral_pem)
    crypto.hmac_sha256(dek, POLICY_B64.encode())
    session = ec.generate_private_key(client_key.curve)
    return {"rewrapped_key": crypto.seal_dek(client_key, dek, session), "session_public_key": crypto.public_pem(session)}


def nano_rewrap_crypto(keys, key, point: bytes, policy: bytes, binding: bytes, client_key) -> dict:
    """The crypto of one NanoTDF Rewrap (GMAC binding) to an EC client: the compressed point
    decoded, ECDH with KAS key `key`, HKDF, the GMAC check, then as ec_rewrap_crypto."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from host import crypto
    from host.kas import nanotdf

    ephemeral = crypto.load_ephemeral_public_key(point, key.algorithm)
    dek = crypto.derive_wrap_key(keys.shared_secret(key, ephemeral), nanotdf.NANO_SALT)
    tag = AESGCM(dek).encrypt(nanotdf.GMAC_NONCE, b"", crypto.sha256(policy))
    if not hmac.compare_digest(tag[:nanotdf.GMAC_LENGTH], binding):
        raise AssertionError("the bench's NanoTDF binding does not verify")
    session = ec.generate_private_key(client_key.curve)
    return {"rewrapped_key": crypto.seal_dek(client_key, dek, session, nanotdf.NANO_SALT),
            "session_public_key": crypto.public_pem(session)}


def _signed(kaos: list[dict], client, algorithm: str) -> bytes:
    """kas.RewrapRequest bytes: one policy over `kaos`, the body signed by the client key."""
    import jwt

    from host import crypto
    from host.server.protos import kas_pb2

    body = {"clientPublicKey": crypto.public_pem(client),
            "requests": [{"policy": {"id": "policy", "body": POLICY_B64},
                          "keyAccessObjects": [{"keyAccessObjectId": f"kao-{i}", "keyAccessObject": kao}
                                               for i, kao in enumerate(kaos)]}]}
    now = int(time.time())
    token = jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + 3600}, client, algorithm=algorithm)
    return kas_pb2.RewrapRequest(signed_request_token=token).SerializeToString()


def _requests(kas_pems: dict) -> tuple[dict, dict]:
    """What the SDK sends, per case: ({case: (request bytes, objects)}, the in-process baseline's
    inputs {"rsa"|"ec": (kid, wrapped DEK, client public PEM, ephemeral PEM or None),
    "nano": (kid, (point, policy, binding), client public PEM, None)})."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from host import crypto

    rsa_client = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_client = ec.generate_private_key(ec.SECP256R1())
    rsa_kao, rsa_wrapped, _ = _wrapped_kao(kas_pems, "rsa")
    ec_kao, ec_wrapped, ec_eph = _wrapped_kao(kas_pems, "ec")
    nano_kao, nano_inputs = _nano_kao(kas_pems)
    cases = {"rsa": (_signed([rsa_kao], rsa_client, "RS256"), 1),
             "ec": (_signed([ec_kao], ec_client, "ES256"), 1),
             "nano": (_signed([nano_kao], ec_client, "ES256"), 1)}
    for n in BULK:
        cases[f"bulk{n}"] = (_signed([_wrapped_kao(kas_pems, "rsa")[0] for _ in range(n)], rsa_client, "RS256"), n)
    baseline = {"rsa": (KID, rsa_wrapped, crypto.public_pem(rsa_client), None),
                "ec": (EC_KID, ec_wrapped, crypto.public_pem(ec_client), ec_eph),
                "nano": (EC_KID, nano_inputs, crypto.public_pem(ec_client), None)}
    return cases, baseline


class _Server:
    """`platform serve --workers 2`, or with floor=True the bare app (bench/asgi_floor.py) on RSGI."""

    def __init__(self, workdir: Path, db: str, root_key_hex: str, floor: bool = False):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_token = secrets.token_urlsafe(24)
        self.floor = floor
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "PROMETHEUS_"))}
        env.update({"PLATFORM_STATE_DIR": str(workdir / "serve-state"), "PLATFORM_DB_URL": db,
                    "PLATFORM_ROOT_KEY": root_key_hex, "PLATFORM_CLIENT_TOKENS": self.client_token,
                    "PLATFORM_ADMIN_TOKENS": secrets.token_urlsafe(24)})
        self.log_path = workdir / ("floor.log" if floor else "serve.log")
        self._log = open(self.log_path, "wb")
        if floor:
            # the interface, HTTP version and loop `platform serve` uses (host/cli/serve.py)
            cmd = [sys.executable, "-m", "granian", "--interface", "rsgi", "--http", "1", "--loop", "uvloop",
                   "--no-ws", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(WORKERS),
                   "--factory", "bench.asgi_floor:app_factory"]
        else:
            cmd = [sys.executable, "-c", "from host.cli import run; run()", "serve", "--port", str(self.port),
                   "--workers", str(WORKERS)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, probe, limit: float = 60.0) -> None:
        """Until probe(url) returns an httpx response with status 200."""
        import httpx

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchSetupError(f"{'floor app' if self.floor else 'platform serve'} exited with "
                                      f"{self.proc.returncode}: {self._tail()}")
            try:
                if probe(self.url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise BenchSetupError(f"the server did not become ready in {limit:.0f}s: {self._tail()}")

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-500:].replace("\n", " | ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """user+system CPU of these processes (all their threads), from /proc."""
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, body_file: Path, token: str, seconds: int, server_pids: list[int] | None = None,
         content_type: str = "application/proto", permits: int = 1) -> dict:
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": content_type, "WRK_TOKEN": token,
           "WRK_PERMITS": str(permits)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_seconds(server_pids or [])
    # --timeout: wrk's default (2 s) is below the bulk100 p99 once the machine's load is ~5 (a
    # request queues behind 7 others of ~0.2 s each): a timed-out request counts as an error,
    # which ends the suite, and its server CPU would be counted for no request
    proc = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", f"{WRK_TIMEOUT_S}s",
                           "-s", str(LUA), url],
                          env=env, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _cpu_seconds(server_pids or []) - server_before
    m = _RESULT.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise BenchSetupError(f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    out = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    out["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["rps"] = out["requests"] / out["seconds"]
    out["server_cpu_per_request"] = server_cpu / max(out["requests"], 1)
    return out


# ---- the in-process baseline: WORKERS processes, driven round by round ---------------
def _inproc_op(keys, name: str, spec: tuple):
    """One baseline operation as a call without arguments (the module docstring says which)."""
    from host import crypto

    kid, data, client_pem, eph = spec
    if name == "rsa":
        return lambda: keys.rewrap(kid, data, client_pem, eph)
    client = crypto.load_public_pem(client_pem, "ec:secp256r1")
    if name == "ec":
        return lambda: ec_rewrap_crypto(keys, kid, data, eph, client)
    key = keys.kas_key(kid, keys.kas_id(None))
    return lambda: nano_rewrap_crypto(keys, key, *data, client)


def _inproc_worker(conn, db: str, root_key_hex: str, ops: dict) -> None:
    os.environ["PLATFORM_ROOT_KEY"] = root_key_hex
    from host.app import Platform, Settings

    p = Platform(Settings(db_url=db, state_dir=os.path.dirname(db.removeprefix("sqlite:///"))))
    operations = {name: _inproc_op(p.keys, name, spec) for name, spec in ops.items()}
    for op in operations.values():
        op()  # warm: key lookup, private key cached
    conn.send("ready")
    while True:
        got = conn.recv()
        if got is None:
            break
        name, seconds = got
        op = operations[name]
        n = 0
        t_end = time.perf_counter() + seconds
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() < t_end:
            op()
            n += 1
        conn.send((n / (time.perf_counter() - t0), (time.process_time() - c0) / n))
    p.close()


class _InProcess:
    def __init__(self, db: str, root_key_hex: str, ops: dict):
        ctx = multiprocessing.get_context("spawn")  # no fork after plugins and SoftHSM are loaded
        self.conns, self.procs = [], []
        for _ in range(WORKERS):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_inproc_worker, args=(child, db, root_key_hex, ops),
                               daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for c in self.conns:
            if not c.poll(120) or c.recv() != "ready":
                raise BenchSetupError("in-process rewrap workers did not start")

    def rate(self, name: str, seconds: float) -> tuple[float, float]:
        """(operations `name` per second of all workers, CPU seconds per operation)."""
        for c in self.conns:
            c.send((name, seconds))
        got = [c.recv() for c in self.conns]
        return sum(r for r, _ in got), statistics.mean(cpu for _, cpu in got)

    def stop(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


def _post(url: str, path: str, body: bytes, content_type: str, token: str):
    import httpx

    return httpx.post(f"{url}{path}", content=body, timeout=30,
                      headers={"content-type": content_type, "authorization": f"Bearer {token}"})


def _go_peer():
    """The Go program of bench/peer.py, or the reason there is none."""
    from bench.peer import GoPeer

    try:
        return GoPeer(), ""
    except BenchSetupError as e:
        return None, str(e)


def run(env, budget: Budget) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise BenchSetupError("wrk is not installed (make sysdeps)")
    workdir = env.workdir / "http"
    workdir.mkdir(exist_ok=True)
    db, kas_pems = _prepare_db(workdir, env.root_key_hex)
    cases, ops = _requests(kas_pems)
    files = {}
    for name, (body, _) in cases.items():
        files[name] = workdir / f"rewrap-{name}.bin"
        files[name].write_bytes(body)
    _, wrapped, client_pem, _ = ops["rsa"]
    floor_body = json.dumps({"kid": KID, "wrapped": wrapped.hex(), "client_public_key": client_pem}).encode()
    _, ec_wrapped, ec_client_pem, ec_eph = ops["ec"]
    floor_bodies = {"floor": floor_body,
                    "floor_ec": json.dumps({"kid": EC_KID, "wrapped": ec_wrapped.hex(), "client_public_key": ec_client_pem,
                                            "ephemeral": ec_eph.decode()}).encode()}
    floor_files = {}
    for name, data in floor_bodies.items():
        floor_files[name] = workdir / f"{name}-request.json"
        floor_files[name].write_bytes(data)
    server = _Server(workdir, db, env.root_key_hex)
    floor = _Server(workdir, db, env.root_key_hex, floor=True)
    inproc = peer = None
    try:
        server.wait_ready(lambda url: __import__("httpx").get(f"{url}/readyz", timeout=2))
        floor.wait_ready(lambda url: _post(url, "/", floor_body, "application/json", "bench"))
        for name, data in floor_bodies.items():
            check = _post(floor.url, "/", data, "application/json", "bench")
            if check.status_code != 200 or b"permit" not in check.content:
                raise BenchSetupError(f"the {name} request was refused: {check.status_code} {check.text[:300]}")
        for name, (body, n) in cases.items():
            check = _post(server.url, "/kas.AccessService/Rewrap", body, "application/proto", server.client_token)
            if check.status_code != 200 or check.content.count(b"permit") < n:
                raise BenchSetupError(f"the {name} Rewrap request was refused: {check.status_code} {check.text[:300]}")
        inproc = _InProcess(db, env.root_key_hex, ops)
        peer, no_peer = _go_peer()
        pids, floor_pids = _process_tree(server.proc.pid), _process_tree(floor.proc.pid)

        def http_step(name):
            return lambda seconds: _wrk(server.url, files[name], server.client_token, seconds, pids,
                                        permits=cases[name][1])

        def floor_step(name):
            return lambda seconds: _wrk(floor.url, floor_files[name], "bench", seconds, floor_pids,
                                        content_type="application/json")

        def go_run(seconds):
            go_seconds = min(GO_SECONDS, seconds)
            return {op: peer.rate(op, go_seconds) for op in ("rsa", "ecdh")}

        for name in cases:
            http_step(name)(1)  # warm every worker's caches
        for name in floor_files:
            floor_step(name)(1)
        steps = [(name, http_step(name)) for name in cases]
        steps += [("base_rsa", lambda seconds: inproc.rate("rsa", seconds)),
                  ("base_ec", lambda seconds: inproc.rate("ec", seconds)),
                  ("base_nano", lambda seconds: inproc.rate("nano", seconds))]
        steps += [(name, floor_step(name)) for name in floor_files]
        if peer is not None:
            steps.append(("go", go_run))
        rounds = []
        for r in range(budget.http_rounds):
            got = {}
            k = r % len(steps)
            for name, step in steps[k:] + steps[:k]:  # rotate the order round by round
                got[name] = step(budget.http_seconds)
            for name in [*cases, *floor_files]:
                if got[name]["errors"] or got[name]["bad"]:
                    raise BenchSetupError(f"wrk ({name}) saw {got[name]['errors']:.0f} errors and "
                                          f"{got[name]['bad']:.0f} bad responses of {got[name]['requests']:.0f}")
            rounds.append(got)
    finally:
        if inproc is not None:
            inproc.stop()
        if peer is not None:
            peer.close()
        server.stop()
        floor.stop()
    return _figures(rounds, cases, peer, no_peer)


def _figures(rounds: list[dict], cases: dict, peer, no_peer: str) -> list[Figure]:
    def med(fn):
        return statistics.median(fn(g) for g in rounds)

    base_of = {"rsa": "base_rsa", "ec": "base_ec", "nano": "base_nano"}

    def ratio(name: str) -> float:  # objects per second over HTTP / in-process unwrap+rewrap per second
        base, n = base_of.get(name, "base_rsa"), cases[name][1]
        return med(lambda g: g[name]["rps"] * n / g[base][0])

    def cpu(name: str) -> float:
        return med(lambda g: g[name]["server_cpu_per_request"])

    rps, floor_rps = med(lambda g: g["rsa"]["rps"]), med(lambda g: g["floor"]["rps"])
    base = med(lambda g: g["base_rsa"][0])
    server_cpu, floor_cpu = cpu("rsa"), med(lambda g: g["floor"]["server_cpu_per_request"])
    inproc_cpu, inproc_ec_cpu = med(lambda g: g["base_rsa"][1]), med(lambda g: g["base_ec"][1])
    p50, p99 = med(lambda g: g["rsa"]["p50_ms"]), med(lambda g: g["rsa"]["p99_ms"])
    wrk_cpu = med(lambda g: g["rsa"]["cpu_seconds"] / g["rsa"]["seconds"])
    figures = [
        Figure.ratio(f"HTTP Rewrap rsa:2048, {WORKERS} workers", ratio("rsa"), "x in-process", TARGET,
                     note=f"{rps:,.0f} req/s over {CONNECTIONS} keep-alive connections vs in-process unwrap+rewrap "
                          f"{base:,.0f}/s on {WORKERS} processes",
                     http_per_s=round(rps, 1), inprocess_per_s=round(base, 1),
                     ratio_rounds=[round(g["rsa"]["rps"] / g["base_rsa"][0], 4) for g in rounds]),
        Figure("HTTP Rewrap CPU per request", server_cpu * 1e3, "ms",
               note=f"all server processes' CPU / requests; in-process unwrap+rewrap {inproc_cpu * 1e3:.3f} ms per "
                    f"operation (x{inproc_cpu / server_cpu:.3f}: the rate ratio an idle machine would give)",
               detail={"server_cpu_ms_per_request": round(server_cpu * 1e3, 4),
                       "inprocess_cpu_ms_per_op": round(inproc_cpu * 1e3, 4),
                       "cpu_efficiency": round(inproc_cpu / server_cpu, 4)}),
        Figure("HTTP floor: bare RSGI app, same server", med(lambda g: g["floor"]["rps"] / g["base_rsa"][0]),
               "x in-process",
               note=f"bench/asgi_floor.py on granian (RSGI, HTTP/1, uvloop), {WORKERS} workers: {floor_rps:,.0f} "
                    f"req/s, {floor_cpu * 1e3:.3f} ms CPU per request (no Connect, auth, token, binding, logs)",
               detail={"floor_per_s": round(floor_rps, 1), "floor_cpu_ms_per_request": round(floor_cpu * 1e3, 4)}),
        Figure("HTTP Rewrap latency p50", p50, "ms", note=f"p99 {p99:.2f} ms at {CONNECTIONS} connections",
               detail={"p50_ms": p50, "p99_ms": p99}),
        Figure("HTTP Rewrap latency p99", p99, "ms"),
    ]
    # The peer's ceiling: requests per CPU-second of the server against Go's raw operation per CPU-second.
    if peer is None:
        figures.append(Figure("HTTP Rewrap rsa:2048 per core vs Go raw decrypt", None, "x Go raw", note=no_peer))
    else:
        go_rsa, go_ecdh = med(lambda g: g["go"]["rsa"]), med(lambda g: g["go"]["ecdh"])
        per_core = med(lambda g: 1 / g["rsa"]["server_cpu_per_request"] / g["go"]["rsa"])
        figures.append(Figure(
            "HTTP Rewrap rsa:2048 per core vs Go raw decrypt", per_core, "x Go raw",
            note=f"{1 / server_cpu:,.0f} Rewraps per server CPU-second vs {peer.version} RSA-2048 OAEP decrypt "
                 f"alone {go_rsa:,.0f}/s per core (a Go KAS's ceiling): "
                 f"{'above' if per_core > 1 else 'below'} the peer's best case",
            detail={"http_per_cpu_s": round(1 / server_cpu, 1), "go_rsa_per_cpu_s": round(go_rsa, 1)}))
        ec_core = med(lambda g: 1 / g["ec"]["server_cpu_per_request"] / g["go"]["ecdh"])
        figures.append(Figure(
            "HTTP EC Rewrap per core vs Go raw ECDH", ec_core, "x Go raw",
            note=f"{1 / cpu('ec'):,.0f} ec-wrapped Rewraps per server CPU-second vs {peer.version} P-256 ECDH alone "
                 f"{go_ecdh:,.0f}/s per core (an EC Rewrap to an EC client needs two: KAS key, session key)",
            detail={"http_per_cpu_s": round(1 / cpu("ec"), 1), "go_ecdh_per_cpu_s": round(go_ecdh, 1)}))
    def beyond(name: str, base: str) -> float:  # ms of CPU per request beyond the crypto, paired by round
        return med(lambda g: g[name]["server_cpu_per_request"] - g[base][1]) * 1e3

    floor_ec = beyond("floor_ec", "base_ec")
    figures.append(Figure(
        "HTTP floor EC: bare RSGI app's CPU beyond the crypto", floor_ec, "ms",
        note=f"the same app doing the ec-wrapped crypto (ec_rewrap_crypto) and nothing else: "
             f"{cpu('floor_ec') * 1e3:.3f} ms CPU per request - in-process {inproc_ec_cpu * 1e3:.3f} ms; "
             f"what HTTP on granian costs an EC Rewrap before the platform does anything",
        detail={"floor_cpu_ms_per_request": round(cpu("floor_ec") * 1e3, 4),
                "inprocess_cpu_ms_per_op": round(inproc_ec_cpu * 1e3, 4)}))
    labels = {"ec": "ec:secp256r1 (ec-wrapped)", "nano": "NanoTDF P-256"}
    for name, label in labels.items():
        base_name = base_of[name]
        base_cpu, base_rate = med(lambda g: g[base_name][1]), med(lambda g: g[base_name][0])
        extra = beyond(name, base_name)
        figures.append(Figure.ratio(
            f"HTTP Rewrap {label}, {WORKERS} workers", ratio(name), "x in-process", TARGET,
            note=f"{med(lambda g: g[name]['rps']):,.0f} req/s vs in-process, its crypto alone, {base_rate:,.0f}/s "
                 f"(CPU: x{base_cpu / cpu(name):.3f}, the ratio an idle machine would give); "
                 f"p50 {med(lambda g: g[name]['p50_ms']):.2f} ms, p99 {med(lambda g: g[name]['p99_ms']):.2f} ms",
            ratio_rounds=[round(g[name]["rps"] / g[base_name][0], 4) for g in rounds]))
        figures.append(Figure(
            f"HTTP Rewrap {label} CPU beyond the crypto", extra, "ms", f"<= {EC_EXTRA_CPU_MS:g}",
            extra <= EC_EXTRA_CPU_MS,
            note=f"server CPU {cpu(name) * 1e3:.3f} ms per request - in-process crypto {base_cpu * 1e3:.3f} ms "
                 f"(median of per-round differences); the bare RSGI app's floor: {floor_ec:.3f} ms",
            detail={"server_cpu_ms_per_request": round(cpu(name) * 1e3, 4),
                    "inprocess_cpu_ms_per_op": round(base_cpu * 1e3, 4), "floor_ec_ms": round(floor_ec, 4)}))
    for n in BULK:
        name = f"bulk{n}"
        figures.append(Figure.ratio(
            f"HTTP bulk Rewrap, {n} objects per request", ratio(name), "x in-process", BULK_TARGET,
            note=f"{med(lambda g: g[name]['rps']) * n:,.0f} objects/s ({med(lambda g: g[name]['rps']):,.0f} req/s) vs "
                 f"in-process {base:,.0f}/s; server CPU {cpu(name) / n * 1e3:.3f} ms per object; "
                 f"p50 {med(lambda g: g[name]['p50_ms']):.1f} ms, p99 {med(lambda g: g[name]['p99_ms']):.1f} ms",
            ratio_rounds=[round(g[name]["rps"] * n / g["base_rsa"][0], 4) for g in rounds],
            server_cpu_ms_per_object=round(cpu(name) / n * 1e3, 4)))
    figures.append(Figure("load generator CPU (wrk)", wrk_cpu * 100, "% of a core",
                          note=f"wrk -t1 -c{CONNECTIONS} with bench/rewrap.lua: {wrk_cpu * 100:.1f}% of one core "
                               f"while the server ran {rps:,.0f} req/s",
                          detail={"cpu_core_fraction": round(wrk_cpu, 4)}))
    return figures
