"""Atopos rooms benchmark: the relay's fan-out against a bare `websockets` relay, in one run.

    .venv/bin/python bench/rooms.py [--members 500] [--seconds 5] [--rate 20] [--rounds 5]
                                    [--json-out PATH]
    .venv/bin/python bench/rooms.py --idle-only     # only the KiB per idle connection

Starts two servers on free loopback ports, each in its own process: the Atopos node (the real
app, `create_app` on uvicorn with the node's config, room caps raised for one client address
playing N members) and a bare relay (`websockets.serve`, `broadcast()` to everyone else, no
compression). Against each, N light members connect (the Atopos ones prove and join with
real proofs; a member named committer answers with a structurally valid commit, since the
relay cannot check the crypto anyway) and measure, with 1 KiB ciphertexts:

* fan-out latency p50/p99 until the last member has a message, one sender at `--rate` Hz;
* the deliveries/s ceiling: 10 senders, closed loop (a message in flight per sender);
* KiB per idle connection: server RSS after N members joined, minus before, over N;
* server CPU per delivery over both timed phases (user + system time of the server process,
  which foreign load on a shared machine moves far less than latency).

Both rooms are up at once and the two timed figures alternate between the relays in
`--rounds` slices (bare then Atopos, then Atopos then bare, ...), so that on a shared machine
both relays meet the same foreign load; each figure pools its slices.

Then, in this process with the real member code: CPU per message sent and received, and the
cost of an epoch change (a member's self-update: commit build, and one member's verify) at
10, 100 and 500 members. Prints ONE JSON line on stdout (progress on stderr).

With `--two-nodes` (needs `redis-server`), the same run also starts a room Redis without
persistence and two more Atopos nodes on it (ATOPOS_ROOM_REDIS_URL, issue 22), and measures
the same latency and ceiling for one room whose members are split over the two nodes
(`two_nodes`; senders on both), and with every member on one of those nodes (`redis_one_node`).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from typing import Any

import httpx
import msgspec

from bench.harness import Processes, free_port, log, process_memory_kib, wait_http

_CT_BYTES = 1024
_CEILING_SENDERS = 10


# -- the two servers (each runs in its own process: `rooms.py --serve-atopos PORT`) -----------


def serve_atopos(port: int, data_dir: str) -> None:
    import uvicorn

    from atopos.protocol.room_relay import RelayLimits
    from atopos.server.app import create_app
    from atopos.server.config import ServerConfig, rate_limits
    from atopos.server.connection_guard import ConnectionLimits
    from atopos.server.rooms.limits import RoomNodeLimits
    from atopos.server.runner import uvicorn_config

    config = ServerConfig(
        data_dir=Path(data_dir),
        pow_bits=0,
        log_level="warning",
        room_redis_url=os.environ.get("ATOPOS_ROOM_REDIS_URL"),  # --two-nodes
        **rate_limits(0),
    )
    # One address plays every member, and the ceiling is the relay's, not the per-connection
    # frame rate's (section 13's 50/s would cut the closed-loop senders off).
    relay = RelayLimits(max_members=1000, frames_per_second=1e6, frame_burst=1e6)
    limits = RoomNodeLimits(relay=relay, connections_per_client=10_000)
    app = create_app(config, room_limits=limits)
    uvicorn_options = uvicorn_config(
        app, "127.0.0.1", port, ConnectionLimits(max_connections_per_client=10_000)
    )
    uvicorn.Server(uvicorn_options).run()


def serve_bare(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    everyone: set[ServerConnection] = set()

    async def relay(connection: ServerConnection) -> None:
        everyone.add(connection)
        try:
            async for message in connection:
                broadcast(everyone - {connection}, message)
        finally:
            everyone.discard(connection)

    async def main() -> None:
        async with serve(relay, "127.0.0.1", port, compression=None, max_size=1 << 20):
            await asyncio.Future()

    asyncio.run(main())


# -- light members ----------------------------------------------------------------------------


class _Head(msgspec.Struct):
    t: str
    counter: int = 0


_head = msgspec.json.Decoder(_Head)


class Fleet:
    """N connections; counts arrivals of each message id (the `counter` field)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected  # receivers per message
        self.arrived: dict[int, int] = {}
        self.last_at: dict[int, float] = {}
        self.done: dict[int, asyncio.Event] = {}
        self.deliveries = 0

    def on_message(self, counter: int) -> None:
        self.deliveries += 1
        count = self.arrived.get(counter, 0) + 1
        self.arrived[counter] = count
        if count == self.expected:
            self.last_at[counter] = time.perf_counter()
            event = self.done.get(counter)
            if event is not None:
                event.set()


