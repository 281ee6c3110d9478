"""Azure Key Vault key manager (manager name `azure`)."""

from .manager import AzureKeyVaultManager

__all__ = ["AzureKeyVaultManager"]
