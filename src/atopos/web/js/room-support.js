// Which WebCrypto algorithms the room protocol needs and whether this browser has them
// (docs/browser.md, "Rooms: browser support"). A browser without X25519 or Ed25519 in
// WebCrypto gets a clear message: the page never falls back to home-made cryptography.

import { hasWebCrypto } from "./ui.js";

/** Resolves to the names of the missing algorithms ([] when the room pages can run). */
export async function missingRoomAlgorithms() {
  if (!hasWebCrypto()) return ["WebCrypto (a secure https:// page)"];
  const missing = [];
  const probes = {
    Ed25519: () => crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]),
    X25519: () => crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]),
  };
  for (const [name, probe] of Object.entries(probes)) {
    try {
      await probe();
    } catch {
      missing.push(name);
    }
  }
  return missing;
}
