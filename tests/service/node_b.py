"""A second platform process for the cross-process tests: reads commands
from stdin ("unwrap <kid> <b64 wrapped>"), answers one JSON line each."""

import base64
import json
import sys

from host import errors
from host.app import Platform, Settings
from host.service import KeyService


def main():
    db, *plugins = sys.argv[1:]
    p = Platform(Settings(db_url=db, plugin_paths=tuple(plugins)))
    keys = KeyService(p.store, p.registry, root_key=p.root_key, revision_check_seconds=0, private_key_ttl=0)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        _, kid, b64 = line.split()
        try:
            dek = keys.unwrap(kid, base64.b64decode(b64))
            out = {"dek": base64.b64encode(dek).decode()}
        except errors.PlatformError as e:
            out = {"error": e.code, "message": e.message}
        out["revisions"] = p.registry.revisions()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
