"""Rates, caps and timeouts of mix nodes, gateways and clients (docs/mixnet.md, "Settings")."""

from __future__ import annotations

from dataclasses import dataclass

from atopos.protocol.mix_node import DEFAULT_MAX_REPLAY_TAGS
from atopos.protocol.mix_route import DEFAULT_MEAN_DELAY_MS

__all__ = ["EXIT_SEND_RATE", "ClientSettings", "NodeSettings"]

# The exit service answers many clients: it sends faster than one client does by default.
EXIT_SEND_RATE = 50.0


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """A mix node's or gateway's limits. Rates are packets per second (0: off)."""

    mean_delay_ms: float = DEFAULT_MEAN_DELAY_MS  # per hop, for the node's own cover
    loop_rate: float = 1.0
    drop_rate: float = 1.0
    max_pending: int = 20_000  # packets held for their delay
    link_queue: int = 2_000  # frames waiting on one outbound link
    max_connections: int = 2_000
    idle_timeout: float = 300.0  # an inbound link that sends nothing this long is closed
    connect_timeout: float = 5.0
    write_timeout: float = 10.0
    retry_delay: float = 0.5  # before reconnecting a failed outbound link
    max_replay_tags: int = DEFAULT_MAX_REPLAY_TAGS
    max_mailboxes: int = 10_000
    mailbox_messages: int = 512
    mailbox_ttl: float = 3_600.0
    record_observations: bool = False  # tests only: keep what this node saw, in RAM


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """A client's rates: `send_rate` packets per second leave whether or not there is data
    (drop cover fills the gaps), plus `loop_rate` loops through the whole network."""

    send_rate: float = 10.0
    loop_rate: float = 2.0
    mean_delay_ms: float = DEFAULT_MEAN_DELAY_MS
    loop_timeout: float = 10.0  # a loop not back by then makes its nodes suspect
    suspect_for: float = 60.0  # how long a suspect is avoided before it is tried again
    outbox: int = 1_000
    inbox: int = 1_000
    connect_timeout: float = 10.0
    write_timeout: float = 10.0
