// The reader's side of the access path (docs/protocol/access.md) as a machine that does no
// I/O: the twin of src/atopos/protocol/access_path.py, with the same transition table, and
// both replay tests/vectors/access_path.json. challenge -> access proof -> (device proof) ->
// proof of work -> ticket -> reveal, or with `oneShot` a ticket step that reveals at once
// ("reveal": true), or with `stamp` (and `oneShot`) a stamp the reader makes itself ->
// access proof -> proof of work -> one request that reveals (or is answered with a
// challenge, and the walk goes on from there): the machine is fed events and answers with
// the next step. It reads no clock and draws nothing: the page hands in both.
//
// Steps (what to do next), in the vector file's words:
//   {stamp: {}}                                  read the clock, draw 16 random bytes
//   {request: {method, path, json, is_reveal?}}  send it (path from the server root); with
//                                                is_reveal, a 2xx answer not of media type
//                                                application/json is the envelope: feed it
//                                                with body null and stream it
//   {stamp_proof: {secret_id, stamp}}            derive the access key of the link key alone
//                                                and sign the stamp under the stamp label
//   {access_proof: {secret_id, challenge, argon2}}  derive the access key (link key, and the
//                                                passphrase under argon2 when not null), sign
//   {device_proof: {secret_id, challenge}}       sign with this browser's device
//   {proof_of_work: {challenge, bits}}           find a nonce
//   {wait: {seconds}}                            wait out a 429
//   {revealed: {}}                               terminal: the reveal answer is the envelope
//   {failed: {error, message, retry_after?}}     terminal: error is gone, refused, wrong_key,
//                                                rate_limited, passphrase_required, invalid,
//                                                too_large, storage_full, unavailable, network
// Events (what happened):
//   {stamp: {time, salt}}                        integer Unix seconds (rounded down to
//                                                STAMP_TIME_STEP here); 16 bytes, base64url
//   {answer: {status, body, retry_after}}        body: text, or null when not read
//   {access_proof: {proof}}                      base64url (for access_proof, stamp_proof)
//   {device_proof: {proof}}                      base64url, or null without a device
//   {nonce: n}                                   {waited: true}

export const CHALLENGE_REFUSED = "The server refused to hand out a challenge.";
export const TICKET_REFUSED =
  "The server refused the proof of work (the challenge may have expired).";
export const REVEAL_REFUSED = "The access ticket was refused (expired or already used).";
export const STAMP_REFUSED = "The server refused the stamp (it was already used).";
// The work a stamp is solved at when the server has asked nothing of this page yet: the
// default `--pow-bits`.
export const DEFAULT_STAMP_BITS = 16;
// access.md, "The stamp (text)": "s1." id "." time "." salt (16 bytes).
export const STAMP_PREFIX = "s1.";
export const STAMP_SALT_BYTES = 16;
// A stamp's time is the clock rounded down to a multiple of this (seconds), so that it does
// not show the reader's clock offset to the second (a linking signal over Tor and the mixnet).
export const STAMP_TIME_STEP = 60;
// A server's challenge is always base64url: anything else (a stamp's dots, say) is an answer
// not understood, and nothing is signed or solved over it (a relay could otherwise hand in
// a future stamp as "a challenge" to have it signed and solved).
const CHALLENGE_TEXT = /^[A-Za-z0-9_-]+$/;
const MAX_STAMP_TIME = 10 ** 12 - 1;
// 16 bytes, unpadded base64url, canonical (the last character's 4 unused bits zero).
const STAMP_SALT = /^[A-Za-z0-9_-]{21}[AQgw]$/;
// The page's own wording (the vector file lets a twin word its failures).
export const TOO_MUCH_WORK = "The server asks for more work than this page will do.";
export const WRONG_DEVICE =
  "This secret is bound to another device; it can only be revealed there.";
export const NO_DEVICE =
  "This secret is bound to a device and this machine has none; " +
  "it can only be revealed on that device.";
export const PASSPHRASE_REQUIRED = "This secret needs its passphrase.";
export const WRONG_KEY = "The key in the link or the passphrase is wrong; no view was spent.";
const GONE = "This secret does not exist: it expired, was already viewed, or was deleted.";
const API = "/api/v1/secrets";
// Retry-After: delta-seconds only, at most a day; anything else means one second.
const DEFAULT_RETRY_AFTER = 1;
const MAX_RETRY_AFTER = 24 * 3600;
const MAX_SERVER_SENTENCE = 300;

