#!/usr/bin/env bash
# A local 3-node Coffer cluster on loopback, for development.
#
#   scripts/cluster.sh start    start n1 (bootstrap), n2 and n3 (join n1),
#                               wait for a leader and three voters, run
#                               `operator init` once, print the exports
#   scripts/cluster.sh stop     SIGTERM every node and wait for it to exit
#   scripts/cluster.sh status   health of each node
#
# Typical use:   eval "$(scripts/cluster.sh start)"
# (progress goes to stderr; only the export lines go to stdout).
#
# Environment:
#   BASE_PORT      first port (default 7700, or the one CLUSTER_DIR was
#                  created with). Node i (0,1,2) uses BASE_PORT+10*i for
#                  HTTP, +1 for Raft, +2 for gossip.
#   CLUSTER_DIR    state directory (default ./tmp/cluster under the repo)
#   COFFER_BIN     binary (default ./bin/coffer; built with `make build`
#                  when missing)
#   START_TIMEOUT  seconds to wait for the cluster to form (default 60)
#   STOP_TIMEOUT   seconds to wait for a node to exit on SIGTERM before
#                  SIGKILL (default 15)
#   LOG_LEVEL      server --log-level (default info)
#   SERVER_ARGS    extra server flags for every node (word-split), e.g.
#                  SERVER_ARGS="--pprof-addr 127.0.0.1:0"
#
# Restarting `start` over an existing CLUSTER_DIR reuses its root key, data
# dirs and root token.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/tmp/cluster}
# A cluster keeps its ports: Raft stores its peers' addresses in the data
# dirs. The ports of an existing CLUSTER_DIR are recorded in base-port.
STORED_BASE_PORT=""
if [[ -f $CLUSTER_DIR/base-port ]]; then
	STORED_BASE_PORT=$(<"$CLUSTER_DIR/base-port")
fi
BASE_PORT=${BASE_PORT:-${STORED_BASE_PORT:-7700}}
COFFER_BIN=${COFFER_BIN:-$ROOT/bin/coffer}
START_TIMEOUT=${START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-15}
LOG_LEVEL=${LOG_LEVEL:-info}
NODES=(n1 n2 n3)

log() { printf '%s\n' "$*" >&2; }
die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }

if ! [[ $BASE_PORT =~ ^[0-9]+$ ]] || ((BASE_PORT < 1 || BASE_PORT + 22 > 65535)); then
	die "BASE_PORT must be a port number with room for 23 ports above it (got '$BASE_PORT')"
fi

# port NODE_INDEX OFFSET
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
http_addr() { echo "127.0.0.1:$(port "$1" 0)"; }
cluster_addr() { echo "127.0.0.1:$(port "$1" 1)"; }
gossip_addr() { echo "127.0.0.1:$(port "$1" 2)"; }
url() { echo "http://$(http_addr "$1")"; }
pidfile() { echo "$CLUSTER_DIR/${NODES[$1]}.pid"; }
logfile() { echo "$CLUSTER_DIR/${NODES[$1]}.log"; }

# now: seconds since the epoch (bash 5 has EPOCHSECONDS; date otherwise).
now() { if [[ -n ${EPOCHSECONDS:-} ]]; then echo "$EPOCHSECONDS"; else date +%s; fi; }

# node_pid I: the pid of node I when it runs (and is a coffer process), else
# nothing. A stale pid file whose pid was reused is ignored.
node_pid() {
	local f pid
	f=$(pidfile "$1")
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'coffer.* server'; then
		return 0
	fi
	echo "$pid"
}