def _msg_text(epoch: int, sender: int, counter: int) -> str:
    from atopos.crypto.base64url import b64url_encode

    ct = b64url_encode(os.urandom(_CT_BYTES))
    sig = b64url_encode(bytes(64))
    return (
        f'{{"t":"msg","epoch":{epoch},"sender":{sender},"counter":{counter},'
        f'"ct":"{ct}","sig":"{sig}"}}'
    )


async def _reader(socket: Any, fleet: Fleet, on_other: Any = None) -> None:
    async for text in socket:
        head = _head.decode(text)
        if head.t == "msg":
            fleet.on_message(head.counter)
        elif on_other is not None:
            await on_other(text)


class AtoposMember:
    def __init__(self, socket: Any, fleet: Fleet) -> None:
        self.socket = socket
        self.fleet = fleet
        self.index = -1
        self.epoch = 0
        self.roster_size = 0

    async def handshake(self, creation: Any, s_link: bytes) -> None:
        from atopos.crypto.base64url import b64url_decode, b64url_encode
        from atopos.crypto.room_keys import ProofKind, derive_proof_key, join_proof_message

        challenge = json.loads(await self.socket.recv())["nonce"]
        room_id = b64url_decode(creation.room_id)
        key = derive_proof_key(ProofKind.LINK, s_link, room_id)
        sig = key.sign(join_proof_message(ProofKind.LINK, room_id, b64url_decode(challenge)))
        prove = {"t": "prove", "kind": "link", "key": creation.join_verifier}
        await self.socket.send(json.dumps(prove | {"sig": b64url_encode(sig)}))
        await self.socket.recv()  # unlock
        await self.socket.send(json.dumps(_JOIN))
        welcome = json.loads(await self.socket.recv())
        self.index = welcome["index"]

    async def on_other(self, text: str) -> None:
        frame = json.loads(text)
        if frame["t"] == "change" and frame["committer"] == self.index:
            from atopos.crypto.base64url import b64url_encode

            def b(n: int) -> str:
                return b64url_encode(os.urandom(n))

            commit = {
                "t": "commit",
                "epoch": frame["epoch"],
                "committer": self.index,
                "reason": frame["reason"],
                "transcript": b(32),
                "membership": b(32),
                "roster": frame["roster"],
                "joins": frame["joins"],
                "sealed": [],
                "room_auth": b(32),
                "confirm": b(32),
                "sig": b(64),
            }
            await self.socket.send(json.dumps(commit))
        elif frame["t"] == "commit":
            self.epoch = frame["epoch"]
            self.roster_size = len(frame["roster"])


def _join_frame() -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from atopos.crypto.base64url import b64url_encode

    def raw(key: Any) -> bytes:
        return key.public_key().public_bytes_raw()  # type: ignore[no-any-return]

    return {
        "t": "join",
        "sign_key": b64url_encode(raw(Ed25519PrivateKey.generate())),
        "seal_key": b64url_encode(raw(X25519PrivateKey.generate())),
        "auth": b64url_encode(os.urandom(32)),
        "profile": b64url_encode(os.urandom(156)),
    }


_JOIN = _join_frame()


async def _connect(url: str) -> Any:
    from websockets.asyncio.client import connect

    return await connect(
        url, compression=None, max_size=1 << 22, open_timeout=60, ping_interval=None
    )


