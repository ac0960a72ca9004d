// The file name a revealed file is saved under. The sender chose it, inside the envelope, so
// it is kept only when it is one plain path component that shows what it is: the same rule
// as the CLI's `safe_file_name` (src/atopos/cli/output.py), with the same character classes.
// A name with a bidi control (`invoice\u202Efdp.exe` displays as "invoiceexe.pdf"), another
// invisible format character, a control character or a line separator is refused whole,
// not cleaned: removing characters would make up a name the sender never wrote.

export const FALLBACK_FILE_NAME = "secret.bin";

// NAME_MAX of common file systems, in UTF-8 bytes.
const MAX_NAME_BYTES = 255;
// Unicode general categories Cc (controls), Cf (format: bidi controls, zero-width
// characters, soft hyphen), Zl and Zp (line and paragraph separators).
const HIDDEN_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const SEPARATORS = /[/\\]/;

/** `name` if it is one plain path component, else FALLBACK_FILE_NAME. */
export function safeFileName(name) {
  if (
    typeof name !== "string" ||
    name === "" ||
    name === "." ||
    name === ".." ||
    SEPARATORS.test(name) ||
    HIDDEN_OR_CONTROL.test(name) ||
    !name.isWellFormed() ||
    new TextEncoder().encode(name).length > MAX_NAME_BYTES
  ) {
    return FALLBACK_FILE_NAME;
  }
  return name;
}

/** Whether sender-chosen `text` (a media type) can be shown as it is. */
export function isPlainText(text) {
  return typeof text === "string" && text.isWellFormed() && !HIDDEN_OR_CONTROL.test(text);
}
