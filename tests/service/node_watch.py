"""A second platform node with the production cache rules (revision watch every PERIOD seconds,
provider private keys cached 30 s): reads "unwrap <kid> <b64 wrapped>" lines from stdin and
answers one JSON line each."""

import base64
import json
import sys

from host import errors
from host.app import Platform, Settings
from host.service import KeyService


def main():
    db, period, *plugins = sys.argv[1:]
    p = Platform(Settings(db_url=db, plugin_paths=tuple(plugins)))
    keys = KeyService(p.store, p.registry, root_key=p.root_key, revision_check_seconds=float(period))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        _, kid, b64 = line.split()
        try:
            out = {"dek": base64.b64encode(keys.unwrap(kid, base64.b64decode(b64))).decode()}
        except errors.PlatformError as e:
            out = {"error": e.code}
        print(json.dumps(out), flush=True)
    keys.close()


if __name__ == "__main__":
    main()
