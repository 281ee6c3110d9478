"""Operator set-up for the TDF tests, run in a child process (python -m tests.tdf.admin).

Reads one JSON request on stdin, acts on the platform database through the
key service (the same code `platform kas-registry ...` runs), prints JSON:

    {"db": url, "root_key_file": path, "plugins": [...], "env": {...},
     "ops": [{"op": "kas", "uri": .., "name": ..},
             {"op": "provider", "name": .., "manager": .., "config": {..}},
             {"op": "activate", "algorithm": .., "mode": .., "key_id": ..,
              "provider": <name>, "wrapping_key_id": ..}]}
    -> {"results": [<kas id> | <provider config id> | {"key_id", "rotated": <old kid or null>}]}

A child process, because plugins that embed Python or load SoftHSM keep
per-process state the test process must not share (SoftHSM reads its
configuration once per process).
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    request = json.load(sys.stdin)
    os.environ.update(request.get("env") or {})
    from host.app import Platform, Settings
    from host.errors import NotFound, PlatformError

    platform = Platform(Settings(db_url=request["db"], root_key_file=request["root_key_file"],
                                 plugin_paths=tuple(request.get("plugins") or ())))
    results, providers = [], {}
    try:
        for op in request["ops"]:
            kind = op["op"]
            if kind == "kas":
                results.append(platform.store.kas.create(op["uri"], op["name"]).id)
            elif kind == "provider":
                pc = platform.store.providers.create(op["name"], op["manager"], json.dumps(op["config"]))
                providers[op["name"]] = pc.id
                results.append(pc.id)
            elif kind == "activate":
                options = {}
                if op.get("provider"):
                    options["provider_config_id"] = providers.get(op["provider"]) or op["provider"]
                if op.get("wrapping_key_id"):
                    options["wrapping_key_id"] = op["wrapping_key_id"]
                try:
                    current = platform.keys.public_key(algorithm=op["algorithm"])
                except NotFound:
                    current = None
                if current is None:
                    platform.keys.create_key(None, op["key_id"], op["algorithm"], op["mode"], **options)
                    results.append({"key_id": op["key_id"], "rotated": None})
                else:
                    options.setdefault("provider_config_id", None)
                    options.setdefault("wrapping_key_id", "")  # never inherit the old key's manager key id
                    platform.keys.rotate_key(None, current.key_id, op["key_id"], algorithm=op["algorithm"],
                                             mode=op["mode"], **options)
                    results.append({"key_id": op["key_id"], "rotated": current.key_id})
            else:
                raise SystemExit(f"unknown op {kind!r}")
    except PlatformError as e:
        print(json.dumps({"error": f"{e.code}: {e.message}"}))
        sys.exit(2)
    finally:
        platform.close()
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
