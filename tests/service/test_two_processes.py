"""Two platform processes on one database: a config edit made by one is used
by the other on its next call (the revision rule), on PostgreSQL and SQLite."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from host import crypto
from tests.service.conftest import file_kek_config, make_platform


def test_config_update_reaches_other_process(db_url, root_key_hex, file_kek_plugin):
    a = make_platform(db_url, [file_kek_plugin])
    a.store.kas.create("https://kas", "k")
    conf = file_kek_config("a", "b")
    cfg = a.store.providers.create("fk", "file-kek", json.dumps(conf))
    key = a.keys.create_key(None, "x", "rsa:2048", "provider", provider_config_id=cfg.id, wrapping_key_id="a")
    dek = os.urandom(32)
    wrapped = crypto.rsa_wrap(crypto.load_public_pem(key.public_key_pem, "rsa:2048"), dek)
    b = subprocess.Popen([sys.executable, str(Path(__file__).with_name("node_b.py")), db_url, str(file_kek_plugin)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert json.loads(b.stdout.readline())["ready"]

        def ask():
            b.stdin.write(f"unwrap x {base64.b64encode(wrapped).decode()}\n")
            b.stdin.flush()
            return json.loads(b.stdout.readline())

        first = ask()
        assert base64.b64decode(first["dek"]) == dek and first["revisions"] == [1]
        conf["keks"]["c"] = "11" * 32
        a.store.providers.update(cfg.id, config_json=json.dumps(conf))          # node A edits
        second = ask()
        assert base64.b64decode(second["dek"]) == dek and second["revisions"] == [2]  # B rebuilt its manager
        del conf["keks"]["a"]
        conf["default_key_id"] = "b"
        a.store.providers.update(cfg.id, config_json=json.dumps(conf))
        third = ask()
        assert third["error"] == "not_found" and third["revisions"] == [3]          # and really uses it
    finally:
        b.stdin.close()
        b.wait(timeout=30)
        a.close()
