// The one error type of the room protocol (docs/protocol/rooms.md section 13), as
// protocol/room_errors.py: every parser and transition throws RoomProtocolError with a code
// from a fixed list. Messages never carry key material, names or plaintext.

export const ERROR_CODES = Object.freeze([
  "malformed",
  "too_large",
  "unexpected",
  "bad_proof",
  "bad_auth",
  "bad_signature",
  "bad_commit",
  "stale",
  "undecryptable",
  "sequence_gap",
  "not_admitted",
  "ended",
]);

/** A frame or a move the room protocol does not allow; `code` says which rule. */
export class RoomProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "RoomProtocolError";
    this.code = code;
  }
}

/** A sealed value that does not open (wrong key, tampering, bad padding). */
export class RoomDecryptionFailed extends Error {
  constructor() {
    super("The data does not open.");
    this.name = "RoomDecryptionFailed";
  }
}
