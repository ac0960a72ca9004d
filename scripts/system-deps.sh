#!/usr/bin/env bash
# Install the system packages the tests (or one make target) need, when missing and when we
# may (root). Each line of the table: a command that is run, and the Debian package that
# brings it. With arguments, only those commands are checked (`system-deps.sh wrk` for
# `make bench`); without, every command the tests need.
set -euo pipefail
table=(
  "redis-server:redis-server"
  "chromium:chromium"
  "caddy:caddy"
  # The Tor tests' private network and `atopos serve --onion` (tor and tor-gencert).
  "tor:tor"
  # The container image's test (tests/container/): podman builds it from a Debian base that
  # mmdebstrap makes (no registry is needed).
  "podman:podman"
  "mmdebstrap:mmdebstrap"
  # podman's user-namespace helpers (installed on the machine where the image test was
  # written; --no-install-recommends would leave them out).
  "newuidmap:uidmap"
  # `make bench` only.
  "wrk:wrk"
)
for_tests=(redis-server chromium caddy tor podman mmdebstrap newuidmap)
wanted=("$@")
if ((${#wanted[@]} == 0)); then
  wanted=("${for_tests[@]}")
fi
need=()
for row in "${table[@]}"; do
  cmd=${row%%:*} pkg=${row#*:}
  for want in "${wanted[@]}"; do
    if [ "$want" = "$cmd" ] && ! command -v "$cmd" >/dev/null 2>&1; then
      need+=("$pkg")
    fi
  done
done
if ((${#need[@]} == 0)); then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${need[*]} (install them: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