export const State = Object.freeze({
  MAKING_STAMP: "making stamp",
  MAKING_STAMP_PROOF: "making access proof over the stamp",
  SOLVING_STAMP: "solving the stamp's proof of work",
  AWAITING_STAMP_ANSWER: "awaiting stamp answer",
  AWAITING_CHALLENGE: "awaiting challenge",
  MAKING_ACCESS_PROOF: "making access proof",
  MAKING_DEVICE_PROOF: "making device proof",
  SOLVING: "solving proof of work",
  AWAITING_TICKET: "awaiting ticket",
  AWAITING_REVEAL: "awaiting reveal",
  WAITING: "waiting out a rate limit",
  REVEALED: "revealed",
  FAILED: "failed",
});

/** What an event turned out to be; ANY for events that carry no choice. */
export const Guard = Object.freeze({
  ANY: "any",
  OK: "ok",
  OK_BOUND: "ok, bound to a device",
  OK_KEYED: "ok, the secret wants an access proof",
  OK_REVEALED: "ok, and the ticket step revealed the envelope",
  OLDER_SERVER: "422 to a ticket step with reveal: a server without it",
  STAMP_UNKNOWN: "422 to a stamp: a server without stamps",
  STAMPING: "the walk is still a stamp's (no challenge was asked for or given)",
  PASSPHRASE_MISSING: "ok, but a passphrase is needed and none can be had",
  TOO_MUCH_WORK: "ok, but more bits than this client will solve",
  RATE_LIMITED_RETRY: "429, retries left and Retry-After short enough",
  ERROR: "any other failure (status or unreadable answer)",
});

const S = State;
const G = Guard;
/** Every legal move: [state, event, guard, next state] (event: the key of the event object). */
export const TRANSITIONS = Object.freeze([
  [S.MAKING_STAMP, "stamp", G.ANY, S.MAKING_STAMP_PROOF],
  [S.MAKING_STAMP_PROOF, "access_proof", G.ANY, S.SOLVING_STAMP],
  [S.SOLVING_STAMP, "nonce", G.ANY, S.AWAITING_STAMP_ANSWER],
  [S.AWAITING_STAMP_ANSWER, "answer", G.OK_REVEALED, S.REVEALED],
  // Answered with a challenge (`stamp_refused`): on as after "awaiting challenge".
  [S.AWAITING_STAMP_ANSWER, "answer", G.OK, S.SOLVING],
  [S.AWAITING_STAMP_ANSWER, "answer", G.OK_BOUND, S.MAKING_DEVICE_PROOF],
  [S.AWAITING_STAMP_ANSWER, "answer", G.OK_KEYED, S.MAKING_ACCESS_PROOF],
  [S.AWAITING_STAMP_ANSWER, "answer", G.PASSPHRASE_MISSING, S.FAILED],
  [S.AWAITING_STAMP_ANSWER, "answer", G.TOO_MUCH_WORK, S.FAILED],
  [S.AWAITING_STAMP_ANSWER, "answer", G.STAMP_UNKNOWN, S.AWAITING_CHALLENGE],
  [S.AWAITING_STAMP_ANSWER, "answer", G.RATE_LIMITED_RETRY, S.WAITING],
  [S.AWAITING_STAMP_ANSWER, "answer", G.ERROR, S.FAILED],
  [S.AWAITING_CHALLENGE, "answer", G.OK, S.SOLVING],
  [S.AWAITING_CHALLENGE, "answer", G.OK_BOUND, S.MAKING_DEVICE_PROOF],
  [S.AWAITING_CHALLENGE, "answer", G.OK_KEYED, S.MAKING_ACCESS_PROOF],
  [S.AWAITING_CHALLENGE, "answer", G.PASSPHRASE_MISSING, S.FAILED],
  [S.AWAITING_CHALLENGE, "answer", G.TOO_MUCH_WORK, S.FAILED],
  [S.AWAITING_CHALLENGE, "answer", G.RATE_LIMITED_RETRY, S.WAITING],
  [S.AWAITING_CHALLENGE, "answer", G.ERROR, S.FAILED],
  [S.MAKING_ACCESS_PROOF, "access_proof", G.ANY, S.SOLVING],
  [S.MAKING_ACCESS_PROOF, "access_proof", G.OK_BOUND, S.MAKING_DEVICE_PROOF],
  [S.MAKING_DEVICE_PROOF, "device_proof", G.ANY, S.SOLVING],
  [S.SOLVING, "nonce", G.ANY, S.AWAITING_TICKET],
  [S.AWAITING_TICKET, "answer", G.OK, S.AWAITING_REVEAL],
  [S.AWAITING_TICKET, "answer", G.OK_REVEALED, S.REVEALED],
  [S.AWAITING_TICKET, "answer", G.OLDER_SERVER, S.AWAITING_TICKET],
  [S.AWAITING_TICKET, "answer", G.RATE_LIMITED_RETRY, S.WAITING],
  [S.AWAITING_TICKET, "answer", G.ERROR, S.FAILED],
  [S.AWAITING_REVEAL, "answer", G.OK, S.REVEALED],
  [S.AWAITING_REVEAL, "answer", G.RATE_LIMITED_RETRY, S.WAITING],
  [S.AWAITING_REVEAL, "answer", G.ERROR, S.FAILED],
  [S.WAITING, "waited", G.ANY, S.AWAITING_CHALLENGE],
  [S.WAITING, "waited", G.STAMPING, S.MAKING_STAMP],
]);

