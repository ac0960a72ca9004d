"""Argon2id in the browser at the default cost (64 MiB, 3 passes, 4 lanes), with and without
WebAssembly: the figure docs/browser.md and docs/tor.md give for Tor Browser's "Safer" level.

Runs `kdf.derivePassphraseKey` (the pages' own code path: worker, engine choice) twice in a
page of a real `atopos serve`, in Debian's Chromium as it ships and with
`--js-flags=--jitless` (no JIT, no WebAssembly). Run: `.venv/bin/python -m bench.argon2_browser`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.harness import Processes, start_atopos

RUNS = 2
CHROMIUM = "/usr/bin/chromium"
# As tests/browser/conftest.py starts it (CHROMIUM_ARGS, SAFER_ARGS).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SAFER_ARGS = ["--js-flags=--jitless"]
_DERIVE = """async (runs) => {
  const kdf = await import("/static/js/kdf.js");
  const engines = new Set();
  kdf.passphraseProgress.addEventListener("passphrase-progress", ({ detail }) => {
    engines.add(detail.engine);
  });
  const seconds = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    await kdf.derivePassphraseKey("correct horse battery staple", new Uint8Array(16), {
      memoryKib: 65536, iterations: 3, lanes: 4,
    });
    seconds.push((performance.now() - started) / 1000);
  }
  return { seconds, engines: [...engines] };
}"""


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="atopos-argon2-bench-"))
    with Processes(root) as processes, sync_playwright() as playwright:
        server = start_atopos(processes, root / "data")
        for level, extra in (("standard", []), ("safer (--jitless)", SAFER_ARGS)):
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra]
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(600_000)
                page.goto(f"{server.url}/")
                result = page.evaluate(_DERIVE, RUNS)
            finally:
                browser.close()
            times = ", ".join(f"{value:.2f} s" for value in result["seconds"])
            print(f"{level}: {times} (engine: {', '.join(result['engines'])})")


if __name__ == "__main__":
    main()
