#!/usr/bin/env bash
# Validate the deployment artefacts without a cluster or a Docker engine:
#
#   - Helm: installs the pinned helm into .tools/bin when missing (Go module
#     proxy), then for each chart in deploy/helm: dependency build, lint
#     --strict and template with the default values and with every
#     deploy/helm/<chart>/ci/*.yaml values file (NFS/PVC volumes, ownership
#     mapping, HPA, secrets by reference), plus assertions on the rendered
#     manifests (non-root, read-only root filesystem, capabilities, no inline
#     secrets, STAGING_DEMO off) and values the charts must refuse.
#   - 1:1 configuration: each chart's `config` keys (+ the variables taken
#     from Secrets) are exactly the environment variables its binary reads
#     (the env:"..." tags in the Go sources).
#   - Compose: `docker compose config` when the compose plugin works here,
#     else a YAML parse and structure check with python3 + PyYAML, else skipped.
#   - Prometheus/Grafana: YAML/JSON parse; every metric the dashboard queries
#     exists in the Go sources; the alert rules pass promtool check and their
#     unit tests (promtool test rules), and the audit chart renders them.
#   - NATS permissions: scripts/deploy-nats-check.sh runs the four services
#     against a nats-server with the per-service users and permissions of
#     deploy/nats/nats-values.yaml and fails on any permission violation
#     (DEPLOY_CHECK_NATS=0 skips it).
#
# usage: scripts/deploy-check.sh        (make deploy-check)
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
export PATH="/usr/local/go/bin:$PATH"
charts=(gateway stager jupyter-bridge audit)
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log() { printf 'deploy-check: %s\n' "$*" >&2; }
fail() { printf 'deploy-check: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }

# --- helm --------------------------------------------------------------------
helm=$(scripts/ensure-go-tool.sh helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")
log "$("$helm" version --short)"

# assert_rendered <chart> <label> <file>: checks every rendered manifest must pass.
assert_rendered() {
	local chart=$1 label=$2 f=$3
	grep -q '^kind: Deployment' "$f" || fail "$label: no Deployment rendered"
	grep -q 'readOnlyRootFilesystem: true' "$f" || fail "$label: root filesystem not read-only"
	grep -q 'drop: \["ALL"\]' "$f" || fail "$label: capabilities not dropped"
	grep -q 'path: /healthz' "$f" || fail "$label: no /healthz probe"
	grep -q 'path: /readyz' "$f" || fail "$label: no /readyz probe"
	if grep -A1 -E 'name: STAGING_DEMO$' "$f" | grep -q '"true"'; then fail "$label: STAGING_DEMO on"; fi
	# Secrets only by reference: these variables must come from valueFrom.
	local v
	for v in STAGING_MYSQL_DSN JUPYTERHUB_API_TOKEN STAGING_JUPYTERHUB_API_TOKEN STAGING_RUCIO_PASSWORD; do
		if grep -A1 -E "name: $v\$" "$f" | grep -q 'value:'; then fail "$label: $v inline"; fi
	done
	# A NATS credentials file the chart sets lies in the Secret it mounts.
	if grep -A1 -E 'name: STAGING_NATS_(NKEY|CREDS)_FILE$' "$f" | grep -q 'value: "/etc/skao-staging/nats/' &&
		! grep -q 'mountPath: /etc/skao-staging/nats$' "$f"; then
		fail "$label: NATS credentials file set but its Secret not mounted"
	fi
	# Added capabilities: only the stager, only CHOWN and FOWNER, only with ownership on.
	local adds
	adds=$(grep -E '^\s+add: ' "$f" || true)
	if [[ -n $adds ]]; then
		if [[ $chart != stager ]]; then fail "$label: capabilities added: $adds"; fi
		if [[ $adds != *'["CHOWN","FOWNER"]'* ]]; then fail "$label: unexpected capabilities: $adds"; fi
		if grep -A1 'name: STAGING_OWNERSHIP$' "$f" | grep -q '"none"'; then fail "$label: capabilities added with ownership none"; fi
	elif [[ $chart == stager ]] && grep -A1 'name: STAGING_OWNERSHIP$' "$f" | grep -qE '"(map|passwd)"'; then
		fail "$label: ownership on but CHOWN/FOWNER not added"
	fi
	if grep -q 'runAsNonRoot: false' "$f" && ! grep -q 'add: \["CHOWN","FOWNER"\]' "$f"; then
		fail "$label: runs as root without need"
	fi
}

for chart in "${charts[@]}"; do
	dir=deploy/helm/$chart
	log "== $chart"
	"$helm" dependency build "$dir" >"$tmp/dep.log" 2>&1 || { cat "$tmp/dep.log" >&2; fail "$chart: helm dependency build"; continue; }
	value_sets=("")
	for f in "$dir"/ci/*.yaml; do [[ -e $f ]] && value_sets+=("$f"); done
	for vf in "${value_sets[@]}"; do
		label="$chart (${vf:-default values})"
		args=()
		[[ -n $vf ]] && args=(-f "$vf")
		if ! "$helm" lint --strict "$dir" "${args[@]}" >"$tmp/lint.log" 2>&1; then
			cat "$tmp/lint.log" >&2; fail "$label: helm lint --strict"
		fi
		if "$helm" template "$chart" "$dir" --namespace skao-staging "${args[@]}" >"$tmp/out.yaml" 2>"$tmp/tpl.log"; then
			assert_rendered "$chart" "$label" "$tmp/out.yaml"
			cat "$tmp/out.yaml" >>"$tmp/all-$chart.yaml"
			log "ok: $label ($(grep -c '^kind:' "$tmp/out.yaml") objects)"
		else
			cat "$tmp/tpl.log" >&2; fail "$label: helm template"
		fi
	done
done

# Values the charts must refuse.
refuse() {
	local chart=$1; shift
	if "$helm" template "$chart" "deploy/helm/$chart" "$@" >/dev/null 2>&1; then
		fail "$chart accepted: $*"
	else
		log "ok: $chart refuses $*"
	fi
}
refuse gateway --set config.demo=true
refuse gateway --set config.authMode=oidc
refuse gateway --set config.unknownKey=1
refuse stager --set storage.source.type=s3
refuse gateway --set storage.source.type=hostPath
refuse stager --set storage.userArea.type=nfs
refuse stager --set config.ownership=map
refuse stager --set config.sourceRoot=relative
refuse jupyter-bridge --set jupyterhub.url=https://hub.example.org --set jupyterhub.existingSecret=
refuse audit --set mysql.existingSecret=
refuse stager --set nats.credentialsSecret=stager-nats
refuse audit --set nats.credentialsSecret=audit-nats --set nats.credsKey=audit.creds --set nats.nkeyKey=audit.nk
refuse jupyter-bridge --set nats.nkeyKey=bridge.nk
refuse gateway --set config.natsNkeyFile=/a.nk --set config.natsCredsFile=/b.creds
refuse stager --set nats.credentialsSecret=stager-nats --set nats.nkeyKey=stager.nk --set config.natsCredsFile=/b.creds

# --- 1:1 configuration -------------------------------------------------------
# go_vars <service> <package dir>: the variables the standalone binary reads.
go_vars() {
	local svc=$1 pkgdir=$2 files
	files=$(find libs/service "$pkgdir" -maxdepth 1 -name '*.go' ! -name '*_test.go')
	# A lib whose config struct the service embeds (the site's Rucio).
	if grep -qs 'skao-staging/libs/rucio"' "$pkgdir"/*.go; then
		files+=$'\n'$(find libs/rucio -maxdepth 1 -name '*.go' ! -name '*_test.go')
	fi
	files+=$'\n'$(find "$pkgdir/cmd/$svc" -name '*.go' ! -name '*_test.go' 2>/dev/null || true)
	# shellcheck disable=SC2086
	grep -ho 'env:"[A-Z0-9_]*"' $files | sed 's/env:"\(.*\)"/\1/' | sort -u | while read -r v; do
		case $v in
			JUPYTERHUB_*) echo "$v" ;; # JupyterHub's own names, unprefixed
			*) echo "STAGING_$v" ;;
		esac
	done
	# stagingd-only variables live in cmd/stagingd, not read here.
}
# chart_vars <chart>: config keys as STAGING_* plus the variables from Secrets/other values.
chart_vars() {
	local chart=$1
	awk '/^config:/ { f = 1; next } f && /^[^ #]/ { f = 0 } f && /^  [a-zA-Z0-9]+:/ { sub(/:.*/, ""); gsub(/ /, ""); print }' \
		"deploy/helm/$chart/values.yaml" |
		sed -E 's/([a-z0-9])([A-Z])/\1_\2/g' | tr '[:lower:]' '[:upper:]' | sed 's/^/STAGING_/'
	case $chart in
		audit) echo STAGING_MYSQL_DSN ;;
		jupyter-bridge) printf '%s\n' JUPYTERHUB_URL JUPYTERHUB_API_TOKEN STAGING_RUCIO_PASSWORD ;;
		stager) echo STAGING_RUCIO_PASSWORD ;;
	esac
}
declare -A pkg=([gateway]=services/gateway [stager]=services/stager [jupyter-bridge]=services/jupyter-bridge [audit]=services/audit)
for chart in "${charts[@]}"; do
	go_vars "$chart" "${pkg[$chart]}" | sort -u >"$tmp/go-$chart"
	chart_vars "$chart" | sort -u >"$tmp/chart-$chart"
	if ! diff -u "$tmp/go-$chart" "$tmp/chart-$chart" >"$tmp/diff-$chart"; then
		fail "$chart: values do not map 1:1 onto the binary's variables (- read by the binary, not in the chart; + in the chart, not read):"
		sed -n '3,$p' "$tmp/diff-$chart" | grep '^[-+]' >&2 || true
	else
		log "ok: $chart values map 1:1 onto its $(wc -l <"$tmp/go-$chart") variables"
	fi
	# The rendered names (sprig snakecase) must be names the binary reads.
	if [[ -f $tmp/all-$chart.yaml ]]; then
		grep -oE 'name: (STAGING|JUPYTERHUB)_[A-Z0-9_]+' "$tmp/all-$chart.yaml" | sed 's/name: //' | sort -u |
			comm -23 - "$tmp/go-$chart" | while read -r v; do
			fail "$chart: renders $v, which the binary does not read"
		done
	fi