/** The driver fed an event the current state has no move for (a bug of the driver). */
export class AccessPathMisuse extends Error {
  constructor(message) {
    super(message);
    this.name = "AccessPathMisuse";
  }
}

function nextState(state, event, guard) {
  const move = TRANSITIONS.find(
    ([from, on, when]) => from === state && on === event && when === guard,
  );
  if (move === undefined) throw new AccessPathMisuse(`no move from ${state} on ${event}`);
  return move[3];
}

/** Seconds a 429 asks to wait (delta-seconds only: an HTTP date would need a clock). */
export function parseRetryAfter(value) {
  const text = (value ?? "").trim();
  if (/^[0-9]{1,6}$/.test(text)) return Math.min(Number(text), MAX_RETRY_AFTER);
  return DEFAULT_RETRY_AFTER;
}

/** The server's error code (`error`) when `body` is an error answer, else null. */
function serverError(body) {
  try {
    const parsed = JSON.parse(body);
    return typeof parsed?.error === "string" && typeof parsed?.message === "string"
      ? parsed.error
      : null;
  } catch {
    return null;
  }
}

function serverSentence(body) {
  try {
    const parsed = JSON.parse(body);
    if (typeof parsed?.message !== "string" || typeof parsed?.error !== "string") return null;
    // Non-printable characters become spaces, then runs of spaces one: it ends up on screen.
    const text = parsed.message
      .replace(/[\p{C}\p{Z}]/gu, " ")
      .split(/\s+/)
      .filter(Boolean)
      .join(" ");
    return text.slice(0, MAX_SERVER_SENTENCE) || null;
  } catch {
    return null;
  }
}

/** The failure an unsuccessful answer stands for; `refused` is the sentence of a 403. */
export function failureFor(answer, refused) {
  const { status } = answer;
  if (status === 404) return { error: "gone", message: GONE };
  if (status === 429) {
    const seconds = parseRetryAfter(answer.retry_after);
    const unit = seconds === 1 ? "second" : "seconds";
    return {
      error: "rate_limited",
      message: `The server is limiting requests; try again in ${seconds} ${unit}.`,
      retry_after: seconds,
    };
  }
  if (status === 403) {
    // The access proof failed (docs/protocol/access.md): said before any view is spent.
    if (typeof answer.body === "string" && serverError(answer.body) === "wrong_key") {
      return { error: "wrong_key", message: WRONG_KEY };
    }
    return { error: "refused", message: refused };
  }
  if (status === 413) {
    return { error: "too_large", message: "The secret is larger than this server accepts." };
  }
  if (status === 400 || status === 422) {
    const sentence = typeof answer.body === "string" ? serverSentence(answer.body) : null;
    return {
      error: "invalid",
      message: sentence ?? "The server rejected the request as invalid.",
    };
  }
  if (status === 507) {
    return { error: "storage_full", message: "The server's storage is full; try again later." };
  }
  if (status >= 500) {
    return {
      error: "unavailable",
      message: `The server is unavailable right now (HTTP ${status}); try again later.`,
    };
  }
  const message = `The server answered with an unexpected HTTP status ${status}.`;
  return { error: "network", message };
}

const isInteger = (value) => typeof value === "number" && Number.isSafeInteger(value);
const isOptionalBoolean = (value) => value === undefined || typeof value === "boolean";

