"""Key managers: the Python protocol every manager implements, and built-ins."""

from host.managers.base import CallContext, KeyManager, ManagerFactory, Capability

__all__ = ["CallContext", "KeyManager", "ManagerFactory", "Capability"]
