"""The package, installed as an operator or plugin author would: not from this checkout.

One test, slow by nature (about half a minute, nearly all of it pip installing the
dependencies from its cache into a fresh venv): build the wheel from a copy of the files
the package is made of, install it into a new venv in a temporary directory, then, with
the working directory and environment outside the repository,

- `platform --version` and `platform abi --include-dir` (the header inside the venv);
- build the C template plugin against that installed header, as an author outside the repo;
- `db upgrade` (migrations are package data), `plugins list`, a provider config, a KAS,
  a provider-mode key, `kas wrap` / `kas unwrap` of a DEK through the plugin;
- the same unwrap through `isolated:PATH`: km-plugin-host is built on first use from the
  sources in the package into the user's cache ($HOME/.cache), then reused;
- `platform doctor` passes on that setup;
- `platform serve` with its default server: /healthz, the KAS public key of that key,
  and the provider config over the Connect API.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
PACKAGE_FILES = ("pyproject.toml", "README.md", "host", "include", "runner")  # what `pip install .` reads
TOKEN = secrets.token_hex(16)


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin directory."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            # symlinks=True: host/include/keymanager.h and host/isolation/runner_src/* stay links, as in a clone
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(src)], root, env)
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root, env)
    _run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)], root, env,
         timeout=600)
    shutil.rmtree(src)  # nothing may be read from the source copy any more
    return venv / "bin"


def _post(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_healthy(url: str, server: subprocess.Popen) -> None:
    for _ in range(300):  # bounded: about a minute of 0.2 s polls
        assert server.poll() is None, "platform serve exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} never answered 200")


def test_installed_wheel_serves_and_round_trips_outside_the_repo(installed, tmp_path):
    bindir = installed
    work = tmp_path / "work"
    work.mkdir()
    root_key = work / "root.key"
    root_key.write_text(secrets.token_hex(32))
    root_key.chmod(0o600)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PLATFORM_DB_URL": f"sqlite:///{work}/platform.db", "PLATFORM_ROOT_KEY_FILE": str(root_key)}

    def platform(*args: str) -> str:
        return _run([str(bindir / "platform"), *args], work, env)

    assert platform("--version").startswith("platform ")
    include_dir = Path(platform("abi", "--include-dir").strip())
    assert include_dir.is_relative_to(bindir.parent) and (include_dir / "keymanager.h").is_file()
    assert not (include_dir / "keymanager.h").is_symlink()

    # A plugin author outside the repository: the C template against the installed header.
    shutil.copy(REPO / "examples" / "c" / "example_manager.c", work)
    cflags = platform("abi", "--cflags").split()
    _run(["gcc", "-O2", "-fPIC", "-shared", *cflags, "-o", "example-c-manager.so", "example_manager.c", "-lcrypto"],
         work, env)
    plugin = f"--key-manager-plugin={work / 'example-c-manager.so'}"

    platform("db", "upgrade")
    listed = json.loads(platform(plugin, "plugins", "list", "--json"))
    assert {m["name"] for m in listed["managers"]} >= {"opentdf.io/basic", "example-c"}

    kek_file = work / "kek.json"
    kek_file.write_text(json.dumps({"keks": {"kek-1": secrets.token_hex(32)}, "default_key_id": "kek-1"}))
    created = json.loads(platform(plugin, "policy", "keymanagement", "provider", "create", "--name", "my-kek",
                                  "--manager", "example-c", "--config", f"@{kek_file}", "--validate", "--json"))
    platform("policy", "kas-registry", "create", "-u", "http://127.0.0.1/kas", "-n", "kas1")
    platform(plugin, "policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", "k1", "-a", "rsa:2048",
             "-m", "provider", "-p", created["id"], "--wrapping-key-id", "kek-1")
    header, row = platform("policy", "kas-registry", "key", "list").splitlines()[:2]
    assert header.split()[-2:] == ["STATUS", "PROVIDER"] and row.split()[-2:] == ["active", "my-kek"]
    dek = secrets.token_bytes(32)
    (work / "dek.bin").write_bytes(dek)
    done = json.loads(platform("kas", "wrap", "--kid", "k1", "--in", "dek.bin", "--out", "wrapped.json", "--json"))
    assert done == {"kid": "k1", "algorithm": "rsa:2048", "kas_uri": "http://127.0.0.1/kas", "bytes": 32,
                    "out": "wrapped.json"}
    platform(plugin, "kas", "unwrap", "--in", "wrapped.json", "--out", "back.bin")
    assert (work / "back.bin").read_bytes() == dek

    # Isolated: no runner exists yet; the first load builds it into $HOME/.cache, the second reuses it.
    isolated = f"--key-manager-plugin=isolated:{work / 'example-c-manager.so'}"
    cache = tmp_path / ".cache" / "kas-keymanager-host"
    assert not cache.exists()
    (work / "back.bin").unlink()
    platform(isolated, "kas", "unwrap", "--in", "wrapped.json", "--out", "back.bin")
    assert (work / "back.bin").read_bytes() == dek
    (runner,) = cache.glob("km-plugin-host-*")
    built_at = runner.stat().st_mtime_ns
    listed = json.loads(platform(isolated, "plugins", "list", "--json"))
    assert "example-c" in {m["name"] for m in listed["managers"]}
    assert runner.stat().st_mtime_ns == built_at

    port = free_port()
    # doctor from the installed package: everything above is sound, the plugin only unpinned (a warning)
    doctor = json.loads(_run([str(bindir / "platform"), plugin, "doctor", "--port", str(port), "--json"], work,
                             {**env, "PLATFORM_ADMIN_TOKENS": TOKEN}))
    assert doctor["ok"], doctor
    assert {c["status"] for c in doctor["checks"]} <= {"ok", "warn"}
    log = (work / "serve.log").open("w")
    server = subprocess.Popen([str(bindir / "platform"), plugin, "serve", "--port", str(port)], cwd=work,
                              env={**env, "PLATFORM_ADMIN_TOKENS": TOKEN}, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/healthz", server)
        public = _post(f"{base}/kas.AccessService/PublicKey", {"algorithm": "rsa:2048"})
        assert public["kid"] == "k1" and "BEGIN PUBLIC KEY" in public["publicKey"]
        configs = _post(f"{base}/policy.keymanagement.KeyManagementService/ListProviderConfigs", {}, TOKEN)
        assert [c["name"] for c in configs["providerConfigs"]] == ["my-kek"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()
    assert "Traceback" not in (work / "serve.log").read_text()