/** The JSON object in `body` if it has the fields `check` wants, else null. */
function decode(body, check) {
  if (typeof body !== "string") return null;
  try {
    const value = JSON.parse(body);
    return value !== null && typeof value === "object" && !Array.isArray(value) && check(value)
      ? value
      : null;
  } catch {
    return null;
  }
}

const isArgon2 = (value) =>
  value === undefined ||
  value === null ||
  (typeof value === "object" &&
    isInteger(value.memory_kib) &&
    isInteger(value.iterations) &&
    isInteger(value.lanes) &&
    typeof value.salt === "string");
const isChallenge = (value) =>
  typeof value.challenge === "string" &&
  CHALLENGE_TEXT.test(value.challenge) &&
  isInteger(value.bits) &&
  value.bits >= 0 &&
  isInteger(value.expires_at) &&
  isOptionalBoolean(value.is_bound) &&
  isOptionalBoolean(value.has_passphrase) &&
  isOptionalBoolean(value.has_access_key) &&
  isArgon2(value.argon2);
const isTicket = (value) => typeof value.ticket === "string" && isInteger(value.expires_at);
const isStampRefusal = (value) => typeof value.stamp_refused === "string";
const isAnswerTooLarge = (value) => value.error === "answer_too_large";

/**
 * One reader's walk to one view of `secretId` (canonical form; the caller checks it).
 * `canUnlock`: a passphrase is at hand (else a passphrase secret fails before any work).
 * A 429 is waited out (at most `maxRetryWait` seconds) and the walk starts again from the
 * challenge, up to `rateLimitRetries` times. `server` only names the server in sentences.
 * `oneShot` (the default): the ticket request asks for the envelope at once (one request
 * fewer); a server that answers it 422 (one from before) is asked again for the ticket
 * alone, and one that answers it with a ticket (it ignored the field) is asked the reveal.
 * `stamp` (the default; only with `oneShot`): the walk starts with a stamp (access.md,
 * "Stamp: a reveal in one request"), signed with the access key of the link key alone and
 * solved at `assumedBits` (the bits this server last asked, else DEFAULT_STAMP_BITS); no
 * stamp when `assumedBits` is over `maxPowBits`. `maxAnswerBytes` (null: none): sent as
 * `max_bytes` with every request that may reveal.
 */
export class AccessPath {
  constructor(
    secretId,
    {
      server,
      canUnlock,
      maxPowBits,
      rateLimitRetries = 3,
      maxRetryWait = 60,
      oneShot = true,
      stamp = true,
      assumedBits = DEFAULT_STAMP_BITS,
      maxAnswerBytes = null,
    },
  ) {
    this.secretId = secretId;
    this._oneShot = oneShot;
    this._nonce = 0;
    this._stampBits = assumedBits;
    this._stamp = null;
    this._maxAnswerBytes = maxAnswerBytes;
    // A stamp walk until the server answers with a challenge or says it has no stamps: a
    // 429 before that starts again with a new stamp, after it with a challenge.
    this._stamping = stamp && oneShot && assumedBits <= maxPowBits;
    this.state = this._stamping ? State.MAKING_STAMP : State.AWAITING_CHALLENGE;
    /** Why the server answered the stamp with a challenge (access, clock, bits), or null. */
    this.stampRefused = null;
    /** The last challenge the server handed out ({challenge, bits, is_bound, ...}), or null. */
    this.challenge = null;
    this._server = server;
    this._canUnlock = canUnlock;
    this._maxPowBits = maxPowBits;
    this._retriesLeft = rateLimitRetries;
    this._maxRetryWait = maxRetryWait;
    this._deviceProof = null;
    this._accessProof = null;
    this._ticketRefused = TICKET_REFUSED;
  }

  /** The first step: make a stamp, or ask for a challenge. */
  start() {
    if (this.state === S.MAKING_STAMP) return { stamp: {} };
    return this._challengeRequest();
  }

  /** Move on `event` (see TRANSITIONS) and say what to do next. */
  receive(event) {
    const kind = Object.keys(event)[0];
    if (!TRANSITIONS.some(([from, on]) => from === this.state && on === kind)) {
      throw new AccessPathMisuse(`no move from ${this.state} on ${kind}`);
    }
    const [guard, step] = this._judge(kind, event[kind]);
    this.state = nextState(this.state, kind, guard);
    return step;
  }

