// The room page (/r/{room_id}#…): reads the link, removes its key part from the address bar
// and the history entry at once, and does nothing else until the person presses Join. Then
// it connects to the relay on this origin and drives a RoomMember (room-member.js) with the
// relay's frames, one at a time. Nothing about the room is stored (no IndexedDB, no
// localStorage); leaving drops every key, and Panic also empties the origin's storage.

import { encode } from "./base64url.js";
import { watchSlowPassphrase } from "./passphrase-progress.js";
import { RoomProtocolError } from "./room-errors.js";
import { relayUrl } from "./room-api.js";
import { isSealableName } from "./room-keys.js";
import { parseRoomLink } from "./room-link.js";
import { MemberState, RoomMember } from "./room-member.js";
import { missingRoomAlgorithms } from "./room-support.js";
import { wipeOriginStorage } from "./room-wipe.js";
import { forgetRoomLock, hasRoomLock, keepRoomLock, openRoomLock } from "./room-lock.js";
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
const namesSeen = new Map(); // index -> name, for notices about people who left
const ownMessages = new Map(); // "epoch:counter" -> list item, until the relay confirms

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

function appendItem(className, parts) {
  const list = byId("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const item = document.createElement("li");
  item.className = className;
  for (const [tag, text, partClass] of parts) {
    const element = document.createElement(tag);
    element.textContent = text;
    if (partClass) element.className = partClass;
    item.append(element);
  }
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
  notice(`${nameOf(index)} asks to join. Admit or refuse them under "Asking to join".`);
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
  const first = document.body.dataset.currentState !== "room";
  renderMembers();
  const code = byId("safety-code");
  code.textContent = event.safetyCode;
  if (first) {
    showState("room");
    notice(`You joined. Safety code: ${event.safetyCode}. Compare it with the others.`);
    byId("end-button").hidden = link.creatorSecret === null;
    byId("message-input").focus();
    return;
  }
  for (const index of event.joined) notice(`${nameOf(index)} joined.`);
  for (const index of event.left) notice(`${nameOf(index)} is out of the room.`);
  if (event.reason === "update") notice("The room's keys were renewed.");
  if (event.isSafetyCodeChanged) notice(`The safety code changed: ${event.safetyCode}.`);
}

function onClose(event) {
  socket = null;
  if (finished) return;
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
  member = await RoomMember.create(link, displayName, randomBytes);
  socket = new WebSocket(relayUrl(encode(link.roomId)));
  socket.addEventListener("message", ({ data }) => {
    if (typeof data !== "string") return;
    run(async () => onEvents(await member.receive(data, now())));
  });
  socket.addEventListener("close", onClose);
  socket.addEventListener("error", () => {});
  lifetimeTimer = setInterval(tickLifetime, 1000);
  updateTimer = setInterval(() => {
    if (member?.needsUpdate(now())) run(() => member.update(now()));
  }, UPDATE_CHECK_MS);
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
    member.leave();
    flush();
    // The leave frame is on its way; the relay closes, or we do after a moment.
    setTimeout(() => finish("left"), 1500);
  });
}

async function panic() {
  const current = member;
  if (
    current !== null &&
    (current.state === MemberState.ACTIVE || current.state === MemberState.WAITING)
  ) {
    try {
      current.leave();
      flush();
    } catch {
      // leaving is best effort: the relay also sees the connection drop
    }
  }
  finished = true;
  stopTimers();
  member = null;
  if (socket !== null) {
    const closing = socket;
    socket = null;
    // Give the leave frame a moment to go out before closing.
    setTimeout(() => closing.close(1000), 200);
  }
  for (const id of ["messages", "members", "knocks"]) byId(id).replaceChildren();
  byId("room-title").textContent = "Room";
  byId("safety-code").textContent = "";
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
      try {
        await keepRoomLock(link.text(), name, passphrase);
      } catch {
        fail("Extra Lock could not run in this browser.");
        return;
      }
      byId("lock-passphrase").value = "";
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
    if (event.key !== "Escape" || document.body.dataset.currentState !== "room") return;
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
      ownMessages.set(`${sent.epoch}:${sent.counter}`, item);
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
