// The reveal page (`/s/{id}#{key}`). Loading it fetches nothing from the API: link previews
// and scanners that GET the link consume nothing. Only a click on "Reveal" walks the access
// path (access-path.js), streams the envelope in and decrypts it here: first a stamp (made
// here of the clock and 16 random bytes, signed with the link's access key, solved in
// workers) that reveals in one request; a secret the server cannot reveal that way (a
// passphrase, a device, a clock or work it does not accept) is answered with a challenge,
// and the page goes on challenge -> proof of work -> ticket that reveals.
//
// A secret behind a passphrase: the challenge says `has_passphrase`, and the page asks for
// the passphrase before the proof of work and the ticket, so that no view is spent on bytes it
// cannot open yet. Only the envelope can tell whether the passphrase is right, so a wrong one
// is found after the view is spent; the page then keeps the ciphertext and asks again.
//
// A secret bound to a device (docs/protocol/device.md section 9): the challenge says
// `is_bound`; this browser's device (device-store.js) signs the proof for the ticket, and
// its X25519 key opens the seal in the envelope. Without a device no ticket is asked for;
// a refused proof (403) spends nothing.
//
// The key-knowledge proof (docs/protocol/access.md): the challenge says `has_access_key`,
// and the page signs it with the access key made from the link key and the passphrase (with
// the Argon2id cost and salt the challenge carries). A typo in the link or a wrong passphrase
// is refused at the ticket step, before any view is spent: the page says so and, for a
// passphrase, asks again.
//
// A split link (docs/protocol/links.md) carries one key share: the page asks for the other
// links (paste fields) and combines them here before "Reveal" is offered. Until the key is
// whole nothing is sent, so a reader short of links spends nothing.

import { accessKeyOf } from "./access-proof.js";
import {
  AccessPath,
  DEFAULT_STAMP_BITS,
  State as PathState,
  STAMP_SALT_BYTES,
} from "./access-path.js";
import { ApiError, errorFor, isJsonAnswer, SecretGone, sendAccessRequest } from "./api.js";
import { decode, encode } from "./base64url.js";
import { loadDevice, supportsDeviceKeys } from "./device-store.js";
import {
  DecryptionFailed,
  DeviceRequired,
  isValidArgon2,
  LINK_KEY_BYTES,
  Opener,
  PassphraseRequired,
  UnsupportedEnvelope,
} from "./envelope.js";
import { isPlainText, safeFileName } from "./file-name.js";
import { derivePassphraseKey } from "./kdf.js";
import { fragmentBytes, fragmentShare, secretIdFromPath, secretIdOf, takeFragment } from "./links.js";
import { combineKey, InvalidShares, sharesMissing } from "./shamir.js";
import { watchSlowPassphrase } from "./passphrase-progress.js";
import { MAX_BITS, solveChallenge } from "./pow.js";
import { bindCopy, byId, formatBytes, hasWebCrypto, setProgress, showState } from "./ui.js";

const STEPS = ["challenge", "work", "download", "decrypt"];
// The first two steps' words: a stamp asks the server for nothing before its one request.
const STEP_WORDS = {
  stamp: ["Preparing the request", "Solving a puzzle, which keeps bots from guessing links"],
  challenge: ["Asking the server for a puzzle", "Solving it, which keeps bots from guessing links"],
};
// The most leading zero bits a proof of work can ask (a 64-bit nonce).
const MAX_WORK_BITS = 64;

const secretId = secretIdFromPath();
const fragment = takeFragment();
// Set from the fragment, or once enough split links are combined.
let linkKey = fragmentBytes(fragment, LINK_KEY_BYTES);
const firstShare = linkKey === null ? fragmentShare(fragment) : null;
const progress = byId("opening-progress");
const detail = byId("opening-detail");
const revealButton = byId("reveal-button");
const passphraseForm = byId("passphrase-form");
const passphraseInput = byId("reveal-passphrase");
const passphraseError = byId("passphrase-error");
const unlockButton = byId("unlock-button");
const unlockDetail = byId("unlock-detail");

