#!/usr/bin/env bash
# Install the system packages the tests need, when missing and when we may (root).
# Each line of the table: a command the tests run, and the Debian package that brings it.
set -euo pipefail
table=(
  "redis-server:redis-server"
  "chromium:chromium"
  "caddy:caddy"
)
need=()
for row in "${table[@]}"; do
  cmd=${row%%:*} pkg=${row#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
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
