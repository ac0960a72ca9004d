"""Sans-I/O cryptography: envelope, key derivation, proof of work, signed tokens.

Nothing in this package opens files or sockets, reads a clock or draws randomness on its
own: callers pass bytes, keys, `now` and random bytes in. It imports nothing else of Atopos.

Two layers, as in pyca/cryptography's own:

- Recipes, the API callers use, which pick every nonce and check every tag themselves:
  `envelope` (seal and open a secret: `Sealer`, `Opener`, `seal`, `open_envelope`),
  `device` (device keys, device codes, sealing a share to a device, device proofs),
  `lock` (a local record under a passphrase or key), `tokens` (signed challenges and
  tickets) and `pow` (proof of work).
- Primitives underneath, used by the recipes (and by the server for one key of its own):
  `hkdf` (the one HKDF-SHA256), `kdf` (Argon2id, the envelope's key schedule), `padding`,
  `base64url`, `randomness` (the `RandomBytes` a caller hands in), and `sizes` (ids, tokens,
  keys and AES-GCM parameters, spelled once for crypto, client and server).

Every failure raised on purpose derives from `errors.CryptoError`; any failure to open
ciphertext is the one opaque `DecryptionFailed`, which never says why.
"""
