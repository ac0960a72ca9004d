// Proof of work (docs/protocol/access.md): find a nonce such that
// SHA-256(utf8(challenge) || ":" || decimal(nonce)) starts with `bits` zero bits.
// Each worker tries nonces start, start + stride, start + 2 * stride, ... and reports how
// many it has tried about ten times a second, so the page can show progress.

const BATCH = 256;
const REPORT_EVERY_MS = 100;

function hasLeadingZeroBits(digest, bits) {
  const bytes = new Uint8Array(digest);
  const fullBytes = bits >> 3;
  for (let i = 0; i < fullBytes; i++) if (bytes[i] !== 0) return false;
  const rest = bits & 7;
  return rest === 0 || bytes[fullBytes] >> (8 - rest) === 0;
}

async function solve(challenge, bits, start, stride) {
  const prefix = new TextEncoder().encode(`${challenge}:`);
  const ascii = new TextEncoder();
  let tried = 0;
  let reported = performance.now();
  for (let nonce = start; nonce <= Number.MAX_SAFE_INTEGER; ) {
    const nonces = [];
    const digests = [];
    for (let i = 0; i < BATCH; i++, nonce += stride) {
      const digits = ascii.encode(String(nonce));
      const message = new Uint8Array(prefix.length + digits.length);
      message.set(prefix);
      message.set(digits, prefix.length);
      nonces.push(nonce);
      digests.push(crypto.subtle.digest("SHA-256", message));
    }
    const results = await Promise.all(digests);
    for (let i = 0; i < BATCH; i++) {
      if (hasLeadingZeroBits(results[i], bits)) {
        self.postMessage({ tried: tried + i + 1, nonce: nonces[i] });
        return;
      }
    }
    tried += BATCH;
    const now = performance.now();
    if (now - reported >= REPORT_EVERY_MS) {
      self.postMessage({ tried });
      reported = now;
      tried = 0;
    }
  }
  self.postMessage({ error: "No nonce was found." });
}

self.onmessage = ({ data }) => {
  solve(data.challenge, data.bits, data.start, data.stride).catch((error) => {
    self.postMessage({ error: String(error?.message ?? error) });
  });
};
