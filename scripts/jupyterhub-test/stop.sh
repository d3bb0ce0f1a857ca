#!/usr/bin/env bash
# stop.sh WORKDIR: stop the JupyterHub that start.sh started in WORKDIR.
# SIGTERM to the hub stops the proxy and the single-user servers too; if the
# hub was killed harder, this instance's leftovers (the proxy by its pid
# file, single-user servers by the JHUB_OWNER=WORKDIR marker in their
# environment) are killed by pid. Other hubs on the machine are untouched.
set -euo pipefail

workdir="${1:?usage: stop.sh WORKDIR}"
workdir="$(cd "$workdir" && pwd)"

pids_of_instance() {
	local f pid
	for f in "$workdir/start.pid" "$workdir/jupyterhub.pid" "$workdir/jupyterhub-proxy.pid"; do
		[[ -s $f ]] && pid="$(cat "$f")" && kill -0 "$pid" 2>/dev/null && echo "$pid"
	done
	for f in /proc/[0-9]*/environ; do
		pid="${f#/proc/}"
		pid="${pid%/environ}"
		if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF "JHUB_OWNER=$workdir"; then
			echo "$pid"
		fi
	done
	return 0
}

hub=""
[[ -s $workdir/start.pid ]] && hub="$(cat "$workdir/start.pid")"
if [[ -n $hub ]] && kill -0 "$hub" 2>/dev/null; then
	kill -TERM "$hub" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$hub" 2>/dev/null || break
		sleep 0.1
	done
fi

mapfile -t left < <(pids_of_instance | sort -u)
if ((${#left[@]} > 0)); then
	kill -TERM "${left[@]}" 2>/dev/null || true
	for ((i = 0; i < 30; i++)); do
		mapfile -t left < <(pids_of_instance | sort -u)
		((${#left[@]} == 0)) && break
		sleep 0.1
	done
	((${#left[@]} == 0)) || kill -KILL "${left[@]}" 2>/dev/null || true
fi
rm -f "$workdir/start.pid"
