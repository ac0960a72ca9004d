"""`AccessProver`: the reader's half of the key-knowledge proof (docs/protocol/access.md).

It derives the secret's access key from the link key and, when the secret has a passphrase,
the passphrase (given, or asked for once) stretched with the Argon2id cost and salt that the
challenge carried, and signs each challenge with it. The passphrase it used is then the one
the envelope is opened with, so the person is asked at most once per reveal.
"""

from __future__ import annotations

from atopos.client.envelope_reader import MAX_PASSPHRASE_ATTEMPTS, PassphrasePrompt
from atopos.crypto.access_proof import AccessSigner
from atopos.crypto.base64url import b64url_decode
from atopos.crypto.errors import PassphraseRequired
from atopos.crypto.kdf import ARGON2_SALT_BYTES, Argon2Params, derive_passphrase_key
from atopos.errors import NetworkError
from atopos.protocol.access_path import (
    NEEDS_PASSPHRASE,
    Argon2Fields,
    MakeAccessProof,
    MakeStampProof,
)

__all__ = ["AccessProver"]

_BAD_FIELDS = "The server sent Argon2id parameters that Atopos does not accept."


class AccessProver:
    """Makes access proofs for one reveal; the derived key is kept for retries (a 429
    starts the walk again with a new challenge)."""

    __slots__ = ("_ask", "_asked", "_link_key", "_signers", "passphrase")

    def __init__(
        self,
        link_key: bytes,
        *,
        passphrase: str | None = None,
        ask_passphrase: PassphrasePrompt | None = None,
    ) -> None:
        self._link_key = link_key
        self._ask = ask_passphrase
        self._signers: dict[Argon2Fields | None, AccessSigner] = {}
        self._asked = 0  # passphrases typed at the prompt so far
        # The passphrase given or typed: the envelope is opened with it.
        self.passphrase = passphrase

    @property
    def ask_passphrase(self) -> PassphrasePrompt | None:
        """The prompt, for the envelope of a secret stored before the proof existed."""
        return self._ask

    def may_ask_again(self) -> bool:
        """After the server refused a proof (wrong key or passphrase): True when the
        passphrase came from the prompt and another try is allowed; it is then forgotten,
        so that the next proof asks for a new one (nothing was spent)."""
        if self._ask is None or self._asked == 0 or self._asked >= MAX_PASSPHRASE_ATTEMPTS:
            return False
        self.passphrase = None
        self._signers.clear()
        return True

    def sign(self, step: MakeAccessProof) -> bytes:
        signer = self._signers.get(step.argon2)
        if signer is None:
            signer = self._signers[step.argon2] = self._signer(step.argon2)
        return signer.sign_proof(b64url_decode(step.secret_id), step.challenge)

    def sign_stamp(self, step: MakeStampProof) -> bytes:
        """The access proof over a stamp: the link key alone, the stamp's own label."""
        signer = self._signers.get(None)
        if signer is None:
            signer = self._signers[None] = self._signer(None)
        return signer.sign_stamp_proof(b64url_decode(step.secret_id), step.stamp)

    def _signer(self, fields: Argon2Fields | None) -> AccessSigner:
        if fields is None:
            return AccessSigner(self._link_key)
        try:
            params = Argon2Params(fields.memory_kib, fields.iterations, fields.lanes)
            salt = b64url_decode(fields.salt)
        except ValueError:
            raise NetworkError(_BAD_FIELDS) from None
        if len(salt) != ARGON2_SALT_BYTES:
            raise NetworkError(_BAD_FIELDS)
        if self.passphrase is None:
            if self._ask is None:
                raise PassphraseRequired(NEEDS_PASSPHRASE)
            self.passphrase = self._ask(self._asked)
            self._asked += 1
        try:
            stretched = derive_passphrase_key(self.passphrase, salt, params)
        except ValueError:
            # No UTF-8 form (a lone surrogate): no key can come of it, so it is wrong.
            stretched = bytes(32)
        return AccessSigner(self._link_key, stretched)
