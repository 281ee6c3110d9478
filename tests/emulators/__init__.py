"""HTTP emulators of external key services (Vault transit, Azure Key Vault).

Each one follows the service's documented HTTP API on a loopback port, so
the code under test talks to it through its ordinary SDK and cannot tell.
"""
