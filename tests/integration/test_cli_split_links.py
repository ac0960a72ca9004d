"""Split links with the real CLI against a real server: `secret create --split 2/3` prints
three links, any two open the secret, one alone says how many more are needed and spends
nothing, and on a terminal the missing links are asked for."""

from __future__ import annotations

import itertools
import json
import os
import pty
import select
import subprocess
import termios

from bench.harness import end_process

from tests.integration.test_cli_flows import atopos
from tests.servers import ATOPOS, ServerProcess


def create_split(server: ServerProcess, split: str, views: int) -> dict[str, object]:
    created = atopos(
        "--server",
        server.url,
        "secret",
        "create",
        "--split",
        split,
        "--views",
        str(views),
        "--json",
        stdin=b"split secret",
    )
    assert created.returncode == 0, created.stderr
    record: dict[str, object] = json.loads(created.stdout)
    return record


def views_left(manage_link: str) -> bytes:
    status = atopos("secret", "status", manage_link)
    assert status.returncode == 0, status.stderr
    return status.stdout.splitlines()[0]


def test_each_pair_of_three_links_opens_the_secret(server: ServerProcess) -> None:
    record = create_split(server, "2/3", views=3)
    links = record["links"]
    assert isinstance(links, list)
    assert len(links) == 3
    assert "link" not in record
    for pair in itertools.combinations(links, 2):
        revealed = atopos("secret", "reveal", *pair)
        assert (revealed.returncode, revealed.stdout) == (0, b"split secret"), revealed.stderr
    gone = atopos("secret", "reveal", links[2], links[0])
    assert gone.returncode == 3


def test_plain_output_prints_one_link_a_line(server: ServerProcess) -> None:
    created = atopos("--server", server.url, "secret", "create", "--split", "3/4", stdin=b"x")
    assert created.returncode == 0, created.stderr
    links = created.stdout.decode().split()
    assert len(links) == 4
    assert "Any 3 of these 4 links open the secret" in created.stderr.decode()
    revealed = atopos("secret", "reveal", links[3], links[1], links[0])
    assert (revealed.returncode, revealed.stdout) == (0, b"x")


def test_one_link_alone_says_so_and_spends_nothing(server: ServerProcess) -> None:
    record = create_split(server, "2/3", views=1)
    links = record["links"]
    assert isinstance(links, list)
    manage_link = str(record["manage_link"])
    for link in links:
        alone = atopos("secret", "reveal", link)
        assert alone.returncode == 2
        assert alone.stdout == b""
        assert alone.stderr.decode() == (
            "Error: This secret is split into 3 links and any 2 open it; this is one, so 1 "
            "more split link is needed. Nothing was used.\n"
        )
        twice = atopos("secret", "reveal", link, link)
        assert twice.returncode == 2
        assert views_left(manage_link) == b"Views left: 1"
    revealed = atopos("secret", "reveal", links[1], links[2])
    assert (revealed.returncode, revealed.stdout) == (0, b"split secret")


def test_a_bad_split_is_refused_before_anything_is_typed(server: ServerProcess) -> None:
    for split in ("1/3", "3/2", "2/11", "two"):
        refused = atopos("--server", server.url, "secret", "create", "--split", split, stdin=b"x")
        assert refused.returncode == 2
        assert "--split" in refused.stderr.decode()


def test_on_a_terminal_the_missing_link_is_asked_for(server: ServerProcess) -> None:
    record = create_split(server, "2/3", views=1)
    links = record["links"]
    assert isinstance(links, list)
    controller, follower = pty.openpty()
    name = os.ttyname(follower)

    def take_the_terminal() -> None:  # after setsid: the first tty opened becomes it
        os.close(os.open(name, os.O_RDWR))

    process = subprocess.Popen(
        [ATOPOS, "secret", "reveal", links[2]],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    assert process.stderr is not None
    assert process.stdout is not None
    try:
        asked = b""
        while b"1 more needed" not in asked:
            ready, _, _ = select.select([process.stderr], [], [], 30)
            assert ready, asked
            piece = os.read(process.stderr.fileno(), 4096)
            assert piece, asked
            asked += piece
        # The prompt is written before the echo is switched off, which also flushes what was
        # typed so far: type once the terminal no longer echoes.
        while termios.tcgetattr(follower)[3] & termios.ECHO:
            select.select([], [], [], 0.05)
        os.write(controller, links[0].encode() + b"\n")
        stdout = process.stdout.read()
        process.wait(timeout=60)
    finally:
        end_process(process)
        os.close(controller)
        os.close(follower)
    assert process.returncode == 0, process.stderr.read()
    assert stdout == b"split secret"
    assert b"any 2 open it" in asked
    assert links[0].encode() not in asked
