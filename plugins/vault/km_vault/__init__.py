"""HashiCorp Vault transit key manager (manager name `vault`)."""

from .manager import VaultTransitManager

__all__ = ["VaultTransitManager"]
