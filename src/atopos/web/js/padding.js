// Padmé padding (Nikitin et al., PETS 2019), as in docs/protocol/envelope.md section 4.2.
// Lengths can pass 2**31, so no 32-bit bitwise operators here.

export const MIN_PADDED_SIZE = 512;

/** The Padmé length of `length` (a safe integer >= 0). */
export function padme(length) {
  if (length < 2) return length;
  const exponent = length.toString(2).length - 1; // floor(log2 L)
  const mantissaBits = exponent.toString(2).length; // floor(log2 E) + 1
  const lowBits = exponent - mantissaBits;
  if (lowBits <= 0) return length;
  const step = 2 ** lowBits;
  return Math.ceil(length / step) * step;
}

/** The length an unpadded plaintext of `length` bytes is padded to. */
export function paddedSize(length) {
  return padme(Math.max(length, MIN_PADDED_SIZE));
}
