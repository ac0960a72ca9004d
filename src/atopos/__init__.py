"""Atopos: self-hostable one-time secrets and ephemeral end-to-end encrypted rooms."""

__version__ = "0.1.0"