done

# --- compose, prometheus, grafana --------------------------------------------
have_pyyaml=false
python3 -c 'import yaml' 2>/dev/null && have_pyyaml=true
if docker compose version >/dev/null 2>&1; then
	if docker compose -f docker-compose.yml config -q; then log "ok: docker compose config"; else fail "docker compose config"; fi
elif $have_pyyaml; then
	log "docker compose plugin not available: checking docker-compose.yml with PyYAML instead"
	if python3 - <<'PY'
import sys, yaml
c = yaml.safe_load(open("docker-compose.yml"))
want = {"nats", "mysql", "gateway", "stager", "jupyter-bridge", "audit", "prometheus", "grafana", "jaeger"}
svcs = c.get("services", {})
errs = [f"missing service {s}" for s in sorted(want - set(svcs))]
for name in ("gateway", "stager", "jupyter-bridge", "audit"):
    s = svcs.get(name, {})
    if s.get("build", {}).get("args", {}).get("SERVICE") != name:
        errs.append(f"{name}: not built from the Dockerfile with SERVICE={name}")
    env = s.get("environment", {})
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "http://jaeger:4318":
        errs.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT is not http://jaeger:4318")
    if not str(env.get("STAGING_NATS_URL", "")).startswith("nats://nats:"):
        errs.append(f"{name}: STAGING_NATS_URL does not point at the nats service")
    for dep in s.get("depends_on", {}):
        if dep not in svcs:
            errs.append(f"{name}: depends on unknown service {dep}")
