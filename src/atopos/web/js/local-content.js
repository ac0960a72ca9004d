// What the person chose to send, as the create and fill pages both seal it: UTF-8 text or a
// file read 1 MiB at a time (the twin of client/local_files.py's local_content).

import { encodeMetadata } from "./envelope.js";

const READ_BYTES = 1 << 20;

/** A problem with the chosen text or file that the person can fix; its message says how. */
export class LocalContentError extends Error {}

/** The envelope metadata for `text` (bytes, or null) or `file`; refuses a too-long name. */
export function metadataOf(text, file) {
  const metadata =
    text !== null
      ? { kind: "text", size: text.length }
      : {
          kind: "file",
          name: file.name.toWellFormed(),
          size: file.size,
          type: file.type || undefined,
        };
  try {
    encodeMetadata(metadata);
  } catch {
    throw new LocalContentError("The file name is too long. Rename the file and try again.");
  }
  return metadata;
}

/** Seal the text or the file with `sealer`; `onRead(done, total)` after each file piece. */
export async function sealContent(sealer, text, file, onRead) {
  const parts = [];
  if (text !== null) {
    parts.push(...(await sealer.update(text)));
  } else {
    for (let offset = 0; offset < file.size; offset += READ_BYTES) {
      const end = Math.min(offset + READ_BYTES, file.size);
      const piece = new Uint8Array(await file.slice(offset, end).arrayBuffer());
      if (piece.length !== end - offset) {
        throw new LocalContentError("The file changed while it was being read. Choose it again.");
      }
      parts.push(...(await sealer.update(piece)));
      onRead(end, file.size);
    }
  }
  parts.push(...(await sealer.finalize()));
  return new Blob(parts, { type: "application/octet-stream" });
}
