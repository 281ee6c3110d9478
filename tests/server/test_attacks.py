"""The server survives its clients: hostile HTTP shapes against a real `platform serve`.

Every case drives a `platform serve` subprocess (two workers) over real sockets on
loopback and then checks that nothing was lost: the server process is alive, no
worker had to be replaced (platform_worker_starts_total still equals --workers),
and probes answer. Limits are set small (1 s header and body timeouts, 64
connections per worker) so that each case finishes in seconds; every loop is
bounded in count and time. Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.server.conftest import ROOT, start_server

WORKERS = 2
MAX_CONNECTIONS = 64
LIST_PC = "/policy.keymanagement.KeyManagementService/ListProviderConfigs"
ATTACK_ENV = {
    "PLATFORM_HTTP_HEADER_TIMEOUT_MS": "1000",
    "PLATFORM_HTTP_BODY_TIMEOUT_MS": "1000",
    "PLATFORM_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}", env_extra=ATTACK_ENV, workers=WORKERS)
    s.extra["port"] = int(s.url.rsplit(":", 1)[1])
    yield s
    s.stop()


def worker_starts(server) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("platform_worker_starts_total "):
            return float(line.split()[1])
    raise AssertionError("platform_worker_starts_total is missing from /metrics")


def assert_nothing_lost(server) -> None:
    assert server.proc.poll() is None, server.log_text()[-2000:]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert worker_starts(server) == WORKERS, "a worker died and was replaced:\n" + server.log_text()[-3000:]


def raw_request(server, data: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send `data` on a new connection; return what the server answered before closing or going quiet."""
    with socket.create_connection(("127.0.0.1", server.extra["port"]), timeout=read_timeout) as c:
        c.sendall(data)
        return read_response(c, read_timeout)


def raw_request_answered_early(server, data: bytes, *, read_timeout: float = 10.0) -> bytes:
    """As raw_request, for a server that answers before it has read all of `data`: the sending
    goes on in a thread (and stops when the server closes) while this one reads the answer."""
    with socket.create_connection(("127.0.0.1", server.extra["port"]), timeout=read_timeout) as c:
        def send():
            try:
                c.sendall(data)
            except OSError:  # the server answered, closed, and reset the rest
                pass
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        response = read_response(c, read_timeout)
        sender.join(read_timeout)
        return response


def read_response(c: socket.socket, timeout: float) -> bytes:
    c.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = c.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
        head, sep, body = out.partition(b"\r\n\r\n")
        if sep:
            length = [int(v.split(b":")[1]) for v in head.lower().split(b"\r\n") if v.startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    return out


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def chunked(body: bytes, piece: int = 4096) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece]) for i in range(0, len(body), piece))
    return out + b"0\r\n\r\n"


def post_head(server, path: str, extra: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.admin_token}\r\n"
            f"Content-Type: application/json\r\n").encode() + extra + b"\r\n"


@pytest.mark.parametrize("size", [0, 1, 2, 1000, 100_000, (1 << 20) - 64])
def test_chunked_bodies_of_every_size_class_are_served(server, size):
    body = b"{}" + b" " * max(0, size - 2) if size >= 2 else b" " * size  # JSON whitespace is still {}
    response = raw_request(server, post_head(server, LIST_PC, b"Transfer-Encoding: chunked\r\n") + chunked(body))
    assert status_of(response) == 200 and b"pagination" in response, response[:300]
    assert_nothing_lost(server)


@pytest.mark.parametrize("piece", [1000, 65536])
def test_chunked_body_over_the_limit_is_resource_exhausted(server, piece):
    body = b" " * ((1 << 20) + 4096)
    response = raw_request(server, post_head(server, LIST_PC, b"Transfer-Encoding: chunked\r\n") + chunked(body, piece))
    assert status_of(response) == 429 and b"resource_exhausted" in response
    assert_nothing_lost(server)


def test_a_body_cut_small_within_the_piece_rule_is_served(server):
    """The first 64 pieces may be any size (1 byte each here), the rest average 512 bytes or more."""
    body = b"{}" + b" " * 19_998
    framed = chunked(body[:64], 1)[:-len(b"0\r\n\r\n")] + chunked(body[64:], 1000)
    response = raw_request(server, post_head(server, LIST_PC, b"Transfer-Encoding: chunked\r\n") + framed)
    assert status_of(response) == 200 and b"pagination" in response, response[:300]
    assert_nothing_lost(server)


@pytest.mark.parametrize("total", [20_000, 1 << 20])
def test_a_body_in_one_byte_chunks_is_refused_before_it_costs_a_core(server, total):
    """Each piece of a streamed body costs ~90 µs of server CPU, so 1 MiB in 1-byte chunks would
    hold a core for the whole body timeout; the piece rule refuses it within its first pieces."""
    started = time.perf_counter()
    response = raw_request_answered_early(server, post_head(server, LIST_PC, b"Transfer-Encoding: chunked\r\n")
                                          + chunked(b" " * total, 1))
    print(f"{total} bytes in 1-byte chunks refused after {time.perf_counter() - started:.3f} s")
    assert status_of(response) == 429, response[:300]
    assert b"too many small pieces" in response and b"connection: close" in response.lower()
    assert_nothing_lost(server)


