# Sourced by scripts/bench.sh and scripts/luacg.sh.
# free_port: a port nothing listens on, below Linux's ephemeral range (32768-60999), so that
# no outgoing connection of a test running beside the bench holds it when we bind.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
