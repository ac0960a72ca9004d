// The member side of the room protocol (rooms.md section 11), as protocol/room_member.py and
// with the SAME transition table: (state, event, guard) -> next state. RoomMember takes the
// relay's text frames (receive) and the person's commands (sendText, admit, refuse, update,
// leave, end), returns events for the page and queues frames for the relay (outgoing()).
// It opens no socket and reads no clock; randomness comes from the randomBytes it is given.
// Calls must not overlap: the caller awaits each one before the next (a frame queue).
// A refused frame throws RoomProtocolError and leaves the state as it was, except that its
// sequence number counts as seen. A member made with `isSuspendable` (Extra Lock) can be
// handed over whole as bytes and numbers (suspend) and made again from them (resume): the
// page's idle lock seals that and drops the object, keys and all.

import { isValidX25519PublicKey } from "./device.js";
import { bytesEqual } from "./room-bytes.js";
import { RoomDecryptionFailed, RoomProtocolError } from "./room-errors.js";
import {
  buildCommit,
  checkChange,
  checkJoins,
  checkMemberTag,
  checkRoomAuth,
  checkSealedToAll,
  checkSignature,
  checkUpdate,
  joinerIsAuthentic,
  joinFromWire,
  readCommit,
  rosterFromWire,
} from "./room-commit.js";
import {
  deriveProofKey,
  deriveRoomSecrets,
  endProofMessage,
  isSealableName,
  joinProofMessage,
  MAX_PROFILE_TEXT_BYTES,
  MemberKeys,
  memberAuthMessage,
  memberAuthTag,
  openInviteLink,
  openMetadata,
  profileAad,
  ProofKind,
  roomNameAad,
  sealMetadata,
} from "./room-keys.js";
import { RoomLink } from "./room-link.js";
import { decryptMessage, encryptMessage, MAX_BODY_BYTES, messageAad } from "./room-message.js";
import {
  MAX_PUBLISHED_SEEDS,
  sealedSeedCount,
  sealPublishedSeeds,
} from "./room-published-seeds.js";
import { EpochChains, MessageKeyUnavailable } from "./room-ratchet.js";
import { rostersEqual } from "./room-roster.js";
import { safetyCode } from "./room-safety.js";
import { openSecret, sealAad } from "./room-seal.js";
import {
  admissionMessage,
  CommitReason,
  confirmTag,
  membershipAfter,
  membershipStart,
  messageSigningInput,
  transcriptAfter,
  transcriptStart,
} from "./room-transcript.js";
import { ed25519Sign, ed25519Verify } from "./room-webcrypto.js";
import { b64, decodeRelayFrame, encodeClientFrame, MAX_MEMBERS, unb64 } from "./room-wire.js";

export const UPDATE_AFTER_MESSAGES = 100;
export const UPDATE_AFTER_SECONDS = 600;
export const SNAPSHOT_VERSION = 1;

export const MemberState = Object.freeze({
  CONNECTING: "connecting",
  PROVING: "proving",
  JOINING: "joining",
  WAITING: "waiting",
  ACTIVE: "active",
  LEAVING: "leaving",
  CLOSED: "closed",
});
const S = MemberState;

/** [state, event, guard (null: one outcome), next state]: the table of room_member.py. */
export const TRANSITIONS = Object.freeze(
  [
    [S.CONNECTING, "challenge", null, S.PROVING],
    [S.PROVING, "unlock", null, S.JOINING],
    [S.JOINING, "welcome", null, S.WAITING],
    [S.WAITING, "change", "announced", S.WAITING],
    [S.WAITING, "change", "i_found", S.WAITING],
    [S.WAITING, "commit", "adds_me", S.ACTIVE],
    [S.WAITING, "commit", "not_for_me", S.WAITING],
    [S.WAITING, "msg", null, S.WAITING],
    [S.WAITING, "knock", null, S.WAITING],
    [S.WAITING, "left", null, S.WAITING],
    [S.WAITING, "closing", null, S.LEAVING],
    [S.WAITING, "leave", null, S.LEAVING],
    [S.ACTIVE, "change", "announced", S.ACTIVE],
    [S.ACTIVE, "change", "i_commit", S.ACTIVE],
    [S.ACTIVE, "change", "bad_joiner", S.ACTIVE],
    [S.ACTIVE, "commit", "keeps_me", S.ACTIVE],
    [S.ACTIVE, "commit", "removes_me", S.CLOSED],
    [S.ACTIVE, "msg", null, S.ACTIVE],
    [S.ACTIVE, "sent", null, S.ACTIVE],
    [S.ACTIVE, "knock", "verified", S.ACTIVE],
    [S.ACTIVE, "knock", "forged", S.ACTIVE],
    [S.ACTIVE, "left", null, S.ACTIVE],
    [S.ACTIVE, "closing", null, S.LEAVING],
    [S.ACTIVE, "send", null, S.ACTIVE],
    [S.ACTIVE, "admit", null, S.ACTIVE],
    [S.ACTIVE, "refuse", null, S.ACTIVE],
    [S.ACTIVE, "update", null, S.ACTIVE],
    [S.ACTIVE, "end", null, S.ACTIVE],
    [S.ACTIVE, "leave", null, S.LEAVING],
    [S.LEAVING, "change", null, S.LEAVING],
    [S.LEAVING, "commit", null, S.LEAVING],
    [S.LEAVING, "msg", null, S.LEAVING],
    [S.LEAVING, "sent", null, S.LEAVING],
    [S.LEAVING, "knock", null, S.LEAVING],
    [S.LEAVING, "left", null, S.LEAVING],
    [S.LEAVING, "closing", null, S.LEAVING],
    ...Object.values(S)
      .filter((state) => state !== S.CLOSED)
      .flatMap((state) => [
        [state, "ended", null, S.CLOSED],
        [state, "error", null, S.CLOSED],
      ]),
  ].map((row) => Object.freeze(row)),
);
const TABLE = new Map(
  TRANSITIONS.map(([state, event, guard, next]) => [`${state}|${event}|${guard}`, next]),
);
const GUARDS = {
  change: ["announced", "i_found", "i_commit", "bad_joiner"],
  commit: ["adds_me", "not_for_me", "keeps_me", "removes_me"],
  knock: ["verified", "forged"],
};
const KNOCK_FIELDS = ["index", "sign_key", "seal_key", "nonce", "auth", "profile"];
const ROOM_FRAMES = new Set(["knock", "change", "commit", "msg", "sent", "left", "closing"]);
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The message body {"type":"text","text":…}: UTF-8 JSON, closed field set. */
function encodeBody(text) {
  return utf8.encode(JSON.stringify({ type: "text", text }));
}