  // Each branch returns the guard it found and the step of the state it leads to.

  _judge(kind, value) {
    if (kind === "answer") return this._judgeAnswer(value);
    if (kind === "stamp") {
      const { time, salt } = value;
      if (!Number.isSafeInteger(time) || time < 0 || time > MAX_STAMP_TIME) {
        throw new AccessPathMisuse("a stamp's time is 0 to 12 digits of Unix seconds");
      }
      if (typeof salt !== "string" || !STAMP_SALT.test(salt)) {
        throw new AccessPathMisuse("a stamp's salt is 16 bytes, canonical base64url");
      }
      // Rounded down to the minute: the stamp does not show the clock to the second.
      const t = time - (time % STAMP_TIME_STEP);
      this._stamp = `${STAMP_PREFIX}${this.secretId}.${t}.${salt}`;
      // From the link key alone (no passphrase is known to be needed: a secret with one is
      // answered with a challenge that says so), under the stamp's own label.
      return [G.ANY, { stamp_proof: { secret_id: this.secretId, stamp: this._stamp } }];
    }
    if (kind === "access_proof" && this.state === S.MAKING_STAMP_PROOF) {
      this._accessProof = value.proof;
      return [G.ANY, { proof_of_work: { challenge: this._stamp, bits: this._stampBits } }];
    }
    if (kind === "nonce" && this.state === S.SOLVING_STAMP) {
      return [G.ANY, this._stampRequest(value)];
    }
    if (kind === "access_proof") {
      this._accessProof = value.proof;
      const [guard, step] = this._afterAccessProof();
      return [guard === G.OK ? G.ANY : guard, step];
    }
    if (kind === "device_proof") {
      this._deviceProof = value.proof;
      this._ticketRefused = value.proof === null ? NO_DEVICE : WRONG_DEVICE;
      return [G.ANY, this._solve()];
    }
    if (kind === "nonce") return [G.ANY, this._ticketRequest(value)];
    if (this._stamping) return [G.STAMPING, { stamp: {} }];
    return [G.ANY, this._challengeRequest()];
  }

  _judgeAnswer(answer) {
    const refused =
      this.state === S.AWAITING_CHALLENGE
        ? CHALLENGE_REFUSED
        : this.state === S.AWAITING_TICKET
          ? this._ticketRefused
          : this.state === S.AWAITING_STAMP_ANSWER
            ? STAMP_REFUSED
            : REVEAL_REFUSED;
    if (this.state === S.AWAITING_STAMP_ANSWER && answer.status === 422) {
      // A server without stamps (strict schema) spent nothing: the challenge walk.
      this._stamping = false;
      return [G.STAMP_UNKNOWN, this._challengeRequest()];
    }
    if (this._oneShot && this.state === S.AWAITING_TICKET && answer.status === 422) {
      // Nothing was spent: the server refused the unknown field before any check.
      this._oneShot = false;
      return [G.OLDER_SERVER, this._ticketRequest(this._nonce)];
    }
    if (answer.status === 413 && this._maxAnswerBytes !== null) {
      const refusal = decode(answer.body, isAnswerTooLarge);
      if (refusal !== null) return [G.ERROR, { failed: this._answerTooLarge(refusal) }];
    }
    if (!(answer.status >= 200 && answer.status < 300)) {
      const failure = failureFor(answer, refused);
      if (
        failure.error === "rate_limited" &&
        this._retriesLeft > 0 &&
        failure.retry_after <= this._maxRetryWait
      ) {
        this._retriesLeft -= 1;
        return [G.RATE_LIMITED_RETRY, { wait: { seconds: failure.retry_after } }];
      }
      return [G.ERROR, { failed: failure }];
    }
    if (this.state === S.AWAITING_CHALLENGE) return this._judgeChallenge(answer);
    const isUnread = answer.body === null || answer.body === undefined;
    if (this.state === S.AWAITING_STAMP_ANSWER) {
      if (isUnread) return [G.OK_REVEALED, { revealed: {} }];
      const refusal = decode(answer.body, isStampRefusal);
      if (refusal === null) return [G.ERROR, this._notUnderstood()];
      // The challenge step's answer, as if it had been asked for.
      this.stampRefused = refusal.stamp_refused;
      this._stamping = false;
      return this._judgeChallenge(answer);
    }
    if (this.state === S.AWAITING_TICKET && this._oneShot && isUnread) {
      return [G.OK_REVEALED, { revealed: {} }];
    }
    if (this.state === S.AWAITING_TICKET) {
      // Without one shot, or a one-shot step answered with a ticket (JSON, read by the
      // driver) by a server that ignored `reveal`: the two-step way from here on.
      this._oneShot = false;
      const ticket = decode(answer.body, isTicket);
      if (ticket === null) return [G.ERROR, this._notUnderstood()];
      const json = { ticket: ticket.ticket };
      if (this._maxAnswerBytes !== null) json.max_bytes = this._maxAnswerBytes;
      const path = this._path("reveal");
      return [G.OK, { request: { method: "POST", path, json, is_reveal: true } }];
    }
    // A body the driver read is JSON, not the envelope stream.
    if (!isUnread) return [G.ERROR, this._notUnderstood()];
    return [G.OK, { revealed: {} }];
  }

