// The room page (/r/{room_id}#…): reads the link, removes its key part from the address bar
// and the history entry at once, and does nothing else until the person presses Join. Then
// it connects to the relay on this origin and drives a RoomMember (room-member.js) with the
// relay's frames, one at a time. Nothing about the room is stored (no IndexedDB, no
// localStorage); leaving drops every key, and Panic also empties the origin's storage.
//
// With Extra Lock (js/room-lock.js) the page also locks itself after a period without input
// (js/room-idle.js): between two frames it suspends the member to bytes
// (js/room-snapshot.js) with what the page showed, seals them under the passphrase's key,
// drops the member, the link, that key and every plaintext from the page, and keeps the
// connection: frames wait unread until the passphrase opens the room where it was.

import { encode } from "./base64url.js";
import { watchSlowPassphrase } from "./passphrase-progress.js";
import { RoomProtocolError } from "./room-errors.js";
import { relayUrl } from "./room-api.js";
import { isSealableName } from "./room-keys.js";
import { parseRoomLink } from "./room-link.js";
import { MemberState, RoomMember } from "./room-member.js";
import { safetyCodeLines } from "./room-safety.js";
import { missingRoomAlgorithms } from "./room-support.js";
import { wipeOriginStorage } from "./room-wipe.js";
import {
  DEFAULT_IDLE_LOCK_SECONDS,
  MAX_HELD_FRAMES,
  forgetRoomLock,
  hasRoomLock,
  keepRoomLock,
  openRoomLock,
  openSuspendedRoom,
  sealSuspendedRoom,
} from "./room-lock.js";
import { IdleTimer } from "./room-idle.js";
import { decodeSnapshot, encodeSnapshot, wipeSnapshot } from "./room-snapshot.js";
import { bindConfirmBox, byId, showState } from "./ui.js";

const UPDATE_CHECK_MS = 15_000;
const CLOSE_REASONS = {
  not_admitted: "The members of this room did not let you in.",
  bad_proof:
    "This link does not open the room. If it was an invite, it has already been used: each invite opens the room once. Ask for a new one.",
  ended: "This room has ended or never existed.",
  full: "This room is full.",
  rate_limited: "Too many attempts from your network. Wait a minute and try again.",
};

let link = null;
let member = null;
let socket = null;
let queue = Promise.resolve();
let expiresAt = null;
let lifetimeTimer = 0;
let updateTimer = 0;
let finished = false;
let closingReason = null; // set by the relay's "closing": the room is ending
let isInRoom = false; // an epoch with this member in it has started
const namesSeen = new Map(); // index -> name, for notices about people who left
const ownMessages = new Map(); // "epoch:counter" -> list item, until the relay confirms
// Extra Lock's idle lock.
let lockKey = null; // the passphrase's LockKey while the room is open with Extra Lock
let idleSeconds = DEFAULT_IDLE_LOCK_SECONDS;
let idleTimer = null;
let isIdleLocked = false;
let lockSalt = null; // while locked: the salt the passphrase is stretched with
let suspendedRoom = null; // while locked: the sealed member and page
let heldFrames = []; // while locked: relay frames, unread
let closedWhileLocked = null; // the socket's close event, if it came while locked

function now() {
  return Date.now() / 1000;
}

function randomBytes(size) {
  return crypto.getRandomValues(new Uint8Array(size));
}

// -- reading the link ------------------------------------------------------------------------

function readLink() {
  const text = location.href;
  if (location.hash !== "") {
    // The key part never stays in the address bar or the history entry.
    history.replaceState(null, "", location.pathname);
  }
  try {
    return parseRoomLink(text);
  } catch (error) {
    if (error instanceof RoomProtocolError) byId("broken-message").textContent = error.message;
    return null;
  }
}

// -- the message list ------------------------------------------------------------------------

function nameOf(index) {
  const name = namesSeen.get(index);
  return name ? name : `Member ${index}`;
}

function listItem(className, parts) {
  const item = document.createElement("li");
  item.className = className;
  for (const [tag, text, partClass] of parts) {
    const element = document.createElement(tag);
    element.textContent = text;
    if (partClass) element.className = partClass;
    item.append(element);
  }
  return item;
}