# json_field NAME: the first string or number value of "NAME" in the JSON on
# stdin (good enough for the flat answers of health and init).
json_field() {
	sed -n -E "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"?([^\",}]*)\"?.*/\1/p" | head -n 1
}


ensure_binary() {
	if [[ ! -x $COFFER_BIN ]]; then
		[[ $COFFER_BIN == "$ROOT/bin/coffer" ]] || die "COFFER_BIN $COFFER_BIN is not executable"
		log "building bin/coffer"
		make -s build >&2
	fi
}

start_node() {
	local i=$1 name=${NODES[$1]} pid
	pid=$(node_pid "$i")
	if [[ -n $pid ]]; then
		log "$name already running (pid $pid)"
		return 0
	fi
	local args=(
		server
		--node-id "$name"
		--data-dir "$CLUSTER_DIR/$name"
		--http-addr "$(http_addr "$i")"
		--cluster-addr "$(cluster_addr "$i")"
		--gossip-addr "$(gossip_addr "$i")"
		--root-key-file "$CLUSTER_DIR/root.key"
		--audit-file "$CLUSTER_DIR/$name.audit.jsonl"
		--log-level "$LOG_LEVEL"
	)
	if [[ -n ${SERVER_ARGS:-} ]]; then
		# shellcheck disable=SC2206 # word splitting is the point
		args+=(${SERVER_ARGS})
	fi
	if ((i == 0)); then
		args+=(--bootstrap)
	else
		args+=(--join "$(gossip_addr 0)")
	fi
	mkdir -p "$CLUSTER_DIR/$name"
	nohup "$COFFER_BIN" "${args[@]}" >>"$(logfile "$i")" 2>&1 </dev/null &
	echo $! >"$(pidfile "$i")"
	log "started $name (pid $!): http $(url "$i"), log $(logfile "$i")"
}

# check_alive: fail with the log tail of any node that exited.
check_alive() {
	local i
	for i in "${!NODES[@]}"; do
		if [[ -z $(node_pid "$i") ]]; then
			log "${NODES[$i]} exited; last lines of $(logfile "$i"):"
			tail -n 20 "$(logfile "$i")" >&2 || true
			die "start failed"
		fi
	done
}

# wait_ready: until every node serves (health 200), is a voter (leader or
# follower) and names the same leader, or START_TIMEOUT passes.
wait_ready() {
	local deadline=$(($(now) + START_TIMEOUT)) i h serving role leader leaders ok
	local -a why
	while :; do
		check_alive
		ok=1 leaders="" why=()
		for i in "${!NODES[@]}"; do
			serving=1
			h=$("$COFFER_BIN" health --json --addr "$(url "$i")" 2>/dev/null) || serving=0
			role=$(json_field role <<<"$h")
			leader=$(json_field leader_id <<<"$h")
			if ((!serving)); then
				ok=0 why+=("${NODES[$i]}: not serving")
			elif [[ $role != leader && $role != follower ]]; then
				ok=0 why+=("${NODES[$i]}: role ${role:-unknown}")
			elif [[ -z $leader ]]; then
				ok=0 why+=("${NODES[$i]}: no leader")
			else
				leaders+="$leader "
			fi
		done
		if ((ok)) && [[ $(tr ' ' '\n' <<<"$leaders" | sed '/^$/d' | sort -u | wc -l) -eq 1 ]]; then
			log "cluster ready: leader ${leaders%% *}, 3 voters"
			return 0
		fi
		if (($(now) >= deadline)); then
			log "cluster not ready after ${START_TIMEOUT}s: ${why[*]:-leaders disagree: $leaders}"
			log "logs: $CLUSTER_DIR/n*.log"
			return 1
		fi
		sleep 0.25
	done
}

# wait_initialized: until every node has applied the init entry, so the root
# token works on each of them (tokens are checked in a node's applied state).
wait_initialized() {
	local deadline=$(($(now) + START_TIMEOUT)) i n
	while :; do
		n=0
		for i in "${!NODES[@]}"; do
			if [[ $("$COFFER_BIN" health --json --addr "$(url "$i")" 2>/dev/null | json_field initialized) == true ]]; then
				n=$((n + 1))
			fi
		done
		((n == ${#NODES[@]})) && return 0
		if (($(now) >= deadline)); then
			die "only $n of ${#NODES[@]} nodes applied the init entry within ${START_TIMEOUT}s"
		fi
		sleep 0.1
	done
}

cmd_start() {
	ensure_binary
	if [[ -n $STORED_BASE_PORT && $STORED_BASE_PORT != "$BASE_PORT" ]]; then
		die "$CLUSTER_DIR was created with BASE_PORT=$STORED_BASE_PORT (Raft keeps the peers' addresses); use that, or stop the cluster and remove $CLUSTER_DIR (make clean) for a new one"
	fi
	mkdir -p "$CLUSTER_DIR"
	chmod 700 "$CLUSTER_DIR"
	echo "$BASE_PORT" >"$CLUSTER_DIR/base-port"
	if [[ ! -f $CLUSTER_DIR/root.key ]]; then
		"$COFFER_BIN" operator keygen --out "$CLUSTER_DIR/root.key" 2>/dev/null
		log "wrote a new root key to $CLUSTER_DIR/root.key"
	fi
	local i
	for i in "${!NODES[@]}"; do
		start_node "$i"
	done
	if ! wait_ready; then
		die "start failed (nodes left running; 'scripts/cluster.sh stop' stops them)"
	fi

	local tokfile=$CLUSTER_DIR/root-token out token rc=0
	out=$("$COFFER_BIN" operator init --json --addr "$(url 0)" 2>"$CLUSTER_DIR/init.err") || rc=$?
	if ((rc == 0)); then
		token=$(json_field root_token <<<"$out")
		[[ -n $token ]] || die "operator init answered without a root token"
		(umask 077 && printf '%s\n' "$token" >"$tokfile")
		chmod 600 "$tokfile"
		log "initialised the cluster; root token saved in $tokfile (mode 0600)"
	elif grep -q AlreadyExists "$CLUSTER_DIR/init.err" && [[ -s $tokfile ]]; then
		token=$(<"$tokfile")
		log "cluster already initialised; using the root token in $tokfile"
	else
		cat "$CLUSTER_DIR/init.err" >&2
		die "operator init failed"
	fi
	rm -f "$CLUSTER_DIR/init.err"
	wait_initialized
	printf 'export COFFER_ADDR=%s\n' "$(url 0)"
	printf 'export COFFER_TOKEN=%s\n' "$token"
}

cmd_stop() {
	local i pid deadline stopped=0
	local -a pids=()
	for i in "${!NODES[@]}"; do
		pid=$(node_pid "$i")
		if [[ -n $pid ]]; then
			kill -TERM "$pid" 2>/dev/null || true
			pids[i]=$pid
		fi
	done
	deadline=$(($(now) + STOP_TIMEOUT))
	for i in "${!pids[@]}"; do
		pid=${pids[i]}
		while kill -0 "$pid" 2>/dev/null; do
			if (($(now) >= deadline)); then
				log "${NODES[$i]} (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		log "stopped ${NODES[$i]} (pid $pid)"
		stopped=$((stopped + 1))
	done
	for i in "${!NODES[@]}"; do
		rm -f "$(pidfile "$i")"
	done
	((stopped > 0)) || log "no node was running"
}

cmd_status() {
	[[ -x $COFFER_BIN ]] || die "$COFFER_BIN is missing (run make build)"
	local i pid rc=0
	for i in "${!NODES[@]}"; do
		pid=$(node_pid "$i")
		echo "== ${NODES[$i]} $(url "$i") (pid ${pid:-not running})"
		"$COFFER_BIN" health --addr "$(url "$i")" 2>&1 || rc=1
	done
	return "$rc"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
	cmd_stop
	cmd_start
	;;
*)
	echo "usage: $0 start|stop|status|restart" >&2
	exit 2
	;;
esac
