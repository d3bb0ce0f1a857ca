#!/usr/bin/env bash
# Run the pinned, current nats-server release as a separate process for tests
# that need an external JetStream server.
#
# usage:
#   scripts/nats-test-server.sh start        start a server, print env lines
#   scripts/nats-test-server.sh stop [PID]   stop PID, else $NATS_TEST_PID,
#                                            else the last server started
#   scripts/nats-test-server.sh install      only install the pinned binary
#   scripts/nats-test-server.sh version      print the pinned version
#
# "start" prints shell-quoted assignments on stdout (everything else goes to
# stderr), so a caller can do:
#   out=$(scripts/nats-test-server.sh start) && eval "$out"
#   export STAGING_TEST_NATS_URL
#   ...
#   scripts/nats-test-server.sh stop "$NATS_TEST_PID"
# Printed variables:
#   STAGING_TEST_NATS_URL  nats://127.0.0.1:PORT (JetStream enabled)
#   NATS_TEST_PID          server process id
#   NATS_TEST_DIR          temp dir with the JetStream store and the logs
#                          (removed by "stop")
#
# The version is the libs module's requirement of
# github.com/nats-io/nats-server/v2 (fallback v2.15.3); override it with
# NATS_TEST_SERVER_VERSION. The binary lives in <repo>/.tools/bin.
set -euo pipefail

readonly nats_module=github.com/nats-io/nats-server/v2
readonly fallback_version=v2.15.3

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="/usr/local/go/bin:$PATH"
PATH="$(go env GOPATH)/bin:$PATH"
tools_bin=${TOOLS_BIN:-$repo_root/.tools/bin}
nats_bin=$tools_bin/nats-server
run_dir=$repo_root/.tools/run
last_pid_file=$run_dir/nats-test-server.pid