function appendItem(className, parts) {
  const list = byId("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const item = listItem(className, parts);
  list.append(item);
  if (nearBottom || className.includes("own")) list.scrollTop = list.scrollHeight;
  return item;
}

function notice(text) {
  return appendItem("event", [["span", text]]);
}

function showMessage(sender, text) {
  appendItem("message", [
    ["span", nameOf(sender), "author"],
    ["p", text, "text"],
  ]);
}

function renderMembers() {
  const list = byId("members");
  list.replaceChildren();
  for (const [index, name] of member.members) {
    namesSeen.set(index, name);
    const item = document.createElement("li");
    item.textContent = index === member.index ? `${nameOf(index)} (you)` : nameOf(index);
    list.append(item);
  }
}

function addKnock(index, name) {
  namesSeen.set(index, name);
  showKnock(index);
  notice(`${nameOf(index)} asks to join. Admit or refuse them under "Asking to join".`);
}

function showKnock(index) {
  const item = document.createElement("li");
  item.dataset.index = String(index);
  const label = document.createElement("span");
  label.textContent = nameOf(index);
  const admit = document.createElement("button");
  admit.type = "button";
  admit.className = "button primary";
  admit.textContent = "Admit";
  admit.setAttribute("aria-label", `Admit ${nameOf(index)}`);
  const refuse = document.createElement("button");
  refuse.type = "button";
  refuse.className = "button secondary";
  refuse.textContent = "Refuse";
  refuse.setAttribute("aria-label", `Refuse ${nameOf(index)}`);
  const decide = (admitted) => {
    item.remove();
    byId("knocks-box").hidden = byId("knocks").children.length === 0;
    run(async () => {
      if (admitted) await member.admit(index);
      else member.refuse(index);
      notice(`${admitted ? "You admitted" : "You refused"} ${nameOf(index)}.`);
    });
    byId("message-input").focus();
  };
  admit.addEventListener("click", () => decide(true));
  refuse.addEventListener("click", () => decide(false));
  item.append(label, admit, refuse);
  byId("knocks").append(item);
  byId("knocks-box").hidden = false;
}

// -- lifetime --------------------------------------------------------------------------------

function formatRemaining(seconds) {
  if (seconds <= 0) return "ending now";
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (hours >= 24) return `${Math.floor(hours / 24)} d ${hours % 24} h left`;
  if (hours > 0) return `${hours} h ${minutes} min left`;
  if (minutes > 0) return `${minutes} min left`;
  return `${Math.floor(seconds)} s left`;
}

function tickLifetime() {
  if (expiresAt !== null) {
    byId("room-lifetime").textContent = `Ends by itself: ${formatRemaining(expiresAt - now())}`;
  }
}

// -- the connection --------------------------------------------------------------------------

function flush() {
  if (member === null || socket === null || socket.readyState !== WebSocket.OPEN) return;
  for (const frame of member.outgoing()) socket.send(frame);
}

/** Run one step against the member, after every earlier one, then send what it queued. */
function run(step) {
  queue = queue.then(async () => {
    if (member === null) return;
    try {
      await step();
    } catch (error) {
      if (error instanceof RoomProtocolError) refusedFrame(error);
      else fail("Something went wrong in this page. Leave and join again.");
    }
    flush();
  });
  return queue;
}

function refusedFrame(error) {
  if (member?.state === MemberState.PROVING) {
    finish(
      "failed",
      "This link does not open this room: the link or the server is not the one the room was made with.",
    );
  } else if (member?.state === MemberState.ACTIVE || member?.state === MemberState.WAITING) {
    notice(`A frame from the server was refused (${error.code}); the room goes on.`);
  }
}

function onEvents(events) {
  for (const event of events) {
    switch (event.kind) {
      case "RoomUnlocked":
        byId("room-title").textContent = event.name ?? "Room";
        document.title = `Atopos · ${event.name ?? "Room"}`;
        expiresAt = event.expiresAt;
        byId("joining-message").textContent = event.isKnock
          ? "The room is unlocked. In this room the members admit each newcomer: wait until one of them lets you in."
          : "The room is unlocked. Waiting for the members to add you…";
        break;
      case "Welcomed":
        break;
      case "EpochStarted":
        onEpoch(event);
        break;
      case "MessageReceived":
        showMessage(event.sender, event.text);
        break;
      case "MessageDelivered": {
        const item = ownMessages.get(`${event.epoch}:${event.counter}`);
        if (item) {
          item.classList.remove("pending");
          item.querySelector(".status")?.remove();
          delete item.dataset.sentId;
          ownMessages.delete(`${event.epoch}:${event.counter}`);
        }
        break;
      }
      case "JoinRequested":
        addKnock(event.index, event.name);
        break;
      case "MemberLeft":
        if (member.state === MemberState.ACTIVE) notice(`${nameOf(event.index)} left.`);
        break;
      case "MessagesMissing":
        notice(`${event.counters.length} message(s) from ${nameOf(event.sender)} never arrived.`);
        break;
      case "SequenceGap":
        notice("Some room events were lost on the way; the room goes on.");
        break;
      case "RemovedFromRoom":
        finish("left", "The room went on without you: you are no longer a member.");
        break;
      case "RoomClosing":
        closingReason = event.reason;
        notice(`The room ends in ${event.seconds} seconds.`);
        break;
      case "RoomEnded":
        finish("ended", endedMessage(event.reason));
        break;
      case "RelayError":
        onRelayError(event.code, event.message);
        break;
    }
  }
}

function endedMessage(reason) {
  const why = {
    creator: "Its creator ended it.",
    ttl: "Its lifetime is over.",
    empty: "Everyone had left.",
  }[reason];
  return `${why ?? ""} Its keys are gone from the server, and its links open nothing any more.`.trim();
}

function onRelayError(code) {
  if (code === "ended") finish("ended", "This room has ended or never existed.");
  else if (code in CLOSE_REASONS) finish("refused", CLOSE_REASONS[code]);
  else finish("failed", "The server closed the connection. Join again with the link.");
}

function onEpoch(event) {
  const first = !isInRoom;
  renderMembers();
  showSafetyCode(event.safetyCode);
  if (first) {
    isInRoom = true;
    // Locked meanwhile: the room view comes back with the unlock.
    if (!isIdleLocked) showState("room");
    notice("You joined. Compare the safety code with the others, line by line.");
    byId("end-button").hidden = link.creatorSecret === null;
    byId("message-input").focus();
    return;
  }
  for (const index of event.joined) notice(`${nameOf(index)} joined.`);
  for (const index of event.left) notice(`${nameOf(index)} is out of the room.`);
  if (event.reason === "update") notice("The room's keys were renewed.");
  if (event.isSafetyCodeChanged) notice("The safety code changed: compare it again.");
}

/** The code in three lines of four groups (the CSS keeps the line breaks), or "…". */
function showSafetyCode(code) {
  byId("safety-code").textContent = code ? safetyCodeLines(code).join("\n") : "…";
}

function onClose(event) {
  socket = null;
  if (finished) return;
  if (isIdleLocked) {
    // The frames before it wait unread: the unlock reads them, then this close.
    closedWhileLocked = event;
    byId("idle-lock-status").textContent =
      "The connection to the room closed while the page was locked. Unlock to see why.";
    return;
  }
  if (closingReason !== null) {
    finish("ended", endedMessage(closingReason));
  } else if (member?.state === MemberState.LEAVING) {
    finish("left");
  } else if (event.code === 4404) {
    finish("ended", "This room has ended or never existed.");
  } else if (event.code === 4403) {
    finish("refused", CLOSE_REASONS.bad_proof);
  } else if (event.code === 4429) {
    finish("refused", CLOSE_REASONS.rate_limited);
  } else {
    finish("failed", "The connection to the room was lost. Join again with the link.");
  }
}

async function join(displayName) {
  showState("joining");
  const made = await RoomMember.create(link, displayName, randomBytes, {
    isSuspendable: lockKey !== null,
  });
  if (finished) return; // cancelled while the keys were made
  member = made;
  socket = new WebSocket(relayUrl(encode(link.roomId)));
  socket.addEventListener("message", ({ data }) => {
    if (typeof data !== "string") return;
    if (isIdleLocked) holdFrame(data);
    else receive(data);
  });
  socket.addEventListener("close", onClose);
  socket.addEventListener("error", () => {});
  lifetimeTimer = setInterval(tickLifetime, 1000);
  updateTimer = setInterval(() => {
    if (member?.needsUpdate(now())) run(() => member.update(now()));
  }, UPDATE_CHECK_MS);
  if (lockKey !== null) {
    idleTimer = new IdleTimer(idleSeconds, idleLock);
    idleTimer.start();
  }
}

function receive(data) {
  run(async () => onEvents(await member.receive(data, now())));
}

// -- Extra Lock's idle lock ------------------------------------------------------------------

function holdFrame(data) {
  if (heldFrames.length >= MAX_HELD_FRAMES) {
    fail(
      "While this page was locked, more room events arrived than it can keep unread, so it gave up its seat. Open the room again with the passphrase or the link.",
    );
    return;
  }
  heldFrames.push(data);
}

/** What the room view shows, to be sealed with the member (no key in it). */
function takePageView() {
  return {
    title: byId("room-title").textContent,
    items: [...byId("messages").children].map((item) => ({
      className: item.className,
      parts: [...item.children].map((part) => [
        part.tagName.toLowerCase(),
        part.textContent,
        part.className,
      ]),
      sentId: item.dataset.sentId ?? null,
    })),
    knocks: [...byId("knocks").children].map((item) => Number(item.dataset.index)),
    names: new Map(namesSeen),
    draft: byId("message-input").value,
    joiningMessage: byId("joining-message").textContent,
  };
}

/** Empty every place the room's plaintext was shown: messages, names, title, code, draft. */
function clearRoomView() {
  for (const id of ["messages", "members", "knocks"]) byId(id).replaceChildren();
  byId("knocks-box").hidden = true;
  byId("confirm-end").hidden = true;
  byId("room-title").textContent = "Room";
  byId("safety-code").textContent = "…";
  byId("message-input").value = "";
  byId("compose-status").textContent = "";
  byId("joining-message").textContent = "";
  document.title = "Atopos · Room";
  namesSeen.clear();
  ownMessages.clear();
}

function restorePageView(view) {
  for (const [index, name] of view.names) namesSeen.set(index, name);
  byId("room-title").textContent = view.title;
  document.title = `Atopos · ${view.title}`;
  const items = view.items.map(({ className, parts, sentId }) => {
    const item = listItem(className, parts);
    if (sentId !== null) {
      item.dataset.sentId = sentId;
      ownMessages.set(sentId, item);
    }
    return item;
  });
  const list = byId("messages");
  list.append(...items);
  list.scrollTop = list.scrollHeight;
  for (const index of view.knocks) showKnock(index);
  byId("message-input").value = view.draft;
  byId("joining-message").textContent = view.joiningMessage;
  if (isInRoom) {
    renderMembers();
    showSafetyCode(member.safetyCode);
    byId("end-button").hidden = link.creatorSecret === null;
  }
}

/**
 * Lock the room after idle time: once the queued steps are done, seal the suspended member
 * and the page view under the LockKey, then drop the member, the link, the key and the
 * plaintext. The connection stays; frames wait in `heldFrames`.
 */
function idleLock() {
  if (lockKey === null || member === null || finished || isIdleLocked) return;
  isIdleLocked = true;
  const shownBefore = document.body.dataset.currentState;
  showState("idle-locked", { focus: false });
  byId("idle-unlock-passphrase").focus();
  queue = queue.then(async () => {
    if (finished || member === null) return;
    if (member.state !== MemberState.ACTIVE && member.state !== MemberState.WAITING) {
      // Still in the handshake (or on the way out): nothing to lock yet.
      isIdleLocked = false;
      showState(shownBefore);
      releaseHeldFrames();
      idleTimer?.start();
      return;
    }
    flush();
    const snapshot = { member: member.suspend(), page: takePageView() };
    const key = lockKey;
    member = null;
    link = null;
    lockKey = null;
    clearRoomView();
    let bytes = new Uint8Array(0);
    try {
      bytes = encodeSnapshot(snapshot);
      wipeSnapshot(snapshot);
      const sealed = await sealSuspendedRoom(key, bytes);
      if (!finished) {
        suspendedRoom = sealed;
        lockSalt = key.salt;
      }
    } catch {
      fail("This page could not lock the room. Open it again with the passphrase or the link.");
    } finally {
      bytes.fill(0);
    }
  });
}

function releaseHeldFrames() {
  const frames = heldFrames;
  heldFrames = [];
  for (const data of frames) receive(data);
}

async function idleUnlock(event) {
  event.preventDefault();
  const error = byId("idle-unlock-error");
  const button = byId("idle-unlock-button");
  error.hidden = true;
  button.disabled = true;
  try {
    await queue; // the room is sealed by now
    if (finished || suspendedRoom === null) return;
    let opened;
    try {
      opened = await openSuspendedRoom(
        lockSalt,
        suspendedRoom,
        byId("idle-unlock-passphrase").value,
      );
    } catch (failure) {
      error.textContent =
        failure?.name === "WrongRoomPassphrase"
          ? "This passphrase does not open the room."
          : "The room could not be opened in this browser.";
      error.hidden = false;
      byId("idle-unlock-passphrase").focus();
      return;
    }
    let snapshot;
    try {
      snapshot = decodeSnapshot(opened.bytes);
    } finally {
      opened.bytes.fill(0);
    }
    if (finished) {
      wipeSnapshot(snapshot);
      return;
    }
    const resumed = await RoomMember.resume(snapshot.member, randomBytes);
    if (finished) {
      // Panic (or the end) came while the keys were imported: it wins, nothing comes back.
      wipeSnapshot(resumed.suspend());
      return;
    }
    member = resumed;
    link = member.link;
    lockKey = opened.lockKey;
    suspendedRoom = null;
    lockSalt = null;
    isIdleLocked = false;
    byId("idle-unlock-passphrase").value = "";
    byId("idle-lock-status").textContent = "";
    restorePageView(snapshot.page);
    showState(isInRoom ? "room" : "joining", { focus: false });
    if (isInRoom) byId("message-input").focus();
    releaseHeldFrames();
    run(async () => {}); // sends what the member had queued
    idleTimer.start();
    if (closedWhileLocked !== null) {
      const closed = closedWhileLocked;
      closedWhileLocked = null;
      queue.then(() => onClose(closed));
    }
  } catch {
    fail("The room could not be opened in this browser. Open it again with the link.");
  } finally {
    button.disabled = false;
  }
}

/** Drop whatever the idle lock holds (the sealed room, the key, the waiting frames). */
function dropIdleLock() {
  idleTimer?.stop();
  isIdleLocked = false;
  lockKey = null;
  lockSalt = null;
  suspendedRoom = null;
  heldFrames = [];
  closedWhileLocked = null;
}

// -- ending ----------------------------------------------------------------------------------

function stopTimers() {
  clearInterval(lifetimeTimer);
  clearInterval(updateTimer);
}

/** Show a final state; the member and its keys are dropped. */
function finish(state, message) {
  if (finished) return;
  finished = true;
  // A lost connection keeps Extra Lock (a reload joins again); anything final deletes it.
  if (state !== "failed") forgetRoomLock();
  stopTimers();
  dropIdleLock();
  member = null;
  if (socket !== null) {
    socket.close(1000);
    socket = null;
  }
  byId("messages").replaceChildren();
  byId("members").replaceChildren();
  byId("knocks").replaceChildren();
  const target = {
    ended: "ended-message",
    refused: "refused-message",
    left: "left-message",
    failed: "failed-message",
  }[state];
  if (message && target) byId(target).textContent = message;
  showState(state);
}

function fail(message) {
  finish("failed", message);
}

function leave() {
  run(async () => {
    await member.leave();
    flush();
    // The leave frame is on its way; the relay closes, or we do after a moment.
    setTimeout(() => finish("left"), 1500);
  });
}

async function panic() {
  const current = member;
  // leave() drops every key before it returns; only sealing the published seeds is awaited,
  // while the page is torn down, and the leave frame goes out on the old socket then.
  let leaving = null;
  if (
    current !== null &&
    (current.state === MemberState.ACTIVE || current.state === MemberState.WAITING)
  ) {
    leaving = current.leave().then(() => current.outgoing());
    // leaving is best effort: the relay also sees the connection drop
    leaving.catch(() => {});
  }
  finished = true;
  stopTimers();
  dropIdleLock();
  member = null;
  if (socket !== null) {
    const closing = socket;
    socket = null;
    (leaving ?? Promise.resolve([]))
      .then((frames) => {
        if (closing.readyState === WebSocket.OPEN) for (const frame of frames) closing.send(frame);
      })
      .catch(() => {})
      // Give the leave frame a moment to go out before closing.
      .finally(() => setTimeout(() => closing.close(1000), 200));
  }
  for (const id of ["messages", "members", "knocks"]) byId(id).replaceChildren();
  byId("room-title").textContent = "Room";
  byId("safety-code").textContent = "";
  byId("message-input").value = "";
  document.title = "Atopos";
  namesSeen.clear();
  ownMessages.clear();
  await wipeOriginStorage();
  showState("wiped");
}

// -- the page --------------------------------------------------------------------------------

async function start() {
  const hadFragment = location.hash !== "";
  link = readLink();
  bindControls();
  if (link === null && !hadFragment && hasRoomLock()) {
    showState("locked", { focus: false });
    byId("unlock-passphrase").focus();
    return;
  }
  if (link === null) {
    showState("broken", { focus: false });
    return;
  }
  await offerJoin();
}

async function offerJoin() {
  const missing = await missingRoomAlgorithms();
  if (missing.length) {
    byId("missing-algorithms").textContent = missing.join(" and ");
    showState("unsupported", { focus: false });
    return;
  }
  if (link.inviteSecret !== null) {
    byId("ready-lede").textContent =
      "You were given an invite to an end-to-end encrypted room. An invite opens the room once. Nothing has been sent yet: the page connects only when you press Join.";
  }
  showState("ready", { focus: false });
  byId("display-name").focus();
}

function bindControls() {
  byId("idle-unlock-form").addEventListener("submit", idleUnlock);
  byId("idle-panic-button").addEventListener("click", () => panic());
  // Without WebAssembly, Extra Lock's Argon2id is slow: say so, with its progress.
  watchSlowPassphrase((_fraction, text) => {
    byId("joining-message").textContent = text;
    byId("unlock-progress").textContent = text;
    byId("unlock-progress").hidden = false;
  });
  byId("extra-lock").addEventListener("change", () => {
    byId("lock-passphrase-field").hidden = !byId("extra-lock").checked;
  });
  byId("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = byId("display-name").value.trim();
    const error = byId("name-error");
    if (!isSealableName(name)) {
      error.textContent = "This name is too long.";
      error.hidden = false;
      return;
    }
    const passphrase = byId("lock-passphrase").value;
    if (byId("extra-lock").checked) {
      if (passphrase.length < 8) {
        error.textContent = "Extra Lock needs a passphrase of at least 8 characters.";
        error.hidden = false;
        byId("lock-passphrase").focus();
        return;
      }
      showState("joining");
      byId("joining-message").textContent = "Locking the room under your passphrase…";
      idleSeconds = Number(byId("lock-idle").value);
      let kept;
      try {
        kept = await keepRoomLock({ link: link.text(), name, idleSeconds }, passphrase);
      } catch {
        fail("Extra Lock could not run in this browser.");
        return;
      } finally {
        byId("lock-passphrase").value = "";
      }
      if (finished) {
        // Cancel or Panic came while Argon2id ran: keep nothing, join nothing.
        forgetRoomLock();
        return;
      }
      lockKey = kept;
    }
    join(name).catch(() => fail("The room could not be joined in this browser."));
  });
  byId("unlock-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = byId("unlock-error");
    error.hidden = true;
    const button = byId("unlock-button");
    button.disabled = true;
    try {
      const kept = await openRoomLock(byId("unlock-passphrase").value);
      link = parseRoomLink(kept.link);
      lockKey = kept.lockKey;
      idleSeconds = kept.idleSeconds;
      byId("unlock-passphrase").value = "";
      join(kept.name).catch(() => fail("The room could not be joined in this browser."));
    } catch (failure) {
      error.textContent =
        failure?.name === "WrongRoomPassphrase"
          ? failure.message
          : "The kept room could not be opened in this browser.";
      error.hidden = false;
      byId("unlock-passphrase").focus();
    } finally {
      byId("unlock-progress").hidden = true;
      button.disabled = false;
    }
  });
  byId("forget-lock-button").addEventListener("click", () => {
    forgetRoomLock();
    showState("broken");
  });
  byId("cancel-join-button").addEventListener("click", () => panic());
  byId("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  byId("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  byId("leave-button").addEventListener("click", leave);
  byId("panic-button").addEventListener("click", () => panic());
  bindConfirmBox(byId("end-button"), byId("confirm-end"), byId("cancel-end-button"));
  byId("confirm-end-button").addEventListener("click", () => {
    byId("confirm-end").hidden = true;
    run(() => member.end());
  });
  document.addEventListener("keydown", (event) => {
    // Escape twice within a second is the panic key, as in the terminal client.
    const state = document.body.dataset.currentState;
    if (event.key !== "Escape" || (state !== "room" && state !== "idle-locked")) return;
    const at = Date.now();
    if (at - Number(document.body.dataset.lastEscape ?? 0) < 1000) panic();
    document.body.dataset.lastEscape = String(at);
  });
}

function send() {
  const input = byId("message-input");
  const text = input.value;
  if (text.trim() === "" || member === null) return;
  input.value = "";
  run(async () => {
    try {
      const sent = await member.sendText(text);
      const item = appendItem("message own pending", [
        ["span", "You", "author"],
        ["p", text, "text"],
        ["span", "sending…", "status"],
      ]);
      item.dataset.sentId = `${sent.epoch}:${sent.counter}`;
      ownMessages.set(item.dataset.sentId, item);
    } catch (error) {
      input.value = text;
      byId("compose-status").textContent =
        error.code === "too_large"
          ? "This message is too long."
          : "The message could not be sent yet.";
      return;
    }
    byId("compose-status").textContent = "";
  });
}

start();
