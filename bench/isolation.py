"""An isolated plugin (`isolated:PATH`, a km-plugin-host child) vs the same
plugin in-process: file-kek's AES-256-GCM unwrap through both, and a
KMS Decrypt through aws-kms against moto's standalone server on loopback
(moto cannot decrypt with RSA keys, so a symmetric key: the same HTTP round
trip as remote mode; skipped when moto_server is not installed).

The figure is what isolation adds to one call, in microseconds: the median
wall time per call of the isolated side minus the in-process side's, both
measured in the same interleaved blocks (bench.timing.paired). Wall clock,
because an isolated call spends most of its time in the other process and
waiting on the socket, which the measuring thread's CPU time does not see.
The host-side CPU per call is shown beside it (what an isolated call costs
the server's own cores). Target (issue 17): <= 25 us added per call.

Floor: the same run measures a bare round trip to another process (32 bytes to
an echo child over an AF_UNIX socketpair, the isolated plugins' transport, and
back), the least any process boundary costs on this machine. It varies between
VMs several times over (where the target was set, a whole isolated file-kek call
took 22 us; on a later VM the bare round trip alone took 38-69 us), so the
file-kek figure is also shown beyond it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import replace

from bench.env import BUILD, FILE_KEK
from bench.results import Figure
from host.errors import PlatformError
from bench.timing import Budget, paired


AWS_KMS = BUILD / "plugins" / "aws-kms-manager.so"
CREDENTIALS = {"access_key_id": "AKIAMOTOBENCH0000001", "secret_access_key": "moto-bench-secret"}


ADDED_US_TARGET = 25.0


def _compare(name: str, local, isolated, call, budget: Budget, note: str) -> Figure:
    result = paired(lambda: call(local), lambda: call(isolated), budget)
    wall_iso = 1e6 / statistics.median(result.subject_rates)
    wall_local = 1e6 / statistics.median(result.baseline_rates)
    added = wall_iso - wall_local
    low, high = _median_ci([1e6 / s - 1e6 / b for s, b in zip(result.subject_rates, result.baseline_rates)])
    if low <= ADDED_US_TARGET < high:
        note += f"; unresolved: the interval spans {ADDED_US_TARGET:g}us, the verdict is the point estimate's"
    return Figure(
        name, added, "us added/call", f"<= {ADDED_US_TARGET:g} us", added <= ADDED_US_TARGET,
        note=f"isolated {wall_iso:,.1f}us vs in-process {wall_local:,.1f}us per call (wall, medians over "
             f"{len(result.block_ratios)} interleaved blocks; adjacent-pair differences: 95% CI of their median "
             f"{low:,.1f} to {high:,.1f}us); host CPU {1e6 / result.subject_rate:,.1f}us per isolated call; {note}",
        detail=result.detail() | {"isolated_us": round(wall_iso, 2), "in_process_us": round(wall_local, 2),
                                  "added_ci95_us": [round(low, 1), round(high, 1)]})


_ECHO_CHILD = """
import os, socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
while True:
    d = s.recv(64)
    if not d:
        os._exit(0)
    s.sendall(d)
"""


def _round_trip_floor(budget: Budget) -> Figure:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = subprocess.Popen([sys.executable, "-c", _ECHO_CHILD, str(theirs.fileno())], pass_fds=(theirs.fileno(),))
    theirs.close()
    message = b"x" * 32

    def round_trip():
        ours.sendall(message)
        ours.recv(64)

    try:
        result = paired(lambda: None, round_trip, budget)
    finally:
        ours.close()
        child.wait(timeout=10)
    floor = 1e6 / statistics.median(result.subject_rates) - 1e6 / statistics.median(result.baseline_rates)
    return Figure("process round trip floor", floor, "us/call",
                  note=f"32 bytes to an echo child over an AF_UNIX socketpair and back (host CPU "
                       f"{1e6 / result.subject_rate:,.1f}us): the least a process boundary costs on this machine",
                  detail={"round_trip_us": round(floor, 2)})


def _median_ci(values: list[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median (order statistics n/2 +- 0.98 sqrt(n)):
    says whether the figure is resolved (moto's own call time varies by milliseconds)."""
    v = sorted(values)
    half = 0.98 * len(v) ** 0.5
    return v[max(0, int(len(v) / 2 - half))], v[min(len(v) - 1, int(len(v) / 2 + half))]


@contextmanager
def _isolated(path, config: bytes):
    from host.plugin_specs import load_one

    plugin = load_one(f"isolated:{path}")
    manager = plugin.factories[0].create(config)
    try:
        yield manager
    finally:
        manager.close()
        plugin._keepalive[0].close()


@contextmanager
def _moto():
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if exe is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # bounded wait for readiness
            try:
                urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _aws_kms(budget: Budget) -> list[Figure]:
    import boto3

    from host.loader import load_plugin

    with _moto() as url:
        if url is None or not AWS_KMS.exists():
            return []
        kms = boto3.client("kms", region_name="us-east-1", endpoint_url=url,
                           aws_access_key_id=CREDENTIALS["access_key_id"],
                           aws_secret_access_key=CREDENTIALS["secret_access_key"])
        arn = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
        config = json.dumps({"region": "us-east-1", "kms_key_id": arn, "endpoint": url, **CREDENTIALS}).encode()
        dek = os.urandom(32)
        wrapped = kms.encrypt(KeyId=arn, Plaintext=dek)["CiphertextBlob"]
        local = load_plugin(str(AWS_KMS)).factories[0].create(config)
        try:
            with _isolated(AWS_KMS, config) as isolated:
                assert isolated.unwrap(arn, wrapped) == dek
                # moto's call time varies by milliseconds: 4x the rounds narrows the interval 2x
                return [_compare("isolated unwrap aws-kms (moto)", local, isolated,
                                 lambda m: m.unwrap(arn, wrapped), replace(budget, rounds=budget.rounds * 4),
                                 "KMS Decrypt by moto over loopback HTTP")]
        finally:
            local.close()


def run(env, budget: Budget) -> list[Figure]:
    local = env.manager("fk")
    key_id = env.file_kek_config["default_key_id"]
    dek = os.urandom(32)
    blob = local.wrap(key_id, dek)
    floor = _round_trip_floor(budget)
    with _isolated(FILE_KEK, json.dumps(env.file_kek_config).encode()) as isolated:
        assert isolated.unwrap(key_id, blob) == dek
        figure = _compare("isolated unwrap file-kek", local, isolated, lambda m: m.unwrap(key_id, blob), budget,
                          "AES-256-GCM in the plugin")
    figure.note += f"; {figure.value - floor.value:,.1f}us beyond the bare process round trip ({floor.value:,.1f}us)"
    figures = [floor, figure]
    try:
        return figures + _aws_kms(budget)
    except PlatformError as e:  # the KMS side broke: keep the file-kek figure, say why
        return figures + [Figure("isolated unwrap aws-kms (moto)", None, "us added/call",
                                 note=f"not measured: {e.message[:120]}")]
