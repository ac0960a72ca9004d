"""The secrets product: its HTTP API, wire schemas and lifecycle on a node."""

from atopos.server.secrets.mount import SecretsProduct

__all__ = ["SecretsProduct"]