function decodeBody(bytes) {
  const body = JSON.parse(strictUtf8.decode(bytes));
  if (
    body === null ||
    typeof body !== "object" ||
    Array.isArray(body) ||
    body.type !== "text" ||
    typeof body.text !== "string" ||
    Object.keys(body).some((key) => key !== "type" && key !== "text")
  ) {
    throw new RoomDecryptionFailed();
  }
  return body.text;
}

/** One member's side of one room connection. */
export class RoomMember {
  /**
   * `link` is a RoomLink; `randomBytes(n)` gives n fresh bytes. `options.isSuspendable` keeps
   * the raw bytes `suspend` needs (the X25519 private key, the room's two shards), which a
   * member otherwise holds only as non-extractable CryptoKeys.
   */
  static async create(link, displayName, randomBytes, options = {}) {
    if (!isSealableName(displayName)) {
      throw new RangeError(`a display name is at most ${MAX_PROFILE_TEXT_BYTES} bytes of UTF-8`);
    }
    const keys = await MemberKeys.generate(randomBytes, {
      isSuspendable: options.isSuspendable ?? false,
    });
    return new RoomMember(link, displayName, randomBytes, keys, options);
  }

  constructor(link, displayName, randomBytes, keys, options) {
    this.state = S.CONNECTING;
    this.link = link;
    this.roomId = link.roomId;
    this.index = null;
    this.safetyCode = null;
    this.isKnock = false;
    this.#displayName = displayName;
    this.#random = randomBytes;
    this.#updateAfterMessages = options.updateAfterMessages ?? UPDATE_AFTER_MESSAGES;
    this.#updateAfterSeconds = options.updateAfterSeconds ?? UPDATE_AFTER_SECONDS;
    this.#isSuspendable = options.isSuspendable ?? false;
    this.#keys = keys;
  }

  #displayName;
  #random;
  #updateAfterMessages;
  #updateAfterSeconds;
  #isSuspendable;
  #keys;
  #shards = null; // {sLink, sRelay}: what the room secrets come from (suspendable only)
  #publishedSeeds = [];
  #challenge = null;
  #secrets = null;
  #profile = null;
  #lastSeq = null;
  #epoch = null; // {number, roster, chains}
  #previous = null;
  #epochLink = null;
  #epochStartedAt = 0;
  #transcript = null;
  #membership = null;
  #announced = null;
  #pending = null; // {epoch, signingInput, epochSecret, newKeys}
  #knocks = new Map();
  // Members of the current roster the relay said left: they may not commit or send any more
  // (their signing seeds are public). Pruned to the roster at every commit.
  #left = new Set();
  #names = new Map();
  #outbox = [];
  #undelivered = new Set();

  // -- the table ----------------------------------------------------------------------------

