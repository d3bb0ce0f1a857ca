#!/usr/bin/env bash
# Run the four standalone services against a local nats-server configured
# with the per-service users and subject permissions of
# deploy/nats/nats-values.yaml (the values for the upstream NATS chart), stage
# a local_copy (with a lifetime: its expiry schedule) and a direct_download through the gateway (with an
# Idempotency-Key, the download proxied through the gateway, the request's
# live events, the history query, the log window), have the audit record a
# request queued past the command queue's max age as failed (queue_expired), and fail on any
# "Permissions Violation" in the server log or on a request that does not
# succeed. Needs go, python3 with PyYAML and curl; the pinned nats-server
# comes from scripts/nats-test-server.sh install.
#
# usage: scripts/deploy-nats-check.sh      (scripts/deploy-check.sh --nats)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
export PATH="/usr/local/go/bin:$PATH"
log() { printf 'deploy-nats-check: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

python3 -c 'import yaml' 2>/dev/null || { log "SKIP: python3 with PyYAML is needed"; exit 0; }
scripts/nats-test-server.sh install >/dev/null
nats_server=${TOOLS_BIN:-$repo_root/.tools/bin}/nats-server

work=$(mktemp -d)
pids=()
cleanup() {
	local p i
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# Bounded: a process that does not stop within 15 s is killed, so a
	# hung service fails the check instead of hanging CI.
	for ((i = 0; i < 150; i++)); do
		local alive=false
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=true; done
		$alive || break
		sleep 0.1
	done
	for p in "${pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			echo "deploy-nats-check: pid $p did not stop within 15 s; killing it" >&2
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)

# nats-server configuration: the chart's config.merge, with test passwords
# for the << $VAR >> references (NATS configuration accepts JSON).
python3 - "$work" "$nats_port" <<'PY'
import json, os, re, sys, yaml
work, port = sys.argv[1], int(sys.argv[2])
merge = yaml.safe_load(open(os.environ.get("NATS_VALUES", "deploy/nats/nats-values.yaml")))["config"]["merge"]
def fill(v):
    if isinstance(v, dict): return {k: fill(x) for k, x in v.items()}
    if isinstance(v, list): return [fill(x) for x in v]
    if isinstance(v, str):
        m = re.fullmatch(r"<< \$([A-Z_]+) >>", v)
        if m: return "pw-" + m.group(1).lower()
    return v
conf = {"listen": f"127.0.0.1:{port}", "jetstream": {"store_dir": f"{work}/js"}}
conf.update(fill(merge))
open(f"{work}/nats.conf", "w").write(json.dumps(conf, indent=2))
PY
"$nats_server" -c "$work/nats.conf" -l "$work/nats.log" &
pids+=($!)
url() { printf 'nats://%s:pw-%s@127.0.0.1:%s' "$1" "$(tr '-' '_' <<<"$1")_password" "$nats_port"; }

log "building the services"
mkdir -p "$work/bin" "$work/storage/sample" "$work/user_area"
for s in gateway stager jupyter-bridge audit; do
	CGO_ENABLED=0 go build -trimpath -o "$work/bin/$s" "./services/$s/cmd/$s"
done
echo "hello from the permissions check" >"$work/storage/sample/hello.txt"

for i in $(seq 50); do grep -q 'Server is ready' "$work/nats.log" 2>/dev/null && break; sleep 0.1; done
http=$(free_port) dl=$(free_port)
declare -A ops
start() {
	local s=$1; shift
	ops[$s]=$(free_port)
	env STAGING_NATS_URL="$(url "$s")" STAGING_OPS_ADDR="127.0.0.1:${ops[$s]}" STAGING_LOG_LEVEL=debug "$@" \
		"$work/bin/$s" >"$work/$s.log" 2>&1 &
	pids+=($!)
}
start audit STAGING_SQLITE_PATH="$work/audit.db" STAGING_AUDIT_QUEUE_SWEEP_INTERVAL=1s
start stager STAGING_SOURCE_ROOT="$work/storage" STAGING_USER_AREA_ROOT="$work/user_area" STAGING_DOWNLOAD_ADDR="127.0.0.1:$dl"
# A stand-in hub that answers the bridge's readiness ping (GET /hub/api/user).
hub=$(free_port)
python3 - "$hub" >"$work/hub.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'{"kind": "service", "name": "staging"}')
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)
start jupyter-bridge STAGING_SOURCE_ROOT="$work/storage" JUPYTERHUB_URL="http://127.0.0.1:$hub" JUPYTERHUB_API_TOKEN=unused
start gateway STAGING_HTTP_ADDR="127.0.0.1:$http" STAGING_STAGER_DOWNLOAD_URL="http://127.0.0.1:$dl" STAGING_AUTH_MODE=none

for s in audit stager jupyter-bridge gateway; do
	ok=false
	for i in $(seq 100); do
		if curl -fsS "http://127.0.0.1:${ops[$s]}/readyz" >/dev/null 2>&1; then ok=true; break; fi
		sleep 0.2
	done
	$ok || { tail -20 "$work/$s.log" >&2; die "$s not ready"; }
done
log "all four services ready"

