#!/usr/bin/env bash
# Starts a local demo cluster: two redis-server groups and three redraft nodes in one DC, all on
# 127.0.0.1, state under .run/. Ctrl-C stops everything this script started (and only that).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/redraft}
RUN=.run
mkdir -p "$RUN"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping the demo cluster..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 7001 7002 6380 6381 6382 7380 7381 7382 8380 8381 8382; do
  port_free "$p" || { echo "port $p is in use: stop what holds it (an earlier 'make run'?) and try again" >&2; exit 1; }
done

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $until ] || { echo "timed out waiting for $what (logs in $RUN/)" >&2; exit 1; }
    sleep 0.2
  done
}

for i in 1 2; do
  port=700$i
  mkdir -p "$RUN/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$RUN/redis-$port" \
    --logfile "$PWD/$RUN/redis-$port.log" &
  pids+=($!)
  wait_for 10 "redis on $port" redis-cli -p "$port" ping
done

start_node() { # start_node N VERB [ARGS...]
  local n=$1 verb=$2; shift 2
  "$BIN" node "$verb" --id "n$n" --dc dc1 --listen "127.0.0.1:638$((n-1))" \
    --peer-listen "127.0.0.1:738$((n-1))" --admin-listen "127.0.0.1:838$((n-1))" \
    --data-dir "$RUN/n$n" "$@" 2>"$RUN/n$n.log" &
  pids+=($!)
}
restart=false
if [ -d "$RUN/n2" ] && [ -d "$RUN/n3" ]; then
  restart=true
  # An earlier run's cluster: n1 needs a majority of the three to elect a leader, so the three
  # start together (it would wait for them alone).
  start_node 1 start
  start_node 2 join --seed 127.0.0.1:7380
  start_node 3 join --seed 127.0.0.1:7380
  wait_for 30 "node n1" "$BIN" --admin 127.0.0.1:8380 health
else
  start_node 1 start
  wait_for 20 "node n1" "$BIN" --admin 127.0.0.1:8380 health
  start_node 2 join --seed 127.0.0.1:7380
  start_node 3 join --seed 127.0.0.1:7380
fi
wait_for 30 "node n2" "$BIN" --admin 127.0.0.1:8381 health
wait_for 30 "node n3" "$BIN" --admin 127.0.0.1:8382 health

export REDRAFT_ADMIN=127.0.0.1:8380
setup() { # setup COMMAND...: runs a set-up step; one already done (an earlier run's state) is fine
  local out
  if ! out=$("$BIN" "$@" 2>&1); then
    case "$out" in
    *exists*) ;;
    *) echo "set-up step failed: redraft $*" >&2; echo "$out" >&2; exit 1 ;;
    esac
  fi
}
if ! $restart; then # an earlier run's cluster keeps its groups and slots (maybe migrated since)
  setup group add --dc dc1 --id g1 --master 127.0.0.1:7001
  setup group add --dc dc1 --id g2 --master 127.0.0.1:7002
  setup slots assign --dc dc1 --group g1 0-8191
  setup slots assign --dc dc1 --group g2 8192-16383
fi
echo
"$BIN" status
cat <<MSG

The demo cluster is up: three nodes (n1 n2 n3) in dc1, two groups (redis-server on 7001, 7002).
Connect with redis-cli to any node:
  redis-cli -p 6380 set hello world
  redis-cli -p 6381 get hello
Dashboard (any node serves it):
  http://127.0.0.1:8380/
Administer it (any node's admin address):
  $BIN --admin 127.0.0.1:8381 status
Logs and data are in $RUN/. Press Ctrl-C to stop everything.
MSG
wait
