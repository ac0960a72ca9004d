// Unpadded base64url (RFC 4648 section 5): the text form of link keys, ids and tokens.
// Decoding is strict, like the Python side: one value has exactly one spelling.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const VALUES = new Map([...ALPHABET].map((char, index) => [char, index]));

/** Encode bytes as unpadded base64url. */
export function encode(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const chunk = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let j = 0; j < chars; j++) text += ALPHABET[(chunk >> (18 - 6 * j)) & 63];
  }
  return text;
}

/** Decode unpadded, canonical base64url; null for anything else. */
export function decode(text) {
  if (typeof text !== "string" || text.length % 4 === 1) return null;
  const bytes = new Uint8Array(Math.floor((text.length * 6) / 8));
  let bits = 0;
  let value = 0;
  let out = 0;
  for (const char of text) {
    const digit = VALUES.get(char);
    if (digit === undefined) return null;
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[out++] = (value >> bits) & 0xff;
    }
  }
  // Unused trailing bits must be zero, or two strings would name the same bytes.
  if ((value & ((1 << bits) - 1)) !== 0) return null;
  return bytes;
}
