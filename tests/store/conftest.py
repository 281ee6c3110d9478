"""Store test fixtures: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from host.rootkey import RootKey
from host.store import Store
from tests.dbfixtures import db_url, pg_db_url, pg_server, sqlite_db_url  # noqa: F401

ROOT_KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
OTHER_ROOT_KEY_HEX = "ff" * 32

# The seed document's example configs, byte for byte (seeds/000_3a155608177b188b.txt).
SEED_AWS = b'''{
  "region": "us-east-1",
  "access_key_id": "AKIA...",
  "secret_access_key": "...",
  "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012",
  "endpoint": "https://kms.us-east-1.amazonaws.com"
}'''
SEED_VAULT = b'''{
  "vault_addr": "https://vault.example.com:8200",
  "vault_token": "hvs.CAESIJlWh...",
  "mount_path": "transit",
  "key_name": "opentdf-dek-key"
}'''
SEED_AZURE = b'''{
  "vault_url": "https://myvault.vault.azure.net/",
  "tenant_id": "12345678-1234-1234-1234-123456789012",
  "client_id": "87654321-4321-4321-4321-210987654321",
  "client_secret": "...",
  "key_name": "opentdf-master-key"
}'''
SEED_CONFIGS = {"aws-kms": SEED_AWS, "vault": SEED_VAULT, "azure": SEED_AZURE}


@pytest.fixture
def root_key():
    return RootKey.from_hex(ROOT_KEY_HEX, "test")


@pytest.fixture
def store(db_url):
    s = Store.open(db_url)
    yield s
    s.close()


@pytest.fixture
def sealed_store(db_url, root_key):
    """A store with a root key: configs encrypted at rest."""
    s = Store.open(db_url, root_key=root_key)
    yield s
    s.close()


@pytest.fixture
def kas(store):
    return store.kas.create("https://kas.example.com", "kas-a")