async def _polled(condition: Any, within: float) -> None:
    """Wait until `condition()` holds (checked every 10 ms) or `within` seconds passed."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if condition():
            return
        await asyncio.sleep(0.01)


async def _latency(fleet: Fleet, send: Any, rate: float, seconds: float, first: int) -> list[float]:
    """One sender at `rate` Hz for `seconds`; the ms until the last member has each message."""
    sent_at: dict[int, float] = {}
    count = int(rate * seconds)
    counters = range(first, first + count)
    for counter in counters:
        fleet.done[counter] = asyncio.Event()
        sent_at[counter] = time.perf_counter()
        await send(0, counter)
        await asyncio.sleep(1 / rate)
    await _polled(lambda: all(c in fleet.last_at for c in counters), 10)
    return [(fleet.last_at[c] - sent_at[c]) * 1000 for c in counters if c in fleet.last_at]


def _percentiles(latencies: list[float], sent: int) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"delivered_messages": 0, "sent_messages": sent}
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "delivered_messages": len(ordered),
        "sent_messages": sent,
    }


async def _ceiling(fleet: Fleet, send: Any, seconds: float, first: int) -> tuple[int, float]:
    """Each of the senders keeps one message in flight until all have it: (deliveries,
    elapsed seconds)."""
    start_deliveries = fleet.deliveries
    started = time.perf_counter()
    stop = started + seconds
    next_counter = [first]

    async def sender(slot: int) -> None:
        while time.perf_counter() < stop:
            counter = next_counter[0]
            next_counter[0] += 1
            event = fleet.done[counter] = asyncio.Event()
            await send(slot, counter)
            try:
                await asyncio.wait_for(event.wait(), 10)
            except TimeoutError:
                return

    await asyncio.gather(*(sender(s) for s in range(_CEILING_SENDERS)))
    return fleet.deliveries - start_deliveries, time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Relay:
    """One relay's members, ready to measure: the fleet, a send by member slot, a close,
    and the server process (its CPU per delivery is the figure foreign load moves least)."""

    def __init__(
        self, fleet: Fleet, send: Any, close: Any, kib_per_idle_connection: float, pid: int
    ) -> None:
        self.fleet = fleet
        self.send = send
        self.close = close
        self.kib_per_idle_connection = kib_per_idle_connection
        self.pid = pid


async def join_atopos(port: int, pid: int, members: int) -> Relay:
    from atopos.protocol.room_creation import make_room

    base = f"http://127.0.0.1:{port}"
    new = make_room(base, os.urandom, ttl=3600)
    room_id = new.creation.room_id
    async with httpx.AsyncClient(base_url=base) as client:
        challenge = (await client.post(f"/api/v1/rooms/{room_id}/challenge")).json()
        body = msgspec.to_builtins(new.creation) | {"challenge": challenge["challenge"], "nonce": 0}
        created = await client.post("/api/v1/rooms", json=body)
        assert created.status_code == 201, created.text
    s_link = new.member_link.s_link
    assert s_link is not None
    rss_before = process_memory_kib(pid)["vmrss_kib"]
    fleet = Fleet(members - 1)
    url = f"ws://127.0.0.1:{port}/api/v1/rooms/{room_id}"
    # The first member founds the room; the others join together, so the relay batches
    # them into few changes (a few big commits instead of hundreds of growing ones).
    first = AtoposMember(await _connect(url), fleet)
    await first.handshake(new.creation, s_link)
    tasks = [asyncio.create_task(_reader(first.socket, fleet, first.on_other))]
    await _polled(lambda: first.roster_size == 1, 10)

    async def arrive() -> AtoposMember:
        member = AtoposMember(await _connect(url), fleet)
        await member.handshake(new.creation, s_link)  # within the 10 s handshake timeout
        return member

    others = list(await asyncio.gather(*(arrive() for _ in range(members - 1))))
    people = [first, *others]
    tasks += [asyncio.create_task(_reader(m.socket, fleet, m.on_other)) for m in others]
    log(f"{members} members connected and joined; waiting for the commit")
    await _polled(lambda: all(p.roster_size == members for p in people), 60)
    assert all(p.roster_size == members for p in people), "the room did not settle"
    await asyncio.sleep(1)
    rss_after = process_memory_kib(pid)["vmrss_kib"]
    epoch = people[0].epoch

    async def send(slot: int, counter: int) -> None:
        member = people[slot]
        await member.socket.send(_msg_text(epoch, member.index, counter))

    async def close() -> None:
        # Readers first: a committer that still answered would make every leave one more
        # commit to everyone left (minutes of JSON for the client, and not measured).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(member.socket.close() for member in people))

    return Relay(fleet, send, close, round((rss_after - rss_before) / members, 1), pid)


async def join_bare(port: int, pid: int, members: int) -> Relay:
    rss_before = process_memory_kib(pid)["vmrss_kib"]
    fleet = Fleet(members - 1)
    sockets = [await _connect(f"ws://127.0.0.1:{port}/") for _ in range(members)]
    tasks = [asyncio.create_task(_reader(s, fleet)) for s in sockets]
    await asyncio.sleep(1)
    rss_after = process_memory_kib(pid)["vmrss_kib"]

    async def send(slot: int, counter: int) -> None:
        await sockets[slot].send(_msg_text(1, slot, counter))

    async def close() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(socket.close() for socket in sockets))

    return Relay(fleet, send, close, round((rss_after - rss_before) / members, 1), pid)


async def measure(
    atopos_port: int, atopos_pid: int, bare_port: int, bare_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Both rooms are up at once; the measurements alternate between the two relays in
    `args.rounds` slices, so that both see the same load on a shared machine."""
    relays = {"bare": await join_bare(bare_port, bare_pid, args.members)}
    log(f"bare: {args.members} connected")
    relays["atopos"] = await join_atopos(atopos_port, atopos_pid, args.members)
    if args.idle_only:
        out_idle: dict[str, Any] = {}
        for name, relay in relays.items():
            out_idle[name] = {"kib_per_idle_connection": relay.kib_per_idle_connection}
            await relay.close()
        return out_idle
    names = ("bare", "atopos")
    latencies: dict[str, list[float]] = {name: [] for name in names}
    delivered = {name: 0 for name in names}
    elapsed = {name: 0.0 for name in names}
    cpu = {name: 0.0 for name in names}
    slice_s = args.seconds / args.rounds
    counter = 0
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            relay = relays[name]
            cpu[name] -= _cpu_seconds(relay.pid)
            latencies[name] += await _latency(relay.fleet, relay.send, args.rate, slice_s, counter)
            cpu[name] += _cpu_seconds(relay.pid)
            counter += 1_000_000
        for name in order:
            relay = relays[name]
            cpu[name] -= _cpu_seconds(relay.pid)
            n, seconds = await _ceiling(relay.fleet, relay.send, slice_s, counter)
            cpu[name] += _cpu_seconds(relay.pid)
            delivered[name] += n
            elapsed[name] += seconds
            counter += 1_000_000
    sent = int(args.rate * slice_s) * args.rounds
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {
            **_percentiles(latencies[name], sent),
            "deliveries_per_s": round(delivered[name] / elapsed[name]),
            # Server CPU over both timed phases, over every message delivered in them.
            "server_cpu_us_per_delivery": round(
                cpu[name] / max(1, relays[name].fleet.deliveries) * 1e6, 2
            ),
            "kib_per_idle_connection": relays[name].kib_per_idle_connection,
        }
        await relays[name].close()
    return out


