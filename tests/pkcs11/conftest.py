"""Fixtures for the pkcs11 plugin tests: a SoftHSM2 token set up from
scratch for this test process, the built plugin, and its factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pkcs11.labels import AES_KEY, EC384_KEY, EC_KEY, RSA_KEY
from tests.softhsm import SoftHSMUnavailable, add_token, find_module, session_token
from tests.make import make_or_fail

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "build" / "plugins" / "pkcs11-manager.so"

@pytest.fixture(scope="session")
def token(tmp_path_factory):
    try:
        find_module()
    except SoftHSMUnavailable as e:
        pytest.fail(f"{e}: run `make sysdeps`")
    main = session_token(tmp_path_factory.mktemp("softhsm"), label="kas-pkcs11-test",
                         aes=[AES_KEY], rsa=[RSA_KEY], ec=[EC_KEY])
    if EC384_KEY not in main.keys:
        main.generate(ec=[EC384_KEY], curve="secp384r1")
    # Made before anything here loads SoftHSM, which scans tokens at C_Initialize.
    global _volatile
    _volatile = add_token(main, "kas-pkcs11-volatile", aes=[AES_KEY])
    return main


_volatile = None


@pytest.fixture(scope="session")
def volatile_token(token):
    """A second token (same PINs, an AES key) that tests may re-initialize or delete."""
    return _volatile


@pytest.fixture(scope="session")
def plugin_path() -> Path:
    make_or_fail(str(PLUGIN.relative_to(ROOT)))
    return PLUGIN


@pytest.fixture(scope="session")
def loaded_plugin(plugin_path, token):
    """The plugin, loaded once for the session and kept alive: a second
    load_plugin of the same file re-runs km_plugin_init, whose host struct
    (log callback context) then replaces the first one's in the plugin."""
    from host.loader import load_plugin

    return load_plugin(str(plugin_path))


@pytest.fixture(scope="session")
def factory(loaded_plugin):
    (f,) = [f for f in loaded_plugin.factories if f.name == "pkcs11"]
    return f


@pytest.fixture
def manager(factory, token):
    """A manager whose default key is the AES key; closed after the test."""
    m = factory.create(token.config_json(AES_KEY))
    yield m
    m.close()


@pytest.fixture
def remote_manager(factory, token):
    """A manager whose default key is the RSA key pair; closed after the test."""
    m = factory.create(token.config_json(RSA_KEY))
    yield m
    m.close()
