"""One server node: what every product mounted on it shares.

The node holds the clock, the randomness source, the signing keys, the client identifiers,
the rate limits and the access machinery (challenges and tickets). Products (secrets now,
rooms next) take what they need from it and mount their own routes; none of them reads the
time, draws random bytes or works out who a client is on its own.
"""

from __future__ import annotations

import dataclasses
import logging

from starlette.types import Scope

from atopos.clock import Clock
from atopos.crypto.sizes import NODE_KEY_BYTES
from atopos.crypto.tokens import TokenKeys
from atopos.errors import Refused
from atopos.randomness import RandomBytes
from atopos.server.access import AccessControl
from atopos.server.client_address import ClientAddressSource, client_address_source
from atopos.server.config import ServerConfig
from atopos.server.cross_site import is_cross_site
from atopos.server.decision_time import DecisionTime
from atopos.server.identity import ClientId, EphemeralIdentifiers
from atopos.server.keyfile import NodeKeys, load_key_file
from atopos.server.ratelimit import UPLOAD_BUDGET, RateLimits, rate_limit_storage
from atopos.server.shared_counter_storage import SharedCounterStorage
from atopos.server.shared_counters import SharedCounterTable
from atopos.storage.ephemeral_redis import PersistenceCheck, check_at_start

__all__ = ["Node", "build_node"]

_log = logging.getLogger("atopos.server")


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    config: ServerConfig
    clock: Clock
    random_bytes: RandomBytes
    identifiers: EphemeralIdentifiers
    client_addresses: ClientAddressSource
    limits: RateLimits
    access: AccessControl
    # The time of every decision and stored time: the clock, floored (server/decision_time.py).
    decision_time: DecisionTime

    def now(self) -> int:
        """Whole seconds since the epoch: the unit of every stored time. Never back between
        calls, and never below the store's sweep floor once the product has read it."""
        return self.decision_time.now()

    def client_identifier(self, scope: Scope) -> ClientId:
        """The ephemeral identifiers of the client behind an HTTP request or a WebSocket."""
        return self.identifiers.client(self.client_addresses.address_of(scope), self.clock.now())

    async def admit(self, scope: Scope, route_class: str) -> ClientId:
        """Count one request of a route class against its client's limit (RateLimited when
        over it); the client's identifier, for failures to be recorded against. A request
        another site made a browser send is Refused before it counts (server/cross_site.py)."""
        if is_cross_site(scope):
            raise Refused("Requests from other web sites are refused.")
        identifier = self.client_identifier(scope)
        await self.limits.hit(route_class, identifier)
        return identifier


def build_node(
    config: ServerConfig,
    clock: Clock,
    random_bytes: RandomBytes,
    *,
    token_keys: TokenKeys | None = None,
    node_keys: NodeKeys | None = None,
    shared_counters: SharedCounterTable | None = None,
) -> Node:
    """Every problem of the configuration (a bad key file, a rate-limit Redis that persists)
    stops the start here, with one sentence (InvalidInput). `node_keys` and `shared_counters`,
    made by the worker supervisor before the fork (server/workers.py), are the keys and the
    rate-limit counters every worker of the node shares."""
    # Read before anything else, so a bad key file stops the start with one sentence.
    if node_keys is None and config.key_file is not None:
        node_keys = load_key_file(config.key_file)
    # Then the same for a rate-limit Redis that would write client identifiers to disk.
    rate_limit_url = config.resolved_rate_limit_storage_url()
    persistence_check = _rate_limit_persistence_check(config, rate_limit_url, clock)
    if node_keys is None:
        # Held in RAM only: a restart invalidates every outstanding challenge and ticket.
        node_keys = NodeKeys(random_bytes(NODE_KEY_BYTES))
        identifiers = EphemeralIdentifiers(clock.now(), random_bytes=random_bytes)
        if config.has_redis_storage():
            _log.warning(
                "shared storage without --key-file: other nodes will refuse this node's "
                "challenges and tickets, and rate limits will count per node"
            )
    else:
        # Every node derives the same identifier key, so shared rate limits see one client.
        identifiers = EphemeralIdentifiers(
            clock.now(), node_key=node_keys.current, random_bytes=random_bytes
        )
    storage = (
        rate_limit_storage(rate_limit_url)
        if shared_counters is None
        else SharedCounterStorage(shared_counters)
    )
    limits = RateLimits(
        config.per_minute_limits(),
        storage,
        persistence_check,
        clock=clock,
        per_hour={UPLOAD_BUDGET: config.upload_quota_per_hour_bytes},
    )
    access = AccessControl(
        token_keys or node_keys.token_keys(),
        limits,
        random_bytes,
        pow_bits=config.pow_bits,
        challenge_ttl=config.challenge_ttl,
        ticket_ttl=config.ticket_ttl,
    )
    return Node(
        config=config,
        clock=clock,
        random_bytes=random_bytes,
        identifiers=identifiers,
        client_addresses=client_address_source(config.trusted_proxies),
        limits=limits,
        access=access,
        decision_time=DecisionTime(clock),
    )


def _rate_limit_persistence_check(
    config: ServerConfig, url: str | None, clock: Clock
) -> PersistenceCheck | None:
    """None when no counter goes to Redis (limits off, or kept in memory) or the operator
    opted out; otherwise the check, already passed if the Redis answered (InvalidInput, one
    sentence, if it persists or will not say)."""
    if url is None:
        return None
    if config.accepts_persistent_rate_limit_storage:
        _log.warning(
            "rate-limit counters may be written to disk: their redis is not checked for "
            "persistence (opted out)"
        )
        return None
    return check_at_start(url, is_default=config.rate_limit_storage_url is None, clock=clock)