let isViewSpent = false;
let heldEnvelope = [];
// What the passphrase form does on submit: "first" (nothing spent yet: reveal with it) or
// "held" (the envelope is in this tab: try it on that).
let passphraseMode = "first";
// The passphrase typed before the view was spent, until the envelope is opened with it.
let passphrase = null;
// Its Argon2id output from the access proof, for the envelope (the slow step runs once).
let stretched = null;
let savedFile = null;
// This browser's device, loaded when a secret asks for it.
let device = null;
// The work this server last asked of this page (a stamp is solved at it), and whether a
// stamp is still worth making: not once this secret was walked by a challenge (the server
// answered the stamp with one, or has no stamps), so the walk again after a passphrase is
// typed asks for the challenge at once.
let assumedBits = DEFAULT_STAMP_BITS;
let isStampUseful = !isStampTurnedOff();

/**
 * Whether stamps are turned off in this browser for this server (localStorage `atoposStamp`
 * = "off"): the walk then starts with the challenge, as the CLI's `--no-stamp` does.
 */
function isStampTurnedOff() {
  try {
    return localStorage.getItem("atoposStamp") === "off";
  } catch {
    return false; // storage refused (a privacy setting): the default
  }
}

/** The ticket was refused after a passphrase was stretched: walk again with the key. */
class ChallengeOutlived extends Error {
  constructor() {
    super("The challenge expired while the passphrase was checked; try again.");
    this.name = "ChallengeOutlived";
  }
}

/** The server refused the access proof: the link's key or the passphrase is wrong. */
class WrongKey extends Error {
  constructor(message, hadPassphrase) {
    super(message);
    this.name = "WrongKey";
    this.hadPassphrase = hadPassphrase;
  }
}

/** The access proof over `challenge`, from the link key and, with `fields`, the passphrase. */
async function makeAccessProof(challenge, fields) {
  let argon2 = null;
  if (fields !== null) {
    const salt = decode(fields.salt);
    argon2 = { memoryKib: fields.memory_kib, iterations: fields.iterations, lanes: fields.lanes };
    if (salt === null || salt.length !== 16 || !isValidArgon2(argon2)) {
      throw new Error("The server sent passphrase settings this page does not accept.");
    }
    argon2.salt = salt;
    markStep("challenge");
    report(null, "Checking the passphrase. This takes a moment on purpose.");
  }
  let passphraseKey = null;
  if (argon2 !== null) {
    if (!isStretchedFor(argon2)) {
      forgetStretched();
      const key = await derivePassphraseKey(passphrase, argon2.salt, argon2);
      stretched = { key, salt: argon2.salt, argon2 };
    }
    passphraseKey = stretched.key;
  }
  const key = await accessKeyOf(linkKey, passphraseKey);
  return key.signProof(decode(secretId), challenge);
}

/** Whether `stretched` is the passphrase under `argon2`'s salt and cost (a walk again). */
function isStretchedFor(argon2) {
  if (stretched === null) return false;
  const { salt, argon2: cost } = stretched;
  return (
    cost.memoryKib === argon2.memoryKib &&
    cost.iterations === argon2.iterations &&
    cost.lanes === argon2.lanes &&
    salt.length === argon2.salt.length &&
    salt.every((byte, index) => byte === argon2.salt[index])
  );
}

function forgetStretched() {
  stretched?.key.fill(0);
  stretched = null;
}

/** The secret is bound to a device this browser does not hold; nothing was spent. */
class BoundElsewhere extends Error {
  constructor(isRefused) {
    super("This secret is bound to another device.");
    this.name = "BoundElsewhere";
    this.isRefused = isRefused;
  }
}

/**
 * Whether `error` from `opener` may be a passphrase problem the reader can fix by typing
 * another one: none was given, or the one given failed before anything was authenticated.
 * A wrong passphrase and damaged bytes look the same here (both are DecryptionFailed).
 */
function isPassphraseProblem(error, opener) {
  if (error instanceof PassphraseRequired) return true;
  return (
    passphrase !== null &&
    error instanceof DecryptionFailed &&
    !(error instanceof UnsupportedEnvelope) &&
    opener.header?.argon2 != null &&
    opener.metadata === null
  );
}

/**
 * The envelope did not arrive whole: the connection failed or ended before the last byte.
 * Told apart from a wrong key, which fails on an envelope that did arrive whole.
 */
class DownloadCutOff extends Error {
  constructor() {
    super("The download was cut off.");
    this.name = "DownloadCutOff";
  }
}

/** This browser's device, or null (none, or a browser without Ed25519/X25519). */
async function loadBrowserDevice() {
  if (device !== null) return device;
  try {
    if (!(await supportsDeviceKeys())) return null;
    device = await loadDevice();
  } catch {
    device = null;
  }
  return device;
}

