// Key derivation for envelopes (docs/protocol/envelope.md section 3): Argon2id stretches a
// passphrase, HKDF-SHA256 makes the AES-256-GCM key and the 7-byte nonce prefix.

export const ARGON2_SALT_BYTES = 16;
export const ENVELOPE_SALT_BYTES = 32;
export const PASSPHRASE_KEY_BYTES = 32;
export const ENVELOPE_INFO = new TextEncoder().encode("atopos/envelope/v1");
export const KEY_BYTES = 32;
export const NONCE_PREFIX_BYTES = 7;

/** UTF-8 of the passphrase's NFC form, so the same words typed anywhere give one key. */
export function normalizePassphrase(passphrase) {
  return new TextEncoder().encode(passphrase.normalize("NFC"));
}

/**
 * Argon2id (version 0x13, 32-byte tag, no secret, no associated data) of the normalised
 * passphrase, computed by the vendored hash-wasm build in a short-lived worker.
 */
export async function derivePassphraseKey(passphrase, salt, { memoryKib, iterations, lanes }) {
  const password = normalizePassphrase(passphrase);
  const worker = new Worker(new URL("./argon2-worker.js", import.meta.url), { type: "module" });
  try {
    const reply = await new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => resolve(data);
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error("The passphrase could not be processed in this browser."));
      };
      worker.postMessage({ password, salt: salt.slice(), memoryKib, iterations, lanes }, [
        password.buffer,
      ]);
    });
    if (reply.error !== undefined) throw new Error(reply.error);
    return reply.key;
  } finally {
    worker.terminate();
  }
}

/**
 * HKDF-SHA256(ikm = link key [|| passphrase key] [|| device secret], salt,
 * info "atopos/envelope/v1", 39 bytes). Returns the AES-GCM key (not extractable) and the
 * nonce prefix.
 */
export async function deriveEnvelopeKeys(linkKey, salt, passphraseKey = null, deviceSecret = null) {
  const ikm = new Uint8Array(
    linkKey.length + (passphraseKey?.length ?? 0) + (deviceSecret?.length ?? 0),
  );
  ikm.set(linkKey);
  if (passphraseKey !== null) ikm.set(passphraseKey, linkKey.length);
  if (deviceSecret !== null) ikm.set(deviceSecret, linkKey.length + (passphraseKey?.length ?? 0));
  try {
    const hkdf = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
    const okm = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt, info: ENVELOPE_INFO },
        hkdf,
        (KEY_BYTES + NONCE_PREFIX_BYTES) * 8,
      ),
    );
    const key = await crypto.subtle.importKey("raw", okm.subarray(0, KEY_BYTES), "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    const noncePrefix = okm.slice(KEY_BYTES);
    okm.fill(0);
    return { key, noncePrefix };
  } finally {
    ikm.fill(0);
  }
}
