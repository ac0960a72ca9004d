"""compose.yaml wires the image and deploy/ together as docs/operations.md says: SQLite in a
volume by default, read-only and unprivileged, Redis and TLS as profiles that use the files
of deploy/ unchanged. (No compose tool runs containers here; the image itself is tested in
test_image.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_the_node_is_read_only_unprivileged_and_keeps_its_data_in_a_volume() -> None:
    compose = _compose()
    node = compose["services"]["atopos"]
    assert node["build"] == {"context": ".", "dockerfile": "Containerfile"}
    assert "profiles" not in node, "the node runs in every profile"
    assert node["read_only"] is True
    assert node["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in node["security_opt"]
    assert "user" not in node or node["user"] != "root"
    assert "atopos-data:/data" in node["volumes"]
    assert "atopos-data" in compose["volumes"]
    # Plain HTTP, so this machine only.
    assert all(port.startswith("127.0.0.1:") for port in node["ports"])
    # SQLite unless the redis profile's settings are given.
    assert node["environment"]["ATOPOS_STORAGE"] == "${ATOPOS_STORAGE:-}"


def test_the_tls_profile_runs_deploys_caddyfile_in_front_of_the_node() -> None:
    compose = _compose()
    caddy = compose["services"]["caddy"]
    node = compose["services"]["atopos"]
    assert caddy["profiles"] == ["tls"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    placeholders = set(re.findall(r"\{\$([A-Z0-9_]+)", (ROOT / "deploy" / "Caddyfile").read_text()))
    assert set(caddy["environment"]) <= placeholders
    node_address = node["networks"]["atopos"]["ipv4_address"]
    assert caddy["environment"]["ATOPOS_UPSTREAMS"] == f"{node_address}:8080"
    # The node believes X-Forwarded-For from Caddy's fixed address only.
    caddy_address = caddy["networks"]["atopos"]["ipv4_address"]
    assert node["environment"]["ATOPOS_TRUSTED_PROXIES"] == caddy_address
    # The admin socket's directory (deploy/Caddyfile's default) is private.
    assert "/run/caddy:mode=0700" in caddy["tmpfs"]


def test_the_redis_profile_runs_deploys_configs_with_their_password_files() -> None:
    compose = _compose()
    for name in ("durable", "ephemeral"):
        service = compose["services"][f"redis-{name}"]
        assert service["profiles"] == ["redis"]
        # On the node's loopback, as deploy/redis/*.conf binds.
        assert service["network_mode"] == "service:atopos"
        conf = f"/etc/redis/redis-atopos-{name}.conf"
        assert f"./deploy/redis/atopos-{name}.conf:{conf}:ro" in service["volumes"]
        assert service["command"][:2] == ["redis-server", conf]
        include = re.search(
            r"^include (\S+)$",
            (ROOT / "deploy" / "redis" / f"atopos-{name}.conf").read_text(),
            re.MULTILINE,
        )
        assert include is not None
        password_file = f"./secrets/redis-atopos-{name}.password.conf"
        assert f"{password_file}:{include[1]}:ro" in service["volumes"]