def test_a_length_less_request_has_an_empty_body_and_is_served(server):
    # HTTP/1.1 without Content-Length or Transfer-Encoding: the request has no body (RFC 9112 6.3)
    response = raw_request(server, post_head(server, LIST_PC, b""))
    assert status_of(response) == 200
    # the same in HTTP/1.0, where the connection closes after the answer
    head = post_head(server, LIST_PC, b"").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    response = raw_request(server, head)
    assert b" 200 " in response.split(b"\r\n", 1)[0]
    assert_nothing_lost(server)


@pytest.mark.parametrize("framing", [b"Transfer-Encoding: chunked\r\n", b"Content-Length: 5000\r\n"])
def test_malformed_and_truncated_bodies_never_end_a_worker(server, framing):
    shapes = [b"zz\r\n{}\r\n0\r\n\r\n",            # a chunk size that is not hex
              b"5\r\n{}\r\n",                       # a chunk shorter than its size, then silence
              b"ffffffffffffffffffff\r\n{}",        # a chunk size beyond 64 bits
              b"{}"]                                # a body shorter than its Content-Length
    for shape in shapes:
        with socket.create_connection(("127.0.0.1", server.extra["port"]), timeout=10) as c:
            c.sendall(post_head(server, LIST_PC, framing) + shape)
            c.shutdown(socket.SHUT_WR)  # and nothing more
            response = read_response(c, 5)
        if response and b"Content-Length" in framing:  # a body cut short is never served as if complete
            assert 400 <= status_of(response) < 500, response[:300]
        # chunked: granian hands a body with broken chunk framing to the app as an empty one, so the
        # answer is that of the empty request (or none): what matters is that the worker lives on
    assert_nothing_lost(server)


def test_a_slow_body_is_cut_at_the_body_timeout(server):
    with socket.create_connection(("127.0.0.1", server.extra["port"]), timeout=10) as c:
        c.sendall(post_head(server, LIST_PC, b"Content-Length: 100\r\n") + b"{")
        response = read_response(c, 10)
    assert status_of(response) == 408 and b"deadline_exceeded" in response
    assert b"connection: close" in response.lower()
    assert_nothing_lost(server)


def test_a_client_hanging_up_mid_body_is_not_logged_as_an_error(server):
    for framing in (b"Content-Length: 100000\r\n", b"Transfer-Encoding: chunked\r\n"):
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.extra["port"]), timeout=5) as c:
                c.sendall(post_head(server, LIST_PC, framing) + (b"{" * 10 if b"Length" in framing else b"a\r\n{{{{"))
    time.sleep(1.5)  # past the body timeout: whatever the server makes of them is logged by now
    errors = [line for line in server.log_text().splitlines() if '"level":"error"' in line and "platform" in line]
    assert not errors, errors
    assert_nothing_lost(server)


@pytest.mark.parametrize("shape", ["many", "huge", "binary"])
def test_header_floods_are_refused_cleanly(server, shape):
    if shape == "many":
        extra = b"".join(b"X-Flood-%d: %d\r\n" % (i, i) for i in range(5000))
    elif shape == "huge":
        extra = b"X-Huge: " + b"a" * 1_000_000 + b"\r\n"
    else:
        extra = b"X-Bin: \x00\x01\xff\r\n"
    try:
        response = raw_request(server, post_head(server, LIST_PC, b"Content-Length: 2\r\n" + extra) + b"{}",
                               read_timeout=5)
    except (BrokenPipeError, ConnectionResetError):
        response = b""  # refused while we were still sending: also a clean refusal
    if response:
        assert 400 <= status_of(response) < 500, response[:300]
    assert_nothing_lost(server)


def test_half_open_connection_flood_leaves_probes_answering(server):
    """Twice the connections both workers allow, each sending half a request line and
    reopened as soon as the server drops it, for a bounded time; probes keep answering."""
    port, stop = server.extra["port"], threading.Event()
    flood = 2 * MAX_CONNECTIONS * WORKERS
    opened = [0]

    def attacker():
        held: list[socket.socket] = []
        while not stop.is_set():
            while len(held) < flood and not stop.is_set():
                try:
                    c = socket.create_connection(("127.0.0.1", port), timeout=1)
                    c.sendall(b"GET /healthz HT")
                    held.append(c)
                    opened[0] += 1
                except OSError:
                    time.sleep(0.01)
            for c in list(held):  # drop what the server closed, so it can be reopened
                c.setblocking(False)
                try:
                    if c.recv(1) == b"":
                        held.remove(c)
                        c.close()
                except BlockingIOError:
                    pass
                except OSError:
                    held.remove(c)
                    c.close()
            time.sleep(0.05)
        for c in held:
            c.close()

    def probe_latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.monotonic()
            assert httpx.get(f"{server.url}/readyz", timeout=15).status_code == 200
            out.append(time.monotonic() - t)
            time.sleep(0.1)
        return out

    quiet = probe_latencies(10)
    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        under_attack = probe_latencies(20)
    finally:
        stop.set()
        thread.join(timeout=30)
    print(f"\nhalf-open flood: {opened[0]} connections opened; readyz p99 {max(quiet) * 1000:.1f} ms quiet, "
          f"{max(under_attack) * 1000:.1f} ms under the flood (20 probes, all answered)")
    assert opened[0] >= flood
    assert_nothing_lost(server)