async def run_atopos_nodes(
    ports: list[int], members: int, rate: float, seconds: float
) -> dict[str, Any]:
    """One room on nodes sharing a room Redis: member n connects to node n mod len(ports)
    (the room is created on the first); latency from a sender on the first node, the ceiling
    with senders alternating between the nodes."""
    from atopos.protocol.room_creation import make_room

    base = f"http://127.0.0.1:{ports[0]}"
    new = make_room(base, os.urandom, ttl=3600)
    room_id = new.creation.room_id
    async with httpx.AsyncClient(base_url=base) as client:
        challenge = (await client.post(f"/api/v1/rooms/{room_id}/challenge")).json()
        body = msgspec.to_builtins(new.creation) | {"challenge": challenge["challenge"], "nonce": 0}
        created = await client.post("/api/v1/rooms", json=body)
        assert created.status_code == 201, created.text
    s_link = new.member_link.s_link
    assert s_link is not None
    urls = [f"ws://127.0.0.1:{port}/api/v1/rooms/{room_id}" for port in ports]
    fleet = Fleet(members - 1)
    first = AtoposMember(await _connect(urls[0]), fleet)
    await first.handshake(new.creation, s_link)
    tasks = [asyncio.create_task(_reader(first.socket, fleet, first.on_other))]
    await _polled(lambda: first.roster_size == 1, 10)

    async def arrive(n: int) -> AtoposMember:
        member = AtoposMember(await _connect(urls[n % len(urls)]), fleet)
        await member.handshake(new.creation, s_link)
        return member

    others = list(await asyncio.gather(*(arrive(n) for n in range(1, members))))
    people = [first, *others]
    tasks += [asyncio.create_task(_reader(m.socket, fleet, m.on_other)) for m in others]
    log(f"{members} members joined over {len(ports)} node(s); waiting for the commit")
    await _polled(lambda: all(p.roster_size == members for p in people), 120)
    assert all(p.roster_size == members for p in people), "the room did not settle"
    await asyncio.sleep(1)
    epoch = people[0].epoch

    async def send(slot: int, counter: int) -> None:
        member = people[slot]  # slots 0..9: members 0..9, on alternating nodes
        await member.socket.send(_msg_text(epoch, member.index, counter))

    latency = await _latency(fleet, send, rate, seconds)
    ceiling = await _ceiling(fleet, send, seconds, first=1_000_000)
    for member in people:
        await member.socket.close()
    for task in tasks:
        task.cancel()
    return {**latency, **ceiling, "nodes": len(ports)}


