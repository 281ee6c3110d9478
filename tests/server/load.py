"""A bounded loopback load generator for `platform serve`, through the generated Connect clients.

    python -m tests.server.load --url http://127.0.0.1:8080 --token ADMIN --seconds 10 --concurrency 16

Two workloads run at once, each with `concurrency` client threads for
`seconds`: PublicKey lookups, and key creation followed by GetKey of the new
key (public_key mode, fresh EC P-256 keys, unique kids). Afterwards every
created key is listed back to check nothing was lost or duplicated.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import host.server.protos  # noqa: F401
from host.server.protos import kas_pb2, kasregistry_pb2 as kr, objects_pb2, selectors_pb2
from otdf_python_proto.kas import AccessServiceClientSync
from otdf_python_proto.policy.kasregistry import KeyAccessServerRegistryServiceClientSync


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    def summary(self) -> str:
        return (f"{self.name}: {self.count} ok, {len(self.errors)} errors, {self.count / self.seconds:.0f}/s, "
                f"p50 {self.pct(50) * 1000:.1f} ms, p99 {self.pct(99) * 1000:.1f} ms")


def _public_pems(n: int) -> list[str]:
    return [ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode() for _ in range(n)]


def run(url: str, token: str, seconds: float, concurrency: int, kas_id: str, proto_json: bool = False):
    headers = {"authorization": f"Bearer {token}"}
    pems = _public_pems(64)
    created: list[tuple[str, str]] = []   # (kid, id)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    public, create = Result("PublicKey"), Result("CreateKey+GetKey")

    def public_worker():
        client = AccessServiceClientSync(url, proto_json=proto_json)
        req = kas_pb2.PublicKeyRequest(algorithm="ec:secp256r1")
        while time.monotonic() < stop_at:
            t = time.perf_counter()
            try:
                client.public_key(req, headers=headers)
                public.latencies.append(time.perf_counter() - t)
            except Exception as e:  # recorded, asserted on by the caller
                public.errors.append(f"{type(e).__name__}: {e}")

    def create_worker(n: int):
        client = KeyAccessServerRegistryServiceClientSync(url, proto_json=proto_json)
        i = 0
        while time.monotonic() < stop_at:
            kid = f"load-{n}-{i}-{uuid.uuid4().hex[:6]}"
            i += 1
            t = time.perf_counter()
            try:
                key = client.create_key(kr.CreateKeyRequest(
                    kas_id=kas_id, key_id=kid, key_algorithm=objects_pb2.ALGORITHM_EC_P256,
                    key_mode=objects_pb2.KEY_MODE_PUBLIC_KEY_ONLY,
                    public_key_ctx=objects_pb2.PublicKeyCtx(pem=pems[i % len(pems)])), headers=headers).kas_key
                got = client.get_key(kr.GetKeyRequest(id=key.key.id), headers=headers).kas_key
                if got.key.key_id != kid:
                    raise AssertionError(f"GetKey returned {got.key.key_id!r} for {kid!r}")
                create.latencies.append(time.perf_counter() - t)
                with lock:
                    created.append((kid, key.key.id))
            except Exception as e:
                create.errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=public_worker) for _ in range(concurrency)]
    threads += [threading.Thread(target=create_worker, args=(n,)) for n in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    public.seconds = create.seconds = time.monotonic() - started
    return public, create, created


def list_all_keys(url: str, token: str, kas_id: str) -> list[tuple[str, str]]:
    client = KeyAccessServerRegistryServiceClientSync(url)
    out, offset = [], 0
    while True:
        page = client.list_keys(kr.ListKeysRequest(kas_id=kas_id, pagination=selectors_pb2.PageRequest(
            limit=500, offset=offset)), headers={"authorization": f"Bearer {token}"})
        out += [(k.key.key_id, k.key.id) for k in page.kas_keys]
        if not page.pagination.next_offset:
            return out
        offset = page.pagination.next_offset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True, help="an admin token")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--kas-id", required=True, help="the KAS to create keys on (it needs an active EC key for PublicKey)")
    args = ap.parse_args()
    public, create, created = run(args.url, args.token, args.seconds, args.concurrency, args.kas_id)
    print(public.summary())
    print(create.summary())
    listed = list_all_keys(args.url, args.token, args.kas_id)
    ours = {kid for kid, _ in created}
    print(f"created {len(created)}, listed back {len(ours & {k for k, _ in listed})}, "
          f"duplicates {len(listed) - len(set(listed))}")


if __name__ == "__main__":
    main()