// -- progress ---------------------------------------------------------------------------------

/** Word the first two steps for a stamp's walk, or for a challenge's. */
function nameSteps(kind) {
  const [first, second] = STEP_WORDS[kind];
  byId("steps").querySelector('[data-step="challenge"]').textContent = first;
  byId("steps").querySelector('[data-step="work"]').textContent = second;
}

function markStep(current) {
  const reached = STEPS.indexOf(current);
  for (const item of byId("steps").children) {
    const index = STEPS.indexOf(item.dataset.step);
    item.dataset.status = index < reached ? "done" : index === reached ? "active" : "pending";
  }
}

function report(fraction, text) {
  setProgress(progress, fraction, text);
  detail.textContent = text;
}

// Without WebAssembly the passphrase step is slow: say so, with its progress.
watchSlowPassphrase(report);

// -- the access path --------------------------------------------------------------------------

/**
 * Walk the access path and return the reveal Response (one view spent), or null when the
 * secret needs a passphrase that has not been typed yet (nothing spent). Which request comes
 * next and what an answer means is access-path.js's; this page sends, signs, solves and shows
 * progress. A 429 is shown to the reader rather than waited out. A challenge that expired
 * while the passphrase was stretched is walked once more, with the stretched key.
 */
async function spendView() {
  try {
    return await walkOnce();
  } catch (error) {
    if (!(error instanceof ChallengeOutlived)) throw error;
    return await walkOnce();
  }
}

/** One walk of a fresh access path. */
async function walkOnce() {
  markStep("challenge");
  report(null, "");
  const path = new AccessPath(secretId, {
    server: location.origin,
    canUnlock: passphrase !== null,
    maxPowBits: MAX_BITS,
    rateLimitRetries: 0,
    stamp: isStampUseful,
    assumedBits,
  });
  nameSteps(path.state === PathState.MAKING_STAMP ? "stamp" : "challenge");
  try {
    return await walk(path);
  } finally {
    if (path.challenge !== null) {
      // Only bits a proof of work can have (the machine refuses negative ones).
      const { bits } = path.challenge;
      if (Number.isSafeInteger(bits) && bits >= 0 && bits <= MAX_WORK_BITS) assumedBits = bits;
      isStampUseful = false;
    }
  }
}

