// Shamir's secret sharing over GF(2^8) for split links: the twin of crypto/shamir.py
// (docs/protocol/links.md, "Split links"; vectors in tests/vectors/shamir.json).
//
// A share is format (1) || share-set id (8) || k (1) || n (1) || index (1) || value (32).
// Any k shares of one set give the 32-byte link key back; fewer reveal nothing about it.

export const SHARE_FORMAT = 1;
export const SHARE_SET_ID_BYTES = 8;
export const MIN_THRESHOLD = 2;
export const MAX_SHARES = 10;
export const KEY_SHARE_BYTES = 1 + SHARE_SET_ID_BYTES + 3 + 32;
const REDUCTION = 0x1b;

/** Shares that cannot be combined: damaged, of different splits, repeated, or too few. */
export class InvalidShares extends Error {
  constructor(message) {
    super(message);
    this.name = "InvalidShares";
  }
}

/** Parse a share's bytes: {setId, threshold, count, index, value}; InvalidShares otherwise. */
export function parseShare(bytes) {
  if (bytes.length !== KEY_SHARE_BYTES || bytes[0] !== SHARE_FORMAT) {
    throw new InvalidShares("This is not a key share this version understands.");
  }
  const end = 1 + SHARE_SET_ID_BYTES;
  const share = {
    setId: bytes.slice(1, end),
    threshold: bytes[end],
    count: bytes[end + 1],
    index: bytes[end + 2],
    value: bytes.slice(end + 3),
  };
  if (!(MIN_THRESHOLD <= share.threshold && share.threshold <= share.count && share.count <= MAX_SHARES)) {
    throw new InvalidShares(`A share must be k of n with 2 <= k <= n <= ${MAX_SHARES}.`);
  }
  if (!(share.index >= 1 && share.index <= share.count)) {
    throw new InvalidShares("A share's index must be between 1 and its count.");
  }
  return share;
}

/** The byte form of a share (parseShare's inverse). */
export function shareBytes(share) {
  const bytes = new Uint8Array(KEY_SHARE_BYTES);
  bytes[0] = SHARE_FORMAT;
  bytes.set(share.setId, 1);
  bytes.set([share.threshold, share.count, share.index], 1 + SHARE_SET_ID_BYTES);
  bytes.set(share.value, 4 + SHARE_SET_ID_BYTES);
  return bytes;
}

/** `count` shares of the 32-byte `key`; `randomBytes(n)` gives the set id, then coefficients. */
export function splitKey(key, threshold, count, randomBytes) {
  if (key.length !== 32) throw new Error("only a 32-byte key is split");
  if (!(MIN_THRESHOLD <= threshold && threshold <= count && count <= MAX_SHARES)) {
    throw new InvalidShares(`A split must be k of n with 2 <= k <= n <= ${MAX_SHARES}.`);
  }
  const setId = randomBytes(SHARE_SET_ID_BYTES);
  const coefficients = [key];
  for (let degree = 1; degree < threshold; degree++) coefficients.push(randomBytes(32));
  const shares = [];
  for (let x = 1; x <= count; x++) {
    const value = new Uint8Array(32);
    for (let i = 0; i < 32; i++) {
      let result = 0;
      for (let d = coefficients.length - 1; d >= 0; d--) {
        result = multiply(result, x) ^ coefficients[d][i];
      }
      value[i] = result;
    }
    shares.push({ setId, threshold, count, index: x, value });
  }
  return shares;
}

/** How many more distinct shares are needed (0: enough); InvalidShares if they do not match. */
export function sharesMissing(shares) {
  if (shares.length === 0) throw new InvalidShares("No share was given.");
  const [first] = shares;
  const seen = new Map();
  for (const share of shares) {
    if (
      share.threshold !== first.threshold ||
      share.count !== first.count ||
      !equalBytes(share.setId, first.setId)
    ) {
      throw new InvalidShares("These shares belong to different splits.");
    }
    const earlier = seen.get(share.index);
    if (earlier !== undefined && !equalBytes(earlier, share.value)) {
      throw new InvalidShares("Two shares have the same index but differ.");
    }
    seen.set(share.index, share.value);
  }
  return Math.max(0, first.threshold - seen.size);
}

/** The key from at least k distinct shares of one split (Lagrange interpolation at 0). */
export function combineKey(shares) {
  const missing = sharesMissing(shares);
  if (missing > 0) throw new InvalidShares(`${missing} more share(s) are needed.`);
  const byIndex = new Map(shares.map((share) => [share.index, share]));
  const chosen = [...byIndex.keys()]
    .sort((a, b) => a - b)
    .slice(0, shares[0].threshold)
    .map((index) => byIndex.get(index));
  const xs = chosen.map((share) => share.index);
  const key = new Uint8Array(32);
  chosen.forEach((share, j) => {
    let numerator = 1;
    let denominator = 1;
    xs.forEach((x, m) => {
      if (m !== j) {
        numerator = multiply(numerator, x);
        denominator = multiply(denominator, x ^ xs[j]);
      }
    });
    const weight = multiply(numerator, inverse(denominator));
    for (let i = 0; i < 32; i++) key[i] ^= multiply(weight, share.value[i]);
  });
  return key;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** a * b in GF(2^8), the same eight steps whatever the operands. */
function multiply(a, b) {
  let product = 0;
  for (let i = 0; i < 8; i++) {
    product ^= -(b & 1) & a;
    const carry = -(a >> 7) & REDUCTION;
    a = ((a << 1) & 0xff) ^ carry;
    b >>= 1;
  }
  return product;
}

/** a^254 = a^-1 for a != 0. */
function inverse(a) {
  let result = 1;
  let power = a;
  for (let bit = 0; bit < 8; bit++) {
    if ((254 >> bit) & 1) result = multiply(result, power);
    power = multiply(power, power);
  }
  return result;
}
