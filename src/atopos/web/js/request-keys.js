// The keys of a secret request (docs/protocol/requests.md, "Keys"), on WebCrypto: the twin
// of src/atopos/crypto/request_keys.py, held to tests/vectors/requests.json. The request key
// is the link key of the secret that fills the request; the fill token, derived one-way
// from it, is what the filler shows the server.

export const FILL_TOKEN_INFO = new TextEncoder().encode("atopos/request-fill/v1");
export const REQUEST_KEY_BYTES = 32;
const FILL_TOKEN_BITS = 256;

/** fill_token = HKDF-SHA256(request key, empty salt, "atopos/request-fill/v1", 32 bytes). */
export async function fillTokenOf(requestKey) {
  if (!(requestKey instanceof Uint8Array) || requestKey.length !== REQUEST_KEY_BYTES) {
    throw new RangeError("a request key is 32 bytes");
  }
  const hkdf = await crypto.subtle.importKey("raw", requestKey, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: FILL_TOKEN_INFO },
    hkdf,
    FILL_TOKEN_BITS,
  );
  return new Uint8Array(bits);
}
