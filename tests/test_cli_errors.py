"""The CLI's errors are one line, whatever goes wrong below it: here a plugin that claims an
absurd output length (2^40 bytes) during an unwrap, driven through the real `platform` command."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.cbuild import build_shared

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = Path(sys.executable).parent / "platform"


def test_absurd_out_len_from_a_plugin_is_one_error_line_not_a_traceback(tmp_path):
    plugin = build_shared(ROOT / "tests" / "fixtures" / "misbehaving_plugin.c", tmp_path / "huge.so",
                          {"HUGE_OUT_LEN": None})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env["PLATFORM_ROOT_KEY"] = secrets.token_hex(32)
    base = [str(PLATFORM), "--db", f"sqlite:///{tmp_path / 'p.db'}", "--key-manager-plugin", str(plugin)]

    def run(*args):
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    assert run("policy", "kas-registry", "create", "--uri", "https://kas.example.com", "--name", "kas1").returncode == 0
    created = run("policy", "keymanagement", "provider", "create", "--name", "echo", "--manager", "echo",
                  "--config", "{}", "--json")
    assert created.returncode == 0, created.stderr
    pc_id = json.loads(created.stdout)["id"]
    key = run("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", "k1", "--algorithm",
              "rsa:2048", "--mode", "provider", "--provider-config-id", pc_id, "--wrapping-key-id", "w")
    # The key service unwraps the new key's wrapped private key to check it: the plugin's answer ends there.
    assert key.returncode == 1
    assert "Traceback" not in key.stderr
    lines = [line for line in key.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].endswith("[internal]"), key.stderr
    assert "1099511627776" in lines[0]  # the operator at the CLI reads the plugin's words
