// Runs one Argon2id derivation off the main thread, so the page stays responsive while
// the passphrase is stretched. The page terminates this worker afterwards, which frees
// the WebAssembly memory (tens of MiB) that held the passphrase's intermediate state.
import "../vendor/hash-wasm-4.13.0/argon2.umd.min.js";

const { argon2id } = globalThis.hashwasm;

self.onmessage = async ({ data }) => {
  try {
    const key = await argon2id({
      password: data.password,
      salt: data.salt,
      parallelism: data.lanes,
      iterations: data.iterations,
      memorySize: data.memoryKib,
      hashLength: 32,
      outputType: "binary",
    });
    self.postMessage({ key }, [key.buffer]);
  } catch (error) {
    self.postMessage({ error: String(error?.message ?? error) });
  } finally {
    data.password.fill(0);
  }
};