log() { printf 'nats-test-server: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pinned_version: NATS_TEST_SERVER_VERSION, else the version the libs module
# requires (go list, then a plain go.mod parse if the workspace does not
# resolve right now), else the fallback.
pinned_version() {
	if [[ -n ${NATS_TEST_SERVER_VERSION:-} ]]; then
		printf '%s\n' "$NATS_TEST_SERVER_VERSION"
		return
	fi
	local v=""
	v=$(cd "$repo_root/libs" && go list -m -f '{{.Version}}' "$nats_module" 2>/dev/null) || v=""
	if [[ ! $v =~ ^v[0-9] ]]; then
		v=$(awk -v m="$nats_module" '
			$1 == "require" && $2 == m { print $3; exit }
			$1 == m && $2 ~ /^v[0-9]/ { print $2; exit }
		' "$repo_root/libs/go.mod" 2>/dev/null) || v=""
	fi
	[[ $v =~ ^v[0-9] ]] || v=$fallback_version
	printf '%s\n' "$v"
}

# ensure_installed VERSION: install nats-server@VERSION unless
# "nats-server --version" already reports it.
ensure_installed() {
	local version=$1 have=""
	if [[ -x $nats_bin ]]; then
		have=$("$nats_bin" --version 2>/dev/null | awk '{ print $NF }') || have=""
	fi
	if [[ $have == "$version" ]]; then
		log "nats-server $version already installed at $nats_bin"
		return
	fi
	log "installing $nats_module@$version into $tools_bin${have:+ (found $have)}"
	mkdir -p "$tools_bin"
	(cd / && GOWORK=off GOFLAGS='' GOBIN="$tools_bin" go install "$nats_module@$version")
	have=$("$nats_bin" --version 2>/dev/null | awk '{ print $NF }') || have=""
	[[ $have == "$version" ]] || die "$nats_bin reports '${have:-nothing}', want $version"
}

# alive PID: the process exists and is not a zombie. (The server is
# reparented once "start" returns; if nobody reaps it promptly, kill -0 would
# keep succeeding on the zombie.)
alive() {
	local state
	state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# is_our_server PID: PID is alive and is a nats-server process.
is_our_server() {
	local pid=$1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'nats-server'
}

# healthy MONPORT: the monitoring endpoint reports JetStream ready.
healthy() {
	local port=$1
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -m 2 "http://127.0.0.1:$port/healthz?js-enabled-only=true" >/dev/null 2>&1
		return
	fi
	# No curl: speak HTTP/1.0 over bash's /dev/tcp.
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
		IFS= read -r status <&3
		[[ $status == *" 200 "* ]]
	' _ "$port" >/dev/null 2>&1
}

cmd_start() {
	local version dir pid ports_file="" nats_port="" mon_port="" i
	version=$(pinned_version)
	ensure_installed "$version"
	dir=$(mktemp -d "${TMPDIR:-/tmp}/skao-nats-test.XXXXXX")
	mkdir -p "$dir/ports" "$run_dir"

	# Port -1 lets the server bind a random free port itself (no race between
	# picking a port and binding it); --ports_file_dir tells us which it got.
	"$nats_bin" -a 127.0.0.1 -p -1 -m -1 -js -sd "$dir/jetstream" \
		--ports_file_dir "$dir/ports" -l "$dir/server.log" \
		</dev/null >"$dir/stdout.log" 2>&1 &
	pid=$!
	printf '%s\n' "$dir" >"$run_dir/nats-test-server.$pid.dir"
	printf '%s\n' "$pid" >"$last_pid_file"

	# Wait up to 30 s for the ports file, then for /healthz with JetStream.
	for ((i = 0; i < 300; i++)); do
		if ! alive "$pid"; then
			tail -n 20 "$dir/server.log" "$dir/stdout.log" >&2 || true
			rm -f "$run_dir/nats-test-server.$pid.dir" "$last_pid_file"
			rm -rf "$dir"
			die "nats-server exited during startup"
		fi
		if [[ -z $mon_port ]]; then
			ports_file=$(find "$dir/ports" -name '*.ports' -print -quit)
			if [[ -n $ports_file && -s $ports_file ]]; then
				nats_port=$(grep -o '"nats://[^"]*"' "$ports_file" | head -n 1 | sed -E 's/.*:([0-9]+)"$/\1/') || true
				mon_port=$(grep -o '"http://[^"]*"' "$ports_file" | head -n 1 | sed -E 's/.*:([0-9]+)"$/\1/') || true
			fi
		fi
		if [[ -n $mon_port && -n $nats_port ]] && healthy "$mon_port"; then
			log "nats-server $version pid $pid ready on nats://127.0.0.1:$nats_port (monitor :$mon_port, store $dir)"
			printf 'STAGING_TEST_NATS_URL=%q\n' "nats://127.0.0.1:$nats_port"
			printf 'NATS_TEST_PID=%q\n' "$pid"
			printf 'NATS_TEST_DIR=%q\n' "$dir"
			return 0
		fi
		sleep 0.1
	done
	tail -n 20 "$dir/server.log" "$dir/stdout.log" >&2 || true
	stop_pid "$pid"
	die "nats-server did not become healthy within 30s"
}

# stop_pid PID: TERM (then KILL after 10 s) a nats-server we started and
# remove its temp dir.
stop_pid() {
	local pid=$1 dir="" i
	local dir_file=$run_dir/nats-test-server.$pid.dir
	[[ -f $dir_file ]] && dir=$(<"$dir_file")
	if is_our_server "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			log "pid $pid ignored SIGTERM, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		log "stopped nats-server pid $pid"
	else
		log "no nats-server running as pid $pid"
	fi
	# Only ever remove a directory this script created.
	if [[ -n $dir && $(basename "$dir") == skao-nats-test.* && -d $dir ]]; then
		rm -rf "$dir"
	fi
	rm -f "$dir_file"
	if [[ -f $last_pid_file && $(<"$last_pid_file") == "$pid" ]]; then
		rm -f "$last_pid_file"
	fi
}

cmd_stop() {
	local pid=${1:-${NATS_TEST_PID:-}}
	if [[ -z $pid && -f $last_pid_file ]]; then
		pid=$(<"$last_pid_file")
	fi
	if [[ -z $pid ]]; then
		log "nothing to stop (no PID given, no NATS_TEST_PID, no $last_pid_file)"
		return 0
	fi
	[[ $pid =~ ^[0-9]+$ ]] || die "not a pid: $pid"
	stop_pid "$pid"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop "${2:-}" ;;
install) ensure_installed "$(pinned_version)" ;;
version) pinned_version ;;
*)
	echo "usage: $0 {start|stop [PID]|install|version}" >&2
	exit 2
	;;
esac
