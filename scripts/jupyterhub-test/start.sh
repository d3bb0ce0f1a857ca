#!/usr/bin/env bash
# start.sh [WORKDIR] [PORT]: start a throw-away JupyterHub (hub, proxy and
# per-user servers on 127.0.0.1) for the jupyter-bridge integration tests.
# WORKDIR defaults to a new temporary directory; PORT (the public proxy
# port; the hub API uses PORT+1 and the proxy API PORT+2) defaults to a
# free one. Waits until GET /hub/api/ answers 200, then prints
#   URL=<hub base URL>  TOKEN=<service token>  PID=<hub pid>
#   WORKDIR=<dir>       USERS_DIR=<dir holding each user's notebook root>
# one per line. Stop it with stop.sh WORKDIR. JHUB_API_TOKEN picks the token
# (random by default); see jupyterhub_config.py for the other JHUB_* knobs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py=/usr/bin/python3
hub=/usr/bin/jupyterhub
if [[ ! -x $hub ]]; then
	echo "error: $hub not found; run $here/install.sh" >&2
	exit 1
fi

workdir="${1:-}"
if [[ -z $workdir ]]; then
	workdir="$(mktemp -d "${TMPDIR:-/tmp}/jupyterhub-test.XXXXXX")"
fi
mkdir -p "$workdir/users"
workdir="$(cd "$workdir" && pwd)"

port="${2:-}"
if [[ -z $port ]]; then
	# Three consecutive free ports: proxy, hub API, proxy API.
	port="$("$py" - <<'PY'
import socket
for _ in range(200):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    if p > 65000:
        continue
    ok = True
    for q in (p, p + 1, p + 2):
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            t.close()
    if ok:
        print(p)
        break
PY
)"
	[[ -n $port ]] || { echo "error: no free ports found" >&2; exit 1; }
fi

token="${JHUB_API_TOKEN:-}"
if [[ -z $token ]]; then
	token="staging-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
fi
if [[ -f $workdir/jupyterhub.pid ]] && kill -0 "$(cat "$workdir/jupyterhub.pid")" 2>/dev/null; then
	echo "error: a hub already runs for $workdir (pid $(cat "$workdir/jupyterhub.pid")); stop.sh it first" >&2
	exit 1
fi

url="http://127.0.0.1:$port"
cd "$workdir"
JHUB_WORKDIR="$workdir" JHUB_PORT="$port" JHUB_API_TOKEN="$token" \
	setsid "$py" "$hub" -f "$here/jupyterhub_config.py" >>"$workdir/jupyterhub.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$workdir/start.pid"

wait_s="${JHUB_START_WAIT:-60}"
deadline=$((SECONDS + wait_s))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/hub/api/")" == 200 ]]; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "error: jupyterhub exited during start; last log lines:" >&2
		tail -n 30 "$workdir/jupyterhub.log" >&2
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "error: jupyterhub did not answer at $url/hub/api/ within ${wait_s}s; last log lines:" >&2
		tail -n 30 "$workdir/jupyterhub.log" >&2
		kill "$pid" 2>/dev/null || true
		exit 1
	fi
	sleep 0.2
done

echo "URL=$url"
echo "TOKEN=$token"
echo "PID=$pid"
echo "WORKDIR=$workdir"
echo "USERS_DIR=$workdir/users"
