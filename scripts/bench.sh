#!/usr/bin/env bash
# bench.sh: redis-benchmark against redis-server directly and through redraft's data plane,
# same run, same parameters. Prints throughput, the redraft/direct ratio, p50 latencies and
# redraft's CPU time per request (utime+stime from /proc/PID/stat). A third column runs the
# same load through scripts/benchfloor, a bare epoll proxy that only forwards bytes: the floor
# any proxy pays on this machine, so redraft/floor shows what redraft's own work costs.
#
# The proxied side is a one-node redraft cluster (the real binary, Raft and all) with two
# groups: g1 serves every slot for SET/GET; for MSET half the slots are reassigned to g2 so the
# ten keys split over both. Then a second node in dc2 joins for the replication figures.
# Last, the failover figures (docs/failover.md): kill -9 of a group master to the first write
# acknowledged through every node, and the write latency around planned switchovers
# (integration/failover_bench_test.go, real nodes and redis-servers).
# Knobs: N1, N16, NMSET, CLIENTS, REPS, MANY, IDLE, GOMAXPROCS, XRATE, XRATE2, XDUR,
# BENCH_ONLY=data|clients|migration|xdc|failover,
# NMIG, MIGVAL, MIGBASE, MIGHASH, MIGARGS, MIGSLICES, MIGPROF (the migration part: see there),
# XPROF=DIR (CPU profiles of the two nodes over the first fixed-rate and the flat-out cross-DC
# runs, dc1-node-<rate>.pprof and dc1-node.pprof, both nodes' /metrics before and after the
# first fixed-rate run, dc1-node-<before|rate>.metrics, and both masters' command stats and
# latency histograms over each cross-DC run, dc1-master-<rate|flat>.stats and .hist, to DIR),
# BENCH_LOGS=DIR (the nodes' and servers' logs, copied to DIR at the end),
# REDRAFT_MAX_DATA_FORMAT=N (both nodes run data format N at most: 1 measures the per-slot
# outboxes; unset, the cluster raises itself to this build's latest, 3, one log per group; the
# script waits for the format the nodes settle on and prints it with the cross-DC figures),
# XDCLOAD_SERIES=FILE (scripts/xdcload writes each cross-DC run's writes to FILE.<run>: sent at,
# ack and lag in ms, one line per write, to tell stalls from spread: docs/replication.md),
# LOG_LEVEL=debug (the nodes' log level; at debug the shipping loops and receivers log where a
# round's time goes every 10 s: "xdc phases", docs/replication.md).
set -euo pipefail

cd "$(dirname "$0")/.."
N1=${N1:-200000}
N16=${N16:-2000000}
NMSET=${NMSET:-200000}
CLIENTS=${CLIENTS:-50}
REPS=${REPS:-3}
DATA=64

bench_failover() {
	REDRAFT_BENCH_FAILOVER=1 go test -count=1 -run '^TestBenchFailover$' -v ./integration/ | grep '^BENCH' || {
		echo "bench: the failover figures failed (go test -run TestBenchFailover -v ./integration/ shows why)" >&2
		return 1
	}
}
if [ "${BENCH_ONLY:-}" = failover ]; then
	bench_failover
	exit
fi

