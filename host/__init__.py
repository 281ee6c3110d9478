"""Key-manager plugin host for a Key Access Server (see DESIGN.md)."""

__version__ = "0.1.0"
