#!/usr/bin/env bash
# scripts/bench.sh — `make bench`: a short run of every chatbench scenario
# (under two minutes) against a private one-node chatserver (SQLite, memory
# bus) on free loopback ports, then, with CLUSTER=1, against a private
# two-server cluster (MariaDB, Redis, nginx; scripts/cluster, the tool behind
# `make cluster`, on free ports and in a temporary state directory). It
# prints each run's summary and a table of the figures next to the targets
# (docs/benchmarks.md), and stops everything it started.
#
# Servers run with --bcrypt-cost 4 and the per-connection rate limit off
# (--msg-rate 0 --msg-burst 0), as for every benchmark.
#
# Knobs (environment): DURATION (seconds of sending per traffic scenario,
# default 5), CONNS (default 5000), STORM (default 5000), CLUSTER=1,
# KEEP=1 (keep the temporary directory with logs and JSON results).
set -euo pipefail
export GOTOOLCHAIN=local

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-5}
CONNS=${CONNS:-5000}
STORM=${STORM:-5000}
CLUSTER=${CLUSTER:-0}

go build -o bin/ ./cmd/chatserver ./cmd/chatbench
if [[ $CLUSTER == 1 ]]; then
	go build -o bin/cluster ./scripts/cluster
fi

work=$(mktemp -d /tmp/chatbench.XXXXXX)
results=$work/results.jsonl
server_pid=
cluster_up=0

cleanup() {
	local rc=$?
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if [[ $cluster_up == 1 ]]; then
		bin/cluster down --dir "$work/cluster" >/dev/null || echo "bench: cluster down failed; see $work/cluster" >&2
	fi
	if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
		echo "bench: logs and results kept in $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The servers may hold ~CONNS connections: give them (and chatbench) the hard limit.
ulimit -n "$(ulimit -Hn)"

# busy PORT: something listens on 127.0.0.1:PORT.
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# freeports N: N consecutive free ports below the ephemeral range.
freeports() {
	local n=$1 p i ok
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		ok=1
		for ((i = 0; i < n; i++)); do
			if busy $((p + i)); then ok=0; break; fi
		done
		if [[ $ok == 1 ]]; then echo "$p"; return 0; fi
	done
	echo "bench: no free ports" >&2
	return 1
}

bench() { # bench LABEL ARGS...: one chatbench run; its JSON line goes to $results
	local label=$1
	shift
	echo
	echo "=== $label: chatbench $*"
	local line rc=0
	line=$(bin/chatbench --json --quiet "$@") || rc=$?
	if [[ -n $line ]]; then
		echo "$line" | jq -c --arg l "$label" '. + {"label": $l}' >>"$results"
	fi
	if [[ $rc != 0 ]]; then
		echo "bench: $label: chatbench exited with status $rc" >&2
		failed+=("$label")
	fi
}
failed=()

server_flags=(--bcrypt-cost 4 --msg-rate 0 --msg-burst 0 --log-level warn)

# --- one node: SQLite, memory bus ---------------------------------------
port=$(freeports 2)
addr=127.0.0.1:$port
admin=127.0.0.1:$((port + 1))
echo "bench: chatserver on $addr (admin $admin), store $work/chat.db"
bin/chatserver --listen "$addr" --store "sqlite:$work/chat.db" --admin "$admin" "${server_flags[@]}" \
	>"$work/chatserver.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
	if curl -fs "http://$admin/healthz" >/dev/null 2>&1 && busy "$port"; then break; fi
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "bench: chatserver exited:" >&2
		cat "$work/chatserver.log" >&2
		exit 1
	fi
	sleep 0.1
done
busy "$port" || { echo "bench: chatserver not listening on $addr" >&2; exit 1; }

one=(--addr "$addr" --server-pid "$server_pid")
d=${DURATION}s
bench "1node pairs max" "${one[@]}" --scenario pairs --pairs 50 --rate 0 --inflight 16 --duration "$d"
bench "1node pairs 10k/s" "${one[@]}" --scenario pairs --pairs 100 --rate 100 --duration "$d"
bench "1node group 2x500" "${one[@]}" --scenario group --group-size 500 --groups 2 --rate 500 --duration "$d"
bench "1node conns $CONNS" "${one[@]}" --scenario conns --conns "$CONNS" --duration "$d" --setup-conc 128
bench "1node storm $STORM" "${one[@]}" --scenario storm --storm "$STORM" --duration 30s --setup-conc 128

kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=

# --- cluster: MariaDB, Redis, two chatservers, nginx --------------------
if [[ $CLUSTER == 1 ]]; then
	base=$(freeports 5)
	s1=$base s2=$((base + 2)) ngx=$((base + 4))
	cargs=()
	for f in "${server_flags[@]}"; do cargs+=("--server-arg=$f"); done
	echo
	echo "bench: cluster: s1 :$s1, s2 :$s2, nginx :$ngx, state $work/cluster"
	cluster_up=1
	bin/cluster up --dir "$work/cluster" --server-ports "$s1,$s2" --nginx-port "$ngx" "${cargs[@]}" >"$work/cluster-up.log"
	pid1=$(jq -r '.services[] | select(.name=="s1") | .pid' "$work/cluster/state.json")
	pid2=$(jq -r '.services[] | select(.name=="s2") | .pid' "$work/cluster/state.json")
	both=(--server-pid "$pid1,$pid2")
	# Directly to s1 and s2 (PROXY header as nginx sends it): every pair crosses servers.
	direct=(--addr "127.0.0.1:$s1,127.0.0.1:$s2" --proxy-protocol "${both[@]}")
	bench "cluster pairs max (crossing)" "${direct[@]}" --scenario pairs --pairs 50 --rate 0 --inflight 16 --duration "$d"
	bench "cluster pairs 5k/s (crossing)" "${direct[@]}" --scenario pairs --pairs 50 --rate 100 --duration "$d"
	bench "cluster pairs 5k/s (nginx)" --addr "127.0.0.1:$ngx" "${both[@]}" --scenario pairs --pairs 50 --rate 100 --duration "$d"
	bench "cluster group 2x500 (crossing)" "${direct[@]}" --scenario group --group-size 500 --groups 2 --rate 500 --duration "$d"
fi

# --- the figures next to the targets ------------------------------------
echo
echo "=== figures (targets: docs/benchmarks.md)"
jq -r '
	def ms(x): if x == null then "-" else ((x / 10 | round) / 100 | tostring) end;
	[.label,
	 (if .storm then "storm \(.storm.ok)/\(.storm.clients) in \(.storm.total_ms) ms, login p99 \(ms(.storm.login.p99_us)) ms"
	  elif .conns then "\(.conns.open) conns, \(.conns.rss_per_conn_b) B/conn RSS (\(.conns.rss_delta_per_conn_b) over baseline), ping p99 \(ms(.conns.ping.p99_us)) ms"
	  else "\(.acks_per_s | round) acks/s, \(.deliveries_per_s | round) deliveries/s, ack p99 \(ms(.send_ack.p99_us)) ms, delivery p99 \(ms(.send_delivery.p99_us)) ms, lost \(.lost) (\(.lost_in_history) in HISTORY) dup \(.duplicated) ooo \(.out_of_order)"
	  end)] | @tsv' "$results" | column -t -s $'\t'
if ((${#failed[@]} > 0)); then
	echo "bench: failed: ${failed[*]}" >&2
	exit 1
fi
