// Solve a server challenge in Web Workers (one per core, up to four), so the page stays
// responsive and can show how the search is going.

/** Above this the search would outlast the challenge (120 s) on an ordinary device. */
export const MAX_BITS = 26;

/**
 * Find a nonce for `challenge` at `bits` difficulty. `onProgress(tried, expected)` is
 * called as the workers report; `expected` is 2 ** bits, the mean number of tries.
 */
export function solveChallenge(challenge, bits, onProgress = () => {}) {
  if (bits <= 0) return Promise.resolve(0);
  if (bits > MAX_BITS) {
    return Promise.reject(new Error("The server asks for more work than this page will do."));
  }
  const count = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4));
  const url = new URL("./pow-worker.js", import.meta.url);
  const workers = Array.from({ length: count }, () => new Worker(url));
  const expected = 2 ** bits;
  let tried = 0;
  return new Promise((resolve, reject) => {
    workers.forEach((worker, index) => {
      worker.onmessage = ({ data }) => {
        if (data.error !== undefined) {
          reject(new Error(data.error));
          return;
        }
        tried += data.tried;
        onProgress(tried, expected);
        if (data.nonce !== undefined) resolve(data.nonce);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error("The proof of work could not run in this browser."));
      };
      worker.postMessage({ challenge, bits, start: index, stride: count });
    });
  }).finally(() => {
    for (const worker of workers) worker.terminate();
  });
}
