"""A KMS that accepts connections and never answers must cost its own keys their deadline, nothing more.

A real `platform serve` with the aws-kms plugin holds a remote-mode RSA key in
moto's KMS and a local RSA key. The provider config is then pointed at a
black hole (a TCP listener that accepts and never answers) through the served
API, and 48 clients keep asking Rewraps of the remote key while Rewraps of the
local key, /readyz and PublicKey keep being asked. Those must all answer; the
black-holed key answers `unavailable` (bulkhead full) or `deadline_exceeded`
within the server's default deadline, though the clients send none.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import httpx
from otdf_python.config import KASInfo

from tests.plugins.conftest import moto_server  # noqa: F401  (fixture)
from tests.tdf.conftest import decrypt_tdf, encrypt_tdf, plugin, sdk_for, start_kas_platform
from tests.tdf.test_bad_input import REWRAP, manifest_of, only_result, request_body, rsa_key, srt

UPDATE_PC = "/policy.keymanagement.KeyManagementService/UpdateProviderConfig"
FLOOD_CLIENTS = 48
DEADLINE_MS = 1500


class BlackHole:
    """Accepts TCP connections and holds them open, reading and never writing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(c)

    def close(self):
        self.sock.close()
        for c in self.accepted:
            c.close()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_a_black_hole_kms_does_not_starve_local_keys_probes_or_public_key(tmp_path, moto_server):  # noqa: F811
    hole = BlackHole()
    kms_key = moto_server.client().create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    kp = start_kas_platform(tmp_path, [plugin("aws-kms")], env={
        "PLATFORM_RPC_TIMEOUT_MS": str(DEADLINE_MS), "PLATFORM_MANAGER_MAX_CONCURRENCY": "4"})
    try:
        config = {"region": moto_server.region, "access_key_id": moto_server.access_key_id,
                  "secret_access_key": moto_server.secret_access_key, "kms_key_id": kms_key,
                  "endpoint": moto_server.url}
        pc_id = kp.provider("kms", "aws-kms", config)
        sdk = sdk_for(kp)
        kp.activate("rsa:2048", "remote", provider="kms", key_id="remote-r")
        kp.activate("rsa:2048", "local", key_id="local-r")

        def to_key(kid: str):  # the SDK keeps the first public key it fetched: name the key instead
            pem = httpx.get(f"{kp.url}/kas/v2/kas_public_key", params={"kid": kid}, headers=kp.server.client(),
                            timeout=20).json()["publicKey"]
            return KASInfo(url=kp.kas_url, public_key=pem, kid=kid)

        remote_tdf = encrypt_tdf(sdk, b"held by the KMS", to_key("remote-r"))
        local_tdf = encrypt_tdf(sdk, b"held locally", to_key("local-r"))
        assert decrypt_tdf(sdk, local_tdf) == b"held locally"

        admin = {**kp.server.admin(), "Content-Type": "application/json"}
        black_holed = {**config, "endpoint": f"http://127.0.0.1:{hole.port}"}
        r = httpx.post(f"{kp.url}{UPDATE_PC}", headers=admin, timeout=30, content=json.dumps(
            {"id": pc_id, "configJson": base64.b64encode(json.dumps(black_holed).encode()).decode()}))
        assert r.status_code == 200, r.text

        client_key = rsa_key()
        rewrap_local = {"signedRequestToken": srt(request_body(manifest_of(local_tdf), client_key), client_key)}
        rewrap_remote = {"signedRequestToken": srt(request_body(manifest_of(remote_tdf), client_key), client_key)}
        client_auth = kp.server.client()

        def timed_local(http: httpx.Client, n: int) -> list[float]:
            out = []
            for _ in range(n):
                t = time.monotonic()
                r = http.post(f"{kp.url}{REWRAP}", json=rewrap_local, headers=client_auth)
                out.append(time.monotonic() - t)
                assert r.status_code == 200 and only_result(r)["status"] == "permit", r.text
            return out

        local_http = httpx.Client(timeout=30)
        quiet = timed_local(local_http, 100)

        stop = threading.Event()
        outcomes: list[str] = []  # each black-holed object's error, as the client sees it

        def attacker():
            with httpx.Client(timeout=60) as http:
                while not stop.is_set():
                    r = http.post(f"{kp.url}{REWRAP}", json=rewrap_remote, headers=client_auth)
                    outcomes.append(only_result(r).get("error", "permit") if r.status_code == 200
                                    else f"{r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(FLOOD_CLIENTS)]
        for t in threads:
            t.start()
        try:
            time.sleep(DEADLINE_MS / 1000)  # the flood is in full swing: the KMS holds its calls
            flooded = timed_local(local_http, 100)
            probes = [httpx.get(f"{kp.url}/readyz", timeout=20) for _ in range(5)]
            public = httpx.post(f"{kp.url}/kas.AccessService/PublicKey", content=b"{}", timeout=20,
                                headers={**client_auth, "Content-Type": "application/json"})
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            local_http.close()
        assert all(not t.is_alive() for t in threads), "an attacker's Rewrap never came back"

        print(f"\nblack-hole KMS: {len(outcomes)} Rewraps of the remote key, {len(hole.accepted)} connections "
              f"held by the black hole; local-key Rewrap p99 {p99(quiet) * 1000:.1f} ms quiet, "
              f"{p99(flooded) * 1000:.1f} ms under the flood ({FLOOD_CLIENTS} clients)")
        assert outcomes and "permit" not in outcomes
        assert all(p.status_code == 200 for p in probes), [p.text for p in probes]
        assert public.status_code == 200 and public.json()["kid"] == "local-r"
        health = probes[-1].json()["managers"][pc_id]
        assert health["manager"] == "aws-kms" and health["status"] == "failing", health

        metrics = httpx.get(f"{kp.url}/metrics", timeout=20).text
        refused = [line for line in metrics.splitlines() if line.startswith("platform_manager_calls_total{")
                   and 'manager="aws-kms"' in line and 'status="unavailable"' in line]
        timed_out = [line for line in metrics.splitlines() if line.startswith("platform_manager_calls_total{")
                     and 'manager="aws-kms"' in line and 'status="deadline_exceeded"' in line]
        assert refused and float(refused[0].split()[-1]) > 0, "the bulkhead never refused a call"
        assert timed_out and float(timed_out[0].split()[-1]) > 0, "no call ended at its deadline"
        # every black-holed Rewrap failed: its object as unavailable (bulkhead full) or deadline_exceeded,
        # or the whole RPC at its deadline (504) when the plugin overran the deadline it was given;
        # the plugin's own words stayed in the server's log, with the request id
        kinds = {"504" if o.startswith("504 ") else o.split(":", 1)[0] for o in outcomes}
        assert kinds <= {"unavailable", "deadline_exceeded", "504"} and "unavailable" in kinds, set(outcomes)
        assert all("did not finish before the deadline" not in o for o in outcomes)
        log = kp.server.log_text()
        assert '"msg":"key manager call failed"' in log and "did not finish before the deadline" in log
        assert kp.server.proc.poll() is None
        sdk.close()
    finally:
        kp.stop()
        hole.close()