/** `walkOnce`'s walk of `path`. */
async function walk(path) {
  let step = path.start();
  let answer = null;
  let answeredAt = null;
  while (step.failed === undefined) {
    if (step.request !== undefined) {
      const isReveal = step.request.is_reveal === true;
      if (isReveal) {
        markStep("download");
        report(0, "");
      }
      if (path.state === PathState.AWAITING_CHALLENGE) nameSteps("challenge");
      const response = await sendAccessRequest(step.request);
      // A successful reveal's body is the envelope, streamed by the caller; a JSON one (a
      // ticket from a server that ignored the one-shot `reveal`) is read for the machine.
      const isEnvelope = isReveal && response.ok && !isJsonAnswer(response);
      const body = isEnvelope ? null : await response.text();
      answer = { status: response.status, body, retry_after: response.headers.get("retry-after") };
      answeredAt = path.state;
      step = path.receive({ answer });
      // A stamp answered with a challenge: the server did hand out a puzzle.
      if (path.challenge !== null) nameSteps("challenge");
      if (step.revealed !== undefined) {
        // From here on one view is used, whatever happens next.
        isViewSpent = true;
        return response;
      }
    } else if (step.stamp !== undefined) {
      const salt = encode(crypto.getRandomValues(new Uint8Array(STAMP_SALT_BYTES)));
      step = path.receive({ stamp: { time: Math.floor(Date.now() / 1000), salt } });
    } else if (step.stamp_proof !== undefined) {
      // The stamp's own label (access-proof.js): never a signature a challenge could use.
      const { stamp } = step.stamp_proof;
      const key = await accessKeyOf(linkKey, null);
      const proof = encode(await key.signStampProof(decode(secretId), stamp));
      step = path.receive({ access_proof: { proof } });
    } else if (step.access_proof !== undefined) {
      const { challenge, argon2 } = step.access_proof;
      const proof = encode(await makeAccessProof(challenge, argon2));
      step = path.receive({ access_proof: { proof } });
    } else if (step.device_proof !== undefined) {
      // Without a device there is no point in solving the work, and no ticket is asked for.
      if ((await loadBrowserDevice()) === null) throw new BoundElsewhere(false);
      const proof = await device.signProof(secretId, step.device_proof.challenge);
      step = path.receive({ device_proof: { proof } });
    } else if (step.proof_of_work !== undefined) {
      const { challenge, bits } = step.proof_of_work;
      markStep("work");
      report(0, bits > 0 ? "Starting…" : "");
      const nonce = await solveChallenge(challenge, bits, (tried, expected) => {
        report(1 - Math.exp(-tried / expected), `${tried.toLocaleString()} tries so far`);
      });
      step = path.receive({ nonce });
    } else {
      await new Promise((resolve) => setTimeout(resolve, step.wait.seconds * 1000));
      step = path.receive({ waited: true });
    }
  }
  const { failed } = step;
  if (failed.error === "passphrase_required") {
    // Before the proof of work and the ticket: a view spent now would bring bytes this page
    // cannot open yet. This challenge is dropped; the reader may take longer than it lives,
    // so the next attempt asks for a fresh one. A passphrase would not help a browser
    // without the device the secret is bound to: say that instead.
    if (path.challenge.is_bound === true && (await loadBrowserDevice()) === null) {
      throw new BoundElsewhere(false);
    }
    return null;
  }
  if (answer === null || answer.status < 300) throw new Error(failed.message);
  if (failed.error === "wrong_key") {
    // Refused at a stamp (no challenge yet): its proof was of the link key alone.
    throw new WrongKey(failed.message, path.challenge?.has_passphrase === true);
  }
  // The server refused this device's proof: nothing was consumed.
  if (answeredAt === PathState.AWAITING_TICKET && failed.error === "refused") {
    if (path.challenge.is_bound === true) throw new BoundElsewhere(true);
    // Without WebAssembly the passphrase step can outlast the challenge (120 s by
    // default); nothing was spent, and the stretched key is kept for the next walk.
    if (stretched !== null) throw new ChallengeOutlived();
  }
  throw errorFor(answer.status, answer.body, answer.retry_after);
}

/**
 * Stream the envelope in and decrypt as it arrives. When the header asks for a passphrase
 * that was not given, or the one given fails, keep the ciphertext instead, so that a passphrase
 * can be (tried) again: {held, isWrongPassphrase}.
 */
async function receive(response) {
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  let opener = new Opener(linkKey, { passphrase, device, stretched });
  const content = [];
  // Every byte until the opener has authenticated the metadata, which proves its key (and so
  // the passphrase): enough to start again with the device or with another passphrase.
  let held = [];
  let isLocked = false;
  let received = 0;
  for (;;) {
    const { done, value } = await readDownload(reader);
    if (done) break;
    received += value.length;
    report(
      total ? received / total : null,
      total ? `${formatBytes(received)} of ${formatBytes(total)}` : formatBytes(received),
    );
    if (isLocked || opener.metadata === null) held.push(value);
    if (isLocked) continue;
    try {
      content.push(...(await opener.feed(value)));
      if (opener.metadata !== null) held = [];
    } catch (error) {
      if (error instanceof DeviceRequired && device === null) {
        // Sealed to a device although the server did not ask for a proof (a third-party
        // writer): the header is all that was read, so start again with this browser's device.
        if ((await loadBrowserDevice()) === null) throw error;
        opener = new Opener(linkKey, { passphrase, device, stretched });
        try {
          for (const piece of held) content.push(...(await opener.feed(piece)));
          if (opener.metadata !== null) held = [];
          continue;
        } catch (retryError) {
          if (!isPassphraseProblem(retryError, opener)) throw retryError;
        }
      } else if (!isPassphraseProblem(error, opener)) {
        throw endFailure(error, opener);
      }
      isLocked = true;
    }
  }
  // Before anything is decided about the key or the passphrase: bytes missing at the end make
  // every key look wrong, and held bytes with a gap could never be unlocked.
  if (total && received < total) throw new DownloadCutOff();
  if (!isLocked) {
    markStep("decrypt");
    try {
      content.push(...(await opener.finish()));
      return { metadata: opener.metadata, content };
    } catch (error) {
      // A one-chunk envelope is first authenticated here; `held` still has all of it.
      if (!isPassphraseProblem(error, opener)) throw endFailure(error, opener);
    }
  }
  return { held, isWrongPassphrase: passphrase !== null };
}

