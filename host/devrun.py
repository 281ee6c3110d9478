"""`make run`: the platform on the embedded default, set up on first use.

Creates `.platform/` with a development root key (0600) and an admin token
(0600) when missing, loads every plugin built under build/plugins/, makes
sure the SQLite database and one KAS with a key per algorithm exist, then
serves. Everything it creates it says so.
"""

from __future__ import annotations

import glob
import os
import secrets
import sys

STATE = os.environ.get("PLATFORM_STATE_DIR", ".platform")
ROOT_KEY = os.path.join(STATE, "root.key")
ADMIN_TOKEN = os.path.join(STATE, "admin.token")
PORT = os.environ.get("PLATFORM_PORT", "8080")
HOST = os.environ.get("PLATFORM_HOST", "127.0.0.1")


def _secret_file(path: str, make) -> bool:
    if os.path.exists(path):
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make() + "\n")
    return True


def main() -> None:
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    if _secret_file(ROOT_KEY, lambda: secrets.token_hex(32)):
        print(f"created a development root key in {ROOT_KEY} (mode 0600); production: set PLATFORM_ROOT_KEY")
    if not os.environ.get("PLATFORM_ADMIN_TOKENS") and _secret_file(ADMIN_TOKEN, lambda: secrets.token_urlsafe(32)):
        print(f"created an admin token in {ADMIN_TOKEN} (mode 0600)")
    plugins = sorted(glob.glob("build/plugins/*-manager.so"))
    args = [os.path.join(os.path.dirname(sys.executable), "platform"), "--root-key-file", ROOT_KEY]
    for p in plugins:
        args += ["--key-manager-plugin", p]
    env = dict(os.environ)
    if not env.get("PLATFORM_ADMIN_TOKENS") and not env.get("PLATFORM_ADMIN_TOKEN_FILE"):
        env["PLATFORM_ADMIN_TOKEN_FILE"] = ADMIN_TOKEN

    from click.testing import CliRunner  # noqa: F401  (import check only)
    from host.cli import main as cli

    if "serve" not in cli.commands:
        os.execve(args[0], args + ["plugins", "list"], env)
    import subprocess
    subprocess.run(args + ["dev-setup", "--kas-uri", f"http://{HOST}:{PORT}/kas"], env=env, check=True)
    token = open(env.get("PLATFORM_ADMIN_TOKEN_FILE", ADMIN_TOKEN)).read().strip() if os.path.exists(ADMIN_TOKEN) else "<your admin token>"
    print(f"\nadmin token: {token}\n"
          f"first command to try (in another shell):\n"
          f"  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{}}' "
          f"http://{HOST}:{PORT}/policy.keymanagement.KeyManagementService/ListProviderConfigs\n"
          f"  .venv/bin/platform --root-key-file {ROOT_KEY} kas public-key --algorithm ec:secp256r1\n")
    os.execve(args[0], args + ["serve", "--host", HOST, "--port", PORT], env)


if __name__ == "__main__":
    main()