if "-js" not in svcs.get("nats", {}).get("command", []):
    errs.append("nats: JetStream (-js) not on")
for v in c.get("volumes", {}):
    pass
used = {m.split(":")[0] for s in svcs.values() for m in s.get("volumes", []) if not m.startswith(".")}
errs += [f"undeclared volume {v}" for v in sorted(used - set(c.get("volumes", {})))]
for e in errs:
    print("docker-compose.yml:", e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY
	then log "ok: docker-compose.yml (YAML and structure)"; else fail "docker-compose.yml"; fi
else
	log "SKIP: neither docker compose nor python3 with PyYAML: docker-compose.yml not checked"
fi

if $have_pyyaml; then
	for f in deploy/prometheus/prometheus.yml deploy/grafana/provisioning/*/*.yml; do
		if python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f"; then log "ok: $f parses"; else fail "$f: not YAML"; fi
	done
fi
# Alert rules: one source, rendered by the audit chart through a link.
if [[ $(readlink deploy/helm/audit/files/staging.rules.yml) != ../../../prometheus/staging.rules.yml ]]; then
	fail "deploy/helm/audit/files/staging.rules.yml is not a link to deploy/prometheus/staging.rules.yml"
fi
if grep -q '^kind: PrometheusRule' "$tmp/all-audit.yaml" 2>/dev/null; then
	log "ok: the audit chart renders the PrometheusRule"
else
	fail "the audit chart renders no PrometheusRule with prometheusRule.enabled"
fi
if command -v promtool >/dev/null; then
	if (cd deploy/prometheus && promtool check config prometheus.yml >"$tmp/promtool.log" 2>&1 &&
		promtool test rules staging.rules.test.yml >>"$tmp/promtool.log" 2>&1); then
		log "ok: promtool check config (with the rules) and promtool test rules"
	else
		cat "$tmp/promtool.log" >&2
		fail "promtool: deploy/prometheus rules or their tests"
	fi
elif [[ ${STAGING_REQUIRE_INTEGRATION:-} == 1 ]]; then
	fail "promtool not found (Debian package prometheus) and STAGING_REQUIRE_INTEGRATION=1"
else
	log "SKIP: promtool not found (Debian package prometheus): alert rules not checked"
fi

dash=deploy/grafana/dashboards/skao-staging.json
if command -v jq >/dev/null; then
	if jq -e '.panels | length > 0' "$dash" >/dev/null; then log "ok: $dash parses"; else fail "$dash: not JSON"; fi
	prefixes=$(grep -rhoE --include='*.go' 'MetricPrefix: *"[a-z_]+"' services | sed -E 's/.*"(.*)"/\1/' | sort -u)
	for m in $(jq -r '.panels[].targets[]?.expr' "$dash" | grep -oE 'staging_[a-z_]+' | sed -E 's/_(bucket|count|sum)$//' | sort -u); do
		if grep -rqF --include='*.go' "\"$m\"" services libs; then continue; fi
		found=false
		for p in $prefixes; do
			if [[ $m == "$p"_* ]] && grep -rqF --include='*.go' "\"_${m#"$p"_}\"" libs/worker; then found=true; fi
		done
		$found || fail "$dash: metric $m is not defined in the Go sources"
	done
	log "ok: dashboard metrics checked against the Go sources"
else
	log "SKIP: jq not found: $dash not checked"
fi

if [[ ${DEPLOY_CHECK_NATS:-1} != 0 ]]; then
	if scripts/deploy-nats-check.sh 2>"$tmp/nats-check.log"; then
		grep '^deploy-nats-check' "$tmp/nats-check.log" >&2 || true
	else
		grep -v '^{"time"' "$tmp/nats-check.log" >&2 || true
		fail "NATS permissions (scripts/deploy-nats-check.sh)"
	fi
else
	log "SKIP: NATS permissions check (DEPLOY_CHECK_NATS=0)"
fi

if ((failures > 0)); then
	log "$failures check(s) failed"
	exit 1
fi
log "all checks passed"
