// What the pages say while Argon2id runs without WebAssembly (Tor Browser's "Safer" level):
// the plain JavaScript engine takes tens of seconds at our parameters (docs/browser.md), so
// the reader sees that it is expected, how far it is and about how long is left.

import { passphraseProgress } from "./kdf.js";

// Measured in Chromium with --js-flags=--jitless: about 45 s for 64 MiB, 3 passes, 4 lanes.
const EXPECTED = "this can take a minute or more";

/** The sentence for `fraction` done after `elapsedMs`, or the opening one at 0. */
export function slowPassphraseText(fraction, elapsedMs) {
  const lede =
    "This browser runs without WebAssembly (Tor Browser's “Safer” level, for instance), " +
    `so the passphrase is strengthened in plain JavaScript: ${EXPECTED}.`;
  if (!(fraction > 0)) return lede;
  const left = Math.max(1, Math.round((elapsedMs * (1 - fraction)) / fraction / 1000));
  return `${lede} ${Math.floor(fraction * 100)} % done, about ${left} s left.`;
}

/**
 * Call `show(fraction, text)` whenever the plain engine reports progress, until the
 * returned function is called. The WebAssembly engine is quick and reports nothing.
 */
export function watchSlowPassphrase(show, now = () => performance.now()) {
  let started = null;
  const listen = ({ detail }) => {
    if (detail.engine !== "plain") return;
    if (detail.fraction === 0 || started === null) started = now();
    show(detail.fraction, slowPassphraseText(detail.fraction, now() - started));
  };
  passphraseProgress.addEventListener("passphrase-progress", listen);
  return () => passphraseProgress.removeEventListener("passphrase-progress", listen);
}