for b in redis-server redis-benchmark redis-cli; do
	command -v "$b" >/dev/null || { echo "bench: $b not found" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS" && cp "$WORK"/*.log "$BENCH_LOGS"/ 2>/dev/null; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

. scripts/freeport.sh # free_port

wait_ping() { # port
	for _ in $(seq 1 200); do
		[ "$(redis-cli -p "$1" PING 2>/dev/null)" = "PONG" ] && return 0
		sleep 0.05
	done
	echo "bench: nothing answers on port $1" >&2
	tail -n 5 "$WORK"/*.log >&2 2>/dev/null || true
	exit 1
}

start_redis() { # port
	redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
		--dir "$WORK" --logfile "$WORK/redis-$1.log" &
	PIDS+=($!)
	wait_ping "$1"
}

go build -o "$WORK/redraft" ./cmd/redraft
go build -o "$WORK/benchfloor" ./scripts/benchfloor

# start_node: a one-node cluster on free ports (retrying if another process takes a port
# first); sets PORT, ADMIN and PID.
start_node() {
	for _ in 1 2 3 4 5; do
		PORT=$(free_port); PEER=$(free_port); local peer=$PEER; ADMIN=127.0.0.1:$(free_port)
		rm -rf "$WORK/n1"
		"$WORK/redraft" node start --id n1 --dc dc1 --listen "127.0.0.1:$PORT" --peer-listen "127.0.0.1:$peer" \
			--admin-listen "$ADMIN" --data-dir "$WORK/n1" --log-level "${LOG_LEVEL:-warn}" 2>"$WORK/n1.log" &
		PID=$!
		for _ in $(seq 1 200); do
			"$WORK/redraft" --admin "$ADMIN" health >/dev/null 2>&1 && { PIDS+=("$PID"); return; }
			kill -0 "$PID" 2>/dev/null || break
			sleep 0.05
		done
		kill "$PID" 2>/dev/null || true
	done
	echo "bench: redraft node did not start:" >&2
	cat "$WORK/n1.log" >&2
	exit 1
}
admin() { "$WORK/redraft" --admin "$ADMIN" "$@" >/dev/null; }
# wait_format: waits until the cluster runs the data format its nodes settle on, the lowest
# max_data_format of its members (this build's latest unless REDRAFT_MAX_DATA_FORMAT holds the
# nodes lower), and sets FORMAT to it. A new cluster raises its format a step at a time within
# seconds of its start, and a write whose batch straddles a raise answers -TRYAGAIN.
wait_format() {
	local st
	FORMAT=
	for _ in $(seq 1 600); do
		# (empty until the node has registered itself)
		if st=$("$WORK/redraft" --admin "$ADMIN" --json status 2>/dev/null); then
			FORMAT=$(awk -F': ' '/"max_data_format":/ { v = $2 + 0; if (m == "" || v < m) m = v } END { print m }' <<<"$st")
			[ -n "$FORMAT" ] && grep -Eq "^  \"data_format\": $FORMAT,?\$" <<<"$st" && return
		fi
		sleep 0.05
	done
	echo "bench: the cluster did not reach data format $FORMAT within 30 s" >&2
	exit 1
}

R1=$(free_port); start_redis "$R1"; R1PID=${PIDS[-1]}
R2=$(free_port); start_redis "$R2"; R2PID=${PIDS[-1]}
start_node; P1=$PORT; BS1=$PID; P2=$PORT; BS2=$PID
admin group add --dc dc1 --id g1 --master "127.0.0.1:$R1"
admin group add --dc dc1 --id g2 --master "127.0.0.1:$R2"
admin slots assign --dc dc1 --group g1 0-16383
wait_format
for _ in $(seq 1 200); do [ "$(redis-cli -p "$P1" SET bench:probe 1 2>/dev/null)" = "OK" ] && break; sleep 0.05; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run PORT N ARGS... -> "rps p50 p99" of the last CSV line
run() {
	local port=$1 n=$2; shift 2
	redis-benchmark -p "$port" -n "$n" -c "${C:-$CLIENTS}" -d "$DATA" -r 1000000 --csv "$@" 2>/dev/null |
		tail -1 | awk -F'"' '{print $4, $10, $14}'
}

if [ "${BENCH_ONLY:-}" != xdc ]; then # BENCH_ONLY=xdc runs only the replication figures
R1PID=${PIDS[0]}
if [ "${BENCH_ONLY:-}" != migration ]; then # BENCH_ONLY=migration: only the migration figures
# The floor: scripts/benchfloor, a bare epoll loop forwarding bytes to R1 over one pipelined
# connection; what any proxy on this machine must spend at least.
FLOOR=$(free_port)
"$WORK/benchfloor" -listen "127.0.0.1:$FLOOR" -backend "127.0.0.1:$R1" 2>"$WORK/floor.log" &
FLOORPID=$!
PIDS+=("$FLOORPID")
wait_ping "$FLOOR"
printf '%-16s %10s %10s %10s %6s %6s %6s %8s %8s %8s %8s %8s %8s %8s %6s %8s %8s %8s\n' test direct_rps floor_rps redraft_rps ratio floor of_flr p50_dir p50_flr p50_rdr added_ms p99_flr p99_rdr p99_of cpu_us cpu_flr redis_us
echo "  (ratio: redraft/direct; floor: floor/direct; of_flr: redraft/floor; p50, p99 in ms; added_ms: p50_rdr - p50_dir;"
echo "   p99_of: redraft's p99 / the floor's; cpu_us: redraft CPU per request;"
echo "   cpu_flr: the floor proxy's; redis_us: redis-server's own CPU per request when benchmarked directly)"
# line NAME PORT PID N ARGS...: one row. The three sides take turns REPS times (N/REPS
# requests each, direct, floor, redraft, direct, ...) so that a slow moment of this shared
# machine hits all three; the row shows each side's median rps, p50 and p99 over its turns,
# and CPU per request over all of them. LAST holds redraft's median "rps p50 p99" afterwards.
line() {
	local name=$1 pport=$2 pid=$3 n=$4; shift 4
	local m=$((n / REPS)) d="" f="" r="" t=0 ft=0 st=0 a b i
	for ((i = 0; i < REPS; i++)); do
		a=$(ticks "$R1PID"); d+="$(run "$R1" "$m" "$@");"; b=$(ticks "$R1PID"); st=$((st + b - a))
		a=$(ticks "$FLOORPID"); f+="$(run "$FLOOR" "$m" "$@");"; b=$(ticks "$FLOORPID"); ft=$((ft + b - a))
		a=$(ticks "$pid"); r+="$(run "$pport" "$m" "$@");"; b=$(ticks "$pid"); t=$((t + b - a))
	done
	LAST=$(median3 "$r")
	awk -v name="$name" -v d="$(median3 "$d")" -v f="$(median3 "$f")" -v r="$LAST" -v ticks=$t -v fticks=$ft -v rticks=$st -v hz="$HZ" -v n=$((m * REPS)) 'BEGIN {
		split(d, a, " "); split(f, c, " "); split(r, b, " ")
		printf "%-16s %10.0f %10.0f %10.0f %6.2f %6.2f %6.2f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %6.2f %8.1f %8.1f %8.1f\n", name, a[1], c[1], b[1], b[1] / a[1], c[1] / a[1], b[1] / c[1], a[2], c[2], b[2], b[2] - a[2], c[3], b[3], b[3] / c[3], ticks / hz * 1e6 / n, fticks / hz * 1e6 / n, rticks / hz * 1e6 / n
	}'
}
# median3 "rps p50 p99;rps p50 p99;...": the median of each column.
median3() {
	echo "$1" | tr ';' '\n' | awk 'BEGIN { n = 0 } NF == 3 { for (k = 1; k <= 3; k++) v[k, n] = $k; n++ }
	function med(k,   i, j, t, x) { for (i = 0; i < n; i++) x[i] = v[k, i]
		for (i = 1; i < n; i++) for (j = i; j > 0 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
		return n % 2 ? x[int(n / 2)] : (x[n / 2 - 1] + x[n / 2]) / 2 }
	END { printf "%s %s %s\n", med(1), med(2), med(3) }'
}

if [ "${BENCH_ONLY:-}" != clients ]; then
line "SET P1" "$P1" "$BS1" "$N1" -t set
line "GET P1" "$P1" "$BS1" "$N1" -t get
# One client: the latency redraft adds without CPU contention.
C=1 line "GET P1 1 client" "$P1" "$BS1" "$((N1 / 10))" -t get
line "SET P16" "$P1" "$BS1" "$N16" -t set -P 16
line "GET P16" "$P1" "$BS1" "$N16" -t get -P 16
fi

# ---- Many clients (BENCH_ONLY=clients runs only these): 2,000 clients at pipeline 1 against
# the 50-client figure, and what 10,000 idle connections cost the node.
MANY=${MANY:-2000}
IDLE=${IDLE:-10000}
# First the idle connections, while the node has served only 50 clients: the thousands of
# goroutines of the 2,000-client run would otherwise leave freed stacks and spans behind.
go build -o "$WORK/idleconns" ./scripts/idleconns
"$WORK/idleconns" -addr "127.0.0.1:$P1" -admin "$ADMIN" -pid "$BS1" -n "$IDLE"
line "GET P1 $CLIENTS cl" "$P1" "$BS1" "$N1" -t get
g50=$LAST
C=$MANY line "GET P1 $MANY cl" "$P1" "$BS1" "$N1" -t get
gmany=$LAST
awk -v a="$g50" -v b="$gmany" -v m="$MANY" -v c="$CLIENTS" 'BEGIN { split(a, x, " "); split(b, y, " ")
	printf "redraft with %d clients / %d clients: %.2f of the throughput; p99 %.3f ms against %.3f ms\n", m, c, y[1] / x[1], y[3], x[3] }'
[ "${BENCH_ONLY:-}" = clients ] && exit 0
# Ten keys with distinct hash tags: through redraft they split over the two groups.
admin slots assign --dc dc1 --group g2 --force 8192-16383
for _ in $(seq 1 200); do [ "$(redis-cli -p "$P2" SET foo 1 2>/dev/null)" = "OK" ] && [ "$(redis-cli -p "$R2" EXISTS foo)" = "1" ] && break; sleep 0.05; done
MSET_ARGS=()
for i in 0 1 2 3 4 5 6 7 8 9; do MSET_ARGS+=("{k$i}:__rand_int__" "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"); done
line "MSET 10 keys P1" "$P2" "$BS2" "$NMSET" MSET "${MSET_ARGS[@]}"
echo "redraft: one-node cluster, real binary (GOMAXPROCS=${GOMAXPROCS:-the procs default: half the CPUs}); direct: one redis-server; $(nproc) cores; clients=$CLIENTS; value=${DATA}B"
[ "${BENCH_ONLY:-}" = data ] && exit 0 # BENCH_ONLY=data: only the data-plane figures
fi

# ---- Migration: keys/s and MB/s moved, and client p99 with and without a migration ----------
# scripts/migload loads NMIG keys key:000000000000... through the node, runs CLIENTS GET clients
# (one request in flight each, random keys of the NMIG) for MIGBASE, then starts the migration
# and keeps the same load on until the switch is committed; it reports the GETs sent in each
# window, so "during" covers exactly the migration (freeze barrier, mover, switch).
NMIG=${NMIG:-200000}     # keys loaded before the migration (half of them on g1, which moves)
MIGVAL=${MIGVAL:-512}    # value size of the migrated keys
MIGBASE=${MIGBASE:-3s}   # the baseline window
echo
go build -o "$WORK/migload" ./scripts/migload
# g1 serves 0-8191 and g2 8192-16383 (as after the MSET test), so the source holds only the
# keys that move and each SCAN pass reads only them.
admin slots assign --dc dc1 --group g2 --force 8192-16383
redis-cli -p "$R1" FLUSHALL >/dev/null; redis-cli -p "$R2" FLUSHALL >/dev/null
"$WORK/migload" -addr "127.0.0.1:$P1" -load -keys "$NMIG" -size "$MIGVAL"
tomove=$(redis-cli -p "$R1" DBSIZE)
echo "migration: $tomove keys of ${MIGVAL}B (of $NMIG loaded) move g1 -> g2 (slots 0-8191) while $CLIENTS clients GET random keys of the $NMIG"
PROF=:
if [ -n "${MIGPROF:-}" ]; then # the node's CPU profile over the migration, and both servers' command stats
	mkdir -p "$MIGPROF"
	PROF="curl -s -o $MIGPROF/node.pprof http://$ADMIN/debug/pprof/profile?seconds=${MIGPROFSEC:-2} >/dev/null 2>&1 &"
fi
cat >"$WORK/migrate.sh" <<EOS
set -e
[ -z "${MIGPROF:-}" ] || { redis-cli -p "$R1" CONFIG RESETSTAT >/dev/null; redis-cli -p "$R2" CONFIG RESETSTAT >/dev/null; }
$PROF
t0=\$(date +%s%3N)
cpu() { for p in $R1PID $R2PID $BS1 \$PPID; do awk '{printf "%d ", \$14 + \$15}' /proc/\$p/stat; done; awk '/^cpu / {printf "%d %d\\n", \$2 + \$3 + \$4 + \$7 + \$8, \$5 + \$6}' /proc/stat; }
cpu >"$WORK/cpu"
"$WORK/redraft" --admin "$ADMIN" migrate --dc dc1 --slots 0-8191 --to g2 ${MIGARGS:-} >/dev/null
echo "\$((\$(date +%s%3N) - t0)) ms: migrate command returned" >>"$WORK/phases"
# One process polls the admin API every 5 ms (a CLI started per poll took CPU from the migration).
"$WORK/migload" -watch "$ADMIN" -dc dc1 -since "\$t0" >>"$WORK/phases"
cpu >>"$WORK/cpu"
EOS
# MIGSLICES=0.25s: also show the GET latency per quarter second and when the migration's state changed.
out=$("$WORK/migload" -addr "127.0.0.1:$P1" -keys "$NMIG" -clients "$CLIENTS" -base "$MIGBASE" -slices "${MIGSLICES:-0}" -- bash "$WORK/migrate.sh")
[ -z "${MIGSLICES:-}" ] || cat "$WORK/phases"
if [ -n "${MIGPROF:-}" ]; then
	sleep "${MIGPROFSEC:-2}"
	redis-cli -p "$R1" INFO commandstats >"$MIGPROF/source.stats"; redis-cli -p "$R2" INFO commandstats >"$MIGPROF/target.stats"
fi
left=$(($(redis-cli -p "$R1" DBSIZE) - $(redis-cli -p "$R1" EXISTS __redraft:fence))) # the fence hash stays
info=$("$WORK/redraft" --admin "$ADMIN" --json migrations --dc dc1)
mover=$(echo "$info" | awk -F': ' '/"keys_moved"/ {gsub(/,/, "", $2); print $2; exit}')
awk -v tomove="$tomove" -v left="$left" -v mover="$mover" -v val="$MIGVAL" -v out="$out" 'BEGIN {
	n = split(out, l, "\n")
	for (i = 1; i <= n; i++) { split(l[i], f, " "); r[f[1]] = l[i] }
	split(r["without"], a, " "); split(r["during"], b, " "); split(r["errors"], e, " ")
	s = b[5]
	printf "%-28s %12s\n", "migration wall time", sprintf("%.2f s (migrate command to switch committed)", s)
	printf "%-28s %12d  (%d by the mover, the rest by clients touching them; %d left on the source)\n", "keys moved", tomove - left, mover, left
	printf "%-28s %12.0f\n", "keys/s", (tomove - left) / s
	printf "%-28s %12.1f\n", "MB/s (values)", (tomove - left) * val / 1e6 / s
	printf "%-28s %9.3f ms  (p50 %.3f ms, %.0f rps)\n", "GET p99 without migration", a[4], a[3], a[2]
	printf "%-28s %9.3f ms  (p50 %.3f ms, %.0f rps, %d error replies)\n", "GET p99 during migration", b[4], b[3], b[2], e[2]
	printf "%-28s %12.2f\n", "p99 ratio during/without", b[4] / a[4]
}'
# CPU seconds the source, the target and the node spent over the migration (GET load included).
awk -v hz="$HZ" 'NR == 1 {split($0, a, " ")} NR == 2 {split($0, b, " ")
	printf "%-28s source %.2f s, target %.2f s, node %.2f s (with the GET load), GET clients %.2f s; machine %.0f %% busy\n", "CPU over the migration", (b[1] - a[1]) / hz, (b[2] - a[2]) / hz, (b[3] - a[3]) / hz, (b[4] - a[4]) / hz, 100 * (b[5] - a[5]) / (b[5] - a[5] + b[6] - a[6])}' "$WORK/cpu"
# A big collection: one hash of MIGHASH fields of 200 B values, alone on g2 (which serves every
# slot now), moves to g1 in chunks; MB/s is its MEMORY USAGE over the wall time, migrate
# command to switch (freeze barrier and the two SCAN passes included).
MIGHASH=${MIGHASH:-250000}
redis-cli -p "$R1" FLUSHALL >/dev/null; redis-cli -p "$R2" FLUSHALL >/dev/null
"$WORK/migload" -addr "127.0.0.1:$P1" -hash bighash -keys "$MIGHASH" -size 200
hmem=$(redis-cli -p "$R2" MEMORY USAGE bighash)
h0=$(date +%s%3N)
"$WORK/redraft" --admin "$ADMIN" migrate --dc dc1 --slots 0-16383 --to g1 >/dev/null
"$WORK/migload" -watch "$ADMIN" -dc dc1 >/dev/null
h1=$(date +%s%3N)
[ "$(redis-cli -p "$R1" HLEN bighash)" = "$MIGHASH" ] || { echo "bench: the big hash did not arrive whole" >&2; exit 1; }
awk -v mem="$hmem" -v ms=$((h1 - h0)) -v n="$MIGHASH" 'BEGIN {
	printf "%-28s %12.1f  (a %d-field hash of %.1f MB in %.2f s, migrate command to switch)\n", "big hash MB/s", mem / 1e6 / (ms / 1000), n, mem / 1e6, ms / 1000
}'
[ "${BENCH_ONLY:-}" = migration ] && exit 0
fi

# ---- Cross-DC replication: lag at a fixed rate, highest sustained rate ----------------------
XRATE=${XRATE:-2000}   # writes/s of the fixed-rate runs
XRATE2=${XRATE2:-5000}
XDUR=${XDUR:-10s}
echo
echo "cross-DC replication: writes through dc1's node (one group), applied on dc2's (one group); lag = write sent -> applied in dc2"
go build -o "$WORK/xdcload" ./scripts/xdcload
redis-cli -p "$R1" FLUSHALL >/dev/null; redis-cli -p "$R2" FLUSHALL >/dev/null
admin slots assign --dc dc1 --group g1 --force 0-16383
# cpu_total PID...: their utime+stime ticks together.
cpu_total() { local t=0 p; for p in "$@"; do t=$((t + $(ticks "$p"))); done; echo "$t"; }
# cpu_per_write T0 T1 WRITES: microseconds of CPU per write between two cpu_total readings.
cpu_per_write() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$HZ" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }'; }
written() { echo "$1" | awk 'NR==1 {print $2}'; }
# procsnap: per process of the cross-DC runs (dc1's node and master, dc2's node and master) its
# CPU ticks and read and write system calls (/proc/PID/io), one line each, for procsper.
procsnap() {
	local p
	for p in "$BS1" "$R1PID" "$N2PID" "$R3PID"; do
		echo "$(ticks "$p") $(awk '$1 == "syscr:" || $1 == "syscw:" {printf "%s ", $2}' "/proc/$p/io")"
	done
}
# procsper BEFORE AFTER WRITES: per process, CPU µs and read and write system calls per write.
procsper() {
	paste -d' ' "$1" "$2" | awk -v n="$3" -v hz="$HZ" 'BEGIN { split("dc1-node dc1-master dc2-node dc2-master", w, " ") }
		{ printf "%s%s %.1f us, %.2f reads, %.2f writes", (NR > 1 ? "; " : ""), w[NR], ($4 - $1) / hz * 1e6 / n, ($5 - $2) / n, ($6 - $3) / n }
		END { print "" }'
}
# Baseline: the same load on the one-DC cluster (no outbox, nothing shipped).
c0=$(cpu_total "$BS1" "$R1PID")
base=$("$WORK/xdcload" -addr "127.0.0.1:$P1" -duration 5s -clients "$CLIENTS" -prefix base)
base_cpu=$(cpu_per_write "$c0" "$(cpu_total "$BS1" "$R1PID")" "$(written "$base")")
# The fixed rate on the one-DC cluster too: its ack latency is the part of the lag that is
# not replication.
base2=$("$WORK/xdcload" -addr "127.0.0.1:$P1" -rate "$XRATE" -duration "$XDUR" -clients 20 -prefix base2)
R3=$(free_port); start_redis "$R3"; R3PID=${PIDS[-1]}
for _ in 1 2 3 4 5; do
	X2=$(free_port); X2P=$(free_port); X2A=127.0.0.1:$(free_port)
	rm -rf "$WORK/n2"
	"$WORK/redraft" node join --seed "127.0.0.1:$PEER" --id n2 --dc dc2 --listen "127.0.0.1:$X2" --peer-listen "127.0.0.1:$X2P" \
		--admin-listen "$X2A" --data-dir "$WORK/n2" --log-level "${LOG_LEVEL:-warn}" 2>"$WORK/n2.log" &
	N2PID=$!
	ok=0
	for _ in $(seq 1 200); do
		"$WORK/redraft" --admin "$X2A" health >/dev/null 2>&1 && { ok=1; break; }
		kill -0 "$N2PID" 2>/dev/null || break
		sleep 0.05
	done
	[ "$ok" = 1 ] && { PIDS+=("$N2PID"); break; }
	kill "$N2PID" 2>/dev/null || true
done
admin group add --dc dc2 --id g3 --master "127.0.0.1:$R3"
admin slots assign --dc dc2 --group g3 0-16383
until "$WORK/redraft" --admin "$ADMIN" --json status | grep -q '"to": "dc2"'; do sleep 0.05; done
wait_format # both nodes are members: the format they settle on
echo "data format $FORMAT (${REDRAFT_MAX_DATA_FORMAT:+REDRAFT_MAX_DATA_FORMAT=}${REDRAFT_MAX_DATA_FORMAT:-the latest this build runs})"
# Idle: what two DCs with nothing written cost their masters and nodes (heartbeats, pings, the
# change feed's blocked reads, tombstone collection), per second, after a settling second.
sleep 1
i0=$(cpu_total "$R1PID" "$R3PID"); n0=$(cpu_total "$BS1" "$N2PID")
if [ -n "${XPROF:-}" ]; then # the idle nodes' CPU profiles
	mkdir -p "$XPROF"
	curl -s -o "$XPROF/dc1-idle.pprof" "http://$ADMIN/debug/pprof/profile?seconds=10" &
	curl -s -o "$XPROF/dc2-idle.pprof" "http://$X2A/debug/pprof/profile?seconds=10" &
fi
sleep 10
idle=$(awk -v r="$(( $(cpu_total "$R1PID" "$R3PID") - i0 ))" -v n="$(( $(cpu_total "$BS1" "$N2PID") - n0 ))" -v hz="$HZ" \
	'BEGIN { printf "%.1f ms of CPU per second on the two masters, %.1f ms on the two nodes", r / hz * 100, n / hz * 100 }')
# masterstats NAME: with XPROF, both masters' command stats and latency histograms since the
# last call, to XPROF/dc1-master-NAME.stats and .hist, dc2-master-NAME.stats and .hist (none
# for ""), then reset them.
masterstats() {
	[ -n "${XPROF:-}" ] || return 0
	if [ -n "$1" ]; then
		redis-cli -p "$R1" INFO commandstats | grep '^cmdstat' >"$XPROF/dc1-master-$1.stats"
		redis-cli -p "$R3" INFO commandstats | grep '^cmdstat' >"$XPROF/dc2-master-$1.stats"
		redis-cli -p "$R1" LATENCY HISTOGRAM >"$XPROF/dc1-master-$1.hist" # per command, calls by µs
		redis-cli -p "$R3" LATENCY HISTOGRAM >"$XPROF/dc2-master-$1.hist"
	fi
	redis-cli -p "$R1" CONFIG RESETSTAT >/dev/null; redis-cli -p "$R3" CONFIG RESETSTAT >/dev/null
}
# At a fixed rate the rounds' sizes are the same from run to run, so the CPU per write there
# compares versions better than flat out, where it moves with the rate reached.
masterstats ""
if [ -n "${XPROF:-}" ]; then # CPU profiles of both nodes over most of the first fixed-rate run
	curl -s -o "$XPROF/dc1-node-$XRATE.pprof" "http://$ADMIN/debug/pprof/profile?seconds=8" &
	curl -s -o "$XPROF/dc2-node-$XRATE.pprof" "http://$X2A/debug/pprof/profile?seconds=8" &
fi
# nodemetrics NAME: with XPROF, both nodes' /metrics to XPROF/dc1-node-NAME.metrics and
# dc2-node-NAME.metrics (go_sched_latencies_seconds: how long goroutines waited to run).
nodemetrics() {
	[ -n "${XPROF:-}" ] || return 0
	curl -s -o "$XPROF/dc1-node-$1.metrics" "http://$ADMIN/metrics"
	curl -s -o "$XPROF/dc2-node-$1.metrics" "http://$X2A/metrics"
}
nodemetrics before
f0=$(cpu_total "$BS1" "$N2PID"); g0=$(cpu_total "$R1PID" "$R3PID")
fixed=$("$WORK/xdcload" -addr "127.0.0.1:$P1" -watch "127.0.0.1:$R3" -rate "$XRATE" -duration "$XDUR" -clients 20 -prefix fixed)
masterstats "$XRATE"
nodemetrics "$XRATE"
f1=$(cpu_total "$BS1" "$N2PID"); g1=$(cpu_total "$R1PID" "$R3PID")
fixed2=$("$WORK/xdcload" -addr "127.0.0.1:$P1" -watch "127.0.0.1:$R3" -rate "$XRATE2" -duration "$XDUR" -clients 50 -prefix fixed2)
masterstats "$XRATE2"
f2=$(cpu_total "$BS1" "$N2PID"); g2=$(cpu_total "$R1PID" "$R3PID")
fixedcpu="$(cpu_per_write "$f0" "$f1" "$(written "$fixed")") us nodes, $(cpu_per_write "$g0" "$g1" "$(written "$fixed")") us Redis"
fixed2cpu="$(cpu_per_write "$f1" "$f2" "$(written "$fixed2")") us nodes, $(cpu_per_write "$g1" "$g2" "$(written "$fixed2")") us Redis"
p0=$(cpu_total "$BS1" "$N2PID"); r0=$(cpu_total "$R1PID" "$R3PID")
if [ -n "${XPROF:-}" ]; then # CPU profiles of both nodes over the flat-out run, for go tool pprof
	mkdir -p "$XPROF"
	curl -s -o "$XPROF/dc1-node.pprof" "http://$ADMIN/debug/pprof/profile?seconds=5" &
	curl -s -o "$XPROF/dc2-node.pprof" "http://$X2A/debug/pprof/profile?seconds=5" &
fi
masterstats ""
procsnap >"$WORK/procs.before"
full=$("$WORK/xdcload" -addr "127.0.0.1:$P1" -watch "127.0.0.1:$R3" -duration 5s -clients "$CLIENTS" -prefix full)
n=$(written "$full")
masterstats flat
procsnap >"$WORK/procs.after"
pcpu=$(cpu_per_write "$p0" "$(cpu_total "$BS1" "$N2PID")" "$n"); rcpu=$(cpu_per_write "$r0" "$(cpu_total "$R1PID" "$R3PID")" "$n")
# The same flat-out run without convergence (setting convergence false: no stamps, no
# metadata; docs/convergence.md), to show what convergence costs.
admin config set convergence false
until [ "$("$WORK/redraft" --admin "$ADMIN" config get convergence 2>/dev/null)" = false ]; do sleep 0.05; done
p0=$(cpu_total "$BS1" "$N2PID"); r0=$(cpu_total "$R1PID" "$R3PID")
plain=$("$WORK/xdcload" -addr "127.0.0.1:$P1" -watch "127.0.0.1:$R3" -duration 5s -clients "$CLIENTS" -prefix plain)
np=$(written "$plain")
ppcpu=$(cpu_per_write "$p0" "$(cpu_total "$BS1" "$N2PID")" "$np"); prcpu=$(cpu_per_write "$r0" "$(cpu_total "$R1PID" "$R3PID")" "$np")
admin config set convergence true
echo "one DC, no replication:        $base"
echo "one DC, $XRATE writes/s:        $base2"
echo "two DCs idle:                  $idle"
echo "$XRATE writes/s for $XDUR:        ${fixed//$'\n'/; }; CPU per write $fixedcpu"
echo "$XRATE2 writes/s for $XDUR:        ${fixed2//$'\n'/; }; CPU per write $fixed2cpu"
echo "as fast as $CLIENTS clients go:     ${full//$'\n'/; }"
echo "same, convergence off:         ${plain//$'\n'/; }"
awk -v p="$pcpu" -v r="$rcpu" -v b="$base_cpu" 'BEGIN { printf "CPU per replicated write, flat out: %.1f us (nodes %.1f, Redis %.1f); one DC without replication: %.1f us; ratio %.2f\n", p + r, p, r, b, (p + r) / b }'
echo "per write flat out, by process: $(procsper "$WORK/procs.before" "$WORK/procs.after" "$n")"
awk -v p="$ppcpu" -v r="$prcpu" -v c="$pcpu" -v d="$rcpu" 'BEGIN { printf "CPU per replicated write without convergence: %.1f us (nodes %.1f, Redis %.1f); convergence costs %.2fx\n", p + r, p, r, (c + d) / (p + r) }'
# Convergence metadata (docs/convergence.md): bytes of the slots' metadata hashes on dc1's
# master per data key, and the tombstones dc1's node counts.
meta=$(redis-cli -p "$R1" --scan --pattern '__redraft:m:*' | awk '{print "MEMORY USAGE " $0 " SAMPLES 0"}' |
	redis-cli -p "$R1" | awk '{s += $1} END {print s + 0}')
datakeys=$(redis-cli -p "$R1" --scan | grep -vc '^__redraft:' || true)
tombs=$(curl -s "http://$ADMIN/metrics" | awk '$1 == "redraft_replication_tombstones" {print $2}')
awk -v m="$meta" -v n="$datakeys" -v t="${tombs:-0}" 'BEGIN { printf "convergence metadata: %.1f bytes per key (%d keys, %.1f MB of metadata hashes); tombstones: %d\n", (n ? m / n : 0), n, m / 1e6, t }'
b=$(echo "$base" | awk '{print $5}'); a=$(echo "$full" | awk 'NR==1 {print $5}')
s=$(echo "$full" | awk -F's after the start: ' 'NR==2 {split($2, x, " "); print x[1]}')
awk -v b="$b" -v a="$a" -v s="$s" 'BEGIN { printf "acked writes/s with 2 DCs / 1 DC: %.2f; sustained cross-DC (applied in dc2) / 1 DC: %.2f\n", a / b, s / b }'
[ "${BENCH_ONLY:-}" = xdc ] || bench_failover
