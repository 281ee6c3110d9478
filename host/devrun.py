"""`make run`: the platform on the embedded default, set up on first use.

Creates `.platform/` with a development root key (0600) and an admin token
(0600) when missing, loads every plugin built under build/plugins/, makes
sure the SQLite database and one KAS with a key per algorithm exist, then
serves as that KAS (PLATFORM_KAS, unless already set). Everything it creates it says so.
"""

from __future__ import annotations

import glob
import os
import secrets
import subprocess
import sys

STATE = os.environ.get("PLATFORM_STATE_DIR", ".platform")
ROOT_KEY = os.path.join(STATE, "root.key")
PORT = os.environ.get("PLATFORM_PORT", "8080")
HOST = os.environ.get("PLATFORM_HOST", "127.0.0.1")


def _root_key_file() -> None:
    if os.path.exists(ROOT_KEY) or os.environ.get("PLATFORM_ROOT_KEY"):
        return
    fd = os.open(ROOT_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    print(f"created a development root key in {ROOT_KEY} (mode 0600); in production set PLATFORM_ROOT_KEY")


def main() -> None:
    from host.server.auth import ensure_dev_admin_token

    os.makedirs(STATE, mode=0o700, exist_ok=True)
    _root_key_file()
    made = ensure_dev_admin_token(STATE)  # sets PLATFORM_ADMIN_TOKEN_FILE for the server
    platform = [os.path.join(os.path.dirname(sys.executable), "platform")]
    if not os.environ.get("PLATFORM_ROOT_KEY"):
        platform += ["--root-key-file", ROOT_KEY]
    for plugin in sorted(glob.glob("build/plugins/*-manager.so")):
        platform += ["--key-manager-plugin", plugin]
    kas_uri = f"http://{HOST}:{PORT}/kas"
    subprocess.run(platform + ["dev-setup", "--kas-uri", kas_uri], check=True)
    # Pinned, so that KAS registered later in this database (the plugin guide does) leave it unambiguous.
    os.environ.setdefault("PLATFORM_KAS", kas_uri)
    subprocess.run(platform + ["plugins", "list"], check=True)
    token = made[0] if made else "<your configured admin token>"
    print(f"""
admin token: {token}   (also in {made[1] if made else 'your configuration'})
first commands to try, in another shell:
  curl -s -X POST -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{}}' \\
    http://{HOST}:{PORT}/policy.keymanagement.KeyManagementService/ListProviderConfigs
  curl -s -H 'Authorization: Bearer {token}' 'http://{HOST}:{PORT}/kas/v2/kas_public_key?algorithm=ec:secp256r1'
""", flush=True)
    os.execv(platform[0], platform + ["serve", "--host", HOST, "--port", PORT])


if __name__ == "__main__":
    main()