  _judgeChallenge(answer) {
    const challenge = decode(answer.body, isChallenge);
    if (challenge === null) return [G.ERROR, this._notUnderstood()];
    this.challenge = challenge;
    this._deviceProof = null;
    this._accessProof = null;
    this._ticketRefused = TICKET_REFUSED;
    if (challenge.has_passphrase === true && !this._canUnlock) {
      // Said before any view is spent: without a passphrase the view would be wasted.
      const failed = { error: "passphrase_required", message: PASSPHRASE_REQUIRED };
      return [G.PASSPHRASE_MISSING, { failed }];
    }
    if (challenge.bits > this._maxPowBits) {
      return [G.TOO_MUCH_WORK, { failed: { error: "refused", message: TOO_MUCH_WORK } }];
    }
    if (challenge.has_access_key === true) {
      const hasPassphrase = challenge.has_passphrase === true;
      if (hasPassphrase && (challenge.argon2 ?? null) === null) {
        return [G.ERROR, this._notUnderstood()];
      }
      // First, like the device proof: deriving the key (Argon2id) must not age the work.
      const argon2 = hasPassphrase ? challenge.argon2 : null;
      const proof = { secret_id: this.secretId, challenge: challenge.challenge, argon2 };
      return [G.OK_KEYED, { access_proof: proof }];
    }
    return this._afterAccessProof();
  }

  _afterAccessProof() {
    const challenge = this.challenge;
    if (challenge.is_bound === true) {
      // The device proof comes before the work, so that loading the device does not age
      // the solved challenge.
      const proof = { secret_id: this.secretId, challenge: challenge.challenge };
      return [G.OK_BOUND, { device_proof: proof }];
    }
    return [G.OK, this._solve()];
  }

  _solve() {
    const { challenge, bits } = this.challenge;
    return { proof_of_work: { challenge, bits } };
  }

  _stampRequest(nonce) {
    const json = { stamp: this._stamp, nonce, access_proof: this._accessProof, reveal: true };
    if (this._maxAnswerBytes !== null) json.max_bytes = this._maxAnswerBytes;
    return { request: { method: "POST", path: this._path("ticket"), json, is_reveal: true } };
  }

  /** The failure of a 413 answer_too_large: the envelope is over max_bytes; nothing spent. */
  _answerTooLarge(refusal) {
    const size = isInteger(refusal.size) ? refusal.size : 0;
    const message =
      `This secret is ${size} bytes, more than the ${this._maxAnswerBytes} bytes an answer ` +
      "can carry on this connection; no view was spent.";
    return { error: "too_large", message };
  }

  _challengeRequest() {
    return { request: { method: "POST", path: this._path("challenge"), json: null } };
  }

  _ticketRequest(nonce) {
    this._nonce = nonce;
    const json = { challenge: this.challenge.challenge, nonce };
    if (this._accessProof !== null) json.access_proof = this._accessProof;
    if (this._deviceProof !== null) json.device_proof = this._deviceProof;
    const path = this._path("ticket");
    if (this._oneShot) {
      json.reveal = true;
      if (this._maxAnswerBytes !== null) json.max_bytes = this._maxAnswerBytes;
      return { request: { method: "POST", path, json, is_reveal: true } };
    }
    return { request: { method: "POST", path, json } };
  }

  _path(step) {
    return `${API}/${this.secretId}/${step}`;
  }

  _notUnderstood() {
    const message = `The server at ${this._server} sent an answer Atopos does not understand.`;
    return { failed: { error: "network", message } };
  }
}
