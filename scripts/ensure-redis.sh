#!/usr/bin/env bash
# Installs redis-server, redis-cli and redis-benchmark from Debian's packages when missing, and
# redis-py (python3-redis, for the client test router/clients_ext_test.go, which is skipped
# with a message when it cannot be installed).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; } || need+=(redis-tools)
# Debian's python3-redis installs for Debian's /usr/bin/python3.
if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import redis' >/dev/null 2>&1; }; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    need+=(python3-redis)
  else
    echo "note: python3-redis is missing; TestRedisPy will be skipped (sudo apt-get install -y python3-redis)" >&2
  fi
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "redraft needs ${need[*]} and cannot install it without root." >&2
  echo "Run: sudo apt-get update && sudo apt-get install -y ${need[*]}   (or run make as root)" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's package may start a system redis on 6379 where an init system runs; the tests never
# use that port, so it is left alone.
command -v redis-server >/dev/null
