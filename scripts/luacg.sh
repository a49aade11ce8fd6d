#!/usr/bin/env bash
# luacg.sh MODE [VARIANT]: the instructions redis-server executes per write for WRITE of a SET
# (MODE write) or per entry of the group log's APPLY (MODE apply), counted by valgrind's
# callgrind: unlike CPU time, the same on a busy machine as on a quiet one, so a change of a
# few percent shows. It runs scripts/luacost (VARIANT: its -variant file of text replacements
# in the library) against a redis-server under callgrind twice, with 2,000 and 6,000 writes, and
# prints the difference per write: the server's start, the library's load and its stop cancel
# out. Needs valgrind (apt-get install valgrind); about a minute.
#
#	bash scripts/luacg.sh write
#	bash scripts/luacg.sh apply /tmp/variant.txt
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: luacg.sh write|apply [VARIANT]}
variant=${2:-}
command -v valgrind >/dev/null || { echo "luacg: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
WORK=$(mktemp -d)
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
go build -o "$WORK/luacost" ./scripts/luacost
. scripts/freeport.sh # free_port

# count N: the server's instructions over a run of N writes.
count() {
	local port out
	port=$(free_port)
	out="$WORK/callgrind.$1"
	valgrind --tool=callgrind --callgrind-out-file="$out" redis-server --port "$port" --bind 127.0.0.1 \
		--save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
	PID=$!
	for _ in $(seq 1 300); do
		[ "$(redis-cli -p "$port" PING 2>/dev/null)" = "PONG" ] && break
		sleep 0.1
	done
	"$WORK/luacost" -addr "127.0.0.1:$port" -mode "$mode" -n "$1" ${variant:+-variant "$variant"} >/dev/null
	redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
	wait "$PID" || true
	PID=
	awk '/^(summary|totals):/ {print $2; exit}' "$out"
}
a=$(count 2000)
b=$(count 6000)
echo "$mode${variant:+ ($variant)}: $(((b - a) / 4000)) instructions per write"