def test_a_second_server_on_the_same_port_is_a_startup_error(server):
    cmd = [sys.executable, "-c", "from host.cli import run; run()", "serve", "--port", str(server.extra["port"])]
    proc = subprocess.run(cmd, cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"port {server.extra['port']} on 127.0.0.1 is already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_nothing_lost(server)


def test_a_killed_worker_is_replaced_and_counted(tmp_path):
    s = start_server(tmp_path, f"sqlite:///{tmp_path / 'state' / 'platform.db'}", workers=1)
    try:
        for kill in (1, 2, 3):  # the second and third come within granian's crash-loop window
            workers = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True).stdout.split()
            assert workers, s.log_text()[-2000:]
            for pid in workers:
                os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:
                assert s.proc.poll() is None, s.log_text()[-2000:]
                try:
                    if httpx.get(f"{s.url}/healthz", timeout=2).status_code == 200 and worker_starts(s) == 1 + kill:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, s.log_text()[-2000:]
                time.sleep(0.05)
        log = s.log_text()
        assert '"msg":"Unexpected exit from worker-1"' in log and '"msg":"Respawning worker-1"' in log
    finally:
        s.stop()


def test_readyz_follows_the_sqlite_file(tmp_path):
    db = tmp_path / "state" / "platform.db"
    s = start_server(tmp_path, f"sqlite:///{db}")

    def ready(expect: int, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = httpx.get(f"{s.url}/readyz", timeout=10)
            if r.status_code == expect or time.monotonic() > deadline:
                assert r.status_code == expect, r.text
                return r.json()
            time.sleep(0.2)

    try:
        ready(200)
        saved = tmp_path / "saved.db"
        shutil.copy(db, saved)
        db.unlink()                                                   # deleted
        assert "the file is gone" in ready(503)["checks"]["database"]
        shutil.copy(saved, db)                                        # restored: a new file at the path
        ready(200)
        db.write_bytes(b"this is not a database" * 1000)              # replaced by garbage
        assert ready(503)["checks"]["database"] != "ok"
        shutil.copy(saved, db)
        assert {k: v for k, v in ready(200)["checks"].items() if k != "kas"} == {"plugins": "ok", "database": "ok"}
        # and the restored database serves real RPCs again
        r = httpx.post(f"{s.url}{LIST_PC}", content=b"{}", headers={**s.admin(), "Content-Type": "application/json"})
        assert r.status_code == 200
        assert s.proc.poll() is None
    finally:
        s.stop()


def test_the_reported_slowloris_leaves_local_rewraps_and_probes_answering(tmp_path):
    """The shape reported: one client without credentials holding ~1,200 connections with
    unfinished headers, against the default limits; local-key Rewraps and probes keep answering."""
    from tests.server.test_black_hole_kms import p99
    from tests.tdf.conftest import encrypt_tdf, sdk_for, start_kas_platform
    from tests.tdf.test_bad_input import REWRAP, manifest_of, only_result, request_body, rsa_key, srt

    kp = start_kas_platform(tmp_path)
    try:
        kp.activate("rsa:2048", "local", key_id="r1")
        sdk = sdk_for(kp)
        tdf = encrypt_tdf(sdk, b"payload")
        sdk.close()
        client_key = rsa_key()
        rewrap = {"signedRequestToken": srt(request_body(manifest_of(tdf), client_key), client_key)}
        port = int(kp.url.rsplit(":", 1)[1])

        def timed(http: httpx.Client, n: int) -> list[float]:
            out = []
            for i in range(n):
                t = time.monotonic()
                r = http.post(f"{kp.url}{REWRAP}", json=rewrap, headers=kp.server.client())
                assert r.status_code == 200 and only_result(r)["status"] == "permit", r.text
                if i % 10 == 0:
                    assert httpx.get(f"{kp.url}/readyz", timeout=10).status_code == 200  # a new connection
                out.append(time.monotonic() - t)
            return out

        with httpx.Client(timeout=30) as http:
            quiet = timed(http, 100)
            held = []
            try:
                for _ in range(1200):
                    c = socket.create_connection(("127.0.0.1", port), timeout=5)
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    held.append(c)
                flooded = timed(http, 100)
            finally:
                for c in held:
                    c.close()
        print(f"\nslowloris (1,200 half-open connections): local-key Rewrap p99 {p99(quiet) * 1000:.1f} ms quiet, "
              f"{p99(flooded) * 1000:.1f} ms during the flood (100 Rewraps and 10 readyz each, all answered)")
        assert kp.server.proc.poll() is None
    finally:
        kp.stop()
