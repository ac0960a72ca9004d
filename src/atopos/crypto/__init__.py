"""Sans-I/O cryptography: envelope, key derivation, proof of work, signed tokens.

Nothing in this package opens files or sockets, reads a clock or draws randomness on its
own: callers pass bytes, keys, `now` and random bytes in. It imports nothing else of Atopos.
"""