async function run() {
  revealButton.disabled = true;
  showState("opening");
  try {
    const response = await spendView();
    if (response === null) {
      showPassphraseForm("first");
      return;
    }
    rememberViewSpent();
    const received = await receive(response);
    // Either opened with it or held for another try: the typed passphrase has done its job.
    passphrase = null;
    if (received.held !== undefined) {
      askPassphrase(received.held, received.isWrongPassphrase);
    } else {
      passphraseInput.value = "";
      present(received.metadata, received.content);
    }
  } catch (error) {
    if (error instanceof WrongKey && error.hadPassphrase) {
      // Nothing was spent: ask again (a typo in the link cannot be fixed here, but the
      // sentence names both).
      passphrase = null;
      showPassphraseForm("first");
      showPassphraseError(
        "Wrong key or passphrase: that passphrase does not open this secret with this link." +
          " Nothing was used; check it and try again.",
      );
      passphraseInput.select();
    } else {
      fail(error);
    }
  } finally {
    forgetStretched();
    revealButton.disabled = false;
  }
}

// -- passphrase ---------------------------------------------------------------------------------

function warnBeforeLeaving(event) {
  event.preventDefault();
}

/** Show the passphrase form: "first" before anything is spent, "held" with the envelope. */
function showPassphraseForm(mode) {
  const isFirst = mode === "first";
  passphraseMode = mode;
  byId("passphrase-lede").hidden = !isFirst;
  byId("passphrase-first-hint").hidden = !isFirst;
  byId("passphrase-held-lede").hidden = isFirst;
  byId("passphrase-held").hidden = isFirst;
  // Only what is shown describes the field (hidden elements named here would be read out).
  passphraseInput.setAttribute(
    "aria-describedby",
    isFirst ? "passphrase-lede passphrase-first-hint" : "passphrase-held-lede passphrase-held",
  );
  unlockButton.textContent = isFirst ? "Unlock and reveal" : "Unlock";
  passphraseError.hidden = true;
  showState("passphrase");
  passphraseInput.focus();
}

function askPassphrase(held, isWrongPassphrase) {
  heldEnvelope = held;
  // The ciphertext exists only in this tab now: closing it would lose the secret.
  addEventListener("beforeunload", warnBeforeLeaving);
  showPassphraseForm("held");
  if (isWrongPassphrase) {
    showPassphraseError("That passphrase does not open this secret. Check it and try again.");
    passphraseInput.select();
  }
}

function submitPassphrase(event) {
  event.preventDefault();
  const typed = passphraseInput.value;
  passphraseError.hidden = true;
  if (typed === "") {
    showPassphraseError("Type the passphrase first.");
    return;
  }
  if (passphraseMode === "first") {
    passphrase = typed;
    run();
  } else {
    unlock(typed);
  }
}

/** Try `typed` on the envelope held in this tab; no request is made. */
async function unlock(typed) {
  unlockButton.disabled = true;
  unlockDetail.textContent = "Checking the passphrase. This takes a moment on purpose.";
  try {
    const opener = new Opener(linkKey, { passphrase: typed, device });
    const content = [];
    for (const piece of heldEnvelope) content.push(...(await opener.feed(piece)));
    content.push(...(await opener.finish()));
    heldEnvelope = [];
    removeEventListener("beforeunload", warnBeforeLeaving);
    passphraseInput.value = "";
    present(opener.metadata, content);
  } catch (error) {
    if (error instanceof DecryptionFailed && !(error instanceof UnsupportedEnvelope)) {
      showPassphraseError("That passphrase does not open this secret. Check it and try again.");
      passphraseInput.select();
    } else {
      removeEventListener("beforeunload", warnBeforeLeaving);
      fail(error);
    }
  } finally {
    unlockButton.disabled = false;
    unlockDetail.textContent = "";
  }
}

function showPassphraseError(message) {
  passphraseError.textContent = message;
  passphraseError.hidden = false;
  passphraseInput.focus();
}

// -- split links ------------------------------------------------------------------------------

const sharesError = byId("shares-error");