def run_room_redis(procs: Processes, tmp: str, args: argparse.Namespace) -> dict[str, Any]:
    """`--two-nodes`: a room Redis (no persistence) and two nodes on it; the room split over
    both, then the room on one of them."""
    redis_port = free_port()
    redis_dir = Path(tmp) / "room-redis"
    redis_dir.mkdir()
    procs.start(
        "room-redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(redis_dir)],
    )  # fmt: skip
    # The nodes answer /healthz once the room Redis does (they retry every second).
    env = {"ATOPOS_ROOM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    me = [sys.executable, str(Path(__file__).resolve())]
    ports = [free_port(), free_port()]
    for n, port in enumerate(ports):
        node = procs.start(f"node-{n}", [*me, "--serve-atopos", str(port), tmp], env)
        wait_http("127.0.0.1", port, "/healthz", node)
    out: dict[str, Any] = {}
    log("two nodes on the room redis")
    out["two_nodes"] = asyncio.run(run_atopos_nodes(ports, args.members, args.rate, args.seconds))
    log(f"two nodes: {out['two_nodes']}")
    log("one node on the room redis")
    out["redis_one_node"] = asyncio.run(
        run_atopos_nodes(ports[:1], args.members, args.rate, args.seconds)
    )
    log(f"one node on redis: {out['redis_one_node']}")
    return out


# -- member CPU: messages and epoch changes, with the real member code ------------------------


class _LocalRoom:
    """N real members on the sans-I/O relay, in this process. Only members 0 to 2 follow
    the room after joining; the others stop at their join (they would only repeat member
    2's verify, N times over)."""

    def __init__(self, size: int) -> None:
        from atopos.protocol.room_creation import make_room
        from atopos.protocol.room_member import MemberState, RoomMember
        from atopos.protocol.room_relay import RelayLimits, RelayRoom

        self.handshake = (MemberState.CONNECTING, MemberState.PROVING, MemberState.JOINING)
        new = make_room("https://bench", os.urandom, ttl=3600)
        self.relay = RelayRoom(new.creation, 0.0, RelayLimits(max_members=1000))
        self.members: dict[int, RoomMember] = {}
        self.cpu: dict[int, float] = {}
        for n in range(size):
            link = new.creator_link if n == 0 else new.member_link
            self.members[n] = RoomMember(link, f"m{n}", os.urandom)
            self.apply(self.relay.open(n, os.urandom(32), 0.0))
            if n == 0:
                self.pump()
        self.pump(skip=0)  # every joiner queued while the first change waits for member 0
        self.pump()
        assert all(self.members[n].state is MemberState.ACTIVE for n in (0, 1, 2))

    def apply(self, actions: list[Any]) -> None:
        from atopos.protocol.room_relay import SendText

        for action in actions:
            if not isinstance(action, SendText):
                continue
            for c in action.connections:
                if c > 2 and self.members[c].state not in self.handshake:
                    continue
                started = time.process_time()
                self.members[c].receive(action.text, 0.0)
                self.cpu[c] = time.process_time() - started

    def pump(self, skip: int | None = None) -> None:
        moved = True
        while moved:
            moved = False
            for c, member in list(self.members.items()):
                if c == skip:
                    continue
                for text in member.outgoing():
                    moved = True
                    self.apply(self.relay.receive(c, text, 0.0))

    def relayed(self, sender: int) -> list[str]:
        """What the relay fans out for `sender`'s queued frames (not delivered)."""
        from atopos.protocol.room_relay import SendText

        out: list[str] = []
        for text in self.members[sender].outgoing():
            actions = self.relay.receive(sender, text, 0.0)
            out += [a.text for a in actions if isinstance(a, SendText)]
        return out


def member_costs(sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for size in sizes:
        room = _LocalRoom(size)
        started = time.process_time()
        room.members[0].update(0.0)
        texts = room.members[0].outgoing()
        build_ms = (time.process_time() - started) * 1000
        room.cpu.clear()
        for text in texts:
            room.apply(room.relay.receive(0, text, 0.0))
        entry = {
            "commit_build_ms": round(build_ms, 1),
            "commit_verify_ms": round(room.cpu.get(1, 0.0) * 1000, 1),
        }
        if size == sizes[0]:
            rounds = 200
            started = time.process_time()
            for _ in range(rounds):
                room.members[0].send_text("x" * 1000)
                room.members[0].outgoing()
            entry["send_us"] = round((time.process_time() - started) / rounds * 1e6)
            frames: list[str] = []
            for _ in range(rounds):
                room.members[1].send_text("x" * 1000)
                frames += [f for f in room.relayed(1) if '"t":"msg"' in f]
            started = time.process_time()
            for text in frames:
                room.members[2].receive(text, 0.0)
            entry["receive_us"] = round((time.process_time() - started) / len(frames) * 1e6)
        results[str(size)] = entry
        log(f"member costs at {size}: {entry}")
    return results


# -- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "rooms",
        "members": args.members,
        "rate_hz": args.rate,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory() as tmp, Processes(Path(tmp)) as procs:
        me = [sys.executable, str(Path(__file__).resolve())]
        port_a, port_b = free_port(), free_port()
        atopos = procs.start("atopos", [*me, "--serve-atopos", str(port_a), tmp], {})
        bare = procs.start("bare", [*me, "--serve-bare", str(port_b)], {})
        wait_http("127.0.0.1", port_a, "/healthz", atopos)
        time.sleep(0.5)
        out |= asyncio.run(measure(port_a, atopos.pid, port_b, bare.pid, args))
        log(f"bare: {out['bare']}")
        log(f"atopos: {out['atopos']}")
        if args.two_nodes and not args.idle_only:
            out |= run_room_redis(procs, tmp, args)
    if args.idle_only:
        return out
    a, b = out["atopos"], out["bare"]
    if "p99_ms" in a and "p99_ms" in b:
        out["p99_ratio"] = round(a["p99_ms"] / b["p99_ms"], 2)
    out["ceiling_ratio"] = round(a["deliveries_per_s"] / max(1, b["deliveries_per_s"]), 2)
    out["server_cpu_ratio"] = round(
        a["server_cpu_us_per_delivery"] / max(0.01, b["server_cpu_us_per_delivery"]), 2
    )
    out["member_cpu"] = member_costs(args.sizes)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5, help="alternating slices per figure")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--two-nodes", action="store_true", help="also two nodes sharing a room Redis"
    )
    parser.add_argument(
        "--idle-only",
        action="store_true",
        help="only join the members and report the KiB per idle connection (no timed phases)",
    )
    parser.add_argument("--serve-atopos", nargs=2, metavar=("PORT", "DIR"))
    parser.add_argument("--serve-bare", metavar="PORT")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_atopos:
        serve_atopos(int(args.serve_atopos[0]), args.serve_atopos[1])
        return 0
    if args.serve_bare:
        serve_bare(int(args.serve_bare))
        return 0
    started = time.monotonic()
    result = run(args)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    line = json.dumps(result, sort_keys=True)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
