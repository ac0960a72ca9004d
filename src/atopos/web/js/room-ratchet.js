// Per-sender hash ratchets inside one epoch (rooms.md section 8.1), as crypto/room_ratchet.py:
// chain_key[0] = HKDF(epoch_secret, salt room_id, ".../sender" || u64(epoch) || u32(sender));
// material = HMAC(ck, 0x01), next ck = HMAC(ck, 0x02); key || nonce = HKDF(material, empty
// salt, ".../message-key", 44). Used chain and message keys are overwritten at once.

import { bytesOf, concatBytes, u32, u64 } from "./room-bytes.js";
import { hkdf, hmac } from "./room-webcrypto.js";

export const MAX_SKIP = 1000;
export const MAX_SKIPPED_KEYS = 1000;
export const MAX_COUNTER = Number.MAX_SAFE_INTEGER;
const SENDER_INFO = bytesOf("atopos/room/v1/sender");
const MESSAGE_KEY_INFO = bytesOf("atopos/room/v1/message-key");
const EPOCH_LINK_INFO = bytesOf("atopos/room/v1/epoch-link");
const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);

/** No key for this counter: replayed, already used, forgotten or too far ahead. */
export class MessageKeyUnavailable extends Error {
  constructor(message = "No message key for this counter.") {
    super(message);
    this.name = "MessageKeyUnavailable";
  }
}

export function deriveChainKey(epochSecret, roomId, epoch, sender) {
  return hkdf(epochSecret, roomId, concatBytes([SENDER_INFO, u64(epoch), u32(sender)]));
}

/** HKDF(epoch_secret, salt room_id, ".../epoch-link"): the next epoch's salt. */
export function deriveEpochLink(epochSecret, roomId) {
  return hkdf(epochSecret, roomId, EPOCH_LINK_INFO);
}

/** [material, next chain key]. */
export async function stepChain(chainKey) {
  return [await hmac(chainKey, ONE), await hmac(chainKey, TWO)];
}

/** {counter, key (32), nonce (12)} from one step's material. */
export async function messageKeyFromMaterial(counter, material) {
  const okm = await hkdf(material, new Uint8Array(0), MESSAGE_KEY_INFO, 44);
  return { counter, key: okm.slice(0, 32), nonce: okm.slice(32) };
}

/** Every sender's chain of one epoch: sending (own index) and receiving (the others). */
export class EpochChains {
  static async create(epochSecret, roomId, epoch, senders, ownIndex) {
    const chains = new Map();
    for (const sender of senders) {
      chains.set(sender, {
        chainKey: await deriveChainKey(epochSecret, roomId, epoch, sender),
        nextCounter: 0,
      });
    }
    return new EpochChains(epoch, ownIndex, await deriveEpochLink(epochSecret, roomId), chains);
  }

  constructor(epoch, ownIndex, epochLink, chains) {
    this.epoch = epoch;
    this.ownIndex = ownIndex;
    this.epochLink = epochLink;
    this.#chains = chains;
  }

  #chains;
  #skipped = new Map(); // "sender:counter" -> material, oldest first

  get sentCount() {
    return this.#chains.get(this.ownIndex)?.nextCounter ?? 0;
  }

  hasSender(sender) {
    return this.#chains.has(sender);
  }

  async #advance(chain) {
    const [material, next] = await stepChain(chain.chainKey);
    chain.chainKey.fill(0);
    chain.chainKey = next;
    return material;
  }

  /** The key of this member's next message; its chain moves on. */
  async nextSendKey() {
    const chain = this.#chains.get(this.ownIndex);
    if (chain.nextCounter > MAX_COUNTER) {
      throw new MessageKeyUnavailable("This epoch's chain is used up.");
    }
    const material = await this.#advance(chain);
    const counter = chain.nextCounter;
    chain.nextCounter += 1;
    return messageKeyFromMaterial(counter, material);
  }

  /** The key for (sender, counter), deleted from the state as it is returned. */
  async receiveKey(sender, counter) {
    const chain = this.#chains.get(sender);
    if (
      chain === undefined ||
      sender === this.ownIndex ||
      !(counter >= 0 && counter <= MAX_COUNTER)
    ) {
      throw new MessageKeyUnavailable();
    }
    if (counter < chain.nextCounter) {
      const id = `${sender}:${counter}`;
      const material = this.#skipped.get(id);
      if (material === undefined) throw new MessageKeyUnavailable();
      this.#skipped.delete(id);
      return messageKeyFromMaterial(counter, material);
    }
    if (counter - chain.nextCounter > MAX_SKIP) throw new MessageKeyUnavailable();
    while (chain.nextCounter < counter) {
      this.#skipped.set(`${sender}:${chain.nextCounter}`, await this.#advance(chain));
      chain.nextCounter += 1;
      if (this.#skipped.size > MAX_SKIPPED_KEYS) {
        const oldest = this.#skipped.keys().next().value;
        this.#skipped.get(oldest).fill(0);
        this.#skipped.delete(oldest);
      }
    }
    const material = await this.#advance(chain);
    chain.nextCounter += 1;
    return messageKeyFromMaterial(counter, material);
  }

  /** Counters of `sender` skipped and never received. */
  skippedCounters(sender) {
    const out = [];
    for (const id of this.#skipped.keys()) {
      const [who, counter] = id.split(":").map(Number);
      if (who === sender) out.push(counter);
    }
    return out.sort((a, b) => a - b);
  }

  /**
   * Copies of every chain key, counter and skipped material (bytes and numbers only), for
   * Extra Lock's idle lock to seal; `fromSnapshot` makes the chains again.
   */
  toSnapshot() {
    return {
      epoch: this.epoch,
      ownIndex: this.ownIndex,
      epochLink: this.epochLink.slice(),
      chains: [...this.#chains].map(([sender, chain]) => [
        sender,
        chain.chainKey.slice(),
        chain.nextCounter,
      ]),
      skipped: [...this.#skipped].map(([id, material]) => [id, material.slice()]),
    };
  }

  static fromSnapshot({ epoch, ownIndex, epochLink, chains, skipped }) {
    const made = new EpochChains(
      epoch,
      ownIndex,
      epochLink,
      new Map(chains.map(([sender, chainKey, nextCounter]) => [sender, { chainKey, nextCounter }])),
    );
    for (const [id, material] of skipped) made.#skipped.set(id, material);
    return made;
  }

  /** Overwrite every chain key, skipped material and the epoch link. */
  wipe() {
    this.epochLink.fill(0);
    for (const chain of this.#chains.values()) chain.chainKey.fill(0);
    for (const material of this.#skipped.values()) material.fill(0);
    this.#chains.clear();
    this.#skipped.clear();
  }
}