/** Ask for the split links still missing: one paste field for each. */
function showSharesForm() {
  const missing = firstShare.threshold - 1;
  byId("shares-lede").textContent =
    `The sender split this secret into ${firstShare.count} links, sent separately; any` +
    ` ${firstShare.threshold} of them open it. You opened one: paste ${missing} more` +
    ` below. Nothing has been used yet.`;
  const fields = byId("share-fields");
  fields.replaceChildren();
  for (let i = 1; i <= missing; i++) {
    const field = document.createElement("div");
    field.className = "field";
    const label = document.createElement("label");
    label.htmlFor = `share-link-${i}`;
    label.textContent = `Another split link (${i} of ${missing})`;
    const input = document.createElement("input");
    input.id = `share-link-${i}`;
    input.type = "text";
    input.autocomplete = "off";
    input.spellcheck = false;
    input.className = "share-link-input";
    field.append(label, input);
    fields.append(field);
  }
  showState("shares");
  fields.querySelector("input")?.focus();
}

/** The key share in a pasted split link of this secret; an Error with a sentence otherwise. */
function pastedShare(text) {
  let url;
  try {
    url = new URL(text.trim());
  } catch {
    throw new Error("One of the pasted links is not a link; copy the whole link.");
  }
  if (secretIdOf(url.pathname) !== secretId) {
    throw new Error("One of the pasted links is for a different secret.");
  }
  // The same server too (docs/protocol/links.md 2.2), as the CLI checks: the page's own.
  if (url.origin !== location.origin || url.pathname !== location.pathname) {
    throw new Error("One of the pasted links is for a different server.");
  }
  const share = fragmentShare(url.hash.slice(1));
  if (share === null) {
    throw new Error("One of the pasted links is not a split link, or it is damaged.");
  }
  return share;
}

function submitShares(event) {
  event.preventDefault();
  sharesError.hidden = true;
  try {
    const shares = [firstShare];
    for (const input of document.querySelectorAll(".share-link-input")) {
      if (input.value.trim() !== "") shares.push(pastedShare(input.value));
    }
    const missing = sharesMissing(shares);
    if (missing > 0) {
      throw new Error(
        `${missing} more split ${missing === 1 ? "link is" : "links are"} needed.` +
          " Nothing has been used.",
      );
    }
    linkKey = combineKey(shares);
    for (const input of document.querySelectorAll(".share-link-input")) input.value = "";
    showState("ready");
  } catch (error) {
    sharesError.textContent =
      error instanceof InvalidShares
        ? `These links do not belong together: ${error.message}`
        : error.message;
    sharesError.hidden = false;
  }
}

// -- showing the result -------------------------------------------------------------------------

function asText(content) {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  try {
    return (
      content.map((piece) => decoder.decode(piece, { stream: true })).join("") + decoder.decode()
    );
  } catch {
    return null;
  }
}

function present(metadata, content) {
  for (const item of byId("steps").children) item.dataset.status = "done";
  const text = metadata.kind === "text" ? asText(content) : null;
  // The plaintext exists only in this tab now: leaving or reloading would lose it.
  addEventListener("beforeunload", warnBeforeLeaving);
  if (text !== null) {
    byId("secret-output").textContent = text;
    showState("text");
    return;
  }
  // Always application/octet-stream: the sender's media type must not make this origin
  // render their content (text/html in a blob: URL would run in this page's origin).
  const blob = new Blob(content, { type: "application/octet-stream" });
  savedFile = { url: URL.createObjectURL(blob), name: safeFileName(metadata.name) };
  byId("file-name").textContent = savedFile.name;
  byId("file-name-refused").hidden = !metadata.name || savedFile.name === metadata.name;
  byId("file-size").textContent = formatBytes(blob.size);
  byId("file-type").textContent =
    metadata.type && isPlainText(metadata.type) ? metadata.type : "Not given";
  showState("file");
}

function saveFile() {
  if (savedFile === null) return;
  const anchor = document.createElement("a");
  anchor.href = savedFile.url;
  anchor.download = savedFile.name;
  anchor.rel = "noopener";
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
}

// -- failures -----------------------------------------------------------------------------------

