// The fixed byte strings every room signature, MAC and hash covers (rooms.md "Notation"):
// ASCII labels, big-endian integers, concatenation and constant-time comparison.

import { concatBytes } from "./device.js";

export { concatBytes };

const utf8 = new TextEncoder();

/** The UTF-8 bytes of `text` (labels are ASCII). */
export function bytesOf(text) {
  return utf8.encode(text);
}

/** u8, u16, u32 big-endian. */
export function u8(value) {
  return Uint8Array.of(value & 0xff);
}

export function u16(value) {
  return Uint8Array.of((value >>> 8) & 0xff, value & 0xff);
}

export function u32(value) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError("a u32 is an integer 0 … 2^32 − 1");
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

/** u64 big-endian of a safe integer (every epoch and counter is ≤ 2^53 − 1). */
export function u64(value) {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError("a u64 here is ≤ 2^53 − 1");
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value));
  return out;
}

/** True when two byte arrays are equal, in time independent of where they differ. */
export function bytesEqual(a, b) {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.length !== b.length) {
    return false;
  }
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** True when every byte is zero. */
export function isAllZero(bytes) {
  return bytes.every((byte) => byte === 0);
}
