// Runs one Argon2id derivation off the main thread, so the page stays responsive while
// the passphrase is stretched. The page terminates this worker afterwards, which frees
// the memory (tens of MiB) that held the passphrase's intermediate state.
//
// Two engines give the same bytes: hash-wasm's WebAssembly build where WebAssembly exists,
// and @noble/hashes' plain JavaScript where it does not (Tor Browser's "Safer" level turns
// WebAssembly and the JIT off). The fallback is many times slower, so it reports progress.

const PROGRESS_STEPS = 100;

async function wasmArgon2id(data) {
  await import("../vendor/hash-wasm-4.13.0/argon2.umd.min.js");
  return globalThis.hashwasm.argon2id({
    password: data.password,
    salt: data.salt,
    parallelism: data.lanes,
    iterations: data.iterations,
    memorySize: data.memoryKib,
    hashLength: 32,
    outputType: "binary",
  });
}

async function plainArgon2id(data) {
  const { argon2id } = await import("../vendor/noble-hashes-2.4.0/argon2.js");
  let reported = 0;
  return argon2id(data.password, data.salt, {
    t: data.iterations,
    m: data.memoryKib,
    p: data.lanes,
    dkLen: 32,
    maxmem: data.memoryKib * 1024,
    onProgress(fraction) {
      const step = Math.floor(fraction * PROGRESS_STEPS);
      if (step > reported) {
        reported = step;
        self.postMessage({ progress: step / PROGRESS_STEPS });
      }
    },
  });
}

self.onmessage = async ({ data }) => {
  try {
    const hasWasm = typeof WebAssembly === "object";
    self.postMessage({ engine: hasWasm ? "wasm" : "plain" });
    const key = await (hasWasm ? wasmArgon2id(data) : plainArgon2id(data));
    self.postMessage({ key }, [key.buffer]);
  } catch (error) {
    self.postMessage({ error: String(error?.message ?? error) });
  } finally {
    data.password.fill(0);
  }
};