function fail(error) {
  if (error instanceof SecretGone) {
    showState("gone");
    return;
  }
  if (error instanceof DownloadCutOff || error instanceof DecryptionFailed) {
    showDecryptionFailure(error);
    return;
  }
  if (error instanceof WrongKey) {
    byId("failed-title").textContent = "Wrong key or passphrase";
    byId("failed-message").textContent =
      "The key in this link does not fit the secret: check that the whole link was copied." +
      " Nothing was used; the secret is still there.";
    byId("retry-actions").hidden = true;
    showState("failed");
    return;
  }
  if (error instanceof BoundElsewhere) {
    byId("bound-title").textContent = error.isRefused
      ? "This device cannot open this secret"
      : "This secret is bound to another device";
    byId("bound-message").textContent = error.isRefused
      ? "This secret is bound to a different device; it was not opened and is still there" +
        " for the right device."
      : "Only the device whose code the sender used can open it, and this browser holds no" +
        " device. It was not opened and is still there for the right device.";
    showState("bound");
    return;
  }
  let title = "The secret could not be opened";
  let message;
  if (error instanceof UnsupportedEnvelope) {
    message = "It was made by a newer version of Atopos than this page understands.";
  } else if (error instanceof DeviceRequired) {
    message = "It is sealed to a device, and this browser holds none that opens it.";
  } else if (error instanceof ApiError) {
    message = error.message;
  } else if (isViewSpent) {
    message = "The download was interrupted.";
  } else {
    message = error?.message || "Something went wrong.";
  }
  if (isViewSpent) message += " This view has been used.";
  byId("failed-title").textContent = title;
  byId("failed-message").textContent = message;
  byId("retry-actions").hidden = isViewSpent;
  showState("failed");
}

// -- a download cut off, or a wrong key ------------------------------------------------------------

/** The next piece of the body; a connection that fails mid-body is a DownloadCutOff. */
async function readDownload(reader) {
  try {
    return await reader.read();
  } catch {
    throw new DownloadCutOff();
  }
}

/**
 * What a failure at the end of the envelope means. Once the metadata was authenticated the key
 * is proven right, so a later chunk that does not open (or a last chunk that never came) is
 * bytes lost on the way, not a wrong key.
 */
function endFailure(error, opener) {
  const isKeyProven = opener.metadata !== null;
  if (isKeyProven && error instanceof DecryptionFailed && !(error instanceof UnsupportedEnvelope)) {
    return new DownloadCutOff();
  }
  return error;
}

/** The envelope was cut off on the way, or it came whole and the key does not open it. */
function showDecryptionFailure(error) {
  let title;
  let message;
  if (error instanceof UnsupportedEnvelope) {
    title = "The secret could not be opened";
    message = "It was made by a newer version of Atopos than this page understands.";
  } else if (error instanceof DownloadCutOff) {
    title = "The download was cut off";
    message =
      "The connection failed before the whole secret arrived, so nothing of it is shown. " +
      "This is a network problem, not a wrong link.";
  } else {
    title = "The key in the link does not open this secret";
    message =
      "The secret arrived whole, but it does not decrypt with this key: the link was " +
      "probably changed or cut short when it was copied. Ask the sender to share it again.";
  }
  if (isViewSpent) message += " This view has been used.";
  byId("failed-title").textContent = title;
  byId("failed-message").textContent = message;
  byId("retry-actions").hidden = isViewSpent;
  showState("failed");
}

// -- a reload after the view was spent ----------------------------------------------------------

const VIEW_SPENT = "atoposViewSpent";

/**
 * Mark this history entry as having spent its view. The key left the address bar when the
 * page loaded, so a reload cannot open anything; this mark lets it say why instead of
 * calling the link incomplete. History state survives a reload but holds no key or id.
 */
function rememberViewSpent() {
  history.replaceState({ ...(history.state ?? {}), [VIEW_SPENT]: true }, "");
}

function wasViewSpent() {
  return history.state?.[VIEW_SPENT] === true;
}

// -- start ---------------------------------------------------------------------------------

if (!hasWebCrypto()) {
  showState("unsupported", { focus: false });
} else if (linkKey === null && firstShare === null && wasViewSpent()) {
  showState("used", { focus: false });
} else if (secretId === null || (linkKey === null && firstShare === null)) {
  showState("broken", { focus: false });
} else {
  byId("shares-form").addEventListener("submit", submitShares);
  revealButton.addEventListener("click", run);
  byId("retry-button").addEventListener("click", run);
  passphraseForm.addEventListener("submit", submitPassphrase);
  byId("save-file").addEventListener("click", saveFile);
  bindCopy(
    byId("copy-secret"),
    () => byId("secret-output").textContent,
    byId("copy-secret-status"),
  );
  // Shown only now, with its button wired: shown by the static page, a click that came
  // before this module ran did nothing (and without JavaScript the button never works).
  if (firstShare !== null) showSharesForm();
  else showState("ready", { focus: false });
}