  #allowed(event) {
    const guards = [null, ...(GUARDS[event] ?? [])];
    if (!guards.some((guard) => TABLE.has(`${this.state}|${event}|${guard}`))) {
      throw new RoomProtocolError(
        "unexpected",
        `A '${event}' is not expected while ${this.state}.`,
      );
    }
  }

  #move(event, guard = null) {
    const next = TABLE.get(`${this.state}|${event}|${guard}`);
    if (next === undefined)
      throw new RoomProtocolError("unexpected", `No move for ${event}/${guard}.`);
    this.state = next;
    if (next === S.CLOSED) this.#wipe();
  }

  #send(frame) {
    this.#outbox.push(encodeClientFrame(frame));
  }

  /** The frames to send to the relay, in order; the queue is emptied. */
  outgoing() {
    const frames = this.#outbox;
    this.#outbox = [];
    return frames;
  }

  // -- what the page may read -----------------------------------------------------------------

  get epoch() {
    return this.#epoch === null ? null : this.#epoch.number;
  }

  /** [[index, name], …] of the current epoch. */
  get members() {
    if (this.#epoch === null) return [];
    return this.#epoch.roster.map((e) => [e.index, this.#names.get(e.index) ?? "?"]);
  }

  needsUpdate(now) {
    if (this.state !== S.ACTIVE || this.#epoch === null || this.#pending !== null) return false;
    const sent = this.#epoch.chains.sentCount;
    return (
      sent >= this.#updateAfterMessages ||
      (sent > 0 && now - this.#epochStartedAt >= this.#updateAfterSeconds)
    );
  }

  // -- relay frames ----------------------------------------------------------------------------

  /** Handle one frame; resolves to the events, or rejects with RoomProtocolError. */
  async receive(data, now) {
    if (this.state === S.CLOSED)
      throw new RoomProtocolError("ended", "This room session is closed.");
    const frame = decodeRelayFrame(data);
    const events = [];
    switch (frame.t) {
      case "challenge":
        this.#allowed("challenge");
        await this.#onChallenge(frame);
        this.#move("challenge");
        break;
      case "unlock":
        this.#allowed("unlock");
        events.push(await this.#onUnlock(frame));
        this.#move("unlock");
        break;
      case "welcome":
        this.#allowed("welcome");
        this.index = frame.index;
        this.#lastSeq = frame.seq;
        events.push({ kind: "Welcomed", index: frame.index });
        this.#move("welcome");
        break;
      case "ended":
        this.#allowed("ended");
        events.push({ kind: "RoomEnded", reason: frame.reason });
        this.#move("ended");
        break;
      case "error":
        this.#allowed("error");
        events.push({ kind: "RelayError", code: frame.code, message: frame.message });
        this.#move("error");
        break;
      default:
        events.push(...(await this.#onRoomFrame(frame, now)));
    }
    return events;
  }

  #checkSeq(seq, events) {
    const last = this.#lastSeq;
    if (last === null || seq <= last) {
      throw new RoomProtocolError("sequence_gap", "The relay repeated or reordered a frame.");
    }
    if (seq !== last + 1) events.push({ kind: "SequenceGap", expected: last + 1, received: seq });
    this.#lastSeq = seq;
  }

  async #onRoomFrame(frame, now) {
    const event = frame.t;
    if (!ROOM_FRAMES.has(event)) throw new RoomProtocolError("unexpected", "Not a room frame.");
    this.#allowed(event);
    const events = [];
    this.#checkSeq(frame.seq, events);
    if (this.state === S.LEAVING) {
      this.#move(event);
      return events;
    }
    let guard = null;
    switch (event) {
      case "knock":
        if (this.state === S.ACTIVE) guard = await this.#onKnock(frame, events);
        break;
      case "change":
        guard = await this.#onChange(frame);
        break;
      case "commit":
        guard = await this.#onCommit(frame, now, events);
        break;
      case "msg":
        await this.#onMessage(frame, events);
        break;
      case "sent": {
        const id = `${frame.epoch}:${frame.counter}`;
        if (!this.#undelivered.has(id)) {
          throw new RoomProtocolError("stale", "The relay acknowledged an unsent message.");
        }
        this.#undelivered.delete(id);
        events.push({
          kind: "MessageDelivered",
          epoch: frame.epoch,
          counter: frame.counter,
          seq: frame.seq,
        });
        break;
      }
      case "left":
        if (
          this.#epoch !== null &&
          frame.index !== this.index &&
          this.#entry(this.#epoch, frame.index) !== undefined
        ) {
          this.#left.add(frame.index);
        }
        events.push({
          kind: "MemberLeft",
          index: frame.index,
          // how many seeds it published, sealed (none: it vanished or had no epoch)
          publishedKeys: frame.sealed_seeds
            ? sealedSeedCount(unb64(frame.sealed_seeds).length)
            : 0,
        });
        break;
      case "closing":
        events.push({ kind: "RoomClosing", seconds: frame.seconds, reason: frame.reason });
        await this.#sendLeave();
        break;
    }
    this.#move(event, guard);
    return events;
  }

  async #onChallenge(frame) {
    this.#challenge = unb64(frame.nonce);
    const kind = this.link.proofKind;
    const key = await deriveProofKey(kind, this.link.proofSecret, this.roomId);
    const sig = await ed25519Sign(
      key.privateKey,
      joinProofMessage(kind, this.roomId, this.#challenge),
    );
    this.#send({
      t: "prove",
      kind: this.link.proofKindName,
      key: b64(key.publicKey),
      sig: b64(sig),
    });
  }

  async #onUnlock(frame) {
    let sLink = this.link.sLink;
    if (this.link.inviteSecret !== null) {
      if (frame.sealed_link == null) {
        throw new RoomProtocolError("bad_proof", "The relay sent no sealed link for the invite.");
      }
      try {
        sLink = await openInviteLink(this.link.inviteSecret, this.roomId, unb64(frame.sealed_link));
      } catch {
        throw new RoomProtocolError("bad_proof", "The invite does not open.");
      }
    }
    const sRelay = unb64(frame.s_relay);
    const secrets = await deriveRoomSecrets(sLink, sRelay, this.roomId);
    const aad = roomNameAad(this.roomId, frame.knock, frame.invite_only);
    let name;
    try {
      name = (await openMetadata(secrets, unb64(frame.name), aad)) || null;
    } catch {
      throw new RoomProtocolError(
        "undecryptable",
        "The room does not open with this link and this relay.",
      );
    }
    const profile = await sealMetadata(
      secrets,
      this.#displayName,
      profileAad(this.roomId, this.#keys.signKey),
      this.#random,
    );
    const auth = await memberAuthTag(
      secrets,
      memberAuthMessage(
        this.roomId,
        this.#challenge,
        this.#keys.signKey,
        this.#keys.sealKey,
        profile,
      ),
    );
    this.#secrets = secrets;
    if (this.#isSuspendable) this.#shards = { sLink: sLink.slice(), sRelay };
    this.isKnock = frame.knock;
    this.#profile = profile;
    this.#send({
      t: "join",
      sign_key: b64(this.#keys.signKey),
      seal_key: b64(this.#keys.sealKey),
      auth: b64(auth),
      profile: b64(profile),
    });
    return {
      kind: "RoomUnlocked",
      name,
      expiresAt: frame.expires_at,
      isKnock: frame.knock,
      isInviteOnly: frame.invite_only,
    };
  }

  // -- knocks and admissions ------------------------------------------------------------------

  async #joinerMayJoin(join) {
    if (!(await joinerIsAuthentic(this.#secrets, join))) return false;
    if (!this.isKnock) return true;
    const admitter =
      join.admittedBy === null ? undefined : this.#entry(this.#epoch, join.admittedBy);
    const message = admissionMessage(
      this.roomId,
      join.index,
      join.nonce,
      join.signKey,
      join.sealKey,
    );
    return (
      admitter !== undefined &&
      join.admission !== null &&
      (await ed25519Verify(admitter.signKey, join.admission, message))
    );
  }

  #entry(epoch, index) {
    return epoch?.roster.find((e) => e.index === index);
  }

  async #nameOf(profile, signKey) {
    try {
      return await openMetadata(this.#secrets, profile, profileAad(this.roomId, signKey));
    } catch {
      return "?";
    }
  }

  async #onKnock(frame, events) {
    const known = this.#knocks.get(frame.index);
    if (known !== undefined && KNOCK_FIELDS.every((name) => known[name] === frame[name])) {
      // The relay announces waiting knocks again when members join (section 11.3).
      return "verified";
    }
    const join = joinFromWire(frame);
    if (!(await joinerIsAuthentic(this.#secrets, join))) {
      this.#send({ t: "refuse", index: frame.index });
      return "forged";
    }
    this.#knocks.set(frame.index, frame);
    while (this.#knocks.size > MAX_MEMBERS) this.#knocks.delete(this.#knocks.keys().next().value);
    events.push({
      kind: "JoinRequested",
      index: frame.index,
      name: await this.#nameOf(join.profile, join.signKey),
    });
    return "verified";
  }

  /** Admit a knocking joiner: sign its keys and nonce (knock mode). */
  async admit(index) {
    this.#allowed("admit");
    const knock = this.#knocks.get(index);
    if (knock === undefined)
      throw new RoomProtocolError("unexpected", "Nobody with that index is knocking.");
    const message = admissionMessage(
      this.roomId,
      index,
      unb64(knock.nonce),
      unb64(knock.sign_key),
      unb64(knock.seal_key),
    );
    const sig = await this.#keys.sign(message);
    this.#knocks.delete(index);
    this.#send({ t: "admit", index, sig: b64(sig) });
    this.#move("admit");
  }

  refuse(index) {
    this.#allowed("refuse");
    this.#knocks.delete(index);
    this.#send({ t: "refuse", index });
    this.#move("refuse");
  }

  // -- changes and commits ------------------------------------------------------------------

  async #onChange(frame) {
    if (frame.reason === "found") {
      if (this.state !== S.WAITING || frame.committer !== this.index) {
        throw new RoomProtocolError("bad_commit", "Only a lone joiner founds an epoch.");
      }
      const [roster, joins] = await this.#rosterFor(frame);
      await this.#commitChange(frame, roster, joins);
      this.#announced = frame;
      return "i_found";
    }
    if (this.state === S.WAITING || frame.committer !== this.index) {
      this.#pending = null;
      this.#announced = frame;
      return "announced";
    }
    if (frame.epoch !== this.#epoch.number + 1) {
      throw new RoomProtocolError("stale", "The change is not for the next epoch.");
    }
    const joins = frame.joins.map(joinFromWire);
    const bad = [];
    for (const join of joins) if (!(await this.#joinerMayJoin(join))) bad.push(join.index);
    if (bad.length) {
      for (const index of bad) this.#send({ t: "refuse", index });
      return "bad_joiner";
    }
    const [roster, checked] = await this.#rosterFor(frame);
    const pending = this.#pending;
    this.#pending = null;
    try {
      await this.#commitChange(frame, roster, checked);
    } catch (error) {
      this.#pending = pending;
      throw error;
    }
    this.#announced = frame;
    return "i_commit";
  }

  async #rosterFor(frame) {
    const joins = frame.joins.map(joinFromWire);
    const joiners = joins.map((j) => ({
      index: j.index,
      identity: j.signKey,
      signKey: j.signKey,
      sealKey: j.sealKey,
      profile: j.profile,
    }));
    let staying;
    if (frame.reason === "found") {
      const mine = joins.length === 1 ? joins[0] : undefined;
      if (
        mine === undefined ||
        mine.index !== this.index ||
        !bytesEqual(mine.signKey, this.#keys.signKey) ||
        !bytesEqual(mine.sealKey, this.#keys.sealKey) ||
        !bytesEqual(mine.nonce, this.#challenge) ||
        !bytesEqual(mine.profile, this.#profile)
      ) {
        throw new RoomProtocolError("bad_commit", "A founding change must add only me.");
      }
      staying = [];
    } else {
      const current = new Set(this.#epoch.roster.map((e) => e.index));
      const leaves = new Set(frame.leaves);
      const joining = joins.map((j) => j.index);
      if (
        [...leaves].some((index) => !current.has(index)) ||
        leaves.has(this.index) ||
        new Set(joining).size !== joining.length ||
        joining.some((index) => current.has(index)) ||
        (leaves.size === 0 && joining.length === 0)
      ) {
        throw new RoomProtocolError("bad_commit", "The change is not a valid change.");
      }
      staying = this.#epoch.roster.filter((e) => !leaves.has(e.index));
    }
    const roster = [...staying, ...joiners].sort((a, b) => a.index - b.index);
    if (roster.length > MAX_MEMBERS || !rostersEqual(rosterFromWire(frame.roster), roster)) {
      throw new RoomProtocolError("bad_commit", "The announced roster is not the change.");
    }
    return [roster, joins];
  }

  async #commitChange(frame, roster, joins) {
    let previousLink, transcript, membership;
    if (frame.reason === "found") {
      previousLink = this.#secrets.epochBase;
      transcript = await transcriptStart(this.roomId);
      membership = await membershipStart(this.roomId);
    } else {
      [previousLink, transcript, membership] = [
        this.#epochLink,
        this.#transcript,
        this.#membership,
      ];
    }
    await this.#buildCommit(
      frame.epoch,
      CommitReason[frame.reason],
      roster,
      joins,
      previousLink,
      transcript,
      membership,
      this.#keys,
      null,
    );
  }

  /** Re-key this member: fresh key pairs and a fresh epoch sealed to the others only. */
  async update(now) {
    this.#allowed("update");
    if (this.#pending !== null) {
      throw new RoomProtocolError("unexpected", "A commit of this member is still pending.");
    }
    const newKeys = await MemberKeys.generate(this.#random, { isSuspendable: this.#isSuspendable });
    const roster = this.#epoch.roster.map((e) =>
      e.index === this.index ? { ...e, signKey: newKeys.signKey, sealKey: newKeys.sealKey } : e,
    );
    await this.#buildCommit(
      this.#epoch.number + 1,
      CommitReason.update,
      roster,
      [],
      this.#epochLink,
      this.#transcript,
      this.#membership,
      this.#keys,
      newKeys,
    );
    this.#move("update");
  }

  async #buildCommit(
    epoch,
    reason,
    roster,
    joins,
    previousLink,
    transcript,
    membership,
    signer,
    newKeys,
  ) {
    const built = await buildCommit({
      secrets: this.#secrets,
      committer: this.index,
      epoch,
      reason,
      roster,
      joins,
      previousLink,
      transcript,
      membership,
      signer,
      randomBytes: this.#random,
    });
    this.#pending = {
      epoch,
      signingInput: built.signingInput,
      epochSecret: built.epochSecret,
      newKeys,
    };
    this.#send(built.frame);
  }

  async #onCommit(frame, now, events) {
    const view = await readCommit(this.roomId, frame);
    await checkRoomAuth(this.#secrets, view);
    if (this.state === S.WAITING) {
      const mine = view.entry(this.index);
      if (mine === undefined) return "not_for_me";
      await this.#checkCommitAddingMe(view, mine);
    } else {
      await this.#checkCommitFromMember(view);
    }
    const staying = new Set(view.roster.map((e) => e.index));
    const leavers = (this.#epoch?.roster ?? [])
      .filter((e) => !staying.has(e.index))
      .map((e) => e.index);
    const pending = this.#pending;
    const isMine =
      pending !== null &&
      view.committer === this.index &&
      pending.epoch === view.epoch &&
      bytesEqual(pending.signingInput, view.signingInput);
    let epochSecret;
    if (isMine) {
      epochSecret = pending.epochSecret;
    } else if (view.committer === this.index) {
      throw new RoomProtocolError("bad_commit", "A commit in this member's name it did not make.");
    } else {
      if (view.entry(this.index) === undefined) {
        this.#pending = null;
        events.push({ kind: "RemovedFromRoom", epoch: view.epoch });
        return "removes_me";
      }
      const entry = view.sealedTo(this.index);
      if (entry === undefined)
        throw new RoomProtocolError("bad_commit", "The commit seals nothing to this member.");
      try {
        epochSecret = await openSecret(
          this.#keys,
          entry.ephemeral,
          entry.sealed,
          sealAad(this.roomId, view.epoch, this.index, view.rosterDigest),
        );
      } catch {
        throw new RoomProtocolError("undecryptable", "The epoch secret does not open.");
      }
    }
    const transcriptNext = await transcriptAfter(view.signingInput);
    if (!bytesEqual(await confirmTag(epochSecret, this.roomId, transcriptNext), view.confirm)) {
      throw new RoomProtocolError("bad_commit", "The commit's confirmation tag differs.");
    }
    const chains = await EpochChains.create(
      epochSecret,
      this.roomId,
      view.epoch,
      view.roster.map((e) => e.index),
      this.index,
    );
    epochSecret.fill(0);
    const membershipNext = await membershipAfter(
      view.membership,
      view.reason,
      view.epoch,
      view.roster,
    );
    const code = await safetyCode(this.roomId, membershipNext);
    const names = new Map();
    const kept = new Set([...view.roster, ...(this.#epoch?.roster ?? [])].map((e) => e.index));
    for (const [index, name] of this.#names) if (kept.has(index)) names.set(index, name);
    for (const member of view.roster) {
      if (!names.has(member.index))
        names.set(member.index, await this.#nameOf(member.profile, member.identity));
    }
    // Everything is checked and computed: take the new epoch.
    if (isMine && pending.newKeys !== null) {
      this.#publishedSeeds.push(this.#keys.signingSeed());
      this.#keys.wipe();
      this.#keys = pending.newKeys;
    }
    this.#pending = null;
    this.#announced = null;
    for (const index of [...this.#left]) if (!staying.has(index)) this.#left.delete(index);
    if (this.#epoch !== null) {
      for (const sender of this.#epoch.roster) {
        const missing = this.#epoch.chains.skippedCounters(sender.index);
        if (missing.length) {
          events.push({
            kind: "MessagesMissing",
            sender: sender.index,
            epoch: this.#epoch.number,
            counters: missing,
          });
        }
      }
    }
    const previousCode = this.safetyCode;
    this.#previous?.chains.wipe();
    this.#previous = this.#epoch;
    this.#epoch = { number: view.epoch, roster: view.roster, chains };
    this.#epochLink = chains.epochLink;
    this.#epochStartedAt = now;
    for (const id of [...this.#undelivered]) {
      if (Number(id.split(":")[0]) < view.epoch - 1) this.#undelivered.delete(id);
    }
    this.#transcript = transcriptNext;
    this.#membership = membershipNext;
    this.safetyCode = code;
    this.#names = names;
    events.push({
      kind: "EpochStarted",
      epoch: view.epoch,
      reason: frame.reason,
      members: this.members,
      joined: view.joins.map((j) => j.index),
      left: leavers,
      safetyCode: code,
      isSafetyCodeChanged: code !== previousCode,
    });
    return this.state === S.WAITING ? "adds_me" : "keeps_me";
  }

  async #checkCommitAddingMe(view, mine) {
    if (
      !bytesEqual(mine.identity, this.#keys.signKey) ||
      !bytesEqual(mine.signKey, this.#keys.signKey) ||
      !bytesEqual(mine.sealKey, this.#keys.sealKey) ||
      view.reason === CommitReason.update
    ) {
      throw new RoomProtocolError("bad_commit", "The commit adds this member with other keys.");
    }
    const me = view.joins.find((j) => j.index === this.index);
    if (
      me === undefined ||
      !bytesEqual(me.nonce, this.#challenge) ||
      !bytesEqual(me.profile, this.#profile)
    ) {
      throw new RoomProtocolError("bad_commit", "The commit does not carry this member's join.");
    }
    await checkSignature(view.entry(view.committer), view);
    for (const entry of view.roster) {
      if (!(await isValidX25519PublicKey(entry.sealKey))) {
        throw new RoomProtocolError("bad_commit", "The roster holds an unusable X25519 key.");
      }
    }
    if (view.reason === CommitReason.found) {
      if (view.committer !== this.index || view.roster.length !== 1) {
        throw new RoomProtocolError("bad_commit", "Only a lone joiner founds an epoch.");
      }
      // Keyed by the epoch base: any holder of both shards could make it, so it adds nothing
      // to room_auth here; it is checked so that every commit carries one.
      await checkMemberTag(this.#secrets.epochBase, this.roomId, view);
      return;
    }
    const joined = new Set(view.joins.map((j) => j.index));
    const admitters = view.roster.filter((e) => !joined.has(e.index));
    await checkJoins(this.#secrets, this.isKnock, view.joins, view.roster, admitters);
  }

  async #checkCommitFromMember(view) {
    const epoch = this.#epoch;
    if (view.epoch !== epoch.number + 1) {
      throw new RoomProtocolError("stale", "The commit is not for the next epoch.");
    }
    if (view.reason === CommitReason.found) {
      throw new RoomProtocolError("bad_commit", "A founding commit in a room with members.");
    }
    // Only members of this epoch hold its link: the relay, even with the room link and a
    // departed member's published signing seed, cannot commit in that member's name.
    await checkMemberTag(this.#epochLink, this.roomId, view);
    if (this.#left.has(view.committer)) {
      throw new RoomProtocolError("bad_commit", "The committer has left the room.");
    }
    if (
      !bytesEqual(view.transcript, this.#transcript) ||
      !bytesEqual(view.membership, this.#membership)
    ) {
      throw new RoomProtocolError("bad_commit", "The commit forks the room's transcript.");
    }
    await checkSignature(this.#entry(epoch, view.committer), view);
    if (view.reason === CommitReason.update) await checkUpdate(epoch.roster, view);
    else await checkChange(this.#secrets, this.isKnock, epoch.roster, view, this.#announced);
    checkSealedToAll(view);
  }

  // -- messages -----------------------------------------------------------------------------

  /** Encrypt and sign a text message in the current epoch and queue it. */
  async sendText(text) {
    this.#allowed("send");
    if (typeof text !== "string" || !text.isWellFormed()) {
      throw new RoomProtocolError("malformed", "The message is not valid Unicode.");
    }
    const body = encodeBody(text);
    if (body.length > MAX_BODY_BYTES)
      throw new RoomProtocolError("too_large", "The message is too long.");
    const epoch = this.#epoch;
    const key = await epoch.chains.nextSendKey();
    const aad = messageAad(this.roomId, epoch.number, this.index, key.counter);
    const ciphertext = await encryptMessage(key, aad, body);
    const sig = await this.#keys.sign(
      messageSigningInput(this.roomId, epoch.number, this.index, key.counter, ciphertext),
    );
    this.#undelivered.add(`${epoch.number}:${key.counter}`);
    this.#send({
      t: "msg",
      epoch: epoch.number,
      sender: this.index,
      counter: key.counter,
      ct: b64(ciphertext),
      sig: b64(sig),
    });
    this.#move("send");
    return { epoch: epoch.number, counter: key.counter };
  }

  async #onMessage(frame, events) {
    if (this.state === S.WAITING) return;
    const holder = frame.epoch === this.#epoch.number ? this.#epoch : this.#previous;
    if (holder === null || holder.number !== frame.epoch) {
      throw new RoomProtocolError("stale", "The message is for an epoch this member lacks.");
    }
    const sender = this.#entry(holder, frame.sender);
    // A sender left out of the current epoch may not send late into the previous one, nor may
    // one the relay said left (its signing seeds are public).
    if (
      sender === undefined ||
      this.#entry(this.#epoch, frame.sender) === undefined ||
      this.#left.has(frame.sender)
    ) {
      throw new RoomProtocolError("bad_signature", "The sender is not a member.");
    }
    const ciphertext = unb64(frame.ct);
    const signed = messageSigningInput(
      this.roomId,
      frame.epoch,
      frame.sender,
      frame.counter,
      ciphertext,
    );
    if (!(await ed25519Verify(sender.signKey, unb64(frame.sig), signed))) {
      throw new RoomProtocolError("bad_signature", "The message is not signed by its sender.");
    }
    let key;
    try {
      key = await holder.chains.receiveKey(frame.sender, frame.counter);
    } catch (error) {
      if (error instanceof MessageKeyUnavailable) {
        throw new RoomProtocolError("stale", "Replayed, too old or too far ahead.");
      }
      throw error;
    }
    const aad = messageAad(this.roomId, frame.epoch, frame.sender, frame.counter);
    let text;
    try {
      text = decodeBody(await decryptMessage(key, aad, ciphertext));
    } catch {
      throw new RoomProtocolError("undecryptable", "The message does not open.");
    }
    events.push({
      kind: "MessageReceived",
      sender: frame.sender,
      name: this.#names.get(frame.sender) ?? "?",
      text,
      epoch: frame.epoch,
      counter: frame.counter,
    });
  }

  // -- leaving and ending -------------------------------------------------------------------

  /** Drops every key at once and resolves when the `leave` frame is queued. The seeds are
   * sealed under this epoch's link (rooms.md 11.4): the members of the epoch can read them
   * (deniability), the relay cannot sign with them. Without an epoch this member signed
   * nothing any member accepted, and publishes nothing. */
  #sendLeave() {
    const epoch = this.#epoch?.number ?? null;
    const link = this.#epochLink?.slice() ?? null;
    const index = this.index;
    let seeds = null;
    if (epoch !== null && link !== null && index !== null) {
      seeds = [...this.#publishedSeeds.map((seed) => seed.slice()), this.#keys.signingSeed()];
      // At most 64 fit in a frame (10.1): the newest, which signed the latest epochs.
      const older = seeds.splice(0, Math.max(0, seeds.length - MAX_PUBLISHED_SEEDS));
      for (const seed of older) seed.fill(0);
    }
    this.#wipe();
    return this.#sendSealedSeeds(epoch, link, index, seeds);
  }

  async #sendSealedSeeds(epoch, link, index, seeds) {
    if (seeds === null) {
      this.#send({ t: "leave" });
      return;
    }
    try {
      const sealed = await sealPublishedSeeds(link, this.roomId, epoch, index, seeds, this.#random);
      this.#send({ t: "leave", epoch, sealed_seeds: b64(sealed) });
    } finally {
      link.fill(0);
      for (const seed of seeds) seed.fill(0);
    }
  }

  /** Leave: publish every signing seed this member used, sealed for the members of its
   * epoch (deniability), and drop all keys (at once: only the sealing is awaited). */
  async leave() {
    this.#allowed("leave");
    const sending = this.#sendLeave();
    this.#move("leave");
    await sending;
  }

  /** End the room now (creator link only): sign this connection's challenge. */
  async end() {
    this.#allowed("end");
    if (this.link.creatorSecret === null || this.#challenge === null) {
      throw new RoomProtocolError("unexpected", "Only the creator's link can end the room.");
    }
    const key = await deriveProofKey(ProofKind.creator, this.link.creatorSecret, this.roomId);
    const sig = await ed25519Sign(key.privateKey, endProofMessage(this.roomId, this.#challenge));
    this.#send({ t: "end", sig: b64(sig) });
    this.#move("end");
  }

  // -- Extra Lock's idle lock ---------------------------------------------------------------

  /**
   * Everything this member holds, as copies in bytes, numbers, strings, arrays and Maps (what
   * room-snapshot.js encodes); then this object wipes itself (and its link's secrets) and
   * refuses every later call (it is spent, not a protocol move: the member goes on in
   * `resume`). Only a suspendable member
   * in the room or waiting to be added can be suspended, between two calls.
   */
  suspend() {
    if (!this.#isSuspendable) throw new TypeError("this member was not made suspendable");
    if (this.state !== S.WAITING && this.state !== S.ACTIVE) {
      throw new RoomProtocolError("unexpected", `No suspending while ${this.state}.`);
    }
    const epochCopy = (epoch) =>
      epoch === null
        ? null
        : { number: epoch.number, roster: epoch.roster, chains: epoch.chains.toSnapshot() };
    const pending = this.#pending;
    const snapshot = {
      version: SNAPSHOT_VERSION,
      state: this.state,
      link: {
        baseUrl: this.link.baseUrl,
        roomId: this.link.roomId.slice(),
        sLink: this.link.sLink?.slice() ?? null,
        creatorSecret: this.link.creatorSecret?.slice() ?? null,
        inviteSecret: this.link.inviteSecret?.slice() ?? null,
      },
      index: this.index,
      safetyCode: this.safetyCode,
      isKnock: this.isKnock,
      displayName: this.#displayName,
      updateAfterMessages: this.#updateAfterMessages,
      updateAfterSeconds: this.#updateAfterSeconds,
      keys: this.#keys.toSnapshot(),
      publishedSeeds: this.#publishedSeeds.map((seed) => seed.slice()),
      challenge: this.#challenge,
      shards: this.#shards && { sLink: this.#shards.sLink.slice(), sRelay: this.#shards.sRelay },
      profile: this.#profile,
      lastSeq: this.#lastSeq,
      epoch: epochCopy(this.#epoch),
      previous: epochCopy(this.#previous),
      epochLink: this.#epochLink?.slice() ?? null,
      epochStartedAt: this.#epochStartedAt,
      transcript: this.#transcript,
      membership: this.#membership,
      announced: this.#announced,
      pending: pending && {
        epoch: pending.epoch,
        signingInput: pending.signingInput,
        epochSecret: pending.epochSecret.slice(),
        newKeys: pending.newKeys?.toSnapshot() ?? null,
      },
      knocks: new Map(this.#knocks),
      left: new Set(this.#left),
      names: new Map(this.#names),
      outbox: [...this.#outbox],
      undelivered: new Set(this.#undelivered),
    };
    pending?.newKeys?.wipe();
    for (const seed of this.#publishedSeeds) seed.fill(0);
    this.#shards?.sLink.fill(0);
    this.#shards = null;
    this.#outbox = [];
    for (const secret of [this.link.sLink, this.link.creatorSecret, this.link.inviteSecret]) {
      secret?.fill(0);
    }
    this.#wipe();
    this.state = S.CLOSED;
    return snapshot;
  }

  /** The member `suspend` handed over, made again (its CryptoKeys imported anew). */
  static async resume(snapshot, randomBytes) {
    if (snapshot?.version !== SNAPSHOT_VERSION) {
      throw new TypeError("not a room member snapshot of this version");
    }
    const { signSeed, sealPrivate } = snapshot.keys;
    const keys = await MemberKeys.fromBytes(signSeed, sealPrivate, { isSuspendable: true });
    signSeed.fill(0);
    const member = new RoomMember(
      new RoomLink(snapshot.link),
      snapshot.displayName,
      randomBytes,
      keys,
      {
        updateAfterMessages: snapshot.updateAfterMessages,
        updateAfterSeconds: snapshot.updateAfterSeconds,
        isSuspendable: true,
      },
    );
    await member.#restore(snapshot);
    return member;
  }

  async #restore(s) {
    const epochFrom = (epoch) =>
      epoch === null
        ? null
        : {
            number: epoch.number,
            roster: epoch.roster,
            chains: EpochChains.fromSnapshot(epoch.chains),
          };
    this.state = s.state;
    this.index = s.index;
    this.safetyCode = s.safetyCode;
    this.isKnock = s.isKnock;
    this.#publishedSeeds = s.publishedSeeds;
    this.#challenge = s.challenge;
    if (s.shards !== null) {
      this.#shards = s.shards;
      this.#secrets = await deriveRoomSecrets(s.shards.sLink, s.shards.sRelay, this.roomId);
    }
    this.#profile = s.profile;
    this.#lastSeq = s.lastSeq;
    this.#epoch = epochFrom(s.epoch);
    this.#previous = epochFrom(s.previous);
    this.#epochLink = s.epochLink;
    this.#epochStartedAt = s.epochStartedAt;
    this.#transcript = s.transcript;
    this.#membership = s.membership;
    this.#announced = s.announced;
    if (s.pending !== null) {
      const { signSeed, sealPrivate } = s.pending.newKeys ?? {};
      this.#pending = {
        epoch: s.pending.epoch,
        signingInput: s.pending.signingInput,
        epochSecret: s.pending.epochSecret,
        newKeys:
          s.pending.newKeys === null
            ? null
            : await MemberKeys.fromBytes(signSeed, sealPrivate, { isSuspendable: true }),
      };
      signSeed?.fill(0);
    }
    this.#knocks = s.knocks;
    this.#left = s.left;
    this.#names = s.names;
    this.#outbox = s.outbox;
    this.#undelivered = s.undelivered;
  }

  /** Drop every secret this object holds, overwriting the bytes it can reach. */
  #wipe() {
    this.#secrets = null;
    this.#epoch?.chains.wipe();
    this.#previous?.chains.wipe();
    this.#epoch = null;
    this.#previous = null;
    this.#epochLink?.fill(0); // its own copy after a resume
    this.#epochLink = null;
    this.#pending?.epochSecret.fill(0);
    this.#pending = null;
    this.#knocks.clear();
    this.#left.clear();
    for (const seed of this.#publishedSeeds) seed.fill(0);
    this.#publishedSeeds = [];
    this.#keys.wipe();
  }
}
