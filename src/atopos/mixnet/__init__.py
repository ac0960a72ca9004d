"""The mixnet's processes (docs/mixnet.md): mix nodes and gateways (`node.py`), the client
transport (`client.py`), over the sans-I/O core in protocol/mix_*.py and crypto/sphinx.py."""