api=http://127.0.0.1:$http
stage() {
	curl -fsS -X POST "$api/api/v1/stagings" -H 'Content-Type: application/json' -H "Idempotency-Key: $2" -d "$1" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
wait_done() {
	local id=$1 body status
	for i in $(seq 100); do
		body=$(curl -fsS "$api/api/v1/stagings/$id")
		status=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$body")
		case $status in
			succeeded) printf '%s\n' "$body"; return 0 ;;
			failed | rejected) die "request $id $status: $body" ;;
		esac
		sleep 0.1
	done
	die "request $id did not finish: $body"
}
id1=$(stage '{"method":"local_copy","username":"alice","local_path_on_storage":"sample/hello.txt","relative_path":"hello.txt","lifetime":3600}' key-1)
wait_done "$id1" >/dev/null
[[ -f $work/user_area/alice/hello.txt ]] || die "local_copy did not stage the file"
log "ok: local_copy $id1"
id2=$(stage '{"method":"direct_download","username":"bob","local_path_on_storage":"sample/hello.txt","relative_path":"hello.txt"}' key-2)
body=$(wait_done "$id2")
link=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("download_url", ""))' "$body")
[[ -n $link ]] || die "no download_url in $body"
[[ $link == http* ]] || link=$api$link
curl -fsS "$link" | grep -q 'permissions check' || die "download through the gateway failed: $link"
log "ok: direct_download $id2, link served through the gateway"
curl -fsS -X POST "$api/api/v1/stagings" -H 'Content-Type: application/json' -H 'Idempotency-Key: key-1' \
	-d '{"method":"local_copy","username":"alice","local_path_on_storage":"sample/hello.txt","relative_path":"hello.txt","lifetime":3600}' >/dev/null ||
	die "replayed Idempotency-Key refused"
curl -fsS --max-time 3 "$api/api/v1/stagings/$id1/events" -o "$work/events.txt" 2>/dev/null || true
grep -q 'succeeded' "$work/events.txt" || log "warning: no live events read for $id1 (endpoint answered: $(head -c 200 "$work/events.txt"))"
for i in $(seq 50); do
	curl -fsS "$api/api/v1/stagings?username=alice" | grep -q "$id1" && break
	sleep 0.1
done
curl -fsS "$api/api/v1/stagings?username=alice" | grep -q "$id1" || die "the audit's history does not list $id1"
log "ok: history query answered by the audit"
curl -fsS "$api/logs/" -o /dev/null || log "warning: GET /logs/ failed"
# The audit reads the queue metrics from JetStream with its own permissions.
metrics=$(curl -fsS "http://127.0.0.1:${ops[audit]}/metrics") || die "the audit's /metrics did not answer"
grep -qx 'staging_queue_up 1' <<<"$metrics" || die "the audit could not read the queue metrics (staging_queue_up is not 1)"
grep -q '^staging_consumer_pending_messages{consumer="stager",stream="STAGING_REQUESTS"}' <<<"$metrics" ||
	die "the audit's /metrics has no pending count of the stager's consumer"
log "ok: the audit reports the queue metrics"

# A request queued eight days ago (past the queue's default max age of 7
# days): its queued event, published as the gateway would (a plain NATS
# publish, which the stream stores), and the audit records it as failed.
id3=aaaaaaaa-0000-4000-8000-$(printf '%012d' $$)
python3 - "$nats_port" "$id3" <<'PY' || die "could not publish the old queued event"
import datetime, json, socket, sys
port, rid = int(sys.argv[1]), sys.argv[2]
when = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
ev = json.dumps({"spec_version": "1.0", "id": rid + "-queued", "type": "queued", "time": when, "source": "gateway",
                 "request_id": rid, "method": "local_copy", "username": "carol", "local_path_on_storage": "sample/hello.txt",
                 "relative_path": "old.txt", "origin": "gateway"}).encode()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.recv(4096)  # INFO
s.sendall(b'CONNECT {"user":"gateway","pass":"pw-gateway_password","verbose":false,"pedantic":false}\r\n' +
          b"PUB staging.events.%s %d\r\n%s\r\nPING\r\n" % (rid.encode(), len(ev), ev))
reply = b""
while b"PONG" not in reply and b"-ERR" not in reply:
    reply += s.recv(4096)
sys.exit(1 if b"-ERR" in reply else 0)
PY
expired=false
for i in $(seq 100); do
	if curl -fsS "$api/api/v1/stagings/$id3" 2>/dev/null | grep -q '"queue_expired"'; then expired=true; break; fi
	sleep 0.2
done
$expired || die "the audit did not record $id3, queued eight days ago, as failed (queue_expired): $(curl -sS "$api/api/v1/stagings/$id3")"
log "ok: a request queued past the queue's max age failed with queue_expired"

sleep 1
if grep -i 'permissions violation' "$work/nats.log" >&2; then
	die "permission violations (above): deploy/nats/nats-values.yaml misses a subject"
fi
if grep -il 'permissions violation' "$work"/*.log >/dev/null 2>&1; then
	grep -i 'permissions violation' "$work"/*.log >&2
	die "a service reported a permission violation"
fi
log "ok: no permission violation; the per-service NATS permissions suffice"
